/**
 * Telemetry and cloud-to-device messages as AMQP messages (protocol-device.md §3.4; captures/amqp-amqp.txt), and
 * the small conversions of AMQP values the links share (bodies, ids, uuids).
 */
import type { IncomingCloudToDeviceMessage, OutgoingMessage } from '@fieldhub/device-core/transport';
import { ArgumentError, Limits } from '@fieldhub/protocol';
import { type Message, message as rheaMessage } from 'rhea-promise';

const encoder = new TextEncoder();

function utf8Length(text: string): number {
  return encoder.encode(text).byteLength;
}

/** The part of rhea's body `Section` this package reads. */
interface Section {
  readonly typecode: number;
  readonly content: unknown;
  readonly multiple?: boolean;
}

function isSection(value: unknown): value is Section {
  return typeof value === 'object' && value !== null && typeof (value as Section).typecode === 'number';
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A body as one data section, the way the Node SDK sends telemetry, twin and method bodies (body_type 0x75). */
export function dataBody(bytes: Uint8Array | string): unknown {
  return rheaMessage.data_section(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : toBuffer(bytes));
}

/**
 * The bytes of a received body: one or several data sections (concatenated), or an AMQP value (a string as
 * UTF-8, binary as is; other values as JSON, which is what a JSON-minded sender meant). No body: empty.
 */
export function bodyBytes(body: unknown): Uint8Array {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (isSection(body)) {
    if (body.typecode === 0x75) {
      const parts = body.multiple && Array.isArray(body.content) ? body.content : [body.content];
      return Buffer.concat(parts.filter((part): part is Buffer => Buffer.isBuffer(part)));
    }
    return encoder.encode(JSON.stringify(body.content));
  }
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) return body;
  if (typeof body === 'string') return encoder.encode(body);
  return encoder.encode(JSON.stringify(body));
}

/** A 16-byte AMQP uuid as its canonical string (`8-4-4-4-12`, lower case, RFC 4122 byte order). */
export function uuidString(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** A message id or correlation id as a string: strings as they are, uuids canonical, ulongs in decimal. */
export function idString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (value instanceof Uint8Array)
    return value.byteLength === 16 ? uuidString(value) : Buffer.from(value).toString('hex');
  return undefined;
}

/**
 * The size IoT Hub counts against its 256 KB limit: body, system property values, application property names
 * and values (protocol `Limits.telemetryMessageMaxBytes`), as transport-mqtt counts it.
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
    if (value !== undefined) size += utf8Length(value);
  }
  for (const [name, value] of Object.entries(message.properties ?? {})) size += utf8Length(name) + utf8Length(value);
  return size;
}

/**
 * The AMQP message of one telemetry message (protocol-device.md §3.4): the body as one data section; `to` = the
 * link address, `message_id`, `correlation_id`, `content_type`, `content_encoding`, `user_id` (binary, UTF-8) and
 * `absolute_expiry_time` in the properties; the application properties as they are.
 *
 * Ids go as AMQP strings, also when they look like UUIDs (the Node SDK re-encodes a UUID-shaped correlation id as
 * an AMQP uuid; IoT Hub hands both back as the same string, and a string is what the caller gave).
 *
 * @throws ArgumentError coded `MessageTooLarge` (413001) over 256 KB, refused locally as the Node SDK does;
 * ArgumentError (field `expiryTimeUtc`) for an expiry that is no date.
 */
