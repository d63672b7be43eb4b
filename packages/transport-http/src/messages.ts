/**
 * Messages as HTTPS carries them (protocol-device.md §4.1, §4.2; captures/http.txt): telemetry system properties
 * and application properties in `iothub-*` headers, batches as JSON (`application/vnd.microsoft.iothub.json`), and
 * cloud-to-device messages read back from a `devicebound` answer (lock token from the ETag).
 */
import type { IncomingCloudToDeviceMessage, OutgoingMessage } from '@fieldhub/device-core/transport';
import { ArgumentError, base64Encode, HubError, Limits } from '@fieldhub/protocol';

const encoder = new TextEncoder();

/** The prefix of application-property headers. */
export const applicationPropertyPrefix = 'iothub-app-';

/** The content type of a telemetry batch (protocol-device.md §4.1). */
export const batchContentType = 'application/vnd.microsoft.iothub.json';

/**
 * Application properties the official SDK sends without the `iothub-app-` prefix (azure-iot-device-http: the digital
 * twin's `dt-subject`).
 */
const unprefixedProperties: ReadonlySet<string> = new Set(['dt-subject']);

// RFC 9110 §5.6.2 token: what a header name may hold. IoT Hub documents the same alphabet for HTTPS property names
// (protocol-device.md §4.1).
const tokenPattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Visible ASCII and space: what a header value carries unchanged (no obs-text, no controls). For system properties.
const valuePattern = /^[\x20-\x7e]*$/;
// Application property values: IoT Hub documents the token alphabet for them too over HTTPS (protocol-device.md
// §4.1), and the hub answers anything else with 400, so the transport refuses it before sending.
const propertyValuePattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]*$/;

/**
 * Percent-encodes one path segment as the official SDK does (`encodeUriComponentStrict`: `encodeURIComponent` plus
 * `! ' ( ) *`).
 */
export function encodeSegment(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Who sends: the path prefix of its routes. */
export interface Identity {
  readonly deviceId: string;
  readonly moduleId?: string | undefined;
}

/** `/devices/{id}` or `/devices/{id}/modules/{module}`, ids percent-encoded. */
export function identityPath(identity: Identity): string {
  const device = `/devices/${encodeSegment(identity.deviceId)}`;
  return identity.moduleId === undefined ? device : `${device}/modules/${encodeSegment(identity.moduleId)}`;
}

/**
 * The size IoT Hub counts against its 256 KB limit: body, system property values, application property names
 * and values (protocol `Limits.telemetryMessageMaxBytes`).
 */
export function telemetrySize(message: OutgoingMessage): number {
  let size = message.body.byteLength;
  for (const value of [
    message.messageId,
    message.correlationId,
    message.contentType,
    message.contentEncoding,
    message.userId,
    message.expiryTimeUtc,
  ]) {
    if (value !== undefined) size += encoder.encode(value).byteLength;
  }
  for (const [name, value] of Object.entries(message.properties ?? {})) {
    size += encoder.encode(name).byteLength + encoder.encode(value).byteLength;
  }
  return size;
}

function headerValue(value: string, field: string): string {
  if (!valuePattern.test(value)) {
    throw new ArgumentError(`${field} '${value}' cannot travel in an HTTP header: use printable ASCII`, { field });
  }
  return value;
}

/**
 * The `iothub-*` headers of one telemetry message, in the official SDK's order (application properties first, then
 * `iothub-messageid`, `iothub-correlationid`, `iothub-userid`, `iothub-expiry`, `iothub-contenttype`,
 * `iothub-contentencoding`; captures/http.txt). Over HTTPS property names are header names: limited to the token
 * alphabet, and two names differing only in case are one header.
 *
 * @throws ArgumentError coded `MessageTooLarge` over 256 KB; ArgumentError (field `properties`) for a property name or
 * value outside the HTTP token alphabet (IoT Hub's documented HTTPS charset: no spaces, no `/`, no `=`) or two names
 * differing only in case; ArgumentError for ids and content types that are not printable ASCII.
 */
export function telemetryHeaders(message: OutgoingMessage): Record<string, string> {
  checkSize(telemetrySize(message), Limits.telemetryMessageMaxBytes, 'telemetry message');
  const headers: Record<string, string> = {};
  Object.assign(headers, propertyHeaders(message.properties));
  if (message.messageId !== undefined) headers['iothub-messageid'] = headerValue(message.messageId, 'messageId');
  if (message.correlationId !== undefined) {
    headers['iothub-correlationid'] = headerValue(message.correlationId, 'correlationId');
  }
  if (message.userId !== undefined) headers['iothub-userid'] = headerValue(message.userId, 'userId');
  if (message.expiryTimeUtc !== undefined) headers['iothub-expiry'] = expiry(message.expiryTimeUtc);
  if (message.contentType !== undefined) {
    headers['iothub-contenttype'] = headerValue(message.contentType, 'contentType');
  }
  if (message.contentEncoding !== undefined) {
    headers['iothub-contentencoding'] = headerValue(message.contentEncoding, 'contentEncoding');
  }
  return headers;
}

function expiry(value: string): string {
  const time = Date.parse(value);
  if (Number.isNaN(time)) {
    throw new ArgumentError(`expiryTimeUtc '${value}' is not a date`, { field: 'expiryTimeUtc' });
  }
  return new Date(time).toISOString();
}

function propertyHeaders(properties: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [name, value] of Object.entries(properties ?? {})) {
    if (!tokenPattern.test(name)) {
      throw new ArgumentError(
        `property name '${name}' cannot travel over HTTPS: use letters, digits and ! # $ % & ' * + - . ^ _ \` | ~`,
        { field: 'properties' },
      );
    }
    const lower = name.toLowerCase();
    if (seen.has(lower)) {
      throw new ArgumentError(`property names are case-insensitive over HTTPS: '${name}' is given twice`, {
        field: 'properties',
      });
    }
    seen.add(lower);
    // The name keeps its case on the wire (the hub reads raw headers); only `dt-subject` goes without the prefix.
    const header = unprefixedProperties.has(lower) ? lower : `${applicationPropertyPrefix}${name}`;
    if (!propertyValuePattern.test(value)) {
      throw new ArgumentError(
        `the value of property '${name}' cannot travel over HTTPS: use letters, digits and ! # $ % & ' * + - . ^ _ \` | ~`,
        { field: 'properties' },
      );
    }
    headers[header] = value;
  }
  return headers;
}

