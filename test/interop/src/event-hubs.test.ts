import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubJson, type HubProcess, startHubProcess } from './support/hub-process';
import { deviceSasToken, mqttUsername } from './support/raw-mqtt-device';
import { createDevice, hubCa } from './support/service-rest';

// The official @azure/event-hubs 6 EventHubConsumerClient, unchanged, against the hub's built-in endpoint
// (protocol-service.md §4), given nothing but hub.json's eventHubConnectionString; telemetry sent by devices over
// MQTT (MQTT.js). The hub runs as a child process through the public CLI.
//
// TLS trust: @azure/event-hubs has no option for a CA (core-amqp opens the TLS socket itself with Node's defaults),
// so the client runs in a child Node process started with NODE_EXTRA_CA_CERTS = the hub's CA certificate (hub.json
// caCertificate), which is how a user trusts a private CA for the Azure SDKs. Certificate verification stays on:
// the hub's certificate must chain to that CA and name `localhost`.

const interopRoot = fileURLToPath(new URL('..', import.meta.url));

// One device per partition of the hub's 4 (FNV-1a of the device id, modulo 4: 1, 2, 3, 0).
const deviceIds = ['eh-interop-0', 'eh-interop-1', 'eh-interop-2', 'eh-interop-3'];

/** An event as the client script reports it (EventHubConsumerClient's ReceivedEventData, JSON-safe). */
interface ReceivedEvent {
  partitionId: string;
  body: string;
  messageId: unknown;
  correlationId: unknown;
  contentType: unknown;
  properties: Record<string, unknown>;
  systemProperties: Record<string, unknown>;
  sequenceNumber: number;
  offset: string;
  enqueuedTimeUtc: string;
}

/** What the client script reports. */
interface ClientReport {
  partitionIds?: string[];
  eventHub?: { name: string; createdOn: string; partitionIds: string[] };
  partitions?: {
    partitionId: string;
    eventHubName: string;
    beginningSequenceNumber: number;
    lastEnqueuedSequenceNumber: number;
    lastEnqueuedOffset: string;
    lastEnqueuedOnUtc: string;
    isEmpty: boolean;
  }[];
  events?: ReceivedEvent[];
  errors: string[];
  /** The error codes each ownerLevel reader saw (with `epochs`). */
  epochs?: { first: string[]; second: string[]; third: string[] };
  /** `context.lastEnqueuedEventProperties` after the last batch (with `trackLastEnqueued`). */
  lastEnqueued?: { sequenceNumber: number; offset: string; enqueuedOn: string; retrievedOn: string };
  /** The client's warnings (stderr), for failure messages. */
  log?: string;
}

/** What the client script does: read the properties, then read until every expected message id was seen. */
interface ClientPlan {
  connectionString: string;
  consumerGroup?: string;
  properties?: boolean;
  /** Read (every partition, or `partitionId`) until these message ids arrived. */
  expectMessageIds?: string[];
  /** Open three ownerLevel readers of partition 0 (1, 2, then 1) and report the errors each saw. */
  epochs?: boolean;
  /** Read until the lifecycle event of this device arrived. */
  expectLifecycleOf?: string;
  partitionId?: string;
  /** Start position: a sequence number to resume after (exclusive, as a checkpoint), else the earliest event. */
  afterSequenceNumber?: number;
  /** Start position: events enqueued after this time (ISO), instead. */
  enqueuedAfter?: string;
  /** Ask for the partition's last enqueued event with every batch (`trackLastEnqueuedEventProperties`). */
  trackLastEnqueued?: boolean;
}

