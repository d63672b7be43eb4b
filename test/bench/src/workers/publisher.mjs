// Load generator: many devices pipelining pre-encoded packets over raw TLS sockets, each keeping `window`
// requests in flight and sending the next one as an answer frees a slot.
// - mode `telemetry`: QoS 1 PUBLISH to the device's telemetry topic; a PUBACK frees its packet id.
// - mode `twin`: reported-property PATCH (QoS 0, `$rid`); the hub's `$iothub/twin/res/204` answer frees the rid.
import { connectFields, telemetryTopic } from '../lib/credentials.mjs';
import { eachLimited } from '../lib/each-limited.mjs';
import { encodePublish, PacketType, publishTopic } from '../lib/mqtt-frames.mjs';
import { connectMqtt, subscribe } from '../lib/mqtt-link.mjs';
import { serve } from './worker-host.mjs';

let devices = [];

serve({
  async connect({ target, deviceIds, mode, payloadSize, window, count }) {
    devices = await eachLimited(deviceIds, 100, async (deviceId) => {
      const link = await connectMqtt({ port: target.port, ca: target.ca, ...(await connectFields(target, deviceId)) });
      const packets = [];
      if (mode === 'telemetry') {
        const payload = Buffer.alloc(payloadSize, 0x61);
        for (let id = 1; id <= window; id++) {
          packets.push(encodePublish({ topic: telemetryTopic(deviceId), payload, qos: 1, messageId: id }));
        }
      } else {
        await subscribe(link, '$iothub/twin/res/#', 0);
        for (let rid = 1; rid <= window; rid++) {
          const payload = Buffer.from(JSON.stringify({ temperature: 20 + (rid % 10), rid }));
          packets.push(
            encodePublish({ topic: `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, payload, qos: 0 }),
          );
        }
      }
      return { deviceId, link, packets, count, sent: 0, answered: 0, failures: 0, mode };
    });
    return { connected: devices.length };
  },

  async run() {
    const started = performance.now();
    await Promise.all(devices.map(drive));
    const seconds = (performance.now() - started) / 1000;
    const answered = devices.reduce((sum, device) => sum + device.answered, 0);
    const failures = devices.reduce((sum, device) => sum + device.failures, 0);
    return { answered, failures, seconds };
  },

  async close() {
    for (const device of devices) device.link.destroy();
    devices = [];
  },
});

/** Sends `count` requests keeping `packets.length` in flight; resolves when every one was answered. */
function drive(device) {
  return new Promise((resolve, reject) => {
    const { link, packets, count } = device;
    const ridPattern = /\$rid=(\d+)/;
    const socket = link.socket;
    link.closed.then(() => {
      if (device.answered < count) reject(new Error(`${device.deviceId}: connection closed after ${device.answered}`));
    });
    // Freed slots are refilled in batches of `refill` packets, written together (one TLS record), so neither side
    // pays a record and a system call per message just because the other answers one message at a time.
    const refill = Math.max(1, Math.floor(packets.length / 4));
    const freed = [];
    const flush = () => {
      if (freed.length === 0) return;
      socket.write(freed.length === 1 ? packets[freed[0]] : Buffer.concat(freed.map((slot) => packets[slot])));
      freed.length = 0;
    };
    const onAnswer = (slot) => {
      device.answered++;
      if (device.sent < count) {
        device.sent++;
        freed.push(slot);
        if (freed.length >= refill || device.sent === count) flush();
      } else if (device.answered === count) {
        resolve();
      }
    };
    link.onFrame = (firstByte, buffer, bodyStart) => {
      const type = firstByte >> 4;
      if (device.mode === 'telemetry') {
        if (type === PacketType.puback) onAnswer(buffer.readUInt16BE(bodyStart) - 1);
        return;
      }
      if (type !== PacketType.publish) return;
      const topic = publishTopic(buffer, bodyStart);
      const rid = ridPattern.exec(topic);
      if (!rid) return;
      if (!topic.startsWith('$iothub/twin/res/204/')) device.failures++;
      onAnswer(Number(rid[1]) - 1);
    };
    const first = Math.min(packets.length, count);
    socket.write(Buffer.concat(packets.slice(0, first)));
    device.sent = first;
    if (count === 0) resolve();
  });
}
