/** The frame layer of the firmware bridge (PROTOCOL.md §2, §3, §5): COBS, CRC-16, frames, payload codecs. */
export { cobsDecode, cobsEncode } from './cobs';
export { crc16 } from './crc16';
export {
  decodeWireBlock,
  encodeFrame,
  type Frame,
  type FrameRejection,
  FrameType,
  frameHeaderSize,
  isReliableType,
  minFrameSize,
  packFrame,
  parseFrame,
  protocolVersion,
} from './frame';
export { FrameDecoder, type FrameDecoderStats } from './frame-decoder';
export * from './messages';
