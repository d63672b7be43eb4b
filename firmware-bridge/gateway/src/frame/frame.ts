/**
 * Frames (PROTOCOL.md §3): `version | type | seq | len | payload | crc`, little-endian, CRC-16/CCITT-FALSE over
 * header and payload; on the wire each frame is COBS-encoded and followed by `0x00` (§2).
 */
import { cobsDecode, cobsEncode } from './cobs';
import { crc16 } from './crc16';

/** The protocol version this gateway speaks. */
export const protocolVersion = 1;
/** Header bytes before the payload. */
export const frameHeaderSize = 6;
/** The smallest frame: a header, no payload, the CRC. */
export const minFrameSize = 8;

/** Frame types (§4, §5). */
export const FrameType = {
  ack: 0x01,
  hello: 0x02,
  helloAck: 0x03,
  reset: 0x04,
  ping: 0x05,
  pong: 0x06,
  identity: 0x10,
  status: 0x11,
  telemetry: 0x20,
  telemetryAck: 0x21,
  cloudToDevice: 0x22,
  cloudToDeviceSettle: 0x23,
  twinGet: 0x30,
  twin: 0x31,
  twinReported: 0x32,
  twinResult: 0x33,
  twinDesired: 0x34,
  methodRequest: 0x38,
  methodResponse: 0x39,
  timeRequest: 0x3c,
  time: 0x3d,
  signRequest: 0x40,
  signResponse: 0x41,
  error: 0x7f,
} as const;
/** A frame type number this gateway knows. */
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Types `0x01`–`0x0F` are link frames: unreliable, `seq` 0 (§4.2). */
export function isReliableType(type: number): boolean {
  return type > 0x0f;
}

/** One decoded frame. */
export interface Frame {
  readonly version: number;
  readonly type: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

/**
 * The frame's bytes before COBS: header, payload and CRC.
 * @throws RangeError when `seq`, `type` or the payload length do not fit their fields.
 */
export function packFrame(frame: {
  readonly type: number;
  readonly seq: number;
  readonly payload: Uint8Array;
  readonly version?: number;
}): Uint8Array {
  const { type, seq, payload } = frame;
  const version = frame.version ?? protocolVersion;
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError(`frame type ${type} is not a u8`);
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffff) throw new RangeError(`seq ${seq} is not a u16`);
  if (payload.length > 0xffff) throw new RangeError(`a payload of ${payload.length} bytes exceeds 65535`);
  const bytes = new Uint8Array(frameHeaderSize + payload.length + 2);
  const view = new DataView(bytes.buffer);
  bytes[0] = version;
  bytes[1] = type;
  view.setUint16(2, seq, true);
  view.setUint16(4, payload.length, true);
  bytes.set(payload, frameHeaderSize);
  view.setUint16(frameHeaderSize + payload.length, crc16(bytes.subarray(0, frameHeaderSize + payload.length)), true);
  return bytes;
}

/**
 * What goes on the wire for one frame: COBS of {@link packFrame}, then `0x00`.
 * @throws RangeError as {@link packFrame}.
 */
export function encodeFrame(frame: {
  readonly type: number;
  readonly seq: number;
  readonly payload: Uint8Array;
  readonly version?: number;
}): Uint8Array {
  const encoded = cobsEncode(packFrame(frame));
  const wire = new Uint8Array(encoded.length + 1);
  wire.set(encoded);
  return wire;
}

/** Why {@link parseFrame} refused bytes (all are dropped silently, §3). */
export type FrameRejection = 'short' | 'length' | 'crc' | 'version';

/** Parses a decoded frame (COBS already undone): the frame, or why it is dropped. */
export function parseFrame(bytes: Uint8Array): Frame | FrameRejection {
  if (bytes.length < minFrameSize) return 'short';
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = view.getUint16(4, true);
  if (frameHeaderSize + len + 2 !== bytes.length) return 'length';
  if (crc16(bytes.subarray(0, frameHeaderSize + len)) !== view.getUint16(frameHeaderSize + len, true)) return 'crc';
  if (bytes[0] !== protocolVersion) return 'version';
  return {
    version: bytes[0],
    type: bytes[1] as number,
    seq: view.getUint16(2, true),
    payload: bytes.slice(frameHeaderSize, frameHeaderSize + len),
  };
}

/**
 * Decodes one wire block (COBS, without its `0x00`) into a frame; `undefined` when it is dropped (§2, §3): not
 * COBS, larger than `maxFrame` once decoded, or refused by {@link parseFrame}.
 */
export function decodeWireBlock(block: Uint8Array, maxFrame = 0xffff + 8): Frame | undefined {
  const bytes = cobsDecode(block);
  if (bytes === undefined || bytes.length > maxFrame) return undefined;
  const frame = parseFrame(bytes);
  return typeof frame === 'string' ? undefined : frame;
}
