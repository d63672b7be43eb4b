/**
 * Decoding of the two packets only a server receives, CONNECT and SUBSCRIBE (OASIS MQTT 3.1.1 §3.1, §3.8), kept
 * apart from `codec.ts` so that the client's bundles, which never receive them, do not carry the code. Pass
 * {@link decodeConnectOrSubscribe} to `createDecoder` where the hub's side is played (tests).
 */
import { type BodyCursor, malformedPacket, readByte, readString, readU16, unsupportedPacket } from './codec';
import type { ConnectPacket, Packet } from './packets';

/**
 * Decodes the body of a CONNECT (type 1) or SUBSCRIBE (type 8) for `createDecoder`. MQTT 3.1.1 only (protocol
 * name `MQTT`, level 4), QoS 0 and 1, no will.
 *
 * @throws {CodecError} `MalformedPacket` for a wrong protocol name, reserved CONNECT flag bits, a password without
 * a user name, reserved bits in a requested QoS, a SUBSCRIBE without topics or a truncated field;
 * `UnsupportedPacket` for another protocol level, a will, or a subscription at QoS 2.
 */
export function decodeConnectOrSubscribe(type: 1 | 8, cursor: BodyCursor): Packet {
  if (type === 1) {
    if (readString(cursor) !== 'MQTT') throw malformedPacket();
    if (readByte(cursor) !== 4) throw unsupportedPacket();
    const connectFlags = readByte(cursor);
    // Bit 0 is reserved [MQTT-3.1.2-3]; a password needs a user name [MQTT-3.1.2-22].
    if (connectFlags & 1 || (connectFlags & 0xc0) === 0x40) throw malformedPacket();
    if (connectFlags & 0x3c) throw unsupportedPacket();
    const keepAlive = readU16(cursor);
    const connect: ConnectPacket = {
      type: 1,
      clientId: readString(cursor),
      keepAlive: keepAlive,
      clean: (connectFlags & 2) !== 0,
    };
    if (connectFlags & 0x80) connect.username = readString(cursor);
    if (connectFlags & 0x40) connect.password = readString(cursor);
    return connect;
  }
  const subscriptions: Array<{ topic: string; qos: 0 | 1 }> = [];
  const messageId = readU16(cursor);
  while (cursor.p < cursor.b.length) {
    const topic = readString(cursor);
    const qos = readByte(cursor);
    // Bits 7..2 of the requested QoS byte are reserved [MQTT-3.8.3-4].
    if (qos > 2) throw malformedPacket();
    if (qos === 2) throw unsupportedPacket();
    subscriptions.push({ topic: topic, qos: qos as 0 | 1 });
  }
  // At least one topic filter [MQTT-3.8.3-3].
  if (!subscriptions.length) throw malformedPacket();
  return { type: 8, messageId: messageId, subscriptions: subscriptions };
}
