import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import mqtt, { type MqttClient } from 'mqtt';
import * as mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTelemetry, readBuiltInEndpoint } from './support/built-in-endpoint';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { deviceSasToken, mqttUsername, RawMqttDevice } from './support/raw-mqtt-device';
import { createDevice, hubCa } from './support/service-rest';

// Misbehaving MQTT clients against the real hub (child process, TLS, 127.0.0.1). IoT Hub answers anything it does
// not support by closing the network connection (protocol-device.md §0.5, §2.3, §2.9): each abuse must close only
// the abuser's connection, while a well-behaved device on the same hub keeps working and every telemetry message the
// hub acknowledged to it is on the built-in endpoint.

interface Abuse {
  name: string;
  /** Writes the abuse on a connection that the hub accepted (CONNACK 0) as device `abuser`. */
  act(device: RawMqttDevice): void;
  /** A message id the abuse carries, which must never reach the built-in endpoint. */
  forbiddenMessageId?: string;
}

const abuses: Abuse[] = [
  {
    name: "publishing telemetry to another device's topic",
    forbiddenMessageId: 'spoofed-1',
    act(device) {
      void device.publish('devices/victim/messages/events/%24.mid=spoofed-1', '{"spoofed":true}', 1).catch(() => {});
    },
  },
  {
    name: 'a publish to a topic IoT Hub does not serve',
    forbiddenMessageId: 'unknown-topic-1',
    act(device) {
      void device.publish('plant/line-1/temperature/%24.mid=unknown-topic-1', '21.5', 1).catch(() => {});
    },
  },
  {
    name: 'a second CONNECT on the same connection',
    act(device) {
      // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation and the server must disconnect.
      device.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: 'abuser',
          clean: false,
          keepalive: 180,
          username: mqttUsername('localhost', 'abuser'),
        }),
      );
    },
  },
  {
    name: 'a QoS 2 publish',
    forbiddenMessageId: 'qos2-1',
    act(device) {
      device.write(
        mqttPacket.generate({
          cmd: 'publish',
          topic: 'devices/abuser/messages/events/%24.mid=qos2-1',
          payload: 'exactly once, please',
          qos: 2,
          retain: false,
          dup: false,
          messageId: 7,
        }),
      );
    },
  },
  {
    name: 'an oversize payload (257 KB, over the 256 KB telemetry limit)',
    forbiddenMessageId: 'oversize-1',
    act(device) {
      void device
        .publish('devices/abuser/messages/events/%24.mid=oversize-1', Buffer.alloc(257 * 1024, 0x61), 1)
        .catch(() => {});
    },
  },
  {
    name: 'a PUBLISH header announcing a 200 MB body',
    act(device) {
      // Fixed header: PUBLISH QoS 1, remaining length 200 MiB as a 4-byte varint, then a little of the body. A hub
      // that buffers up to the announced length would wait forever; IoT Hub's limit is 256 KB.
      const length = 200 * 1024 * 1024;
      const header = Buffer.from([
        0x32,
        (length & 0x7f) | 0x80,
        ((length >> 7) & 0x7f) | 0x80,
        ((length >> 14) & 0x7f) | 0x80,
        (length >> 21) & 0x7f,
      ]);
      device.write(Buffer.concat([header, Buffer.alloc(1024, 0x62)]));
    },
  },
  {
    name: 'random bytes (a frame of the reserved packet type 0 with a random body)',
    act(device) {
      // Type 0 is reserved [MQTT-2.2.1]; the remaining length (127) is complete so any parser has the whole frame.
      device.write(Buffer.concat([Buffer.from([0x00, 0x7f]), randomBytes(127), randomBytes(2048)]));
    },
  },
  {
    name: 'a truncated PUBLISH (the remaining length ends inside the topic name)',
    forbiddenMessageId: 'truncated-1',
    act(device) {
      const frame = mqttPacket.generate({
        cmd: 'publish',
        topic: 'devices/abuser/messages/events/%24.mid=truncated-1',
        payload: 'never whole',
        qos: 1,
        retain: false,
        dup: false,
        messageId: 9,
      });
      // Keep the fixed header's type but claim 10 bytes: the topic length field (2 bytes) says far more than 8.
      const truncated = Buffer.concat([Buffer.from([frame[0] as number, 10]), frame.subarray(2, 12)]);
      // Then valid traffic, which must not be taken as the rest of the topic.
      device.write(Buffer.concat([truncated, mqttPacket.generate({ cmd: 'pingreq' })]));
    },
  },
];

