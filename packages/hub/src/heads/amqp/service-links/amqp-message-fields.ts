/**
 * Reading AMQP message fields as the core's strings and bytes (protocol-service.md §3.2). rhea decodes an AMQP
 * `uuid` as a 16-byte Buffer, symbols and strings as strings, timestamps as Dates, a `data` body as a Section
 * (`typecode` 0x75) and an `amqp-value` body as the value itself.
 *
 * Decisions where the reference is silent:
 * - A message or correlation id may be a string, a uuid (canonical lower-case string, as the SDKs print it), a
 *   ulong (decimal) or binary (lower-case hex); AMQP allows these four.
 * - Application property values are strings on every other head; numbers, booleans and timestamps (ISO 8601) are
 *   turned into strings, `null` drops the property, and maps, lists and binary are refused (no faithful string).
 */
import { ArgumentError } from '@fieldhub/protocol';
import { uuidText } from '../device-links/amqp-values';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** The string form of an AMQP message-id / correlation-id, or undefined when absent. */
export function messageIdString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  if (typeof value === 'bigint' && value >= 0n) return value.toString();
  if (value instanceof Uint8Array) return value.byteLength === 16 ? uuidText(value) : hex(value);
  throw new ArgumentError(`Unsupported ${field} type: a string, uuid, ulong or binary is expected`, { field });
}

/** The string form of an application property value; undefined drops it. */
export function propertyString(name: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new ArgumentError(`Property '${name}' is an invalid timestamp`);
    return value.toISOString();
  }
  if (value instanceof Uint8Array && value.byteLength === 16) return messageIdString(value, name);
  throw new ArgumentError(
    `Property '${name}' must be a string, number, boolean, timestamp or uuid (maps, lists and binary are not supported)`,
    { field: name },
  );
}

/** A symbol or string field (`content_type`, `content_encoding`), or undefined. */
export function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  throw new ArgumentError(`${field} must be a string`, { field });
}

interface BodySection {
  readonly typecode: number;
  readonly content: unknown;
  readonly multiple?: boolean;
}

const isSection = (value: unknown): value is BodySection =>
  typeof value === 'object' && value !== null && 'typecode' in value && 'content' in value;

const dataTypecode = 0x75;

/**
 * The message body as bytes: one or more `data` sections (concatenated), or an `amqp-value` holding binary or a
 * string (UTF-8); no body is empty.
 * @throws ArgumentError for `amqp-sequence` bodies and `amqp-value` bodies of other types (maps, lists, numbers):
 * devices receive bytes, and those have no canonical byte form.
 */
export function bodyBytes(body: unknown): Uint8Array {
  if (body === undefined || body === null) return new Uint8Array();
  if (isSection(body)) {
    if (body.typecode === dataTypecode) {
      const parts = body.multiple ? (body.content as unknown[]) : [body.content];
      const buffers = parts.map((part) => {
        if (part instanceof Uint8Array) return part;
        throw new ArgumentError('A data section must hold binary', { field: 'body' });
      });
      return buffers.length === 1 ? buffers[0]! : new Uint8Array(Buffer.concat(buffers));
    }
    throw new ArgumentError('The body must be data sections or an amqp-value of binary or string', {
      field: 'body',
    });
  }
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return new TextEncoder().encode(body);
  throw new ArgumentError('The body must be data sections or an amqp-value of binary or string', { field: 'body' });
}
