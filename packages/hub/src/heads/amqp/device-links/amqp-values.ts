/**
 * AMQP value conversions the device links share (protocol-device.md §3.4): message ids that arrive as AMQP
 * `uuid`, bodies in data / value sections, GUID delivery tags, and hub errors as AMQP error conditions.
 */
import { HubError } from '@fieldhub/protocol';
import type { Message } from 'rhea';
import { type AmqpError, AmqpErrorConditions } from '../contract';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `text` is a canonical UUID string (any case). */
export function isUuid(text: string): boolean {
  return uuidPattern.test(text);
}

/** The canonical (lower-case, hyphenated) text of a 16-byte AMQP uuid, in network byte order (RFC 4122). */
export function uuidText(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The 16 bytes of a UUID string in network byte order (what rhea encodes as AMQP `uuid` from a Buffer). */
export function uuidBytes(text: string): Buffer {
  return Buffer.from(text.replace(/-/g, ''), 'hex');
}

/**
 * A `message_id` / `correlation_id` as the core keeps it: strings as they are, an AMQP `uuid` (rhea decodes it
 * as a 16-byte Buffer; the Node SDK sends UUID-shaped ids so, §3.4) as its canonical text, `ulong` as decimal.
 * Decision where the reference is silent: other binary ids become lower-case hex.
 */
export function messageIdText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    return value.byteLength === 16 ? uuidText(value) : Buffer.from(value).toString('hex');
  }
  return undefined;
}

/**
 * The 16-byte delivery tag of a cloud-to-device delivery: the lock token GUID in .NET's `Guid.ToByteArray()`
 * order (first three fields little-endian), so that the .NET SDK's `new Guid(deliveryTag)` (§0.3) yields the
 * same lock token text the hub stamps as `x-opt-lock-token`.
 */
export function lockTokenTag(lockToken: string): Buffer {
  const bytes = uuidBytes(lockToken);
  if (bytes.length !== 16) throw new Error('lock token is not a GUID');
  bytes.subarray(0, 4).reverse();
  bytes.subarray(4, 6).reverse();
  bytes.subarray(6, 8).reverse();
  return bytes;
}

/**
 * The bytes of a message body. Azure's clients send one data section (§3.4); several data sections are
 * concatenated, an AMQP value holding a string or binary is taken as its bytes, no body is an empty body.
 * Anything else (a sequence, a number, a map) is an error: the hub cannot store it as telemetry bytes.
 */
export function bodyBytes(message: Message): Buffer | AmqpError {
  const body: unknown = message.body;
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const section = body as { typecode?: unknown; content?: unknown; multiple?: unknown };
  if (section.typecode === 0x75) {
    if (section.multiple === true && Array.isArray(section.content)) {
      const parts = section.content.filter((part): part is Buffer => Buffer.isBuffer(part));
      if (parts.length === section.content.length) return Buffer.concat(parts);
    } else if (Buffer.isBuffer(section.content)) {
      return section.content;
    }
  }
  return {
    condition: AmqpErrorConditions.argumentError,
    description: 'The message body must be data sections (or an AMQP value holding a string or binary).',
  };
}

/** A text value of the AMQP message (symbol, string, binary) as a string, else undefined. */
export function textOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/**
 * An application property value as the core's string properties hold it: strings as they are, numbers and
 * booleans as their text, timestamps as ISO-8601, a uuid as its canonical text. Decision where the reference is
 * silent: null values are dropped, lists and maps are refused (undefined).
 */
export function propertyText(value: unknown): string | null | undefined {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.toISOString();
  if (Buffer.isBuffer(value)) return value.length === 16 ? uuidText(value) : value.toString('base64');
  return undefined;
}

/**
 * A core error as the AMQP error of a `rejected` outcome or a detach (§3.4: the SDKs map these conditions to
 * typed errors). The description carries the hub's error code, as Azure's do.
 */
export function amqpErrorOf(error: unknown): AmqpError {
  if (!HubError.is(error)) {
    return { condition: AmqpErrorConditions.internalError, description: 'An internal error occurred.' };
  }
  const description = `${error.hubCode}: ${error.message}`;
  switch (error.status) {
    case 400:
      return { condition: AmqpErrorConditions.argumentError, description };
    case 401:
      return { condition: AmqpErrorConditions.unauthorizedAccess, description };
    case 403:
      return {
        condition: /QuotaExceeded|QueueDepthExceeded/.test(error.code)
          ? AmqpErrorConditions.quotaExceeded
          : AmqpErrorConditions.unauthorizedAccess,
        description,
      };
    case 404:
      return { condition: AmqpErrorConditions.notFound, description };
    case 412:
      return {
        condition:
          error.code === 'DeviceMessageLockLost'
            ? AmqpErrorConditions.messageLockLost
            : AmqpErrorConditions.preconditionFailed,
        description,
      };
    case 413:
      return { condition: AmqpErrorConditions.messageSizeExceeded, description };
    case 429:
      return { condition: AmqpErrorConditions.throttled, description };
    case 503:
    case 504:
      return { condition: AmqpErrorConditions.timeout, description };
    default:
      return { condition: AmqpErrorConditions.internalError, description };
  }
}