describe('MQTT head against misbehaving clients', () => {
  let hub: HubProcess;
  let ca: string;
  let port: number;
  let key: string;
  let bystander: MqttClient;
  let bystanderClosed = false;
  const acknowledged: string[] = [];
  let sent = 0;

  async function sendFromBystander(): Promise<void> {
    sent += 1;
    const messageId = `bystander-${sent}`;
    await bystander.publishAsync(`devices/bystander/messages/events/%24.mid=${messageId}&n=${sent}`, `{"n":${sent}}`, {
      qos: 1,
    });
    acknowledged.push(messageId);
  }

  async function connectAbuser(): Promise<RawMqttDevice> {
    return RawMqttDevice.connect({
      port,
      ca,
      clientId: 'abuser',
      username: mqttUsername('localhost', 'abuser'),
      password: await deviceSasToken('localhost', 'abuser', key),
    });
  }

  beforeAll(async () => {
    hub = await startHubProcess({ httpsPort: 0 });
    expect(hub.info.ports.mqtt, 'hub.json names no MQTT port: the MQTT head is not wired in').toBeTypeOf('number');
    port = hub.info.ports.mqtt as number;
    ca = hubCa(hub.info);
    key = randomBytes(32).toString('base64');
    const authentication = { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } };
    for (const id of ['abuser', 'victim', 'bystander']) await createDevice(hub.info, id, { authentication });
    bystander = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
      ca,
      servername: 'localhost',
      protocolVersion: 4,
      clientId: 'bystander',
      username: mqttUsername('localhost', 'bystander'),
      password: await deviceSasToken('localhost', 'bystander', key),
      clean: false,
      reconnectPeriod: 0,
      keepalive: 180,
    });
    bystander.on('close', () => {
      bystanderClosed = true;
    });
    bystander.on('error', () => {
      // Reported through bystanderClosed and failing publishes.
    });
  });

  afterAll(async () => {
    await bystander?.endAsync(true).catch(() => {});
    await hub?.dispose();
  });

  it.each(abuses)('closes only the connection that sent $name', async (abuse) => {
    await sendFromBystander();
    const abuser = await connectAbuser();
    abuse.act(abuser);
    await abuser.closed;
    expect(abuser.isOpen).toBe(false);

    // The other device was not disturbed and still gets its telemetry acknowledged.
    expect(bystanderClosed).toBe(false);
    await sendFromBystander();
    expect(bystanderClosed).toBe(false);

    // The abuser is not locked out: the same identity connects again, well-behaved, and is served.
    const again = await connectAbuser();
    await again.publish(`devices/abuser/messages/events/%24.mid=abuser-after-${abuses.indexOf(abuse)}`, 'ok', 1);
    await again.close();

    if (abuse.forbiddenMessageId) {
      const events = await readBuiltInEndpoint(hub.info);
      expect(events.filter((event) => event.messageId === abuse.forbiddenMessageId)).toEqual([]);
      expect(events.filter((event) => isTelemetry(event) && event.deviceId === 'victim')).toEqual([]);
    }
  });

  it('survives arbitrary bytes after CONNECT (property-based) and keeps serving the other device', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 2048 }), async (bytes) => {
        const abuser = await connectAbuser();
        abuser.write(Buffer.from(bytes));
        // Whether the hub closes or waits for more bytes, the abuser goes away; nothing else may be affected.
        abuser.socket.end();
        await abuser.closed;
        await sendFromBystander();
        expect(bystanderClosed).toBe(false);
      }),
      { numRuns: 50 },
    );
  });

  it('a half-sent packet followed by a closed socket stores nothing and disturbs nobody', async () => {
    const abuser = await connectAbuser();
    const frame = mqttPacket.generate({
      cmd: 'publish',
      topic: 'devices/abuser/messages/events/%24.mid=half-1',
      payload: Buffer.alloc(4096, 0x63),
      qos: 1,
      retain: false,
      dup: false,
      messageId: 3,
    });
    abuser.socket.end(frame.subarray(0, frame.length >> 1));
    await abuser.closed;
    await sendFromBystander();
    expect(bystanderClosed).toBe(false);
    const events = await readBuiltInEndpoint(hub.info);
    expect(events.filter((event) => event.messageId === 'half-1')).toEqual([]);
  });

  it('every telemetry message acknowledged to the well-behaved device is on the built-in endpoint', async () => {
    expect(acknowledged.length).toBe(abuses.length * 2 + 50 + 1);
    const events = await readBuiltInEndpoint(hub.info);
    const seen = events.filter((event) => isTelemetry(event) && event.deviceId === 'bystander');
    const ids = seen.map((event) => event.messageId);
    for (const messageId of acknowledged) expect(ids).toContain(messageId);
    // No acknowledged message is stored twice: the bystander never had to resend.
    expect(new Set(ids).size).toBe(ids.length);
    expect(seen[0]?.systemProperties['iothub-connection-device-id']).toBe('bystander');
  });
});
