/**
 * Small conversions between AMQP message fields (as rhea gives and takes them) and the SDK's values: message ids
 * (azure-iothub sends UUID-shaped ids as AMQP `uuid`, protocol-service.md §0.6), bodies (a data section, several,
 * or an AMQP value) and timestamps.
 */
import { message as rheaMessage, string_to_uuid } from 'rhea-promise';

// azure-iot-amqp-base's pattern (versions 1 to 5, lower case): only ids matching it travel as AMQP uuid.
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A message or correlation id as rhea encodes it: a 16-byte Buffer (AMQP uuid) for UUIDs, else the string. */
export function messageIdValue(id: string): string | Buffer {
  return uuidPattern.test(id) ? string_to_uuid(id) : id;
}

/** A message id as text: AMQP uuids (16-byte buffers) in canonical lower-case form, strings as they are. */
export function idKey(id: unknown): string | undefined {
  if (typeof id === 'string') return id;
  if (typeof id === 'number' || typeof id === 'bigint') return String(id);
  if (Buffer.isBuffer(id) && id.length === 16) {
    const hex = id.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  if (Buffer.isBuffer(id)) return id.toString('utf8');
  return undefined;
}

/** A body as one data section (what the hub and Azure send and expect). */
export function dataSection(bytes: Uint8Array): unknown {
  return rheaMessage.data_section(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

interface SectionLike {
  readonly typecode: number;
  readonly content: unknown;
  readonly multiple?: boolean;
}

const encoder = new TextEncoder();

/**
 * The body bytes of a received message: data sections concatenated, a binary or string AMQP value as its bytes,
 * any other AMQP value as JSON text. Empty for no body.
 */
export function bodyBytes(body: unknown): Uint8Array {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) return new Uint8Array(body);
  if (typeof body === 'string') return encoder.encode(body);
  if (typeof body === 'object' && typeof (body as SectionLike).typecode === 'number' && 'content' in body) {
    const section = body as SectionLike;
    const parts = section.multiple ? (section.content as unknown[]) : [section.content];
    if (section.typecode === 0x75) {
      return new Uint8Array(Buffer.concat(parts.map((part) => (Buffer.isBuffer(part) ? part : Buffer.alloc(0)))));
    }
    return encoder.encode(JSON.stringify(section.content));
  }
  return encoder.encode(JSON.stringify(body));
}

/** A timestamp field (rhea gives a Date; some peers send a number of ms). */
export function timeValue(value: unknown): Date | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value;
  if (typeof value === 'number' || typeof value === 'bigint') return new Date(Number(value));
  return undefined;
}
