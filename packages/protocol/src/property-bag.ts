/**
 * The MQTT property bag: message properties carried as the last topic level, `k1=v1&k2=v2` with each key and
 * value percent-encoded (reference: protocol-device.md §2.5). System properties use `$.`-prefixed short keys
 * (`$.mid`, `$.ct`, ...) plus `iothub-ack`; every other key is an application property.
 *
 * Percent-encoding and -decoding are written here rather than borrowed from `decodeURIComponent`, whose
 * `URIError` must never escape a parser and which not every embedded runtime ships.
 */
import { ArgumentError } from './errors';

/** The values `iothub-ack` may take: which cloud-to-device feedback the sender asked for. */
export const CloudToDeviceAck = {
  none: 'none',
  positive: 'positive',
  negative: 'negative',
  full: 'full',
} as const;

/** One of {@link CloudToDeviceAck}. */
export type CloudToDeviceAck = (typeof CloudToDeviceAck)[keyof typeof CloudToDeviceAck];

/**
 * System properties of a message, by their SDK names. All values stay strings as they travel (an expiry time
 * is the ISO-8601 text the sender wrote), so nothing is lost between decode and encode.
 */
export interface MessageSystemProperties {
  /** `$.mid`. */
  messageId?: string;
  /** `$.cid`. */
  correlationId?: string;
  /** `$.uid`. */
  userId?: string;
  /** `$.to`; the hub sets `/devices/{id}/messages/devicebound` on cloud-to-device messages. */
  to?: string;
  /** `$.exp`: absolute expiry time, ISO-8601 text. */
  expiryTimeUtc?: string;
  /** `$.ct`, e.g. `application/json`. */
  contentType?: string;
  /** `$.ce`, e.g. `utf-8`. */
  contentEncoding?: string;
  /** `$.on`: a module's output name. */
  outputName?: string;
  /** `$.ifid`: Plug and Play interface id. */
  interfaceId?: string;
  /** `$.sub`: Plug and Play component name (`dt-subject`). */
  componentName?: string;
  /** `$.ctime`: creation time UTC (.NET SDK). */
  creationTimeUtc?: string;
  /** `$.schema`: message schema (.NET SDK). */
  messageSchema?: string;
  /** `$.cdid`: device id of the connection that sent a module input message. */
  connectionDeviceId?: string;
  /** `$.cmid`: module id of the connection that sent a module input message. */
  connectionModuleId?: string;
  /** `$.diagid`: distributed-tracing id (.NET SDK). */
  diagnosticId?: string;
  /** `$.diagctx`: distributed-tracing correlation context (.NET SDK). */
  diagnosticCorrelationContext?: string;
  /** `iothub-ack`: requested cloud-to-device feedback; no `$.` prefix on the wire. */
  ack?: CloudToDeviceAck;
}

/** A decoded property bag. */
export interface PropertyBag {
  /** System properties, typed. */
  system: MessageSystemProperties;
  /** Application properties, by their original names. */
  application: Record<string, string>;
}

/**
 * Wire key of every system property, in the order Node's SDK writes them (system properties come before
 * application properties; reference §2.5 and the mqtt captures).
 */
export const SystemPropertyKeys = {
  messageId: '$.mid',
  correlationId: '$.cid',
  userId: '$.uid',
  to: '$.to',
  expiryTimeUtc: '$.exp',
  contentType: '$.ct',
  contentEncoding: '$.ce',
  outputName: '$.on',
  interfaceId: '$.ifid',
  componentName: '$.sub',
  creationTimeUtc: '$.ctime',
  messageSchema: '$.schema',
  connectionDeviceId: '$.cdid',
  connectionModuleId: '$.cmid',
  diagnosticId: '$.diagid',
  diagnosticCorrelationContext: '$.diagctx',
  ack: 'iothub-ack',
} as const satisfies Record<keyof MessageSystemProperties, string>;

