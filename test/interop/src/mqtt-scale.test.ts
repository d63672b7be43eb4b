import { randomBytes } from 'node:crypto';
import * as mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTelemetry, readBuiltInEndpoint } from './support/built-in-endpoint';
import { freePort } from './support/free-port';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { ConnectRefusedError, deviceSasToken, mqttUsername, RawMqttDevice } from './support/raw-mqtt-device';
import { createDevicesInBulk, hubCa } from './support/service-rest';

// 1,000 devices at once and 100,000 QoS 1 telemetry messages, with the hub SIGKILLed part-way. The promise under
// test is the one a PUBACK makes: a message the hub acknowledged is durably on the built-in endpoint, even when the
// hub dies right after. Devices are lean raw-TLS clients with pre-encoded mqtt-packet frames (1,000 MQTT.js clients
// would cost more CPU than the hub on 2 cores). Rates are printed for the record; nothing asserts on time.

const deviceCount = 1000;
const messagesPerDevice = 100;
const total = deviceCount * messagesPerDevice;
/** Unacknowledged messages each device keeps in flight. */
const window = 8;
/** SIGKILL the hub once this share of all messages is acknowledged. */
const killAtShare = 0.4;
/** Connections opened at the same time (1,000 TLS handshakes at once would only queue on 2 cores). */
const connectConcurrency = 50;

interface LoadDevice {
  readonly id: string;
  /** PUBLISH QoS 1 frames, one per message; the packet id is the message's index + 1 (unique per connection). */
  readonly frames: Buffer[];
  /** 1 once a PUBACK for the message arrived. */
  readonly acknowledged: Uint8Array;
  /** How many times the message went on the wire. */
  readonly attempts: Uint8Array;
  /** Message indexes to send on the current connection, and how far along it is. */
  queue: number[];
  cursor: number;
  inFlight: number;
  connection: RawMqttDevice | undefined;
}

function messageIdOf(deviceId: string, index: number): string {
  return `${deviceId}-${index}`;
}

function makeDevice(id: string): LoadDevice {
  const frames: Buffer[] = [];
  for (let index = 0; index < messagesPerDevice; index += 1) {
    frames.push(
      mqttPacket.generate({
        cmd: 'publish',
        topic: `devices/${id}/messages/events/%24.mid=${messageIdOf(id, index)}&%24.ct=application%2Fjson&%24.ce=utf-8`,
        payload: Buffer.from(JSON.stringify({ device: id, index, pad: 'x'.repeat(64) })),
        qos: 1,
        retain: false,
        dup: false,
        messageId: index + 1,
      }),
    );
  }
  return {
    id,
    frames,
    acknowledged: new Uint8Array(messagesPerDevice),
    attempts: new Uint8Array(messagesPerDevice),
    queue: Array.from({ length: messagesPerDevice }, (_, index) => index),
    cursor: 0,
    inFlight: 0,
    connection: undefined,
  };
}

