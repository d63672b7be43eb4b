import { randomUUID } from 'node:crypto';
import { Message } from 'azure-iot-common';
import { Client as DeviceClient } from 'azure-iot-device';
import { Amqp as DeviceAmqp } from 'azure-iot-device-amqp';
import { Mqtt } from 'azure-iot-device-mqtt';
import { AmqpWs, Registry, Client as ServiceClient } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeWithin } from '../support/close-within';
import { type HubProcess, startHubProcess } from '../support/hub-process';

// The official `azure-iothub` `Client` over `AmqpWs`, unchanged, against the hub as a child process (protocol-service.md
// §3.1-3.3). AmqpWs always dials wss://<HostName>:443/$iothub/websocket, so this suite binds 443 (port-443/); the
// hub's CA is trusted through NODE_EXTRA_CA_CERTS (global-setup.ts). The devices are the official device SDK: one on
// Mqtt completes its message (MQTT can only complete), one on Amqp rejects its message.

interface FeedbackRecord {
  originalMessageId: string;
  deviceId: string;
  statusCode: string;
  description: string;
  enqueuedTimeUtc: string;
  deviceGenerationId: string;
}

let hub: HubProcess;
let registry: Registry;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  hub = await startHubProcess();
  expect(hub.info.ports.amqp, 'hub.json must carry the AMQP port').toBeGreaterThan(0);
  registry = Registry.fromConnectionString(hub.info.serviceConnectionString);
});

afterAll(async () => {
  // A client stuck in a handshake must not keep the hub (and its ports) alive: each close gets 10 s.
  await closeWithin(closers, 10_000);
  await hub?.dispose();
});

/** A registered device on the official SDK that completes or rejects every cloud-to-device message. */
async function startDevice(
  deviceId: string,
  transport: typeof Mqtt | typeof DeviceAmqp,
  hostName: string,
  settle: 'complete' | 'reject',
): Promise<{ received: string[] }> {
  const { responseBody } = await registry.create({ deviceId });
  const key = responseBody.authentication?.symmetricKey?.primaryKey;
  const client = DeviceClient.fromConnectionString(
    `HostName=${hostName};DeviceId=${deviceId};SharedAccessKey=${key}`,
    transport,
  );
  closers.push(() => client.close());
  const received: string[] = [];
  client.on('error', () => undefined);
  client.on('message', (message: Message) => {
    received.push(String(message.messageId));
    void (settle === 'complete' ? client.complete(message) : client.reject(message)).catch(() => undefined);
  });
  await client.open();
  return { received };
}

function getFeedbackReceiver(client: ServiceClient): Promise<NodeJS.EventEmitter> {
  return new Promise((resolve, reject) => {
    client.getFeedbackReceiver((error, receiver) => (error || !receiver ? reject(error) : resolve(receiver)));
  });
}

describe('azure-iothub Client over AmqpWs (port 443)', () => {
  it('sends cloud-to-device messages with ack full and receives Success and Rejected feedback', async () => {
    await startDevice('ws-completes', Mqtt, `localhost:${hub.info.ports.mqtt}`, 'complete');
    await startDevice('ws-rejects', DeviceAmqp, `localhost:${hub.info.ports.amqp}`, 'reject');

    const client = ServiceClient.fromConnectionString(hub.info.serviceConnectionString, AmqpWs);
    closers.push(() => client.close());
    await client.open();
    const records: FeedbackRecord[] = [];
    let wake: (() => void) | undefined;
    const receiver = await getFeedbackReceiver(client);
    receiver.on('message', (message: Message) => {
      records.push(...(JSON.parse(message.getData().toString()) as FeedbackRecord[]));
      wake?.();
    });

    const completedId = randomUUID();
    const completed = new Message('please complete');
    completed.messageId = completedId;
    completed.ack = 'full';
    completed.properties.add('color', 'blue');
    await client.send('ws-completes', completed);
    const rejected = new Message('please reject');
    rejected.messageId = 'ws-reject-1';
    rejected.ack = 'full';
    await client.send('ws-rejects', rejected);

    while (!['ws-completes', 'ws-rejects'].every((id) => records.some((record) => record.deviceId === id))) {
      await new Promise<void>((resolve) => (wake = resolve));
    }
    expect(records.find((record) => record.deviceId === 'ws-completes')).toMatchObject({
      originalMessageId: completedId,
      statusCode: 'Success',
      description: 'Success',
    });
    expect(records.find((record) => record.deviceId === 'ws-rejects')).toMatchObject({
      originalMessageId: 'ws-reject-1',
      statusCode: 'Rejected',
    });

    await expect(client.send('ws-nobody', new Message('lost'))).rejects.toMatchObject({
      name: 'DeviceNotFoundError',
    });
  });
});
