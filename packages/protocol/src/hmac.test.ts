/// <reference types="node" />
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { base64Decode, base64Encode, hexEncode, utf8Encode } from './encoding';
import { hmacSha256, timingSafeEqual } from './hmac';

const nodeHmac = (key: Uint8Array, message: Uint8Array): string =>
  createHmac('sha256', key).update(message).digest('hex');

describe('hmacSha256', () => {
  it('matches RFC 4231 test case 2 ("Jefe")', () => {
    const mac = hmacSha256(utf8Encode('Jefe'), utf8Encode('what do ya want for nothing?'));
    expect(hexEncode(mac)).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('hashes keys longer than the block first (RFC 4231 test case 6)', () => {
    const key = new Uint8Array(131).fill(0xaa);
    const mac = hmacSha256(key, utf8Encode('Test Using Larger Than Block-Size Key - Hash Key First'));
    expect(hexEncode(mac)).toBe('60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54');
  });

  it('handles keys of exactly 0, 63, 64 and 65 bytes like node:crypto', () => {
    for (const n of [0, 1, 63, 64, 65, 128]) {
      const key = Uint8Array.from({ length: n }, (_, i) => i);
      const message = utf8Encode(`message ${n}`);
      expect(hexEncode(hmacSha256(key, message))).toBe(nodeHmac(key, message));
    }
  });

  it('equals node:crypto createHmac on 1,000 random key/message pairs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 2000 }), (key, message) => {
        expect(hexEncode(hmacSha256(key, message))).toBe(nodeHmac(key, message));
      }),
      { numRuns: 1000 },
    );
  });

  it('signs a SAS string-to-sign like the Node SDK (base64 key, sr + "\\n" + se)', () => {
    const key = 'ZmllbGRodWItdGVzdC1rZXktMzItYnl0ZXMtbG9uZyEh';
    const toSign = 'myhub.azure-devices.net%2Fdevices%2Fdevice1\n1456971697';
    const expected = createHmac('sha256', Buffer.from(key, 'base64')).update(toSign, 'utf8').digest('base64');
    expect(base64Encode(hmacSha256(base64Decode(key), utf8Encode(toSign)))).toBe(expected);
  });

  it('does not modify its inputs', () => {
    const key = new Uint8Array(100).fill(7);
    const message = new Uint8Array(10).fill(9);
    hmacSha256(key, message);
    expect(key.every((b) => b === 7)).toBe(true);
    expect(message.every((b) => b === 9)).toBe(true);
  });
});

describe('timingSafeEqual', () => {
  it('is true for equal arrays and false for any difference', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (a, at, flip) => {
          expect(timingSafeEqual(a, a.slice())).toBe(true);
          const b = a.slice();
          const i = at % b.length;
          b[i] = (b[i] as number) ^ flip;
          expect(timingSafeEqual(a, b)).toBe(false);
        },
      ),
    );
  });

  it('is false for different lengths and true for two empty arrays', () => {
    expect(timingSafeEqual(new Uint8Array(2), new Uint8Array(3))).toBe(false);
    expect(timingSafeEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
});
