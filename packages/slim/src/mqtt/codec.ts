/**
 * The slim client's MQTT 3.1.1 codec (OASIS MQTT 3.1.1 §2, §3): `encodePacket` turns a {@link Packet} into bytes,
 * `createDecoder` turns a byte stream, chunked anyhow, back into packets. QoS 0 and 1 only; no will, no
 * UNSUBSCRIBE, no QoS 2 flow (the IoT Hub does not speak them). Every type encodes; CONNECT and SUBSCRIBE decode
 * only with `decodeConnectOrSubscribe` from `connect-subscribe.ts` (the hub's side, in tests), so that the client's
 * bundles do not carry what a client never receives.
 *
 * Restricted dialect (ARCHITECTURE.md, "Embedded targets"): plain functions defined before use, no destructuring,
 * spread, default parameters, Map/Set, TextEncoder. Memory: the decoder keeps at most one partial packet buffer
 * and hands out subarrays of the chunk it was given where a packet lies whole inside it.
 */
import { utf8Decode, utf8Encode } from '@fieldhub/protocol';
import type { Packet, PacketDecoder, PublishPacket } from './packets';

/** The `code` of an error thrown by {@link encodePacket} or passed to a decoder's `onError`. */
export type CodecErrorCode = 'MalformedPacket' | 'UnsupportedPacket' | 'PacketTooLarge';

/** A codec error: a plain `Error` with a stable string {@link CodecErrorCode} `code`. */
export interface CodecError extends Error {
  code: CodecErrorCode;
}

// The message is the code: every byte counts in the Espruino bundle, and the code is what callers branch on (the
// comment at each throw says which rule was broken).
function codecError(code: CodecErrorCode): CodecError {
  const error = new Error(code) as CodecError;
  error.code = code;
  return error;
}
/** A `MalformedPacket` {@link CodecError}: the input breaks a rule of MQTT 3.1.1 §2 or §3. */
export const malformedPacket = (): CodecError => codecError('MalformedPacket');
/** An `UnsupportedPacket` {@link CodecError}: valid MQTT the slim client does not speak (QoS 2, a will, ...). */
export const unsupportedPacket = (): CodecError => codecError('UnsupportedPacket');
const tooLarge = (): CodecError => codecError('PacketTooLarge');

// The largest remaining length four length bytes can express (§2.2.3).
const MAX_REMAINING_LENGTH = 268435455;

/**
 * Encodes one packet, fixed header included, into a new array. Only the fields the packet's type defines are read;
 * a PUBLISH's `messageId` is written only for QoS 1.
 *
 * @throws {CodecError} `PacketTooLarge` when a string is longer than 65535 UTF-8 bytes (§1.5.3) or the packet
 * exceeds the 268435455-byte remaining length MQTT allows.
 */
