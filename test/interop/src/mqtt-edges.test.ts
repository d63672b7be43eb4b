import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBuiltInEndpoint } from './support/built-in-endpoint';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { deviceSasToken, mqttUsername, RawMqttDevice } from './support/raw-mqtt-device';
import { createDevice, hubCa } from './support/service-rest';

// Documented edges of IoT Hub's MQTT that no official Node SDK exercises, with MQTT.js and raw clients on ephemeral
// ports (protocol-device.md §2.1, §2.2).

describe('MQTT head edges', () => {
  let hub: HubProcess;
  let ca: string;
  let key: string;

  beforeAll(async () => {
    hub = await startHubProcess({ httpsPort: 0 });
    ca = hubCa(hub.info);
    key = randomBytes(32).toString('base64');
    const authentication = { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } };
    for (const id of ['ws-query', 'evicted', 'plain']) await createDevice(hub.info, id, { authentication });
  });

  afterAll(async () => {
    await hub?.dispose();
  });

  it('serves MQTT over WebSockets on the HTTPS port and ignores a query string on the path (Java SDK)', async () => {
    const client = await mqtt.connectAsync(
      `wss://127.0.0.1:${hub.info.ports.https}/$iothub/websocket?iothub-no-client-cert=true`,
      {
        ca,
        servername: 'localhost',
        wsOptions: { headers: { host: 'localhost' } },
        protocolVersion: 4,
        clientId: 'ws-query',
        username: mqttUsername('localhost', 'ws-query'),
        password: await deviceSasToken('localhost', 'ws-query', key),
        clean: false,
        reconnectPeriod: 0,
      },
    );
    try {
      await client.publishAsync('devices/ws-query/messages/events/%24.mid=ws-1', 'over websockets', { qos: 1 });
    } finally {
      await client.endAsync();
    }
    const events = await readBuiltInEndpoint(hub.info);
    expect(events.find((event) => event.messageId === 'ws-1')?.deviceId).toBe('ws-query');
  });

  it('closes the older connection when the same device connects again (one connection per identity)', async () => {
    const options = {
      port: hub.info.ports.mqtt as number,
      ca,
      clientId: 'evicted',
      username: mqttUsername('localhost', 'evicted'),
      password: await deviceSasToken('localhost', 'evicted', key),
    };
    const first = await RawMqttDevice.connect(options);
    const second = await RawMqttDevice.connect(options);
    await first.closed;
    expect(first.isOpen).toBe(false);
    await second.publish('devices/evicted/messages/events/%24.mid=after-eviction', 'still here', 1);
    expect(second.isOpen).toBe(true);
    await second.close();
  });

  it('answers a CONNECT whose username names another device with a refusal', async () => {
    const device = await RawMqttDevice.open({ port: hub.info.ports.mqtt as number, ca });
    const returnCode = await device
      .sendConnect({
        port: hub.info.ports.mqtt as number,
        ca,
        clientId: 'plain',
        username: mqttUsername('localhost', 'ws-query'),
        password: await deviceSasToken('localhost', 'plain', key),
      })
      .catch(() => -1);
    device.destroy();
    // Identifier rejected (2), bad username or password (4) or not authorized (5): what the SDKs read as
    // Unauthorized (§2.2); a silently closed connection (-1) would leave them retrying.
    expect([2, 4, 5]).toContain(returnCode);
  });
});
