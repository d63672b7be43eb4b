/**
 * The HTTPS device API's message mapping (protocol-device.md §4.1, §4.2): request headers and batch items to
 * built-in endpoint messages, and cloud-to-device deliveries to response headers. Pure translation: no I/O.
 *
 * Telemetry headers (names case-insensitive; the suffix of `iothub-app-<name>` keeps the case the device sent):
 * `iothub-app-<name>` → application property `<name>`; `iothub-messageid`, `iothub-correlationid`,
 * `iothub-userid`, `iothub-to`, `iothub-expiry`, `iothub-contenttype`, `iothub-contentencoding`,
 * `iothub-interface-id` and `dt-subject` (the Node SDK sends a `dt-subject` property without the prefix) → the
 * system properties they name. `iothub-ack` means nothing on telemetry and is ignored, as over AMQP.
 *
 * Decisions where the reference is silent:
 * - Application property names and values are held to §4.1's charset (ASCII letters and digits plus
 *   ``! # $ % & ' * + - . ^ _ ` | ~``, values may be empty); anything else is 400 ArgumentInvalid, as Azure
 *   documents for HTTPS. Values are not percent-decoded (`%` is an allowed character).
 * - A header given twice is refused (400): the two values cannot both be the property.
 * - `iothub-expiry` must be a date (`Date.parse`) and is stored as ISO 8601 text, as the AMQP head stores it.
 * - The application properties `iothub-creation-time-utc`, `iothub-outputname` and `iothub-message-schema`
 *   become the system properties they name, as the AMQP head maps them (their values are not held to the
 *   charset: a creation time holds `:`).
 * - Batch items (`application/vnd.microsoft.iothub.json`): `{ body, properties?, base64Encoded? }`; `body` is
 *   base64 unless `base64Encoded` is `false` (then UTF-8 text); `properties` keys are read as the headers
 *   above (the .NET SDK puts system headers such as `iothub-messageid` there too). An empty array, an item that
 *   is not such an object, a body that is not valid base64 or a property value that is not a string is 400.
 */
import { ArgumentError, HubError, Limits, type MessageSystemProperties } from '@fieldhub/protocol';
import type { CloudToDeviceDelivery } from '../../core/cloud-to-device';
import type { EndpointMessageInput } from '../../core/telemetry';
import type { SessionIdentity } from '../mqtt/session';
import { endpointInput, withinTelemetryLimit } from '../mqtt/telemetry-ingest';

/** The media type of a telemetry batch (§4.1). */
export const telemetryBatchContentType = 'application/vnd.microsoft.iothub.json';

const appPrefix = 'iothub-app-';

/** Headers that carry system properties, by lower-case name. */
const systemHeaders: Record<string, keyof MessageSystemProperties> = {
  'iothub-messageid': 'messageId',
  'iothub-correlationid': 'correlationId',
  'iothub-userid': 'userId',
  'iothub-to': 'to',
  'iothub-expiry': 'expiryTimeUtc',
  'iothub-contenttype': 'contentType',
  'iothub-contentencoding': 'contentEncoding',
  'iothub-interface-id': 'interfaceId',
  'dt-subject': 'componentName',
};

/** Application properties that carry system properties (as the AMQP head reads them). */
const systemApplicationProperties: Record<string, keyof MessageSystemProperties> = {
  'iothub-creation-time-utc': 'creationTimeUtc',
  'iothub-outputname': 'outputName',
  'iothub-message-schema': 'messageSchema',
};

// §4.1: "ASCII alphanumerics plus ! # $ % & ' * + - . ^ _ ` | ~" (the HTTP token characters).
const propertyNamePattern = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const propertyValuePattern = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]*$/;
const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/** A telemetry message read from a request, before it is stamped with the sender's identity. */
export interface DeviceTelemetryMessage {
  readonly body: Buffer;
  readonly properties: Record<string, string>;
  readonly system: MessageSystemProperties;
}

/** Collects application and system properties from `(name, value)` pairs, refusing what §4.1 does not allow. */
class PropertyCollector {
  readonly properties: Record<string, string> = {};
  readonly system: MessageSystemProperties = {};
  private readonly seen = new Set<string>();

