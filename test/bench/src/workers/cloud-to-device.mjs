// W7 (second half): cloud-to-device send -> device -> complete. The service sends through @fieldhub/service
// (AMQP, /messages/devicebound), each device receives at QoS 1 on devices/<id>/messages/devicebound/# and completes
// every message with its PUBACK. A device never has more than `window` messages sent but not yet received (IoT Hub queues at most
// 50 per device).
import { createServiceClient } from '@fieldhub/service';
import { connectFields } from '../lib/credentials.mjs';
import { eachLimited } from '../lib/each-limited.mjs';
import { PacketType, publishTopic, writePuback } from '../lib/mqtt-frames.mjs';
import { connectMqtt, subscribe } from '../lib/mqtt-link.mjs';
import { serve } from './worker-host.mjs';

let devices = [];
let service = null;

serve({
  async connect({ target, deviceIds }) {
    service = createServiceClient({
      connectionString: target.serviceConnectionString,
      ca: target.ca,
      port: target.httpsPort,
      // @fieldhub/service sends cloud-to-device messages over AMQP (0.2).
      ...(target.amqpPort ? { amqpPort: target.amqpPort } : {}),
    });
    devices = await eachLimited(deviceIds, 50, async (deviceId) => {
      const link = await connectMqtt({ port: target.port, ca: target.ca, ...(await connectFields(target, deviceId)) });
      await subscribe(link, `devices/${deviceId}/messages/devicebound/#`, 1);
      const device = { deviceId, link, received: 0, wake: null };
      link.onFrame = (firstByte, buffer, bodyStart) => {
        if (firstByte >> 4 !== PacketType.publish) return;
        const topic = publishTopic(buffer, bodyStart);
        if (!topic.startsWith(`devices/${deviceId}/messages/devicebound/`)) return;
        const ack = Buffer.allocUnsafe(4);
        writePuback(ack, 0, buffer.readUInt16BE(bodyStart + 2 + buffer.readUInt16BE(bodyStart)));
        link.write(ack);
        device.received++;
        device.wake?.();
      };
      return device;
    });
    // Warm the HTTPS connection.
    await service.devices.get(deviceIds[0]);
    return { connected: devices.length };
  },

  async run({ perDevice, window }) {
    const started = performance.now();
    let failures = 0;
    await Promise.all(
      devices.map(async (device) => {
        const body = Buffer.alloc(64, 0x63);
        let refused = 0;
        for (let sent = 0; sent < perDevice; sent++) {
          while (sent - refused - device.received >= window) {
            await new Promise((resolve) => {
              device.wake = resolve;
            });
          }
          // One device's sends go one after another (each resolves when the hub queued the message); the devices
          // send in parallel, and receive while their next message is on its way.
          await service.cloudToDevice.send(device.deviceId, { body }).catch(() => {
            refused++;
            failures++;
          });
        }
        while (device.received < perDevice - refused) {
          await new Promise((resolve) => {
            device.wake = resolve;
          });
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const received = devices.reduce((sum, device) => sum + device.received, 0);
    return { received, failures, seconds };
  },

  async close() {
    for (const device of devices) device.link.destroy();
    await service?.close();
    devices = [];
  },
});
