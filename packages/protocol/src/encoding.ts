/**
 * UTF-8, base64 and hex written by hand: embedded runtimes (XS device builds, Espruino, QuickJS) may lack
 * `TextEncoder`, `TextDecoder`, `atob` and `btoa`, and Node's `Buffer` is off limits here (reference:
 * embedded-runtimes.md).
 */
import { ArgumentError } from './errors';

const REPLACEMENT = 0xfffd;

/**
 * The number of bytes `utf8Encode(s)` produces, without allocating. A lone surrogate counts as U+FFFD (3 bytes).
 */
export function utf8ByteLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1))) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Encodes a string as UTF-8. Lone surrogates become U+FFFD (EF BF BD), as `TextEncoder` does. Never throws.
 */
export function utf8Encode(s: string): Uint8Array {
  const out = new Uint8Array(utf8ByteLength(s));
  let p = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[p++] = c;
      continue;
    }
    if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6);
      out[p++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && isLowSurrogate(next)) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        out[p++] = 0xf0 | (cp >> 18);
        out[p++] = 0x80 | ((cp >> 12) & 0x3f);
        out[p++] = 0x80 | ((cp >> 6) & 0x3f);
        out[p++] = 0x80 | (cp & 0x3f);
        i++;
        continue;
      }
      c = REPLACEMENT;
    }
    out[p++] = 0xe0 | (c >> 12);
    out[p++] = 0x80 | ((c >> 6) & 0x3f);
    out[p++] = 0x80 | (c & 0x3f);
  }
  return out;
}

/**
 * Decodes UTF-8 to a string. Invalid sequences (overlongs, surrogates, code points above U+10FFFF, truncated
 * sequences, stray continuation bytes) become U+FFFD, one per maximal invalid subpart as the WHATWG Encoding
 * standard (and so `TextDecoder`) does. A leading BOM is kept. Never throws.
 */