  constructor(private readonly where: string) {}

  add(name: string, value: string): void {
    const lower = name.toLowerCase();
    if (lower.startsWith(appPrefix)) {
      this.application(name.slice(appPrefix.length), value);
      return;
    }
    // Own keys only: a header named `constructor` must not find Object.prototype's member.
    const systemName = Object.hasOwn(systemHeaders, lower) ? systemHeaders[lower] : undefined;
    if (systemName === undefined) return;
    this.once(lower);
    if (systemName === 'expiryTimeUtc') {
      const time = Date.parse(value);
      if (Number.isNaN(time)) {
        throw new ArgumentError(`${this.where}: iothub-expiry '${value.slice(0, 64)}' is not a date`, {
          field: 'iothub-expiry',
        });
      }
      this.system.expiryTimeUtc = new Date(time).toISOString();
      return;
    }
    if (systemName === 'messageId' && value.length > Limits.messageIdMaxLength) {
      throw new ArgumentError(`${this.where}: the message id is longer than ${Limits.messageIdMaxLength} characters`, {
        field: 'iothub-messageid',
      });
    }
    this.system[systemName] = value as never;
  }

  private application(name: string, value: string): void {
    if (!propertyNamePattern.test(name)) {
      throw new ArgumentError(
        `${this.where}: application property name '${name.slice(0, 64)}' may hold only ASCII letters, digits and ! # $ % & ' * + - . ^ _ \` | ~`,
        { field: name.slice(0, 64) },
      );
    }
    this.once(`${appPrefix}${name.toLowerCase()}`);
    // A system property in disguise (a creation time holds ':'), not held to the application charset.
    const lowerName = name.toLowerCase();
    const systemName = Object.hasOwn(systemApplicationProperties, lowerName)
      ? systemApplicationProperties[lowerName]
      : undefined;
    if (systemName !== undefined) {
      this.system[systemName] = value as never;
      return;
    }
    if (!propertyValuePattern.test(value)) {
      throw new ArgumentError(
        `${this.where}: the value of application property '${name}' may hold only ASCII letters, digits and ! # $ % & ' * + - . ^ _ \` | ~`,
        { field: name },
      );
    }
    this.properties[name] = value;
  }

  private once(key: string): void {
    if (this.seen.has(key)) throw new ArgumentError(`${this.where}: '${key}' is given twice`, { field: key });
    this.seen.add(key);
  }
}

/**
 * The telemetry message of a single-message request: the body as it arrived and the properties of its headers.
 * `rawHeaders` is Node's flat `[name, value, ...]` list, which keeps the case the device gave property names.
 * @throws ArgumentError (400 ArgumentInvalid) for a property outside §4.1's charset, a header given twice, an
 * invalid expiry or an over-long message id.
 */
export function telemetryFromHeaders(rawHeaders: readonly string[], body: Buffer): DeviceTelemetryMessage {
  const collector = new PropertyCollector('Telemetry request');
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    collector.add(rawHeaders[index] as string, rawHeaders[index + 1] as string);
  }
  return { body, properties: collector.properties, system: collector.system };
}

/**
 * The messages of a batch request (§4.1), in order.
 * @throws ArgumentError (400 ArgumentInvalid) when the body is not a non-empty JSON array of
 * `{ body: string, properties?: { [name]: string }, base64Encoded?: boolean }`, or a property is refused as in
 * {@link telemetryFromHeaders}.
 */
