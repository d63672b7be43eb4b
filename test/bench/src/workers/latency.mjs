// W3: end-to-end latency at a fixed rate. Publishers and the reader live in this one process so that send and
// receive times come from the same clock: each payload starts with its send time (performance.now(), float64).
// Hub: QoS 1 telemetry -> built-in endpoint event stream. Peer: QoS 1 publish -> Mosquitto -> QoS 1 subscriber.
import { connectFields, telemetryTopic } from '../lib/credentials.mjs';
import { eachLimited } from '../lib/each-limited.mjs';
import { openEventStream } from '../lib/event-stream.mjs';
import { encodePublish, PacketType, publishPayloadStart, writePuback } from '../lib/mqtt-frames.mjs';
import { connectMqtt, subscribe } from '../lib/mqtt-link.mjs';
import { percentile } from '../lib/percentiles.mjs';
import { serve } from './worker-host.mjs';

let devices = [];
let closeReader = () => {};
let onLatency = () => {};

serve({
  async connect({ target, deviceIds }) {
    devices = await eachLimited(deviceIds, 50, async (deviceId) => {
      const link = await connectMqtt({ port: target.port, ca: target.ca, ...(await connectFields(target, deviceId)) });
      link.onFrame = () => {};
      return { deviceId, link, topic: telemetryTopic(deviceId), nextId: 1 };
    });
    if (target.kind === 'hub') await openHubStream(target);
    else await openSubscriber(target);
    return { connected: devices.length };
  },

  /** Publishes `rate` messages a second for `seconds`, round-robin over the devices; the first `warmup` are not counted. */
  async run({ rate, seconds, payloadSize, warmup }) {
    const total = Math.round(rate * seconds);
    const samples = [];
    let received = 0;
    let sent = 0;
    const payload = Buffer.alloc(payloadSize, 0x62);
    await new Promise((resolve, reject) => {
      const timeout = setTimeout(
        () => reject(new Error(`received ${received} of ${total} messages`)),
        seconds * 1000 + 30_000,
      );
      onLatency = (sentAt, index) => {
        received++;
        if (index >= warmup) samples.push(performance.now() - sentAt);
        if (received === total) {
          clearTimeout(timeout);
          resolve();
        }
      };
      const started = performance.now();
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - started) * rate) / 1000));
        while (sent < due) {
          const device = devices[sent % devices.length];
          payload.writeDoubleLE(performance.now(), 0);
          payload.writeUInt32LE(sent, 8);
          const messageId = device.nextId;
          device.nextId = messageId === 65535 ? 1 : messageId + 1;
          device.link.write(encodePublish({ topic: device.topic, payload, qos: 1, messageId }));
          sent++;
        }
        if (sent === total) clearInterval(tick);
      }, 1);
    });
    return {
      received,
      samples: samples.length,
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
    };
  },

  async close() {
    closeReader();
    for (const device of devices) device.link.destroy();
    devices = [];
  },
});

function deliver(body) {
  onLatency(body.readDoubleLE(0), body.readUInt32LE(8));
}

async function openHubStream(target) {
  let text = '';
  closeReader = await openEventStream(
    target,
    (chunk) => {
      text += chunk;
      for (let end = text.indexOf('\n\n'); end !== -1; end = text.indexOf('\n\n')) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        if (!block.startsWith('data: ')) continue;
        const event = JSON.parse(block.slice(6));
        const source = event.systemProperties?.['iothub-message-source'];
        if (source !== undefined && source !== 'Telemetry') continue;
        deliver(Buffer.from(event.body, event.bodyEncoding === 'base64' ? 'base64' : 'utf8'));
      }
    },
    { encoding: 'utf8' },
  );
}

async function openSubscriber(target) {
  const link = await connectMqtt({ port: target.port, ca: target.ca, clientId: `bench-latency-${process.pid}` });
  closeReader = () => link.destroy();
  await subscribe(link, 'devices/+/messages/events/#', 1);
  link.onFrame = (firstByte, buffer, bodyStart, bodyEnd) => {
    if (firstByte >> 4 !== PacketType.publish) return;
    const start = publishPayloadStart(firstByte, buffer, bodyStart);
    if (((firstByte >> 1) & 3) > 0) {
      const ack = Buffer.allocUnsafe(4);
      writePuback(ack, 0, buffer.readUInt16BE(start - 2));
      link.write(ack);
    }
    deliver(Buffer.from(buffer.subarray(start, bodyEnd)));
  };
}
