/// <reference types="node" />
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hexEncode } from './encoding';
import { createSha256, sha256 } from './sha256';

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const nodeSha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('sha256', () => {
  // FIPS 180-4 examples (csrc.nist.gov "SHA256.pdf", "SHA2_Additional.pdf").
  it.each([
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [
      'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq',
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    ],
    [
      'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
      'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
    ],
  ])('hashes the FIPS vector %j', (input, expected) => {
    expect(hexEncode(sha256(ascii(input)))).toBe(expected);
  });

  it('hashes one million "a" (FIPS vector) fed in uneven pieces', () => {
    const hasher = createSha256();
    const piece = new Uint8Array(999).fill(0x61);
    let left = 1_000_000;
    while (left > 0) {
      const n = Math.min(left, piece.length);
      hasher.update(piece.subarray(0, n));
      left -= n;
    }
    expect(hexEncode(hasher.digest())).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('hashes every length around the padding boundaries like node:crypto', () => {
    for (let n = 0; n <= 200; n++) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
      expect(hexEncode(sha256(data))).toBe(nodeSha256(data));
    }
  });

  it('equals node:crypto on random inputs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (data) => {
        expect(hexEncode(sha256(data))).toBe(nodeSha256(data));
      }),
      { numRuns: 1000 },
    );
  });

  it('gives the same digest however the input is split, and digest() does not end the computation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.array(fc.nat(500), { maxLength: 5 }), (data, cuts) => {
        const hasher = createSha256();
        const points = [...cuts.map((c) => c % (data.length + 1)), data.length].sort((a, b) => a - b);
        let from = 0;
        for (const p of points) {
          hasher.update(data.subarray(from, p));
          expect(hexEncode(hasher.digest())).toBe(nodeSha256(data.subarray(0, p)));
          from = p;
        }
        expect(hexEncode(hasher.digest())).toBe(nodeSha256(data));
      }),
      { numRuns: 300 },
    );
  });
});