type SystemPropertyName = keyof typeof SystemPropertyKeys;

const systemPropertyNames = Object.keys(SystemPropertyKeys) as SystemPropertyName[];

function systemNameOf(wireKey: string): SystemPropertyName | undefined {
  for (const name of systemPropertyNames) {
    if (SystemPropertyKeys[name] === wireKey) return name;
  }
  return undefined;
}

/** True when `key` is the wire key of a system property (`$.mid`, `iothub-ack`, ...). */
export function isSystemPropertyKey(key: string): boolean {
  return systemNameOf(key) !== undefined;
}

function isAck(value: string): value is CloudToDeviceAck {
  return value === 'none' || value === 'positive' || value === 'negative' || value === 'full';
}

// Sets an own property even for names such as `__proto__`, which plain assignment would treat specially.
function defineEntry(target: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Percent-encodes `value` like `encodeURIComponent` (UTF-8, upper-case hex, `A-Z a-z 0-9 - _ . ! ~ * ' ( )`
 * left as they are), which is what the SDKs put in topics.
 *
 * @param field named in the error.
 * @throws ArgumentError when `value` holds an unpaired surrogate, which has no UTF-8 form.
 */
export function percentEncode(value: string, field: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    throw new ArgumentError(`${field} contains an unpaired surrogate and cannot be encoded`, { field });
  }
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/**
 * Decodes percent-escapes (UTF-8) in `text`. With `plusAsSpace`, `+` means a space as in HTML forms (Node's
 * `querystring`, Python's `quote_plus`); without it `+` stays `+` (SAS tokens, whose base64 may hold a raw `+`).
 *
 * @param field named in the error.
 * @throws ArgumentError on a `%` not followed by two hex digits, or escapes that are not valid UTF-8.
 */
export function percentDecode(text: string, field: string, options: { plusAsSpace?: boolean } = {}): string {
  if (text.indexOf('%') < 0 && !(options.plusAsSpace && text.indexOf('+') >= 0)) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text.charCodeAt(i);
    if (ch === 0x2b && options.plusAsSpace) {
      out += ' ';
      i += 1;
    } else if (ch !== 0x25) {
      out += text.charAt(i);
      i += 1;
    } else {
      // Gather a run of escapes, then decode the bytes as one UTF-8 sequence.
      const bytes: number[] = [];
      while (i < text.length && text.charCodeAt(i) === 0x25) {
        const high = hexValue(text.charCodeAt(i + 1));
        const low = hexValue(text.charCodeAt(i + 2));
        if (high < 0 || low < 0) {
          throw new ArgumentError(`${field} has a malformed percent-escape at offset ${i}`, { field });
        }
        bytes.push(high * 16 + low);
        i += 3;
      }
      out += utf8BytesToString(bytes, field);
    }
  }
  return out;
}

