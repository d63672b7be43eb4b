import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cobsDecode, cobsEncode } from './cobs';
import { crc16 } from './crc16';
import { decodeWireBlock, encodeFrame, packFrame } from './frame';
import { FrameDecoder } from './frame-decoder';
import { type BridgeMessage, decodeMessage, encodeMessage, kindOfFrameType, MalformedPayloadError } from './messages';

const fixtures = new URL('../../../fixtures/', import.meta.url);

interface FixtureFrame {
  readonly name: string;
  readonly wire: Uint8Array;
  readonly version: number;
  readonly type: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

function readFrames(): FixtureFrame[] {
  return readFileSync(new URL('frames.txt', fixtures), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'))
    .map((line) => {
      const [name, wire, version, type, seq, payload] = line.trim().split(/ +/) as [
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      return {
        name,
        wire: hex(wire),
        version: Number(version),
        type: Number.parseInt(type, 16),
        seq: Number(seq),
        payload: payload === '-' ? new Uint8Array(0) : hex(payload),
      };
    });
}

type FixtureMessage = Record<string, unknown> & { name: string; type: string; seq: number };

const frames = readFrames();
const messages = (
  JSON.parse(readFileSync(new URL('messages.json', fixtures), 'utf8')) as { messages: FixtureMessage[] }
).messages;

/** messages.json's SCREAMING_CASE type names, as this package's message kinds. */
const kindOfSpecName: Record<string, BridgeMessage['kind']> = {
  ACK: 'ack',
  HELLO: 'hello',
  HELLO_ACK: 'helloAck',
  RESET: 'reset',
  PING: 'ping',
  PONG: 'pong',
  IDENTITY: 'identity',
  STATUS: 'status',
  TELEMETRY: 'telemetry',
  TELEMETRY_ACK: 'telemetryAck',
  C2D: 'cloudToDevice',
  C2D_SETTLE: 'cloudToDeviceSettle',
  TWIN_GET: 'twinGet',
  TWIN: 'twin',
  TWIN_REPORTED: 'twinReported',
  TWIN_RESULT: 'twinResult',
  TWIN_DESIRED: 'twinDesired',
  METHOD_REQUEST: 'methodRequest',
  METHOD_RESPONSE: 'methodResponse',
  TIME_REQUEST: 'timeRequest',
  TIME: 'time',
  SIGN_REQUEST: 'signRequest',
  SIGN_RESPONSE: 'signResponse',
  ERROR: 'error',
};

/** The fixture's message-level fields as this package's message (bodies and signatures as bytes). */
function expectedMessage(fixture: FixtureMessage): Record<string, unknown> {
  const { name: _name, type, seq: _seq, body, bodyHex, signatureHex, ...fields } = fixture;
  const out: Record<string, unknown> = { kind: kindOfSpecName[type], ...fields };
  if (typeof body === 'string') out.body = new TextEncoder().encode(body);
  if (typeof bodyHex === 'string') out.body = hex(bodyHex);
  if (typeof signatureHex === 'string') out.signature = hex(signatureHex);
  return out;
}

describe('fixture frames (fixtures/frames.txt, shared with the C library)', () => {
  it('holds one messages.json entry per frame, in the same order', () => {
    expect(frames.length).toBeGreaterThan(40);
    expect(messages.length).toBe(frames.length);
    frames.forEach((frame, index) => {
      expect(messages[index]?.seq, frame.name).toBe(frame.seq);
    });
  });

  it.each(frames.map((frame) => [frame.name, frame] as const))(
    'decodes %s to its header and payload',
    (_name, frame) => {
      const decoder = new FrameDecoder(0xffff);
      const decoded = decoder.push(frame.wire);
      expect(decoded).toHaveLength(1);
      expect(decoded[0]).toEqual({ version: frame.version, type: frame.type, seq: frame.seq, payload: frame.payload });
    },
  );

  it.each(frames.map((frame) => [frame.name, frame] as const))(
    'encodes %s back to exactly its wire bytes',
    (_name, frame) => {
      expect(toHex(encodeFrame({ type: frame.type, seq: frame.seq, payload: frame.payload }))).toBe(toHex(frame.wire));
    },
  );

  it.each(frames.map((frame, index) => [frame.name, frame, messages[index] as FixtureMessage] as const))(
    'decodes the payload of %s to its message fields and encodes them back',
    (_name, frame, fixture) => {
      if (fixture.unknown === true) {
        expect(kindOfFrameType(frame.type)).toBeUndefined();
        return;
      }
      if (fixture.malformed === true) {
        expect(() => decodeMessage(frame.type, frame.payload)).toThrow(MalformedPayloadError);
        return;
      }
      const message = decodeMessage(frame.type, frame.payload);
      const expected = expectedMessage(fixture);
      if (message.kind === 'methodRequest') {
        // messages.json names the method `methodName`, the fixture's own `name` being taken.
        expect(message.name).toBe(fixture.methodName);
        delete expected.methodName;
      }
      expect(message).toMatchObject(expected);
      expect(toHex(encodeMessage(message).payload)).toBe(toHex(frame.payload));
      expect(encodeMessage(message).type).toBe(frame.type);
    },
  );

  it('rejects every fixture frame with any one byte corrupted', () => {
    for (const frame of frames) {
      const block = frame.wire.subarray(0, frame.wire.length - 1);
      for (let at = 0; at < block.length; at++) {
        for (const flip of [0x01, 0x80, 0xff]) {
          const corrupted = block.slice();
          corrupted[at] = (corrupted[at] as number) ^ flip;
          if (corrupted[at] === 0) continue; // a 0x00 splits the block in two: covered by the stream test
          expect(decodeWireBlock(corrupted), `${frame.name} byte ${at} ^ ${flip}`).toBeUndefined();
        }
      }
    }
  });
});

describe('COBS and CRC', () => {
  it('computes the CRC-16/CCITT-FALSE check value', () => {
    expect(crc16(new TextEncoder().encode('123456789'))).toBe(0x29b1);
  });

  it('round-trips any bytes through COBS, with no 0x00 in the encoding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (data) => {
        const encoded = cobsEncode(data);
        expect(encoded.includes(0)).toBe(false);
        expect(encoded.length).toBeLessThanOrEqual(data.length + Math.ceil(data.length / 254) + 1);
        expect(cobsDecode(encoded)).toEqual(data);
      }),
    );
  });