// The client, as a user would write it. ESM, resolved from test/interop (where @azure/event-hubs is installed).
const clientScript = `
import { EventHubConsumerClient, earliestEventPosition, latestEventPosition } from '@azure/event-hubs';
const plan = JSON.parse(process.env.EVENT_HUBS_PLAN);
const report = { errors: [] };
// A client bug must not lose the report: the test prints what went wrong.
process.on('uncaughtException', (error) => {
  report.errors.push('uncaught: ' + error.message);
  process.stdout.write(JSON.stringify(report));
  process.exit(1);
});
// A refused token or a silent hub fails fast with the client's own error instead of its two-minute retries.
const client = new EventHubConsumerClient(plan.consumerGroup ?? '$Default', plan.connectionString, {
  retryOptions: { maxRetries: 1, timeoutInMs: 15000 },
});
const watchdog = setTimeout(() => {
  report.errors.push('the client did not finish within 50 s');
  process.stdout.write(JSON.stringify(report));
  process.exit(1);
}, 50000);
try {
  if (plan.properties) {
    report.partitionIds = await client.getPartitionIds();
    report.eventHub = await client.getEventHubProperties();
    report.partitions = [];
    for (const id of report.partitionIds) report.partitions.push(await client.getPartitionProperties(id));
  }
  if (plan.epochs) {
    // Three readers of partition 0 as three processes would be: ownerLevel 1, then 2 (takes over), then 1 again.
    const clients = [1, 2, 3].map(() => new EventHubConsumerClient('$Default', plan.connectionString));
    const reader = (client, ownerLevel, errors) =>
      new Promise((resolve) => {
        const subscription = client.subscribe(
          '0',
          {
            processEvents: async () => resolve(subscription),
            processError: async (error) => {
              // core-amqp's MessagingError carries the condition's error name as its code.
              errors.push(error.code ?? error.name);
              resolve(subscription);
            },
          },
          { startPosition: latestEventPosition, ownerLevel, maxWaitTimeInSeconds: 1 },
        );
      });
    const first = [];
    const second = [];
    const third = [];
    const subscriptions = [await reader(clients[0], 1, first)];
    const stolen = new Promise((resolve) => {
      const check = setInterval(() => first.length > 0 && (clearInterval(check), resolve()), 50);
    });
    subscriptions.push(await reader(clients[1], 2, second));
    await stolen;
    subscriptions.push(await reader(clients[2], 1, third));
    report.epochs = { first, second, third };
    for (const subscription of subscriptions) await subscription.close();
    for (const client of clients) await client.close();
  }
  if (plan.expectMessageIds || plan.expectLifecycleOf) {
    const waiting = new Set(plan.expectMessageIds ?? []);
    if (plan.expectLifecycleOf) waiting.add('lifecycle:' + plan.expectLifecycleOf);
    report.events = [];
    const startPosition =
      plan.afterSequenceNumber !== undefined
        ? { sequenceNumber: plan.afterSequenceNumber }
        : plan.enqueuedAfter !== undefined
          ? { enqueuedOn: new Date(plan.enqueuedAfter) }
          : earliestEventPosition;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('not every expected event arrived within 40 s: ' + [...waiting])), 40000);
      const handlers = {
        processEvents: async (events, context) => {
          if (plan.trackLastEnqueued && events.length > 0) report.lastEnqueued = { ...context.lastEnqueuedEventProperties };
          for (const event of events) {
            report.events.push({
              partitionId: context.partitionId,
              body: Buffer.from(event.body).toString('utf8'),
              messageId: event.messageId,
              correlationId: event.correlationId,
              contentType: event.contentType,
              properties: event.properties ?? {},
              systemProperties: event.systemProperties ?? {},
              sequenceNumber: event.sequenceNumber,
              offset: event.offset,
              enqueuedTimeUtc: event.enqueuedTimeUtc,
            });
            waiting.delete(event.messageId);
            if (event.systemProperties?.['iothub-message-source'] === 'deviceLifecycleEvents') {
              waiting.delete('lifecycle:' + event.properties?.deviceId);
            }
          }
          if (waiting.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        },
        processError: async (error, context) => {
          report.errors.push((context.partitionId ?? '') + ': ' + (error.name ?? '') + ': ' + error.message);
        },
      };
      const options = {
        startPosition,
        maxBatchSize: 50,
        maxWaitTimeInSeconds: 1,
        skipParsingBodyAsJson: true,
        trackLastEnqueuedEventProperties: plan.trackLastEnqueued === true,
      };
      const subscription =
        plan.partitionId === undefined
          ? client.subscribe(handlers, options)
          : client.subscribe(plan.partitionId, handlers, options);
      report.close = () => subscription.close();
    });
    await report.close();
    delete report.close;
  }
} catch (error) {
  report.errors.push('fatal: ' + (error.name ?? '') + ': ' + error.message);
} finally {
  clearTimeout(watchdog);
  await client.close();
}
process.stdout.write(JSON.stringify(report));
`;

