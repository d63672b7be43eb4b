// HMAC-SHA256 for SAS: Web Crypto when the runtime has it (Node 20, browsers, Deno), the portable pure-JS
// implementation of @fieldhub/protocol otherwise, and for the synchronous variants.
import { AbortError, ArgumentError, base64Decode, hmacSha256, utf8Encode } from '@fieldhub/protocol';

interface HmacSubtle {
  importKey(
    format: 'raw',
    key: Uint8Array,
    algorithm: { name: 'HMAC'; hash: 'SHA-256' },
    extractable: false,
    usages: ['sign'],
  ): Promise<unknown>;
  sign(algorithm: 'HMAC', key: unknown, data: Uint8Array): Promise<ArrayBuffer>;
}

function subtle(): HmacSubtle | undefined {
  const crypto = (globalThis as { crypto?: { subtle?: HmacSubtle } }).crypto;
  return crypto?.subtle;
}

/**
 * @internal Decodes a base64 shared access key.
 * @throws ArgumentError naming `field` when it is not a string, is empty, or is not base64.
 */
export function decodeKey(key: unknown, field: string): Uint8Array {
  if (typeof key !== 'string' || key.length === 0) {
    throw new ArgumentError(`${field} must be a non-empty base64 string`, { field });
  }
  let bytes: Uint8Array;
  try {
    bytes = base64Decode(key);
  } catch (error) {
    throw new ArgumentError(`${field} is not base64`, { field, cause: error });
  }
  if (bytes.length === 0) throw new ArgumentError(`${field} decodes to no bytes`, { field });
  return bytes;
}

/** @internal HMAC-SHA256 of the UTF-8 bytes of `message`, asynchronously (Web Crypto when present). */
export async function hmacSha256Async(key: Uint8Array, message: string): Promise<Uint8Array> {
  const webCrypto = subtle();
  const data = utf8Encode(message);
  if (!webCrypto) return hmacSha256(key, data);
  const cryptoKey = await webCrypto.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await webCrypto.sign('HMAC', cryptoKey, data));
}

/** @internal HMAC-SHA256 of the UTF-8 bytes of `message`, synchronously (portable implementation). */
export function hmacSha256Sync(key: Uint8Array, message: string): Uint8Array {
  return hmacSha256(key, utf8Encode(message));
}

/** @internal Throws Fieldhub's AbortError (with the signal's reason as cause) once `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
}
