import { randomUUID } from 'node:crypto';
import type { Message } from 'azure-iot-common';
import { Client as DeviceClient } from 'azure-iot-device';
import { Amqp as DeviceAmqp } from 'azure-iot-device-amqp';
import { Mqtt } from 'azure-iot-device-mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeWithin } from './support/close-within';
import { watchProcess } from './support/example-process';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { createDevice, hubCa } from './support/service-rest';

// The official `azure-iothub` `Client` over `Amqp`, unchanged, against the hub as a child process on ephemeral ports
// (protocol-service.md §0.4, §3.1-3.3): the service connection string's HostName carries the AMQP port
// (`localhost:<port>`); the SDK dials `amqps://<HostName>` and puts a token for that audience on `$cbs`. The Client
// has no CA option, so it runs in a child Node process that trusts the hub's CA through NODE_EXTRA_CA_CERTS, as a
// field back end trusting a private CA would. The devices are the official device SDK in this process (its `ca`
// option): one on Mqtt completes its message (MQTT can only complete), one on Amqp rejects its message.

interface FeedbackRecord {
  originalMessageId: string;
  deviceId: string;
  statusCode: string;
  description: string;
  enqueuedTimeUtc: string;
  deviceGenerationId: string;
}

/** What the service script prints on its last line. */
interface ServiceResult {
  records: FeedbackRecord[];
  unknownDeviceError: { name: string; message: string } | null;
  fileNotificationReceiver: boolean;
}

// Runs in the child: send two messages with ack full, collect the feedback for both, try an unknown device.
const serviceScript = `
// The SDKs are CommonJS: Node's ESM loader gives them as default imports only.
import common from 'azure-iot-common';
import iothub from 'azure-iothub';
const { Message } = common;
const { Amqp, Client } = iothub;
const scenario = JSON.parse(process.env.SCENARIO);
const client = Client.fromConnectionString(scenario.connectionString, Amqp);
const call = (operation) => new Promise((resolve, reject) => operation((error, value) => (error ? reject(error) : resolve(value))));
const timer = setTimeout(() => { console.error('timed out waiting for feedback'); process.exit(2); }, 45000);
await client.open();
const records = [];
const receiver = await call((done) => client.getFeedbackReceiver(done));
const allSeen = new Promise((resolve) => {
  receiver.on('message', (message) => {
    records.push(...JSON.parse(message.getData().toString()));
    if (scenario.sends.every((send) => records.some((record) => record.originalMessageId === send.messageId))) resolve();
  });
});
const fileNotifications = await call((done) => client.getFileNotificationReceiver(done));
for (const send of scenario.sends) {
  const message = new Message(send.body);
  message.messageId = send.messageId;
  message.ack = 'full';
  message.properties.add('scenario', 'service-amqp');
  await client.send(send.deviceId, message);
}
await allSeen;
let unknownDeviceError = null;
try {
  await client.send(scenario.unknownDevice, new Message('lost'));
} catch (error) {
  unknownDeviceError = { name: error.name, message: error.message };
}
await client.close();
clearTimeout(timer);
console.log('RESULT ' + JSON.stringify({ records, unknownDeviceError, fileNotificationReceiver: Boolean(fileNotifications) }));
`;

let hub: HubProcess;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  hub = await startHubProcess({ httpsPort: 0 });
  expect(hub.info.ports.amqp, 'hub.json must carry the AMQP port').toBeGreaterThan(0);
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
  port: number | null,
  settle: 'complete' | 'reject',
): Promise<{ received: string[] }> {
  const identity = await createDevice(hub.info, deviceId);
  const client = DeviceClient.fromConnectionString(
    `HostName=localhost:${port};DeviceId=${deviceId};SharedAccessKey=${identity.authentication.symmetricKey?.primaryKey}`,
    transport,
  );
  closers.push(() => client.close());
  await client.setOptions({ ca: hubCa(hub.info) });
  const received: string[] = [];
  client.on('error', () => undefined);
  client.on('message', (message: Message) => {
    received.push(String(message.messageId));
    void (settle === 'complete' ? client.complete(message) : client.reject(message)).catch(() => undefined);
  });
  await client.open();
  return { received };
}

describe('azure-iothub Client over Amqp (ephemeral port)', () => {
  it('sends cloud-to-device messages with ack full and receives Success and Rejected feedback', async () => {
    const completer = await startDevice('amqp-completes', Mqtt, hub.info.ports.mqtt, 'complete');
    const rejecter = await startDevice('amqp-rejects', DeviceAmqp, hub.info.ports.amqp, 'reject');
    const completedId = randomUUID();
    const sends = [
      { deviceId: 'amqp-completes', messageId: completedId, body: 'please complete' },
      { deviceId: 'amqp-rejects', messageId: 'amqp-reject-1', body: 'please reject' },
    ];
    const connectionString = hub.info.serviceConnectionString.replace(
      /HostName=[^;]+/,
      `HostName=localhost:${hub.info.ports.amqp}`,
    );
    const service = watchProcess(process.execPath, ['--input-type=module', '-e', serviceScript], {
      cwd: new URL('..', import.meta.url).pathname,
      env: {
        NODE_EXTRA_CA_CERTS: hub.info.caCertificate,
        SCENARIO: JSON.stringify({ connectionString, sends, unknownDevice: 'amqp-nobody' }),
      },
    });
    closers.push(() => service.kill());
    const exit = await service.waitForExit(55_000);
    expect(exit.code, service.output()).toBe(0);
    const line = /^RESULT (.*)$/m.exec(service.output())?.[1];
    const result = JSON.parse(line ?? 'null') as ServiceResult;

    expect(completer.received).toEqual([completedId]);
    expect(rejecter.received).toEqual(['amqp-reject-1']);
    expect(result.records.find((record) => record.originalMessageId === completedId)).toMatchObject({
      deviceId: 'amqp-completes',
      statusCode: 'Success',
      description: 'Success',
      enqueuedTimeUtc: expect.stringMatching(/Z$/),
    });
    expect(result.records.find((record) => record.originalMessageId === 'amqp-reject-1')).toMatchObject({
      deviceId: 'amqp-rejects',
      statusCode: 'Rejected',
    });
    expect(result.unknownDeviceError?.name).toBe('DeviceNotFoundError');
    expect(result.fileNotificationReceiver).toBe(true);
  });
});
