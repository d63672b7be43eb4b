/**
 * The streaming side of §2: bytes in, frames out. Collects encoded bytes up to each `0x00`; a block longer than
 * `maxFrame` can encode to is discarded up to the next `0x00` without being buffered, so line noise or a runaway
 * sender cannot grow memory.
 */
import { decodeWireBlock, type Frame } from './frame';

/** Counters of what the decoder dropped (for diagnostics; drops are silent on the link, §3). */
export interface FrameDecoderStats {
  frames: number;
  dropped: number;
  oversize: number;
}

/** Bytes in, frames out. */
export class FrameDecoder {
  readonly #maxFrame: number;
  readonly #maxEncoded: number;
  readonly #buffer: Uint8Array;
  #length = 0;
  #overflow = false;
  readonly stats: FrameDecoderStats = { frames: 0, dropped: 0, oversize: 0 };

  /**
   * @param maxFrame the largest decoded frame (header, payload, CRC) this side accepts (§4.1).
   * @throws RangeError when `maxFrame` is below 8 or above 65543.
   */
  constructor(maxFrame: number) {
    if (!Number.isInteger(maxFrame) || maxFrame < 8 || maxFrame > 0xffff + 8) {
      throw new RangeError(`maxFrame ${maxFrame} is out of range`);
    }
    this.#maxFrame = maxFrame;
    // COBS adds one byte per 254 and one more.
    this.#maxEncoded = maxFrame + Math.ceil(maxFrame / 254) + 1;
    this.#buffer = new Uint8Array(this.#maxEncoded);
  }

  /** Feeds received bytes; returns the frames they completed, in order. */
  push(bytes: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    for (const byte of bytes) {
      if (byte !== 0) {
        if (this.#overflow) continue;
        if (this.#length === this.#maxEncoded) {
          this.#overflow = true;
          this.#length = 0;
          continue;
        }
        this.#buffer[this.#length++] = byte;
        continue;
      }
      if (this.#overflow) {
        this.#overflow = false;
        this.stats.oversize++;
        continue;
      }
      if (this.#length === 0) continue; // a lone delimiter: a flush, or an empty frame (§2)
      const frame = decodeWireBlock(this.#buffer.subarray(0, this.#length), this.#maxFrame);
      this.#length = 0;
      if (frame === undefined) this.stats.dropped++;
      else {
        this.stats.frames++;
        frames.push(frame);
      }
    }
    return frames;
  }

  /** Forgets a partial frame (after the port reopened). */
  reset(): void {
    this.#length = 0;
    this.#overflow = false;
  }
}