export function telemetryFromBatch(raw: Buffer): DeviceTelemetryMessage[] {
  let items: unknown;
  try {
    items = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw new ArgumentError(`The batch is not valid JSON: ${(error as Error).message}`, { field: 'body' });
  }
  if (!Array.isArray(items)) throw new ArgumentError('The batch must be a JSON array of messages', { field: 'body' });
  if (items.length === 0) throw new ArgumentError('The batch holds no message', { field: 'body' });
  return items.map((item: unknown, index) => {
    const where = `Batch message ${index}`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new ArgumentError(`${where} is not an object`, { field: `[${index}]` });
    }
    const { body, properties, base64Encoded } = item as Record<string, unknown>;
    if (typeof body !== 'string') throw new ArgumentError(`${where} has no string body`, { field: `[${index}].body` });
    if (base64Encoded !== undefined && typeof base64Encoded !== 'boolean') {
      throw new ArgumentError(`${where}: base64Encoded must be true or false`, { field: `[${index}].base64Encoded` });
    }
    let bytes: Buffer;
    if (base64Encoded === false) {
      bytes = Buffer.from(body, 'utf8');
    } else {
      if (!base64Pattern.test(body)) {
        throw new ArgumentError(`${where}: body is not base64`, { field: `[${index}].body` });
      }
      bytes = Buffer.from(body, 'base64');
    }
    const collector = new PropertyCollector(where);
    if (properties !== undefined && properties !== null) {
      if (typeof properties !== 'object' || Array.isArray(properties)) {
        throw new ArgumentError(`${where}: properties must be an object`, { field: `[${index}].properties` });
      }
      for (const [name, value] of Object.entries(properties as Record<string, unknown>)) {
        if (typeof value !== 'string') {
          throw new ArgumentError(`${where}: property '${name.slice(0, 64)}' must be a string`, {
            field: `[${index}].properties`,
          });
        }
        collector.add(name, value);
      }
    }
    return { body: bytes, properties: collector.properties, system: collector.system };
  });
}

/**
 * The built-in endpoint message of `message` sent by `identity`, stamped as the MQTT and AMQP heads stamp theirs.
 * @throws HubError MessageTooLarge (413001) over 256 KB (body + system property values + application properties, §7).
 */
export function telemetryInput(identity: SessionIdentity, message: DeviceTelemetryMessage): EndpointMessageInput {
  if (!withinTelemetryLimit(message.body, message.properties, message.system)) {
    throw new HubError(
      'MessageTooLarge',
      `The message is over ${Limits.telemetryMessageMaxBytes} bytes (body, system property values and application properties)`,
    );
  }
  return endpointInput(identity, message.body, message.properties, message.system);
}

// Header values Node writes as they are: visible ASCII, inner spaces (RFC 9110 field-value).
const safeHeaderValue = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

/**
 * Percent-encodes (UTF-8) every character of `text` that `keep` does not accept, so that a property a service set
 * over AMQP with characters HTTP cannot carry still reaches an HTTPS device (§4.1 limits C2D properties to
 * token characters; the core does not refuse others).
 */
function headerSafe(text: string, keep: RegExp): string {
  if (keep.test(text)) return text;
  let result = '';
  for (const character of text) {
    if (/^[A-Za-z0-9!#$&'*+\-.^_`|~]$/.test(character)) result += character;
    else
      for (const byte of Buffer.from(character, 'utf8'))
        result += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return result;
}

/**
 * The response headers of a cloud-to-device delivery (§4.2): `ETag: "<lockToken>"`, the message's system
 * properties as `iothub-*` headers (times ISO 8601) and each application property as `iothub-app-<name>`.
 */
export function cloudToDeviceHeaders(delivery: CloudToDeviceDelivery): Record<string, string> {
  const { message } = delivery;
  const headers: Record<string, string> = {
    etag: `"${delivery.lockToken}"`,
    'iothub-messageid': headerSafe(message.messageId, safeHeaderValue),
    'iothub-to': message.to,
    'iothub-expiry': new Date(message.expiryTimeUtc).toISOString(),
    'iothub-ack': message.ack,
    'iothub-sequencenumber': String(message.sequenceNumber),
    'iothub-enqueuedtime': new Date(message.enqueuedTimeUtc).toISOString(),
    'iothub-deliverycount': String(delivery.deliveryCount),
  };
  const optional: [string, string | undefined][] = [
    ['iothub-correlationid', message.correlationId],
    ['iothub-userid', message.userId],
    ['iothub-contenttype', message.contentType],
    ['iothub-contentencoding', message.contentEncoding],
  ];
  for (const [name, value] of optional) {
    if (value !== undefined) headers[name] = headerSafe(value, safeHeaderValue);
  }
  for (const [name, value] of Object.entries(message.properties)) {
    headers[`${appPrefix}${headerSafe(name, propertyNamePattern)}`] = headerSafe(value, safeHeaderValue);
  }
  return headers;
}
