/**
 * A byte-level guard in front of rhea's reader (AMQP 1.0 §2.2 protocol headers, §2.3 frames). rhea trusts the
 * peer's frame size and buffers until that many bytes arrived (up to 4 GiB), and accepts any protocol header it
 * can select a layer for. The guard walks the stream as it arrives, keeping only its position: a protocol header
 * must be `AMQP` with protocol id 0 (AMQP) or 3 (SASL) and version 1.0.0; a frame must be at least 8 bytes (its
 * header) and at most the hub's max frame size. The first violation is reported once; the connection then drops
 * the client. The guard never copies payload bytes.
 */

/** Why the stream was refused. */
export interface FrameViolation {
  /** `amqp:decode-error` for a bad header, `amqp:connection:framing-error` for a bad frame size. */
  readonly condition: 'amqp:decode-error' | 'amqp:connection:framing-error';
  readonly description: string;
  /** Whether the violation is in a protocol header (then the AMQP spec wants our header sent back, §2.2). */
  readonly inHeader: boolean;
}

const headerBytes = 8;
// 'AMQP' read as a frame size: a frame can never be this long under our max frame size, so a peer that sends a
// new protocol header where a frame would start (after SASL, §5.3.2) is told apart from a frame by these bytes.
const amqpMagic = 0x414d5150;

/** Tracks frame boundaries of one direction of one connection. */
export class FrameGuard {
  /** Bytes of the current header or frame-size field collected so far (at most 8). */
  private readonly pending = Buffer.alloc(headerBytes);
  private pendingLength = 0;
  /** Bytes of the current frame body still to skip. */
  private remaining = 0;
  private expectHeader = true;
  private violated = false;

  /** @param maxFrameBytes the largest frame accepted (the max-frame-size of the hub's open). */
  constructor(private readonly maxFrameBytes: number) {}

  /** Feeds the next chunk; returns the first violation (once), else undefined. */
  push(chunk: Buffer): FrameViolation | undefined {
    if (this.violated) return undefined;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining > 0) {
        const skip = Math.min(this.remaining, chunk.length - offset);
        this.remaining -= skip;
        offset += skip;
        continue;
      }
      // At a boundary: collect a header (8 bytes) or a frame size (4 bytes, or 8 when it reads 'AMQP').
      const wanted = this.expectHeader || this.startsWithMagic() ? headerBytes : 4;
      const take = Math.min(wanted - this.pendingLength, chunk.length - offset);
      chunk.copy(this.pending, this.pendingLength, offset, offset + take);
      this.pendingLength += take;
      offset += take;
      if (this.pendingLength < 4) continue;
      if (!this.expectHeader && this.pendingLength === 4 && this.startsWithMagic()) continue;
      if (this.pendingLength < wanted) continue;
      const violation = this.expectHeader || this.startsWithMagic() ? this.checkHeader() : this.checkFrameSize();
      this.pendingLength = 0;
      if (violation) {
        this.violated = true;
        return violation;
      }
    }
    return undefined;
  }

  private startsWithMagic(): boolean {
    return this.pendingLength >= 4 && this.pending.readUInt32BE(0) === amqpMagic;
  }

  private checkHeader(): FrameViolation | undefined {
    const header = this.pending;
    const protocolId = header[4];
    if (header.readUInt32BE(0) !== amqpMagic || (protocolId !== 0 && protocolId !== 3)) {
      return {
        condition: 'amqp:decode-error',
        description: `not an AMQP 1.0 protocol header (${header.subarray(0, 8).toString('hex')})`,
        inHeader: true,
      };
    }
    if (header[5] !== 1 || header[6] !== 0 || header[7] !== 0) {
      return {
        condition: 'amqp:decode-error',
        description: `unsupported AMQP version ${header[5]}.${header[6]}.${header[7]}`,
        inHeader: true,
      };
    }
    this.expectHeader = false;
    return undefined;
  }

  private checkFrameSize(): FrameViolation | undefined {
    const size = this.pending.readUInt32BE(0);
    if (size < headerBytes || size > this.maxFrameBytes) {
      return {
        condition: 'amqp:connection:framing-error',
        description: `frame of ${size} bytes (allowed: 8 to ${this.maxFrameBytes})`,
        inHeader: false,
      };
    }
    this.remaining = size - 4;
    return undefined;
  }
}