export function telemetryMessage(address: string, message: OutgoingMessage): Message {
  const size = telemetrySize(message);
  if (size > Limits.telemetryMessageMaxBytes) {
    throw new ArgumentError(
      `telemetry message is ${size} bytes, more than the hub's ${Limits.telemetryMessageMaxBytes}`,
      { code: 'MessageTooLarge', field: 'body' },
    );
  }
  const amqp: Message = { to: address, body: dataBody(message.body) };
  if (message.messageId !== undefined) amqp.message_id = message.messageId;
  if (message.correlationId !== undefined) amqp.correlation_id = message.correlationId;
  if (message.contentType !== undefined) amqp.content_type = message.contentType;
  if (message.contentEncoding !== undefined) amqp.content_encoding = message.contentEncoding;
  // AMQP's user-id is binary (AMQP 1.0 §3.2.4); rhea's typing says string but encodes a Buffer as binary.
  if (message.userId !== undefined) amqp.user_id = Buffer.from(message.userId, 'utf8') as unknown as string;
  if (message.expiryTimeUtc !== undefined) {
    const expiry = new Date(message.expiryTimeUtc);
    if (Number.isNaN(expiry.getTime())) {
      throw new ArgumentError(`expiryTimeUtc '${message.expiryTimeUtc}' is not a date`, { field: 'expiryTimeUtc' });
    }
    amqp.absolute_expiry_time = expiry;
  }
  if (message.properties !== undefined && Object.keys(message.properties).length > 0) {
    const properties: Record<string, string> = {};
    for (const [name, value] of Object.entries(message.properties)) {
      Object.defineProperty(properties, name, { value, enumerable: true, writable: true, configurable: true });
    }
    amqp.application_properties = properties;
  }
  return amqp;
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return undefined;
}

function deliveryCount(message: Message): number | undefined {
  const annotated = message.message_annotations?.['iothub-deliverycount'];
  if (typeof annotated === 'number') return annotated;
  // The AMQP header counts earlier unsuccessful deliveries (AMQP 1.0 §3.2.1); this one is one more.
  return typeof message.delivery_count === 'number' ? message.delivery_count + 1 : undefined;
}

/**
 * A received cloud-to-device message (protocol-device.md §3.4): ids as strings, `user_id` decoded as UTF-8, the
 * expiry as ISO 8601, every application property as a string (`iothub-ack` among them, where the Node SDK shows
 * it), and the delivery count from `iothub-deliverycount` or the AMQP header.
 */
export function cloudToDeviceMessage(message: Message, lockToken: string): IncomingCloudToDeviceMessage {
  const properties: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.application_properties ?? {})) {
    if (value === undefined || value === null) continue;
    const converted = typeof value === 'string' ? value : value instanceof Date ? value.toISOString() : String(value);
    Object.defineProperty(properties, name, { value: converted, enumerable: true, writable: true, configurable: true });
  }
  const messageId = idString(message.message_id);
  const correlationId = idString(message.correlation_id);
  const userId = text(message.user_id);
  const expiry = message.absolute_expiry_time;
  const count = deliveryCount(message);
  return {
    body: bodyBytes(message.body),
    properties,
    lockToken,
    ...(messageId === undefined ? {} : { messageId }),
    ...(correlationId === undefined ? {} : { correlationId }),
    ...(typeof message.content_type === 'string' ? { contentType: message.content_type } : {}),
    ...(typeof message.content_encoding === 'string' ? { contentEncoding: message.content_encoding } : {}),
    ...(userId === undefined ? {} : { userId }),
    ...(expiry instanceof Date && !Number.isNaN(expiry.getTime()) ? { expiryTimeUtc: expiry.toISOString() } : {}),
    ...(count === undefined ? {} : { deliveryCount: count }),
  };
}

/** The JSON a body holds; `null` for an empty or blank body. @throws SyntaxError when it is not JSON */
export function decodeJson(payload: Uint8Array): unknown {
  const text = new TextDecoder().decode(payload);
  if (text.trim() === '') return null;
  return JSON.parse(text) as unknown;
}

/** A plain object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An AMQP int, long (rhea hands big ones over as numbers or bigints) or decimal text as a number. */
export function numberOf(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return undefined;
}

/**
 * The lock token of a cloud-to-device delivery: its tag, which IoT Hub makes the message's 16-byte lock-token
 * GUID (protocol-device.md §3.4), as a GUID string; another tag as hex; no tag, the delivery id.
 */
export function lockTokenOf(tag: Buffer | string, deliveryId: number): string {
  if (typeof tag === 'string') return tag;
  if (tag.byteLength === 16) return uuidString(tag);
  return tag.byteLength > 0 ? tag.toString('hex') : `delivery-${deliveryId}`;
}
