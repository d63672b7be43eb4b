// A lean MQTT 3.1.1 framing layer for the load generator: packets are encoded once with mqtt-packet (setup, not
// the hot path) and incoming bytes are only split into frames, never turned into objects, so the generator stays
// far from a full core while it pushes tens of thousands of messages a second.
import mqttPacket from 'mqtt-packet';

/** Packet type nibbles (high four bits of the first byte). */
export const PacketType = {
  connack: 2,
  publish: 3,
  puback: 4,
  suback: 9,
  pingresp: 13,
};

/** Encodes one packet (setup time only). */
export function encode(packet) {
  return mqttPacket.generate(packet);
}

/** CONNECT, MQTT 3.1.1. */
export function encodeConnect({ clientId, username, password, keepalive = 300, clean = true }) {
  return encode({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean,
    clientId,
    keepalive,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password: Buffer.from(password) }),
  });
}

/** PUBLISH with a fixed packet id (QoS 1) or none (QoS 0). */
export function encodePublish({ topic, payload, qos = 1, messageId }) {
  return encode({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) });
}

/** SUBSCRIBE to one filter. */
export function encodeSubscribe(topic, qos = 1, messageId = 1) {
  return encode({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
}

/** PUBACK for `id`, written into `target` at `offset` (4 bytes). */
export function writePuback(target, offset, id) {
  target[offset] = 0x40;
  target[offset + 1] = 0x02;
  target[offset + 2] = id >> 8;
  target[offset + 3] = id & 0xff;
}

export const disconnectPacket = Buffer.from([0xe0, 0x00]);

/**
 * Splits a byte stream into MQTT frames. `onFrame(firstByte, buffer, bodyStart, bodyEnd)` sees each frame's fixed
 * header byte and its body (variable header + payload) as offsets into `buffer`, valid only during the call.
 */
export class FrameReader {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.pending = null;
  }

  push(chunk) {
    let buffer = chunk;
    if (this.pending !== null) {
      buffer = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let offset = 0;
    const end = buffer.length;
    while (end - offset >= 2) {
      let length = 0;
      let multiplier = 1;
      let cursor = offset + 1;
      let complete = false;
      while (cursor < end && cursor - offset <= 4) {
        const byte = buffer[cursor++];
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (cursor - offset > 4) throw new Error('malformed remaining length');
        break;
      }
      if (end - cursor < length) break;
      this.onFrame(buffer[offset], buffer, cursor, cursor + length);
      offset = cursor + length;
    }
    if (offset < end) this.pending = buffer.subarray(offset);
  }
}

/** The topic of a PUBLISH frame body. */
export function publishTopic(buffer, bodyStart) {
  const length = buffer.readUInt16BE(bodyStart);
  return buffer.toString('utf8', bodyStart + 2, bodyStart + 2 + length);
}

/** Where a PUBLISH frame's payload starts (after topic and, for QoS > 0, the packet id). */
export function publishPayloadStart(firstByte, buffer, bodyStart) {
  const qos = (firstByte >> 1) & 3;
  return bodyStart + 2 + buffer.readUInt16BE(bodyStart) + (qos > 0 ? 2 : 0);
}