export function utf8Decode(b: Uint8Array): string {
  // Code units collect in a small array flushed through String.fromCharCode in chunks, which bounds the
  // argument count without building the string one character at a time. Chunks of 64: engines cap the count, and
  // Espruino's `apply` throws beyond 64 arguments (jswrap_function_apply_or_call), which @fieldhub/slim runs on.
  // Flushed from 63 units, as a surrogate pair adds two.
  const units: number[] = [];
  let out = '';
  let codePoint = 0;
  let needed = 0;
  let seen = 0;
  let lower = 0x80;
  let upper = 0xbf;
  const push = (cp: number): void => {
    if (cp > 0xffff) {
      const v = cp - 0x10000;
      units.push(0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
    } else units.push(cp);
    if (units.length >= 63) {
      out += String.fromCharCode.apply(null, units);
      units.length = 0;
    }
  };
  for (let i = 0; i < b.length; i++) {
    const byte = b[i] as number;
    if (needed === 0) {
      if (byte < 0x80) push(byte);
      else if (byte >= 0xc2 && byte <= 0xdf) {
        needed = 1;
        codePoint = byte & 0x1f;
      } else if (byte >= 0xe0 && byte <= 0xef) {
        if (byte === 0xe0) lower = 0xa0;
        if (byte === 0xed) upper = 0x9f;
        needed = 2;
        codePoint = byte & 0xf;
      } else if (byte >= 0xf0 && byte <= 0xf4) {
        if (byte === 0xf0) lower = 0x90;
        if (byte === 0xf4) upper = 0x8f;
        needed = 3;
        codePoint = byte & 0x7;
      } else push(REPLACEMENT);
      continue;
    }
    if (byte < lower || byte > upper) {
      // The sequence so far is one invalid subpart; this byte starts over.
      codePoint = 0;
      needed = 0;
      seen = 0;
      lower = 0x80;
      upper = 0xbf;
      push(REPLACEMENT);
      i--;
      continue;
    }
    lower = 0x80;
    upper = 0xbf;
    codePoint = (codePoint << 6) | (byte & 0x3f);
    seen++;
    if (seen === needed) {
      push(codePoint);
      codePoint = 0;
      needed = 0;
      seen = 0;
    }
  }
  if (needed !== 0) push(REPLACEMENT);
  if (units.length > 0) out += String.fromCharCode.apply(null, units);
  return out;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

// Char code -> 6-bit value, -1 for anything else. Both alphabets decode: '+' and '-' are 62, '/' and '_' 63.
const BASE64_LOOKUP: Int16Array = (() => {
  const table = new Int16Array(128).fill(-1);
  for (let i = 0; i < 64; i++) table[BASE64_ALPHABET.charCodeAt(i)] = i;
  table[0x2d] = 62;
  table[0x5f] = 63;
  return table;
})();

/** Encodes bytes as standard base64 (RFC 4648 §4: `+`, `/`, with `=` padding). */
export function base64Encode(b: Uint8Array): string {
  let out = '';
  let chunk = '';
  const full = b.length - (b.length % 3);
  for (let i = 0; i < full; i += 3) {
    const n = ((b[i] as number) << 16) | ((b[i + 1] as number) << 8) | (b[i + 2] as number);
    chunk +=
      BASE64_ALPHABET.charAt(n >> 18) +
      BASE64_ALPHABET.charAt((n >> 12) & 63) +
      BASE64_ALPHABET.charAt((n >> 6) & 63) +
      BASE64_ALPHABET.charAt(n & 63);
    if (chunk.length >= 8192) {
      out += chunk;
      chunk = '';
    }
  }
  const rest = b.length - full;
  if (rest === 1) {
    const n = (b[full] as number) << 16;
    chunk += BASE64_ALPHABET.charAt(n >> 18) + BASE64_ALPHABET.charAt((n >> 12) & 63) + '==';
  } else if (rest === 2) {
    const n = ((b[full] as number) << 16) | ((b[full + 1] as number) << 8);
    chunk +=
      BASE64_ALPHABET.charAt(n >> 18) + BASE64_ALPHABET.charAt((n >> 12) & 63) + BASE64_ALPHABET.charAt((n >> 6) & 63);
    chunk += '=';
  }
  return out + chunk;
}

/**
 * Decodes base64 in either alphabet (standard `+/` or URL-safe `-_`, RFC 4648 §4 and §5), with or without `=`
 * padding. Leftover bits in the last character are ignored, as Node's decoder does: keys arrive from many tools.
 *
 * @throws {ArgumentError} (field `'base64'`) when the text holds a character outside both alphabets (whitespace
 * included), misplaced or excess padding, or a length no encoding produces (one character past a multiple of 4).
 */
export function base64Decode(s: string): Uint8Array {
  let end = s.length;
  let padding = 0;
  while (end > 0 && s.charCodeAt(end - 1) === 0x3d && padding < 3) {
    end--;
    padding++;
  }
  if (padding > 0 && (padding > 2 || s.length % 4 !== 0)) {
    throw new ArgumentError('base64 text has misplaced padding', { field: 'base64' });
  }
  if (end % 4 === 1) throw new ArgumentError('base64 text has an impossible length', { field: 'base64' });
  const out = new Uint8Array(Math.floor((end * 3) / 4));
  let acc = 0;
  let bits = 0;
  let p = 0;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? (BASE64_LOOKUP[c] as number) : -1;
    if (v < 0) {
      throw new ArgumentError(`base64 text has an invalid character at index ${i}`, { field: 'base64' });
    }
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[p++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

const HEX_DIGITS = '0123456789abcdef';

/** Encodes bytes as lower-case hexadecimal, two digits per byte. */
export function hexEncode(b: Uint8Array): string {
  let out = '';
  for (let i = 0; i < b.length; i++) {
    const v = b[i] as number;
    out += HEX_DIGITS.charAt(v >> 4) + HEX_DIGITS.charAt(v & 15);
  }
  return out;
}
