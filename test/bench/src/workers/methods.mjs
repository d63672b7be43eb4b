// W4: direct-method round trips at a fixed request rate, open loop (a request leaves on schedule whether or not
// the previous ones were answered), timed from the service's call to the answer it receives.
// Hub: @fieldhub/service invoke (HTTPS) -> hub -> device ($iothub/methods/POST) -> response -> hub -> service.
// Peer: the same four hops over Mosquitto: service publishes bench/req/<device>, the device answers on
// bench/res/<device>, the service is subscribed to bench/res/#. QoS 0 both ways, as IoT Hub's method topics.
import { createServiceClient } from '@fieldhub/service';
import { connectFields } from '../lib/credentials.mjs';
import { eachLimited } from '../lib/each-limited.mjs';
import { encodePublish, PacketType, publishPayloadStart, publishTopic } from '../lib/mqtt-frames.mjs';
import { connectMqtt, subscribe } from '../lib/mqtt-link.mjs';
import { percentile } from '../lib/percentiles.mjs';
import { serve } from './worker-host.mjs';

let devices = [];
let service = null;
let serviceLink = null;
const pending = new Map();
const answer = Buffer.from('{"ok":true}');

serve({
  async connect({ target, deviceIds }) {
    devices = await eachLimited(deviceIds, 50, async (deviceId) => {
      const link = await connectMqtt({ port: target.port, ca: target.ca, ...(await connectFields(target, deviceId)) });
      const filter = target.kind === 'hub' ? '$iothub/methods/POST/#' : `bench/req/${deviceId}`;
      await subscribe(link, filter, 0);
      link.onFrame = (firstByte, buffer, bodyStart, bodyEnd) => {
        if (firstByte >> 4 !== PacketType.publish) return;
        const topic = publishTopic(buffer, bodyStart);
        if (target.kind === 'hub') {
          // $iothub/methods/POST/{name}/?$rid={rid} -> $iothub/methods/res/200/?$rid={rid}
          const rid = topic.slice(topic.indexOf('$rid=') + 5);
          link.write(encodePublish({ topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: answer, qos: 0 }));
        } else {
          const start = publishPayloadStart(firstByte, buffer, bodyStart);
          const payload = Buffer.from(buffer.subarray(start, bodyEnd));
          link.write(encodePublish({ topic: `bench/res/${deviceId}`, payload, qos: 0 }));
        }
      };
      return { deviceId, link };
    });
    if (target.kind === 'hub') {
      service = createServiceClient({
        connectionString: target.serviceConnectionString,
        ca: target.ca,
        port: target.httpsPort,
      });
      // One call first: opens the HTTPS connection so the first timed request does not pay the handshake.
      await service.directMethods.invoke(devices[0].deviceId, { methodName: 'warmup', payload: {} });
    } else {
      serviceLink = await connectMqtt({ port: target.port, ca: target.ca, clientId: `bench-service-${process.pid}` });
      await subscribe(serviceLink, 'bench/res/#', 0);
      serviceLink.onFrame = (firstByte, buffer, bodyStart, bodyEnd) => {
        if (firstByte >> 4 !== PacketType.publish) return;
        const start = publishPayloadStart(firstByte, buffer, bodyStart);
        const id = JSON.parse(buffer.toString('utf8', start, bodyEnd)).id;
        pending.get(id)?.();
      };
    }
    return { connected: devices.length };
  },

  async run({ rate, seconds, warmup, target }) {
    const total = Math.round(rate * seconds);
    const samples = [];
    let done = 0;
    let failures = 0;
    await new Promise((resolve, reject) => {
      const timeout = setTimeout(
        () => reject(new Error(`${done} of ${total} round trips finished`)),
        seconds * 1000 + 60_000,
      );
      const finish = (index, sentAt, ok) => {
        if (ok && index >= warmup) samples.push(performance.now() - sentAt);
        if (!ok) failures++;
        if (++done === total) {
          clearTimeout(timeout);
          resolve();
        }
      };
      let sent = 0;
      const started = performance.now();
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - started) * rate) / 1000));
        while (sent < due) {
          const index = sent++;
          const device = devices[index % devices.length];
          const sentAt = performance.now();
          if (target.kind === 'hub') {
            service.directMethods
              .invoke(device.deviceId, { methodName: 'ping', payload: { id: index }, responseTimeoutInSeconds: 30 })
              .then(
                (response) => finish(index, sentAt, response.status === 200),
                () => finish(index, sentAt, false),
              );
          } else {
            pending.set(index, () => {
              pending.delete(index);
              finish(index, sentAt, true);
            });
            serviceLink.write(
              encodePublish({
                topic: `bench/req/${device.deviceId}`,
                payload: Buffer.from(JSON.stringify({ id: index })),
                qos: 0,
              }),
            );
          }
        }
        if (sent === total) clearInterval(tick);
      }, 1);
    });
    return { done, failures, p50: percentile(samples, 50), p99: percentile(samples, 99) };
  },

  async close() {
    for (const device of devices) device.link.destroy();
    serviceLink?.destroy();
    await service?.close();
    devices = [];
  },
});