  it('accepts the 0x01 code byte some COBS libraries append after a final 0xFF block', () => {
    const data = new Uint8Array(254).fill(7);
    const shortest = cobsEncode(data);
    expect(shortest.length).toBe(255);
    const withTrailer = Uint8Array.of(...shortest, 0x01);
    expect(cobsDecode(withTrailer)).toEqual(data);
  });

  it('refuses a code byte pointing past the end of the block', () => {
    expect(cobsDecode(Uint8Array.of(0x05, 1, 2))).toBeUndefined();
  });
});

describe('the streaming decoder', () => {
  const anyFrame = fc.record({
    type: fc.integer({ min: 0, max: 255 }),
    seq: fc.integer({ min: 0, max: 0xffff }),
    payload: fc.uint8Array({ maxLength: 600 }),
  });

  it('finds every frame in a stream with noise blocks and stray delimiters between them', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(anyFrame, fc.uint8Array({ maxLength: 40 })), { maxLength: 8 }),
        fc.integer({ min: 1, max: 64 }),
        (items, chunk) => {
          const parts: number[] = [];
          for (const [frame, noise] of items) {
            // Noise ends at a delimiter so that it cannot glue itself to the next frame.
            parts.push(...noise, 0, ...encodeFrame(frame));
          }
          const stream = Uint8Array.from(parts);
          const decoder = new FrameDecoder(1024);
          const found = [];
          for (let at = 0; at < stream.length; at += chunk)
            found.push(...decoder.push(stream.subarray(at, at + chunk)));
          // Random noise passes the CRC in about 1 of 65536 cases; real frames must all be there, in order.
          const real = found.filter((frame) =>
            items.some(([item]) => item.seq === frame.seq && item.type === frame.type),
          );
          expect(real.map((frame) => [frame.type, frame.seq, toHex(frame.payload)])).toEqual(
            items.map(([frame]) => [frame.type, frame.seq, toHex(frame.payload)]),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('discards a frame larger than maxFrame and decodes the next one', () => {
    const decoder = new FrameDecoder(64);
    const big = encodeFrame({ type: 0x20, seq: 1, payload: new Uint8Array(200).fill(9) });
    const small = encodeFrame({ type: 0x30, seq: 2, payload: Uint8Array.of(1, 0) });
    const frames = decoder.push(Uint8Array.of(...big, ...small));
    expect(frames.map((frame) => frame.seq)).toEqual([2]);
    expect(decoder.stats.oversize + decoder.stats.dropped).toBe(1);
  });

  it('drops frames with a bad length, a bad version or fewer than 8 bytes', () => {
    const good = packFrame({ type: 0x30, seq: 1, payload: Uint8Array.of(1, 0) });
    const wrongVersion = packFrame({ type: 0x30, seq: 1, payload: Uint8Array.of(1, 0), version: 2 });
    const lengthLie = good.slice();
    lengthLie[4] = 3;
    const decoder = new FrameDecoder(512);
    for (const bytes of [wrongVersion, lengthLie, good.subarray(0, 7)]) {
      expect(decoder.push(Uint8Array.of(...cobsEncode(bytes), 0))).toEqual([]);
    }
    expect(decoder.push(Uint8Array.of(...cobsEncode(good), 0))).toHaveLength(1);
  });
});

describe('payload codecs', () => {
  const text = fc.string({ maxLength: 40 });
  const props = fc.array(fc.tuple(text, text), { maxLength: 5 });
  const anyMessage: fc.Arbitrary<BridgeMessage> = fc.oneof(
    fc.record({
      kind: fc.constant('identity' as const),
      deviceId: text,
      moduleId: text,
      auth: fc.integer({ min: 0, max: 1 }),
    }),
    fc.record({
      kind: fc.constant('telemetry' as const),
      id: fc.nat({ max: 0xffffffff }),
      properties: props,
      body: fc.uint8Array({ maxLength: 100 }),
    }),
    fc.record({
      kind: fc.constant('cloudToDevice' as const),
      tag: fc.nat({ max: 0xffffffff }),
      properties: props,
      body: fc.uint8Array({ maxLength: 100 }),
    }),
    fc.record({ kind: fc.constant('methodRequest' as const), rid: fc.nat({ max: 0xffff }), name: text, json: text }),
    fc.record({ kind: fc.constant('twinDesired' as const), version: fc.nat({ max: 0xffffffff }), json: text }),
    fc.record({ kind: fc.constant('time' as const), unixMs: fc.nat({ max: Number.MAX_SAFE_INTEGER }) }),
    fc.record({
      kind: fc.constant('error' as const),
      refSeq: fc.nat({ max: 0xffff }),
      code: fc.nat({ max: 0xffff }),
      detail: text,
    }),
  );

  it('round-trips every message kind', () => {
    fc.assert(
      fc.property(anyMessage, (message) => {
        const { type, payload } = encodeMessage(message);
        expect(decodeMessage(type, payload)).toEqual(message);
      }),
    );
  });

  it('refuses a payload with bytes left over or cut short, as Malformed', () => {
    fc.assert(
      fc.property(anyMessage, fc.uint8Array({ minLength: 1, maxLength: 4 }), (message, extra) => {
        const { type, payload } = encodeMessage(message);
        // Messages ending in a tail absorb trailing bytes by definition; the others must refuse them.
        const hasTail = ['telemetry', 'cloudToDevice', 'methodRequest', 'twinDesired'].includes(message.kind);
        if (!hasTail) {
          expect(() => decodeMessage(type, Uint8Array.of(...payload, ...extra))).toThrow(MalformedPayloadError);
        }
        if (payload.length > 0 && !hasTail) {
          expect(() => decodeMessage(type, payload.subarray(0, payload.length - 1))).toThrow(MalformedPayloadError);
        }
      }),
    );
  });
});
