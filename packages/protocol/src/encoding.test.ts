/// <reference types="node" />
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { base64Decode, base64Encode, hexEncode, utf8ByteLength, utf8Decode, utf8Encode } from './encoding';
import { ArgumentError, HubError } from './errors';

// Strings of arbitrary UTF-16 code units, lone surrogates included.
const utf16String = fc.string({
  unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  maxLength: 200,
});

describe('utf8Encode / utf8Decode', () => {
  it('encodes like TextEncoder, lone surrogates as U+FFFD', () => {
    const encoder = new TextEncoder();
    fc.assert(
      fc.property(utf16String, (s) => {
        const bytes = utf8Encode(s);
        expect(bytes).toEqual(encoder.encode(s));
        expect(utf8ByteLength(s)).toBe(bytes.length);
      }),
      { numRuns: 1000 },
    );
  });

  it('round-trips well-formed strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        expect(utf8Decode(utf8Encode(s))).toBe(s);
      }),
    );
  });

  it('decodes in String.fromCharCode calls of at most 64 code units (Espruino caps apply at 64 arguments)', () => {
    const counts: number[] = [];
    const original = String.fromCharCode;
    const recording = vi.spyOn(String, 'fromCharCode').mockImplementation((...units: number[]) => {
      counts.push(units.length);
      return original(...units);
    });
    try {
      // ASCII, then a surrogate pair on every offset around the flush point, then a long run.
      for (let offset = 55; offset < 70; offset++) {
        const text = `${'a'.repeat(offset)}😀${'é€'.repeat(200)}`;
        expect(utf8Decode(utf8Encode(text))).toBe(text);
      }
    } finally {
      recording.mockRestore();
    }
    expect(counts.length).toBeGreaterThan(0);
    expect(Math.max(...counts)).toBeLessThanOrEqual(64);
  });

  it('decodes arbitrary bytes like TextDecoder (WHATWG replacement) and never throws', () => {
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(utf8Decode(bytes)).toBe(decoder.decode(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('replaces overlongs, surrogates, out-of-range and truncated sequences', () => {
    expect(utf8Decode(Uint8Array.of(0xc0, 0x80))).toBe('\ufffd\ufffd');
    expect(utf8Decode(Uint8Array.of(0xed, 0xa0, 0x80))).toBe('\ufffd\ufffd\ufffd');
    expect(utf8Decode(Uint8Array.of(0xf4, 0x90, 0x80, 0x80))).toBe('\ufffd\ufffd\ufffd\ufffd');
    expect(utf8Decode(Uint8Array.of(0xe2, 0x82))).toBe('\ufffd');
    expect(utf8Decode(Uint8Array.of(0x61, 0xe2, 0x82, 0x62))).toBe('a\ufffdb');
    expect(utf8Decode(Uint8Array.of(0xf0, 0x9f, 0x98, 0x80))).toBe('😀');
  });

  it('decodes long inputs (more code units than one fromCharCode call takes)', () => {
    const s = 'é😀x'.repeat(50_000);
    expect(utf8Decode(utf8Encode(s))).toBe(s);
  });
});

describe('base64Encode / base64Decode', () => {
  it("encodes like Buffer's base64 and round-trips", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), (bytes) => {
        const text = base64Encode(bytes);
        expect(text).toBe(Buffer.from(bytes).toString('base64'));
        expect(base64Decode(text)).toEqual(bytes);
      }),
      { numRuns: 1000 },
    );
  });

  it('decodes the URL-safe alphabet and unpadded text', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(base64Decode(Buffer.from(bytes).toString('base64url'))).toEqual(bytes);
        expect(base64Decode(base64Encode(bytes).replace(/=+$/, ''))).toEqual(bytes);
      }),
    );
  });

  it('matches RFC 4648 §10 vectors', () => {
    const vectors = ['', 'Zg==', 'Zm8=', 'Zm9v', 'Zm9vYg==', 'Zm9vYmE=', 'Zm9vYmFy'];
    const words = ['', 'f', 'fo', 'foo', 'foob', 'fooba', 'foobar'];
    vectors.forEach((v, i) => {
      expect(base64Encode(utf8Encode(words[i] as string))).toBe(v);
      expect(utf8Decode(base64Decode(v))).toBe(words[i]);
    });
  });

  it.each(['Zm9v YmFy', 'Zm9v\n', 'Zg=', 'Zg===', '=Zg=', 'Zg==Zg==', 'Z', 'Zm9vY', 'Zm9v*', 'Zé=='])(
    'rejects %j with ArgumentError field base64',
    (text) => {
      let caught: unknown;
      try {
        base64Decode(text);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ArgumentError);
      expect((caught as ArgumentError).field).toBe('base64');
      expect((caught as ArgumentError).code).toBe('ArgumentInvalid');
    },
  );

  it('throws only ArgumentError on random text, and agrees with Buffer on whatever it accepts', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^[A-Za-z0-9+/_=-]{0,40}$/)), (text) => {
        try {
          const bytes = base64Decode(text);
          expect(bytes).toEqual(new Uint8Array(Buffer.from(text, 'base64')));
        } catch (error) {
          expect(HubError.is(error) && error instanceof ArgumentError).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('hexEncode', () => {
  it("encodes like Buffer's hex", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        expect(hexEncode(bytes)).toBe(Buffer.from(bytes).toString('hex'));
      }),
    );
  });
});