function utf8BytesToString(bytes: number[], field: string): string {
  let out = '';
  let i = 0;
  const fail = (): never => {
    throw new ArgumentError(`${field} has percent-escapes that are not valid UTF-8`, { field });
  };
  while (i < bytes.length) {
    const first = bytes[i] as number;
    let needed: number;
    let codePoint: number;
    let minimum: number;
    if (first < 0x80) {
      out += String.fromCharCode(first);
      i += 1;
      continue;
    }
    if (first >= 0xc2 && first <= 0xdf) {
      needed = 1;
      codePoint = first & 0x1f;
      minimum = 0x80;
    } else if (first >= 0xe0 && first <= 0xef) {
      needed = 2;
      codePoint = first & 0x0f;
      minimum = 0x800;
    } else if (first >= 0xf0 && first <= 0xf4) {
      needed = 3;
      codePoint = first & 0x07;
      minimum = 0x10000;
    } else {
      return fail();
    }
    if (i + needed >= bytes.length) fail();
    for (let k = 1; k <= needed; k += 1) {
      const next = bytes[i + k] as number;
      if ((next & 0xc0) !== 0x80) fail();
      codePoint = codePoint * 64 + (next & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8 (RFC 3629 §3).
    if (codePoint < minimum || codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff)) fail();
    if (codePoint >= 0x10000) {
      const offset = codePoint - 0x10000;
      out += String.fromCharCode(0xd800 + (offset >> 10), 0xdc00 + (offset & 0x3ff));
    } else {
      out += String.fromCharCode(codePoint);
    }
    i += needed + 1;
  }
  return out;
}

/**
 * Decodes a property bag (the text after `.../messages/events/` or `.../devicebound/`) into system and
 * application properties.
 *
 * Lenient as the hub must be (reference §0, §2.5): an empty bag or empty segments (`a=1&&b=2`, trailing `&`)
 * are fine; a leading `?` is skipped (a documentation example shows `/?prop1&...`); `+` decodes to a space;
 * `$` may arrive as `%24`; a key without `=` has the empty string as its value (the bag's "null" form); segments
 * with an empty key are ignored; when a key repeats, the last value wins; an unknown `$.`-key is an application
 * property.
 *
 * @throws ArgumentError (field `propertyBag`, or the property's key) on a malformed percent-escape, or an
 * `iothub-ack` value that is not none/positive/negative/full.
 */
export function decodePropertyBag(bag: string): PropertyBag {
  const system: MessageSystemProperties = {};
  const application: Record<string, string> = {};
  const text = bag.charAt(0) === '?' ? bag.slice(1) : bag;
  if (text === '') return { system, application };
  for (const segment of text.split('&')) {
    if (segment === '') continue;
    const equals = segment.indexOf('=');
    const rawKey = equals < 0 ? segment : segment.slice(0, equals);
    const rawValue = equals < 0 ? '' : segment.slice(equals + 1);
    const key = percentDecode(rawKey, 'propertyBag', { plusAsSpace: true });
    if (key === '') continue;
    const value = percentDecode(rawValue, key, { plusAsSpace: true });
    const name = systemNameOf(key);
    if (name === undefined) {
      defineEntry(application, key, value);
    } else if (name === 'ack') {
      if (!isAck(value)) {
        throw new ArgumentError(`iothub-ack must be none, positive, negative or full, not '${value}'`, {
          field: 'iothub-ack',
        });
      }
      system.ack = value;
    } else {
      system[name] = value;
    }
  }
  return { system, application };
}

/**
 * Encodes system and application properties as a property bag, system properties first in Node's order, each
 * key and value percent-encoded. Returns `''` when there is nothing to encode.
 *
 * @throws ArgumentError when an application property has an empty name or the name of a system property
 * (`$.mid`, `iothub-ack`, ...: it would come back as that system property), when `ack` is not a
 * {@link CloudToDeviceAck}, or when a string holds an unpaired surrogate.
 */
export function encodePropertyBag(properties: {
  system?: MessageSystemProperties;
  application?: Record<string, string>;
}): string {
  const parts: string[] = [];
  const system = properties.system ?? {};
  for (const name of systemPropertyNames) {
    const value = system[name];
    if (value === undefined) continue;
    if (name === 'ack' && !isAck(value)) {
      throw new ArgumentError(`ack must be none, positive, negative or full, not '${value}'`, { field: 'ack' });
    }
    parts.push(`${percentEncode(SystemPropertyKeys[name], name)}=${percentEncode(value, name)}`);
  }
  const application = properties.application ?? {};
  for (const key of Object.keys(application)) {
    if (key === '') throw new ArgumentError('an application property name must not be empty', { field: 'application' });
    if (systemNameOf(key) !== undefined) {
      throw new ArgumentError(`application property '${key}' has the name of a system property`, { field: key });
    }
    const value = application[key] as string;
    parts.push(`${percentEncode(key, key)}=${percentEncode(value, key)}`);
  }
  return parts.join('&');
}
