// A minimal ASN.1 DER writer and reader: just what X.509 certificates and PKCS#10 requests need (X.690 §8, §10).
import { Buffer } from 'node:buffer';

/** ASN.1 universal tags used here. */
export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  t61String: 0x14,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  bmpString: 0x1e,
  sequence: 0x30,
  set: 0x31,
} as const;

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV with the given (single-byte) tag. */
export function tlv(tag: number, value: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

export const sequence = (...items: Uint8Array[]): Buffer => tlv(Tag.sequence, Buffer.concat(items));
/** A SET OF: DER sorts the encoded elements (X.690 §11.6). */
export const set = (...items: Uint8Array[]): Buffer =>
  tlv(Tag.set, Buffer.concat([...items].sort((a, b) => Buffer.compare(a, b))));
export const octetString = (value: Uint8Array): Buffer => tlv(Tag.octetString, value);
export const bitString = (value: Uint8Array, unusedBits = 0): Buffer =>
  tlv(Tag.bitString, Buffer.concat([Buffer.from([unusedBits]), value]));
export const nullValue = (): Buffer => Buffer.from([Tag.null, 0]);
export const boolean = (value: boolean): Buffer => Buffer.from([Tag.boolean, 1, value ? 0xff : 0]);
export const utf8String = (value: string): Buffer => tlv(Tag.utf8String, Buffer.from(value, 'utf8'));
export const printableString = (value: string): Buffer => tlv(Tag.printableString, Buffer.from(value, 'latin1'));
export const ia5String = (value: string): Buffer => tlv(Tag.ia5String, Buffer.from(value, 'latin1'));
/** `[n] EXPLICIT` wrapper (constructed, context-specific). */
export const explicit = (n: number, value: Uint8Array): Buffer => tlv(0xa0 | n, value);
/** `[n] IMPLICIT` primitive (context-specific). */
export const implicitPrimitive = (n: number, value: Uint8Array): Buffer => tlv(0x80 | n, value);

/** A non-negative INTEGER from unsigned big-endian bytes (adds the sign octet, strips redundant zeros). */
export function unsignedInteger(bytes: Uint8Array): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const body = Buffer.from(bytes.subarray(start));
  return tlv(Tag.integer, (body[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), body]) : body);
}

export const smallInteger = (value: number): Buffer => unsignedInteger(Buffer.from([value >> 8, value & 0xff]));

/** An OBJECT IDENTIFIER from dotted form. */
export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const [first = 0, second = 0, ...rest] = parts;
  const bytes: number[] = [first * 40 + second];
  for (const part of rest) {
    const chunk: number[] = [part & 0x7f];
    for (let value = Math.floor(part / 128); value > 0; value = Math.floor(value / 128))
      chunk.unshift(0x80 | (value & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(Tag.oid, Buffer.from(bytes));
}

/** UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5), whole seconds, UTC. */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '');
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) return tlv(Tag.utcTime, Buffer.from(`${digits.slice(2)}Z`, 'latin1'));
  return tlv(Tag.generalizedTime, Buffer.from(`${digits}Z`, 'latin1'));
}

/** One decoded TLV: `raw` is the whole element, `value` its contents. */
export interface DerNode {
  tag: number;
  raw: Buffer;
  value: Buffer;
}

/** Reads the TLV at `offset`; throws a plain Error on truncated or non-DER input (callers wrap it). */
export function readNode(buffer: Buffer, offset = 0): DerNode {
  const tag = buffer[offset];
  let lengthByte = buffer[offset + 1];
  if (tag === undefined || lengthByte === undefined) throw new Error('truncated DER');
  if ((tag & 0x1f) === 0x1f) throw new Error('multi-byte DER tags are not supported');
  let cursor = offset + 2;
  let length = lengthByte;
  if (lengthByte & 0x80) {
    const count = lengthByte & 0x7f;
    if (count === 0 || count > 4) throw new Error('unsupported DER length');
    length = 0;
    for (let i = 0; i < count; i++) {
      lengthByte = buffer[cursor++];
      if (lengthByte === undefined) throw new Error('truncated DER');
      length = length * 256 + lengthByte;
    }
  }
  const end = cursor + length;
  if (end > buffer.length) throw new Error('truncated DER');
  return { tag, raw: buffer.subarray(offset, end), value: buffer.subarray(cursor, end) };
}

/** The children of a constructed node. */
export function children(node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let offset = 0; offset < node.value.length; ) {
    const child = readNode(node.value, offset);
    out.push(child);
    offset += child.raw.length;
  }
  return out;
}

/** Decodes an OBJECT IDENTIFIER's contents to dotted form. */
export function decodeOid(value: Buffer): string {
  const first = value[0] ?? 0;
  const parts = [Math.min(2, Math.floor(first / 40)), first - Math.min(2, Math.floor(first / 40)) * 40];
  let current = 0;
  for (const byte of value.subarray(1)) {
    current = current * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(current);
      current = 0;
    }
  }
  return parts.join('.');
}

/** Decodes a UTCTime or GeneralizedTime node (the `Z` forms RFC 5280 requires). */
export function decodeTime(node: DerNode): Date {
  const text = node.value.toString('latin1');
  const match =
    node.tag === Tag.utcTime
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
      : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!match) throw new Error(`unsupported time ${text}`);
  const [, y = '', mo = '', d = '', h = '', mi = '', s = ''] = match;
  let year = Number(y);
  if (node.tag === Tag.utcTime) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)));
}

/** Decodes a directory string (UTF8String, PrintableString, IA5String, T61String, BMPString). */
export function decodeString(node: DerNode): string {
  if (node.tag === Tag.bmpString) return Buffer.from(node.value).swap16().toString('utf16le');
  if (node.tag === Tag.utf8String) return node.value.toString('utf8');
  return node.value.toString('latin1');
}