/** Runs the client script in a child process that trusts the hub's CA; resolves with its report. */
function runClient(info: HubJson, plan: ClientPlan): Promise<ClientReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '--eval', clientScript], {
      cwd: interopRoot,
      env: {
        ...process.env,
        NODE_EXTRA_CA_CERTS: info.caCertificate,
        EVENT_HUBS_PLAN: JSON.stringify(plan),
        // The client's warnings (a refused token, a detached link) end up in the failure message.
        AZURE_LOG_LEVEL: 'warning',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        resolve({ ...(JSON.parse(stdout) as ClientReport), log: stderr.slice(-4000) });
      } catch {
        reject(new Error(`the Event Hubs client exited with ${code}:\n${stdout}\n${stderr}`));
      }
    });
  });
}

describe('@azure/event-hubs EventHubConsumerClient against the built-in endpoint', () => {
  let hub: HubProcess;
  let connectionString: string;
  const devices = new Map<string, mqtt.MqttClient>();

  /** Sends telemetry from a device over MQTT (QoS 1: acknowledged once durable). */
  const send = async (deviceId: string, messageId: string, body: string, bag: Record<string, string> = {}) => {
    const client = devices.get(deviceId) as mqtt.MqttClient;
    const properties = new URLSearchParams({ '$.mid': messageId, ...bag }).toString();
    await client.publishAsync(`devices/${deviceId}/messages/events/${properties}`, body, { qos: 1 });
  };

  beforeAll(async () => {
    hub = await startHubProcess({ httpsPort: 0 });
    const info = hub.info as HubJson & { eventHubConnectionString?: string };
    if (!info.eventHubConnectionString) throw new Error('hub.json has no eventHubConnectionString');
    connectionString = info.eventHubConnectionString;
    const key = randomBytes(32).toString('base64');
    const authentication = { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } };
    for (const deviceId of deviceIds) {
      await createDevice(hub.info, deviceId, { authentication });
      const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${hub.info.ports.mqtt}`, {
        ca: hubCa(hub.info),
        servername: 'localhost',
        protocolVersion: 4,
        clientId: deviceId,
        username: mqttUsername('localhost', deviceId),
        password: await deviceSasToken('localhost', deviceId, key),
        reconnectPeriod: 0,
      });
      devices.set(deviceId, client);
    }
  });

  afterAll(async () => {
    for (const client of devices.values()) await client.endAsync();
    await hub?.dispose();
  });

  it('reads telemetry with its properties and system properties from every partition', async () => {
    const runId = randomBytes(4).toString('hex');
    const expected = deviceIds.map((deviceId) => `${runId}-${deviceId}`);
    for (const [index, deviceId] of deviceIds.entries()) {
      await send(deviceId, expected[index] as string, JSON.stringify({ index }), {
        '$.cid': `corr-${index}`,
        '$.ct': 'application/json',
        '$.ce': 'utf-8',
        color: 'blue',
      });
    }
    const report = await runClient(hub.info, { connectionString, expectMessageIds: expected });
    expect(report.errors, report.log).toEqual([]);
    const events = (report.events ?? []).filter((event) => expected.includes(String(event.messageId)));
    expect(new Set(events.map((event) => event.partitionId))).toEqual(new Set(['0', '1', '2', '3']));
    for (const [index, deviceId] of deviceIds.entries()) {
      const event = events.find((candidate) => candidate.messageId === expected[index]);
      expect(event, deviceId).toMatchObject({
        body: JSON.stringify({ index }),
        correlationId: `corr-${index}`,
        contentType: 'application/json',
        properties: { color: 'blue' },
        offset: String(event?.sequenceNumber),
      });
      expect(event?.systemProperties).toMatchObject({
        'iothub-connection-device-id': deviceId,
        'iothub-connection-auth-method': expect.stringContaining('"type":"sas"'),
        'iothub-connection-auth-generation-id': expect.any(String),
        'iothub-message-source': 'Telemetry',
        'iothub-enqueuedtime': new Date(event?.enqueuedTimeUtc ?? 0).getTime(),
        contentEncoding: 'utf-8',
        messageId: expected[index],
      });
    }
  });

  it('reads hub events too: the lifecycle event of a new device, with its properties and system properties', async () => {
    const runId = randomBytes(4).toString('hex');
    const deviceId = `eh-lifecycle-${runId}`;
    await createDevice(hub.info, deviceId);
    // Nothing else to wait for: read until the lifecycle event of this device, wherever it landed.
    const report = await runClient(hub.info, { connectionString, expectLifecycleOf: deviceId });
    expect(report.errors, report.log).toEqual([]);
    const event = report.events?.find(
      (candidate) =>
        candidate.systemProperties['iothub-message-source'] === 'deviceLifecycleEvents' &&
        candidate.properties.deviceId === deviceId,
    );
    expect(event?.properties).toMatchObject({
      opType: 'createDeviceIdentity',
      'iothub-message-schema': 'deviceLifecycleNotification',
      hubName: new URLSearchParams(connectionString.replaceAll(';', '&')).get('EntityPath'),
    });
    expect(event?.systemProperties['iothub-connection-device-id']).toBe(deviceId);
    expect(event?.contentType).toBe('application/json');
    expect(JSON.parse(event?.body ?? '{}')).toMatchObject({ deviceId });
  });

  it('resumes after a saved sequence number or enqueued time, with the last enqueued event tracked', async () => {
    const deviceId = deviceIds[2] as string;
    const runId = randomBytes(4).toString('hex');
    await send(deviceId, `${runId}-before`, 'before');
    const first = await runClient(hub.info, { connectionString, expectMessageIds: [`${runId}-before`] });
    expect(first.errors, first.log).toEqual([]);
    const saved = first.events?.find((event) => event.messageId === `${runId}-before`) as ReceivedEvent;
    await send(deviceId, `${runId}-after-1`, 'after 1');
    await send(deviceId, `${runId}-after-2`, 'after 2');
    const resumed = await runClient(hub.info, {
      connectionString,
      partitionId: saved.partitionId,
      afterSequenceNumber: saved.sequenceNumber,
      trackLastEnqueued: true,
      expectMessageIds: [`${runId}-after-1`, `${runId}-after-2`],
    });
    expect(resumed.errors, resumed.log).toEqual([]);
    expect(resumed.events?.map((event) => event.messageId)).toEqual([`${runId}-after-1`, `${runId}-after-2`]);
    expect(resumed.events?.[0]?.sequenceNumber).toBe(saved.sequenceNumber + 1);
    // The partition's last enqueued event came with the batch (the receiver runtime metric).
    const last = resumed.events?.[1] as ReceivedEvent;
    expect(resumed.lastEnqueued).toMatchObject({ sequenceNumber: last.sequenceNumber, offset: last.offset });
    expect(resumed.lastEnqueued?.enqueuedOn).toBe(last.enqueuedTimeUtc);

    // The same from the saved event's enqueued time (events enqueued strictly after it).
    const byTime = await runClient(hub.info, {
      connectionString,
      partitionId: saved.partitionId,
      enqueuedAfter: saved.enqueuedTimeUtc,
      expectMessageIds: [`${runId}-after-1`, `${runId}-after-2`],
    });
    expect(byTime.errors, byTime.log).toEqual([]);
    expect(byTime.events?.map((event) => event.messageId)).toEqual([`${runId}-after-1`, `${runId}-after-2`]);
  });

  it('gives a partition to the reader with the higher ownerLevel (ReceiverDisconnectedError for the others)', async () => {
    const report = await runClient(hub.info, { connectionString, epochs: true });
    expect(report.errors, report.log).toEqual([]);
    expect(report.epochs?.first[0]).toBe('ReceiverDisconnectedError');
    expect(report.epochs?.second).toEqual([]);
    expect(report.epochs?.third[0]).toBe('ReceiverDisconnectedError');
  });

  it('lists partitions and describes the event hub and each partition', async () => {
    const report = await runClient(hub.info, { connectionString, properties: true });
    expect(report.errors, report.log).toEqual([]);
    const hubName = new URLSearchParams(connectionString.replaceAll(';', '&')).get('EntityPath');
    expect(report.partitionIds).toEqual(['0', '1', '2', '3']);
    expect(report.eventHub?.name).toBe(hubName);
    expect(report.eventHub?.partitionIds).toEqual(['0', '1', '2', '3']);
    expect(Number.isNaN(Date.parse(report.eventHub?.createdOn ?? ''))).toBe(false);
    for (const partition of report.partitions ?? []) {
      // Every partition holds telemetry by now (the first test sent to each).
      expect(partition).toMatchObject({ eventHubName: hubName, isEmpty: false });
      expect(partition.lastEnqueuedOffset).toBe(String(partition.lastEnqueuedSequenceNumber));
      expect(partition.lastEnqueuedSequenceNumber).toBeGreaterThanOrEqual(partition.beginningSequenceNumber);
    }
    expect(report.partitions?.map((partition) => partition.partitionId)).toEqual(['0', '1', '2', '3']);
  });
});
