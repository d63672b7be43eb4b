/**
 * The MQTT property bag, the last topic level of telemetry and cloud-to-device topics: `k1=v1&k2=v2`, each key and
 * value percent-encoded (protocol-device.md §2.5). Small local versions of the protocol's `encodePropertyBag` /
 * `decodePropertyBag`, over flat `{ name: value }` objects whose system properties keep their wire names (`$.mid`,
 * `$.ct`, ...): the protocol's versions map typed names and throw its `ArgumentError` (see sas.ts for the cost).
 */
import type { SlimProperties } from './types';

/** Encodes properties as a bag; `''` when there are none. */
export function encodeBag(properties: SlimProperties | null | undefined): string {
  let bag = '';
  if (properties) {
    const keys = Object.keys(properties);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      bag += (bag ? '&' : '') + encodeURIComponent(key) + '=' + encodeURIComponent(String(properties[key]));
    }
  }
  return bag;
}

/**
 * Decodes one key or value of a bag: `+` is a space as in Node's querystring; a malformed escape is kept as it
 * came rather than losing the message.
 */
export function decodeComponent(text: string): string {
  const spaced = text.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch (_error) {
    return spaced;
  }
}