describe('MQTT head at scale', () => {
  let hub: HubProcess;
  let httpsPort: number;
  let mqttPort: number;

  beforeAll(async () => {
    // Fixed ports: the hub must come back on the same ones after the SIGKILL.
    httpsPort = await freePort();
    mqttPort = await freePort();
    hub = await startHubProcess({ httpsPort, mqttPort });
    expect(hub.info.ports.mqtt, 'hub.json must carry the MQTT-over-TLS port').toBe(mqttPort);
  });

  afterAll(async () => {
    for (const device of devices) device.connection?.destroy();
    await hub?.dispose();
  });

  const devices: LoadDevice[] = [];

  it('keeps every acknowledged message of 1,000 devices and 100,000 messages through a SIGKILL', async () => {
    const key = randomBytes(32).toString('base64');
    const ids = Array.from({ length: deviceCount }, (_, index) => `scale-${String(index).padStart(4, '0')}`);
    let started = performance.now();
    await createDevicesInBulk(hub.info, ids, key);
    console.log(`[mqtt-scale] created ${deviceCount} devices in bulk in ${seconds(started)} s`);
    for (const id of ids) devices.push(makeDevice(id));
    const ca = hubCa(hub.info);
    const tokens = new Map<string, string>();
    for (const id of ids) tokens.set(id, await deviceSasToken('localhost', id, key, { ttlSeconds: 3600 }));

    let acknowledgedTotal = 0;
    let phase: { resolve: () => void; reject: (error: Error) => void } | undefined;
    let killing: Promise<void> | undefined;
    let killedAt = 0;

    const pump = (device: LoadDevice) => {
      const connection = device.connection;
      if (!connection?.isOpen || killing) return;
      while (device.inFlight < window && device.cursor < device.queue.length) {
        const index = device.queue[device.cursor] as number;
        device.cursor += 1;
        device.attempts[index] = (device.attempts[index] as number) + 1;
        device.inFlight += 1;
        connection.write(device.frames[index] as Buffer);
      }
    };

    const onPuback = (device: LoadDevice, packetId: number | undefined) => {
      const index = (packetId ?? 0) - 1;
      if (index < 0 || index >= messagesPerDevice) {
        phase?.reject(new Error(`${device.id} got a PUBACK for packet id ${packetId}, which it never sent`));
        return;
      }
      device.inFlight -= 1;
      if (!device.acknowledged[index]) {
        device.acknowledged[index] = 1;
        acknowledgedTotal += 1;
      }
      if (acknowledgedTotal === total) phase?.resolve();
      pump(device);
    };

    const connect = async (device: LoadDevice) => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          const connection = await RawMqttDevice.connect({
            port: mqttPort,
            ca,
            clientId: device.id,
            username: mqttUsername('localhost', device.id),
            password: tokens.get(device.id) as string,
            clean: false,
            keepalive: 300,
          });
          connection.on((packet) => {
            if (packet.cmd === 'puback') onPuback(device, packet.messageId);
          });
          void connection.closed.then(() => {
            if (!killing) phase?.reject(new Error(`the hub closed ${device.id}'s connection:\n${hub.output()}`));
          });
          device.connection = connection;
          return;
        } catch (error) {
          // Server unavailable (3) is how a hub sheds a connect storm; anything else is a failure.
          if (!(error instanceof ConnectRefusedError && error.returnCode === 3) || attempt >= 50) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
        }
      }
    };

    const connectAll = async () => {
      const startedAt = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: connectConcurrency }, async () => {
          while (next < devices.length) {
            const device = devices[next] as LoadDevice;
            next += 1;
            await connect(device);
          }
        }),
      );
      console.log(
        `[mqtt-scale] ${devices.length} devices connected in ${seconds(startedAt)} s ` +
          `(${rate(devices.length, startedAt)} connects/s)`,
      );
    };

    // Phase 1: everybody connects, then sends until 40% are acknowledged; then the hub is SIGKILLed.
    await connectAll();
    started = performance.now();
    const killThreshold = Math.floor(total * killAtShare);
    await new Promise<void>((resolve, reject) => {
      phase = { resolve, reject };
      const watchdog = setInterval(() => {
        if (!killing && acknowledgedTotal >= killThreshold) {
          killedAt = acknowledgedTotal;
          killing = hub.kill();
          clearInterval(watchdog);
          void killing
            .then(() => Promise.all(devices.map((device) => device.connection?.closed)))
            .then(() => resolve(), reject);
        }
      }, 5);
      for (const device of devices) pump(device);
    });
    const phaseOneAcknowledged = acknowledgedTotal;
    const unacknowledgedOnTheWire = devices.reduce((sum, device) => {
      let count = 0;
      for (let index = 0; index < messagesPerDevice; index += 1) {
        if (device.attempts[index] && !device.acknowledged[index]) count += 1;
      }
      return sum + count;
    }, 0);
    console.log(
      `[mqtt-scale] phase 1: ${phaseOneAcknowledged} acknowledged in ${seconds(started)} s ` +
        `(${rate(phaseOneAcknowledged, started)} msgs/s); SIGKILL at ${killedAt}; ` +
        `${unacknowledgedOnTheWire} sent but never acknowledged`,
    );

    // Phase 2: the hub restarts on the same data dir and ports; every device reconnects and sends what was not
    // acknowledged (again, for what was on the wire) and the rest.
    started = performance.now();
    hub = await hub.restart();
    console.log(`[mqtt-scale] hub restarted in ${seconds(started)} s`);
    expect(hub.info.ports.mqtt).toBe(mqttPort);
    killing = undefined;
    for (const device of devices) {
      device.queue = [];
      for (let index = 0; index < messagesPerDevice; index += 1) {
        if (!device.acknowledged[index]) device.queue.push(index);
      }
      device.cursor = 0;
      device.inFlight = 0;
      device.connection = undefined;
    }
    await connectAll();
    started = performance.now();
    await new Promise<void>((resolve, reject) => {
      phase = { resolve, reject };
      if (acknowledgedTotal === total) resolve();
      for (const device of devices) pump(device);
    });
    const phaseTwoAcknowledged = total - phaseOneAcknowledged;
    console.log(
      `[mqtt-scale] phase 2: ${phaseTwoAcknowledged} acknowledged in ${seconds(started)} s ` +
        `(${rate(phaseTwoAcknowledged, started)} msgs/s)`,
    );
    await Promise.all(devices.map((device) => device.connection?.close()));

    // The whole built-in endpoint, counted per message id.
    started = performance.now();
    const counts = new Map<string, number>();
    let read = 0;
    await readBuiltInEndpoint(hub.info, (event) => {
      read += 1;
      if (!isTelemetry(event) || !event.deviceId?.startsWith('scale-')) return;
      const messageId = event.messageId ?? '(none)';
      counts.set(messageId, (counts.get(messageId) ?? 0) + 1);
    });
    console.log(`[mqtt-scale] read ${read} events in ${seconds(started)} s (${rate(read, started)} events/s)`);

    const missing: string[] = [];
    const unexplainedDuplicates: string[] = [];
    let duplicates = 0;
    const expected = new Set<string>();
    for (const device of devices) {
      for (let index = 0; index < messagesPerDevice; index += 1) {
        const messageId = messageIdOf(device.id, index);
        expected.add(messageId);
        const count = counts.get(messageId) ?? 0;
        // Every message ended acknowledged (phase 2 ran until all were); each must be there.
        if (count === 0) missing.push(messageId);
        // A second copy is allowed only for a message that was sent again because its PUBACK never came.
        if (count > 1) duplicates += count - 1;
        if (count > (device.attempts[index] as number)) unexplainedDuplicates.push(`${messageId} x${count}`);
      }
    }
    const unknown = [...counts.keys()].filter((messageId) => !expected.has(messageId));
    console.log(
      `[mqtt-scale] ${counts.size} distinct messages on the endpoint, ${duplicates} duplicates ` +
        `(of ${unacknowledgedOnTheWire} resent after the SIGKILL)`,
    );
    expect(acknowledgedTotal).toBe(total);
    expect(missing.slice(0, 20), `${missing.length} acknowledged messages are missing`).toEqual([]);
    expect(unexplainedDuplicates.slice(0, 20), 'duplicates of messages sent once').toEqual([]);
    expect(unknown.slice(0, 20)).toEqual([]);
  }, 240_000);
});

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

function rate(count: number, since: number): string {
  return Math.round(count / ((performance.now() - since) / 1000)).toString();
}
