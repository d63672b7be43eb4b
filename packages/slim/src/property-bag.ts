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

// `+` means a space as in Node's querystring; a malformed escape is kept as it came rather than losing the message.
function decode(text: string): string {
  const spaced = text.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch (_error) {
    return spaced;
  }
}

/** Decodes a bag into `{ name: value }` (a key without `=` gets `''`; `%24.mid` becomes `$.mid`). */
export function decodeBag(bag: string): SlimProperties {
  const properties: SlimProperties = {};
  const pairs = bag.split('&');
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i] as string;
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const key = decode(equals < 0 ? pair : pair.slice(0, equals));
    // defineProperty, not assignment: a key named __proto__ must become an own property, not a prototype.
    Object.defineProperty(properties, key, {
      value: equals < 0 ? '' : decode(pair.slice(equals + 1)),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return properties;
}