function checkSize(size: number, limit: number, what: string): void {
  if (size > limit) {
    throw new ArgumentError(`${what} is ${size} bytes, more than the hub's ${limit}`, {
      code: 'MessageTooLarge',
      field: 'body',
    });
  }
}

/**
 * The JSON body of a telemetry batch: one `{"body":"<base64>","properties":{...}}` per message, as the official SDK
 * writes it (protocol-device.md §4.1; captures/http.txt). `properties` holds the same `iothub-*` names as the headers
 * of a single message, system properties included, and is left out when empty.
 *
 * @throws ArgumentError coded `MessageTooLarge` when one message or the batch is over 256 KB; ArgumentError as
 * {@link telemetryHeaders}.
 */
export function telemetryBatchBody(messages: readonly OutgoingMessage[]): Uint8Array {
  let total = 0;
  const entries = messages.map((message) => {
    total += telemetrySize(message);
    const properties = telemetryHeaders(message);
    return Object.keys(properties).length === 0
      ? { body: base64Encode(message.body) }
      : { body: base64Encode(message.body), properties };
  });
  checkSize(total, Limits.telemetryBatchMaxBytes, `telemetry batch of ${messages.length} messages`);
  return encoder.encode(JSON.stringify(entries));
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function single(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The lock token in an ETag: the value without its quotes (and without a weak `W/` prefix), as the Node SDK reads it
 * (protocol-device.md §4.2).
 */
export function lockTokenOf(etag: string): string {
  return etag
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
}

/**
 * A cloud-to-device message from a `200` answer of `GET .../messages/devicebound`: the body, the lock token from the
 * ETag, application properties from `iothub-app-*` (prefix removed; names arrive lower-cased, HTTP headers being
 * case-insensitive), `iothub-messageid`, `iothub-correlationid`, `iothub-userid`, `iothub-contenttype`,
 * `iothub-contentencoding`, `iothub-expiry` and `iothub-deliverycount`.
 *
 * @throws HubError `ServerError` when the answer has no ETag (the message could never be settled).
 */
export function cloudToDeviceMessage(headers: Headers, body: Uint8Array): IncomingCloudToDeviceMessage {
  const etag = single(headers, 'etag');
  const lockToken = etag === undefined ? '' : lockTokenOf(etag);
  if (lockToken === '') {
    throw new HubError('ServerError', 'the hub sent a cloud-to-device message without an ETag (lock token)');
  }
  const properties: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(applicationPropertyPrefix) || value === undefined) continue;
    properties[name.slice(applicationPropertyPrefix.length)] = Array.isArray(value) ? value.join(', ') : value;
  }
  const fields: { -readonly [K in keyof IncomingCloudToDeviceMessage]?: IncomingCloudToDeviceMessage[K] } = {};
  const copy = (field: 'messageId' | 'correlationId' | 'userId' | 'contentType' | 'contentEncoding', name: string) => {
    const value = single(headers, name);
    if (value !== undefined) fields[field] = value;
  };
  copy('messageId', 'iothub-messageid');
  copy('correlationId', 'iothub-correlationid');
  copy('userId', 'iothub-userid');
  copy('contentType', 'iothub-contenttype');
  copy('contentEncoding', 'iothub-contentencoding');
  const expiryTimeUtc = single(headers, 'iothub-expiry');
  if (expiryTimeUtc !== undefined && expiryTimeUtc !== '') fields.expiryTimeUtc = expiryTimeUtc;
  const deliveryCount = Number(single(headers, 'iothub-deliverycount'));
  if (Number.isInteger(deliveryCount) && deliveryCount > 0) fields.deliveryCount = deliveryCount;
  return { ...fields, body, properties, lockToken };
}
