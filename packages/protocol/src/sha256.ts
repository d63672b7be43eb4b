/**
 * SHA-256 (FIPS 180-4 §6.2) in plain ECMAScript: 32-bit integer arithmetic on typed arrays, no BigInt, no
 * host crypto. SAS signing on targets without a crypto module depends on it.
 */

// FIPS 180-4 §4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

// FIPS 180-4 §5.3.3: the initial hash value.
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** The SHA-256 block size in bytes (the HMAC block size too). */
export const SHA256_BLOCK_BYTES = 64;
/** The SHA-256 digest size in bytes. */
export const SHA256_DIGEST_BYTES = 32;

/** An incremental SHA-256 computation. */
export interface Sha256 {
  /** Feeds more bytes; returns the same object so calls chain. */
  update(data: Uint8Array): Sha256;
  /**
   * The digest of everything fed so far (32 bytes). It does not end the computation: more `update` calls may
   * follow and a later `digest()` covers them too.
   */
  digest(): Uint8Array;
}

/** Starts an incremental SHA-256 computation. */
export function createSha256(): Sha256 {
  const state = new Int32Array(H0);
  const block = new Uint8Array(SHA256_BLOCK_BYTES);
  const words = new Int32Array(64);
  let blockLength = 0;
  // Bytes hashed so far. A double counts exactly up to 2^53, far beyond any message here.
  let total = 0;

  const hasher: Sha256 = {
    update(data: Uint8Array): Sha256 {
      let i = 0;
      total += data.length;
      if (blockLength > 0) {
        const take = Math.min(SHA256_BLOCK_BYTES - blockLength, data.length);
        block.set(data.subarray(0, take), blockLength);
        blockLength += take;
        i = take;
        if (blockLength < SHA256_BLOCK_BYTES) return hasher;
        compress(state, words, block, 0);
        blockLength = 0;
      }
      for (; i + SHA256_BLOCK_BYTES <= data.length; i += SHA256_BLOCK_BYTES) compress(state, words, data, i);
      if (i < data.length) {
        block.set(data.subarray(i), 0);
        blockLength = data.length - i;
      }
      return hasher;
    },
    digest(): Uint8Array {
      // Pad a copy (§5.1.1) so the running state stays usable.
      const h = new Int32Array(state);
      const tail = new Uint8Array(blockLength < 56 ? 64 : 128);
      tail.set(block.subarray(0, blockLength), 0);
      tail[blockLength] = 0x80;
      const bitsHigh = Math.floor(total / 0x20000000);
      const bitsLow = (total % 0x20000000) * 8;
      writeUint32(tail, tail.length - 8, bitsHigh);
      writeUint32(tail, tail.length - 4, bitsLow);
      for (let off = 0; off < tail.length; off += SHA256_BLOCK_BYTES) compress(h, words, tail, off);
      const out = new Uint8Array(SHA256_DIGEST_BYTES);
      for (let j = 0; j < 8; j++) writeUint32(out, j * 4, h[j] as number);
      return out;
    },
  };
  return hasher;
}

/** The SHA-256 digest (32 bytes) of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  return createSha256().update(data).digest();
}

function writeUint32(out: Uint8Array, offset: number, v: number): void {
  out[offset] = v >>> 24;
  out[offset + 1] = (v >>> 16) & 0xff;
  out[offset + 2] = (v >>> 8) & 0xff;
  out[offset + 3] = v & 0xff;
}

// One block of FIPS 180-4 §6.2.2. `| 0` keeps every sum a 32-bit integer so engines stay on their fast path.
function compress(h: Int32Array, w: Int32Array, data: Uint8Array, offset: number): void {
  for (let t = 0; t < 16; t++) {
    const o = offset + t * 4;
    w[t] =
      ((data[o] as number) << 24) |
      ((data[o + 1] as number) << 16) |
      ((data[o + 2] as number) << 8) |
      (data[o + 3] as number);
  }
  for (let t = 16; t < 64; t++) {
    const w15 = w[t - 15] as number;
    const w2 = w[t - 2] as number;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    w[t] = ((w[t - 16] as number) + s0 + (w[t - 7] as number) + s1) | 0;
  }
  let a = h[0] as number;
  let b = h[1] as number;
  let c = h[2] as number;
  let d = h[3] as number;
  let e = h[4] as number;
  let f = h[5] as number;
  let g = h[6] as number;
  let hh = h[7] as number;
  for (let t = 0; t < 64; t++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (hh + S1 + ch + (K[t] as number) + (w[t] as number)) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] = ((h[0] as number) + a) | 0;
  h[1] = ((h[1] as number) + b) | 0;
  h[2] = ((h[2] as number) + c) | 0;
  h[3] = ((h[3] as number) + d) | 0;
  h[4] = ((h[4] as number) + e) | 0;
  h[5] = ((h[5] as number) + f) | 0;
  h[6] = ((h[6] as number) + g) | 0;
  h[7] = ((h[7] as number) + hh) | 0;
}
