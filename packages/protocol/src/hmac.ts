/**
 * HMAC-SHA256 (RFC 2104) over the portable SHA-256, and a constant-time comparison for signatures.
 */
import { createSha256, SHA256_BLOCK_BYTES, sha256 } from './sha256';

/**
 * HMAC-SHA256 of `message` under `key` (RFC 2104 §2): keys longer than the 64-byte block are hashed first,
 * shorter ones are zero-padded. Returns the 32-byte MAC. Inputs are not modified.
 *
 * @example
 * ```ts
 * const sig = base64Encode(hmacSha256(base64Decode(key), utf8Encode(`${sr}\n${se}`)));
 * ```
 */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  const k = new Uint8Array(SHA256_BLOCK_BYTES);
  k.set(key.length > SHA256_BLOCK_BYTES ? sha256(key) : key, 0);
  const pad = new Uint8Array(SHA256_BLOCK_BYTES);
  for (let i = 0; i < SHA256_BLOCK_BYTES; i++) pad[i] = (k[i] as number) ^ 0x36;
  const inner = createSha256().update(pad).update(message).digest();
  for (let i = 0; i < SHA256_BLOCK_BYTES; i++) pad[i] = (k[i] as number) ^ 0x5c;
  return createSha256().update(pad).update(inner).digest();
}

/**
 * Whether two byte arrays are equal, taking the same time whatever their contents when their lengths are equal,
 * so that comparing a received signature with the expected one leaks nothing about where they differ. Arrays of
 * different lengths return `false` at once: the length of a signature is not a secret.
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