export function encodePacket(packet: Packet): Uint8Array {
  // Fields collect as single bytes (numbers) or byte arrays, so the packet is built with one allocation.
  const parts: Array<number | Uint8Array> = [];
  let flags = 0;
  const u16 = (n: number): void => {
    parts.push(n >> 8, n & 255);
  };
  const str = (s: string): void => {
    const b = utf8Encode(s);
    if (b.length > 65535) throw tooLarge();
    u16(b.length);
    parts.push(b);
  };
  const type = packet.type;
  if (type === 1) {
    // Protocol name "MQTT", level 4 (§3.1.2.1, §3.1.2.2), then the connect flags (§3.1.2.3).
    parts.push(
      0,
      4,
      77,
      81,
      84,
      84,
      4,
      (packet.username !== undefined ? 0x80 : 0) | (packet.password !== undefined ? 0x40 : 0) | (packet.clean ? 2 : 0),
    );
    u16(packet.keepAlive);
    str(packet.clientId);
    if (packet.username !== undefined) str(packet.username);
    if (packet.password !== undefined) str(packet.password);
  } else if (type === 2) {
    parts.push(packet.sessionPresent ? 1 : 0, packet.returnCode);
  } else if (type === 3) {
    flags = (packet.dup ? 8 : 0) | (packet.qos << 1) | (packet.retain ? 1 : 0);
    str(packet.topic);
    if (packet.qos) u16(packet.messageId as number);
    parts.push(packet.payload);
  } else if (type === 4) {
    u16(packet.messageId);
  } else if (type === 8) {
    flags = 2; // [MQTT-3.8.1-1]
    u16(packet.messageId);
    const subscriptions = packet.subscriptions;
    for (let i = 0; i < subscriptions.length; i++) {
      const subscription = subscriptions[i] as { topic: string; qos: number };
      str(subscription.topic);
      parts.push(subscription.qos);
    }
  } else if (type === 9) {
    u16(packet.messageId);
    parts.push(new Uint8Array(packet.granted));
  }
  // PINGREQ, PINGRESP, DISCONNECT: a fixed header only.
  let length = 0;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as number | Uint8Array;
    length += typeof part === 'number' ? 1 : part.length;
  }
  if (length > MAX_REMAINING_LENGTH) throw tooLarge();
  const head = [(type << 4) | flags];
  let n = length;
  do {
    // Remaining length: 7 bits per byte, least significant first, high bit = more (§2.2.3).
    head.push((n % 128) | (n > 127 ? 128 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  const out = new Uint8Array(head.length + length);
  out.set(head);
  let o = head.length;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as number | Uint8Array;
    if (typeof part === 'number') out[o++] = part;
    else {
      out.set(part, o);
      o += part.length;
    }
  }
  return out;
}

/**
 * A read position in a packet body, for the body decoders here and in `connect-subscribe.ts`. The `read*`
 * functions advance it.
 */
export interface BodyCursor {
  /** The packet body (variable header and payload). */
  b: Uint8Array;
  /** The next byte to read. */
  p: number;
}

function need(cursor: BodyCursor, n: number): void {
  if (cursor.p + n > cursor.b.length) throw malformedPacket();
}

/**
 * Reads one byte.
 *
 * @throws {CodecError} `MalformedPacket` past the end of the body.
 */
export function readByte(cursor: BodyCursor): number {
  need(cursor, 1);
  return cursor.b[cursor.p++] as number;
}

/**
 * Reads a big-endian two-byte integer (§1.5.2).
 *
 * @throws {CodecError} `MalformedPacket` past the end of the body.
 */
export function readU16(cursor: BodyCursor): number {
  need(cursor, 2);
  cursor.p += 2;
  return ((cursor.b[cursor.p - 2] as number) << 8) | (cursor.b[cursor.p - 1] as number);
}

/**
 * Reads a UTF-8 string with its two-byte length (§1.5.3); invalid UTF-8 becomes U+FFFD.
 *
 * @throws {CodecError} `MalformedPacket` when the string runs past the end of the body.
 */
export function readString(cursor: BodyCursor): string {
  const n = readU16(cursor);
  need(cursor, n);
  cursor.p += n;
  return utf8Decode(cursor.b.subarray(cursor.p - n, cursor.p));
}

/**
 * Decodes the body of a CONNECT or SUBSCRIBE, the packets only a server receives: `decodeConnectOrSubscribe` of
 * `connect-subscribe.ts`. Kept out of the codec proper so that a client's bundle does not carry it.
 */
export type ConnectOrSubscribeDecoder = (type: 1 | 8, cursor: BodyCursor) => Packet;

/**
 * Decodes the variable header and payload of one packet whose fixed header was already checked.
 *
 * @throws {CodecError} when the body breaks a rule of §3 or uses something the codec does not support.
 */
function decodeBody(
  type: number,
  flags: number,
  b: Uint8Array,
  decodeConnectOrSubscribe: ConnectOrSubscribeDecoder | undefined,
): Packet {
  const cursor: BodyCursor = { b: b, p: 0 };
  let packet: Packet;
  if (type === 1 || type === 8) {
    // A server sends neither [MQTT-3.1.0-1, 3.8]: a client decoder has no use for them.
    if (!decodeConnectOrSubscribe) throw unsupportedPacket();
    packet = decodeConnectOrSubscribe(type, cursor);
  } else if (type === 2) {
    const acknowledgeFlags = readByte(cursor);
    const returnCode = readByte(cursor);
    // Bits 7..1 of the acknowledge flags are reserved [MQTT-3.2.2-1]; return codes 6..255 are reserved too.
    if (acknowledgeFlags > 1 || returnCode > 5) throw malformedPacket();
    packet = { type: 2, sessionPresent: acknowledgeFlags === 1, returnCode: returnCode };
  } else if (type === 3) {
    const qos = ((flags >> 1) & 3) as 0 | 1;
    const publish: PublishPacket = {
      type: 3,
      topic: readString(cursor),
      payload: b,
      qos: qos,
      dup: (flags & 8) !== 0,
      retain: (flags & 1) !== 0,
    };
    if (qos) publish.messageId = readU16(cursor);
    // The payload is the rest of the body: a view, not a copy.
    publish.payload = b.subarray(cursor.p);
    cursor.p = b.length;
    packet = publish;
  } else if (type === 4) {
    packet = { type: 4, messageId: readU16(cursor) };
  } else if (type === 9) {
    const messageId = readU16(cursor);
    const granted: number[] = [];
    while (cursor.p < b.length) {
      const code = readByte(cursor);
      if (code > 2 && code !== 0x80) throw malformedPacket();
      granted.push(code);
    }
    packet = { type: 9, messageId: messageId, granted: granted };
  } else {
    packet = { type: type as 12 | 13 | 14 };
  }
  // Fixed-size packets (CONNACK, PUBACK, PINGs, DISCONNECT) and CONNECT must not carry bytes past their fields.
  if (cursor.p !== b.length) throw malformedPacket();
  return packet;
}

/**
 * Creates a streaming decoder (see {@link PacketDecoder}). `push` accepts chunks of any size: packets split across
 * chunks are assembled in one buffer of exactly their size; packets lying whole in a chunk are decoded in place, so
 * a PUBLISH `payload` may be a view into the pushed chunk (copy it if the caller reuses the chunk's memory).
 *
 * After the first error (`onError` runs once with a {@link CodecError}: `MalformedPacket` for a broken rule of
 * §2 or §3, such as reserved flag bits, a remaining length over four bytes, QoS 3, a truncated field or a
 * SUBSCRIBE without topics; `UnsupportedPacket` for valid MQTT the slim client does not speak, such as QoS 2,
 * UNSUBSCRIBE, a will or another protocol level; `PacketTooLarge` beyond `maxPacketBytes`), the decoder ignores
 * input until `reset()`. If `onPacket` throws, the error propagates out of `push` and the decoder stops likewise.
 *
 * @param onPacket - called for every complete packet, in order.
 * @param onError - called once for the first malformed, unsupported or oversized packet.
 * @param maxPacketBytes - the largest packet accepted, fixed header included.
 * @param decodeConnectOrSubscribe - `decodeConnectOrSubscribe` of `connect-subscribe.ts`, for a decoder on the
 * server side (tests playing the hub); without it CONNECT and SUBSCRIBE are `UnsupportedPacket`, as a client never
 * receives them.
 */
export function createDecoder(
  onPacket: (packet: Packet) => void,
  onError: (error: CodecError) => void,
  maxPacketBytes: number,
  decodeConnectOrSubscribe?: ConnectOrSubscribeDecoder,
): PacketDecoder {
  let failed = false;
  // Bumped by reset(), so that a push whose callbacks reset the decoder drops the rest of its (stale) chunk.
  let epoch = 0;
  // The fixed header read so far: its first byte, how many header bytes were seen (0 = none), the remaining
  // length accumulated and the weight of the next length byte.
  let header = 0;
  let headerBytes = 0;
  let length = 0;
  let weight = 1;
  // The packet body being assembled across chunks, and how much of it has arrived.
  let body: Uint8Array | null = null;
  let filled = 0;
  const fail = (error: CodecError): void => {
    failed = true;
    body = null;
    onError(error);
  };
  const deliver = (b: Uint8Array): void => {
    let packet: Packet;
    try {
      packet = decodeBody(header >> 4, header & 15, b, decodeConnectOrSubscribe);
    } catch (error) {
      fail(error as CodecError);
      return;
    }
    // Stopped while onPacket runs: if it throws, the decoder stays stopped (the rest of the chunk is lost with it).
    failed = true;
    onPacket(packet);
    failed = false;
  };
  return {
    push: (chunk: Uint8Array): void => {
      let i = 0;
      // A reset() from inside onPacket or onError (a reconnect) bumps the epoch: the rest of this chunk is stale.
      const current = epoch;
      while (i < chunk.length && !failed && current === epoch) {
        if (body) {
          const n = Math.min(body.length - filled, chunk.length - i);
          body.set(chunk.subarray(i, i + n), filled);
          filled += n;
          i += n;
          if (filled === body.length) {
            const whole = body;
            body = null;
            headerBytes = 0;
            deliver(whole);
          }
          continue;
        }
        const byte = chunk[i++] as number;
        if (!headerBytes) {
          const type = byte >> 4;
          const flags = byte & 15;
          // Types 0 and 15 are reserved; 5, 6, 7 (QoS 2 flow), 10, 11 (UNSUBSCRIBE) are not spoken here.
          if (!((0x731e >> type) & 1)) {
            fail((type && type < 15 ? unsupportedPacket : malformedPacket)());
          } else if (type === 3 ? (flags & 6) === 6 || (flags & 14) === 8 : flags !== (type === 8 ? 2 : 0)) {
            // QoS 3 and DUP on QoS 0 are malformed [MQTT-3.3.1-2, -4]; other types have fixed flags (§2.2.2).
            fail(malformedPacket());
          } else if (type === 3 && flags & 4) {
            fail(unsupportedPacket());
          } else {
            header = byte;
            headerBytes = 1;
            length = 0;
            weight = 1;
          }
          continue;
        }
        length += (byte & 127) * weight;
        weight *= 128;
        headerBytes++;
        if (byte & 128) {
          // At most four remaining-length bytes (§2.2.3).
          if (headerBytes === 5) fail(malformedPacket());
          continue;
        }
        if (length + headerBytes > maxPacketBytes) {
          fail(tooLarge());
        } else if (chunk.length - i >= length) {
          // The whole body is in this chunk: decode it in place.
          i += length;
          headerBytes = 0;
          deliver(chunk.subarray(i - length, i));
        } else {
          body = new Uint8Array(length);
          filled = 0;
        }
      }
    },
    reset: (): void => {
      epoch++;
      failed = false;
      body = null;
      headerBytes = 0;
    },
  };
}
