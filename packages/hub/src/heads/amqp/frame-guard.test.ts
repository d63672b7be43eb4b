import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameGuard } from './frame-guard';

const amqpHeader = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);
const saslHeader = Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]);

function frame(bodyLength: number): Buffer {
  const buffer = Buffer.alloc(8 + bodyLength, 0xab);
  buffer.writeUInt32BE(8 + bodyLength, 0);
  buffer[4] = 2;
  return buffer;
}

/** Feeds `stream` cut at `cuts` and returns the first violation's condition, if any. */
function feed(stream: Buffer, cuts: number[], max = 1024): string | undefined {
  const guard = new FrameGuard(max);
  const points = [...new Set(cuts.map((cut) => cut % (stream.length + 1)))].sort((a, b) => a - b);
  let start = 0;
  for (const point of [...points, stream.length]) {
    const violation = guard.push(stream.subarray(start, point));
    start = point;
    if (violation) return violation.condition;
  }
  return undefined;
}

describe('FrameGuard', () => {
  it('accepts SASL then AMQP headers and frames within the limit, however the stream is cut', () => {
    const stream = Buffer.concat([saslHeader, frame(20), frame(0), amqpHeader, frame(1000), frame(8), frame(300)]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), (cuts) => {
        expect(feed(stream, cuts)).toBeUndefined();
      }),
    );
  });

  it('refuses a frame larger than the max frame size or smaller than its header, however the stream is cut', () => {
    const large = Buffer.concat([amqpHeader, frame(10), frame(1017)]);
    const small = Buffer.concat([amqpHeader, Buffer.from([0, 0, 0, 4])]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 8 }), (cuts) => {
        expect(feed(large, cuts)).toBe('amqp:connection:framing-error');
        expect(feed(small, cuts)).toBe('amqp:connection:framing-error');
      }),
    );
  });

  it('refuses a header that is not AMQP 1.0 (protocol id 0 or 3, version 1.0.0)', () => {
    for (const header of [
      Buffer.from('GET / HTTP/1.1\r\n'),
      Buffer.from([0x41, 0x4d, 0x51, 0x50, 2, 1, 0, 0]),
      Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]),
    ]) {
      expect(feed(header, [3])).toBe('amqp:decode-error');
    }
    // A second header in place of a frame must be a valid one too.
    expect(feed(Buffer.concat([saslHeader, frame(4), Buffer.from([0x41, 0x4d, 0x51, 0x50, 1, 1, 0, 0])]), [])).toBe(
      'amqp:decode-error',
    );
  });

  it('reports a violation once', () => {
    const guard = new FrameGuard(64);
    expect(guard.push(Buffer.from('garbage!'))).toBeDefined();
    expect(guard.push(Buffer.from('more garbage'))).toBeUndefined();
  });
});
