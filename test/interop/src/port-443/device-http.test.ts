import { randomUUID } from 'node:crypto';
import { certificateThumbprint, createSelfSignedCertificate } from '@fieldhub/auth';
import { NoRetry } from 'azure-iot-common';
import { Client as DeviceClient, Message } from 'azure-iot-device';
import { Http } from 'azure-iot-device-http';
import { Registry, Amqp as ServiceAmqp, Client as ServiceClient } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EndpointEventJson, isTelemetry, readBuiltInEndpoint } from '../support/built-in-endpoint';
import { closeWithin } from '../support/close-within';
import { type HubProcess, startHubProcess } from '../support/hub-process';

// The official `azure-iot-device` with `azure-iot-device-http`, unchanged, against the hub as a child process: the
// scenarios HTTPS supports (protocol-device.md §4.1, §4.2): telemetry with properties, batches, cloud-to-device
// complete / reject / abandon with feedback, refused credentials, X.509. Http always dials https://<HostName>:443, so
// this suite binds 443 (port-443/); the hub's CA is trusted through NODE_EXTRA_CA_CERTS (global-setup.ts). Feedback is
// read with the official `azure-iothub` Client over Amqp, on the hub's AMQP port (HostName carries it).

interface FeedbackRecord {
  originalMessageId: string;
  deviceId: string;
  statusCode: string;
  description: string;
}

let hub: HubProcess;
let registry: Registry;
let service: ServiceClient;
const closers: (() => Promise<unknown>)[] = [];
const feedback: FeedbackRecord[] = [];
let feedbackArrived: (() => void) | undefined;

beforeAll(async () => {
  hub = await startHubProcess();
  registry = Registry.fromConnectionString(hub.info.serviceConnectionString);
  service = ServiceClient.fromConnectionString(
    hub.info.serviceConnectionString.replace(/HostName=[^;]+/, `HostName=localhost:${hub.info.ports.amqp}`),
    ServiceAmqp,
  );
  closers.push(() => service.close());
  await service.open();
  const receiver = await new Promise<NodeJS.EventEmitter>((resolve, reject) => {
    service.getFeedbackReceiver((error, found) => (error || !found ? reject(error) : resolve(found)));
  });
  receiver.on('message', (message: Message) => {
    feedback.push(...(JSON.parse(message.getData().toString()) as FeedbackRecord[]));
    feedbackArrived?.();
  });
});

afterAll(async () => {
  // A client stuck in a request must not keep the hub (and its port 443) alive: each close gets 10 s.
  await closeWithin(closers, 10_000);
  await hub?.dispose();
});

async function createSasDevice(deviceId: string): Promise<string> {
  const { responseBody } = await registry.create({ deviceId });
  const key = responseBody.authentication?.symmetricKey?.primaryKey;
  if (!key) throw new Error(`the registry made no key for ${deviceId}`);
  return key;
}

/** An Http device client that is closed when the suite ends. */
function httpClient(connectionString: string): DeviceClient {
  const client = DeviceClient.fromConnectionString(connectionString, Http);
  // Refusals must surface at once, not after the SDK's retries.
  client.setRetryPolicy(new NoRetry());
  closers.push(() => client.close());
  return client;
}

async function telemetryOf(deviceId: string): Promise<EndpointEventJson[]> {
  const events = await readBuiltInEndpoint(hub.info);
  return events.filter((event) => isTelemetry(event) && event.deviceId === deviceId);
}

function bytesOf(event: EndpointEventJson): Buffer {
  return Buffer.from(event.body, event.bodyEncoding === 'base64' ? 'base64' : 'utf8');
}

/** Waits for the feedback record of one cloud-to-device message (the feedback link pushes batches as they come). */
async function feedbackFor(originalMessageId: string): Promise<FeedbackRecord> {
  for (;;) {
    const record = feedback.find((candidate) => candidate.originalMessageId === originalMessageId);
    if (record) return record;
    await new Promise<void>((resolve) => {
      feedbackArrived = resolve;
    });
  }
}

/** The cloud-to-device messages the client receives by polling, in order, unsettled. */
function cloudToDeviceInbox(client: DeviceClient): { next(): Promise<Message> } {
  const arrived: Message[] = [];
  const waiting: ((message: Message) => void)[] = [];
  client.on('message', (message: Message) => {
    const waiter = waiting.shift();
    if (waiter) waiter(message);
    else arrived.push(message);
  });
  return {
    next: () => {
      const message = arrived.shift();
      return message ? Promise.resolve(message) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

async function sendCloudToDevice(deviceId: string, messageId: string, body: string): Promise<void> {
  const message = new Message(body);
  message.messageId = messageId;
  message.correlationId = `corr-${messageId}`;
  message.ack = 'full';
  message.properties.add('color', 'blue');
  await service.send(deviceId, message);
}

/**
 * The certificate options of an X.509 Http client. azure-iot-device-http 1.14.4's setOptions calls back only when the
 * options also carry a receive policy (for `{ cert, key }` alone the promise never settles), so the default one is
 * given along.
 */
function x509Options(cert: string, key: string): { cert: string; key: string; http: { receivePolicy: object } } {
  return { cert, key, http: { receivePolicy: { interval: 1 } } };
}

async function firstError(operation: () => Promise<unknown>): Promise<Error> {
  try {
    await operation();
  } catch (error) {
    return error as Error;
  }
  throw new Error('the hub accepted the request');
}

describe('azure-iot-device over Http', () => {
  it('sends telemetry that reaches the built-in endpoint with its properties and system properties', async () => {
    const deviceId = 'http-telemetry';
    const key = await createSasDevice(deviceId);
    const client = httpClient(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key}`);
    await client.open();
    const messageId = `mid-${randomUUID()}`;
    const message = new Message(JSON.stringify({ temperature: 21.5 }));
    message.messageId = messageId;
    message.correlationId = 'cid-1';
    message.contentType = 'application/json';
    message.contentEncoding = 'utf-8';
    message.properties.add('alert', 'high-temp');
    message.properties.add('n', '1');
    await client.sendEvent(message);

    const [event] = await telemetryOf(deviceId);
    expect(event).toMatchObject({
      deviceId,
      moduleId: null,
      messageId,
      correlationId: 'cid-1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      properties: { alert: 'high-temp', n: '1' },
      body: '{"temperature":21.5}',
    });
    expect(event?.systemProperties).toMatchObject({ 'iothub-connection-device-id': deviceId });
    expect(String(event?.systemProperties['iothub-connection-auth-method'])).toContain('"sas"');
    expect(event?.systemProperties['iothub-enqueuedtime']).toBeTruthy();
    await client.close();
  });

  it('gets ArgumentError for a property value outside the HTTPS charset (a space), as Azure documents', async () => {
    const deviceId = 'http-charset';
    const key = await createSasDevice(deviceId);
    const client = httpClient(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key}`);
    const message = new Message('x');
    message.properties.add('alert', 'high temp');
    const error = await firstError(() => client.sendEvent(message));
    expect(error.name).toBe('ArgumentError');
    expect(await telemetryOf(deviceId)).toEqual([]);
    await client.close();
  });

  it('sends a batch whose messages reach the built-in endpoint in order, with their properties', async () => {
    const deviceId = 'http-batch';
    const key = await createSasDevice(deviceId);
    const client = httpClient(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key}`);
    const first = new Message('a');
    first.properties.add('index', '1');
    const second = new Message(Buffer.from([0, 1, 2, 255]));
    second.properties.add('index', '2');
    await client.sendEventBatch([first, second, new Message('c')]);
    const events = await telemetryOf(deviceId);
    expect(events.map((event) => event.properties)).toEqual([{ index: '1' }, { index: '2' }, {}]);
    // No content type: the SSE extension shows the bodies as base64.
    expect(events.map((event) => [...bytesOf(event)])).toEqual([[0x61], [0, 1, 2, 255], [0x63]]);
    await client.close();
  });

  it('receives cloud-to-device messages by polling and completes, rejects and abandons them, with feedback', async () => {
    const deviceId = 'http-c2d';
    const key = await createSasDevice(deviceId);
    const client = httpClient(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key}`);
    const inbox = cloudToDeviceInbox(client);
    await client.open();

    await sendCloudToDevice(deviceId, 'http-complete', 'hello 1');
    const completed = await inbox.next();
    expect(completed).toMatchObject({ messageId: 'http-complete', correlationId: 'corr-http-complete' });
    expect(completed.getData().toString()).toBe('hello 1');
    expect(completed.lockToken).toMatch(/^[0-9a-f-]{36}$/);
    expect(completed.properties.getValue('iothub-app-color')).toBe('blue');
    expect((await client.complete(completed)).constructor.name).toBe('MessageCompleted');
    expect(await feedbackFor('http-complete')).toMatchObject({ deviceId, statusCode: 'Success' });

    await sendCloudToDevice(deviceId, 'http-reject', 'hello 2');
    const rejected = await inbox.next();
    expect(rejected.messageId).toBe('http-reject');
    expect((await client.reject(rejected)).constructor.name).toBe('MessageRejected');
    expect(await feedbackFor('http-reject')).toMatchObject({ deviceId, statusCode: 'Rejected' });

    await sendCloudToDevice(deviceId, 'http-abandon', 'hello 3');
    const abandoned = await inbox.next();
    expect(abandoned.messageId).toBe('http-abandon');
    expect((await client.abandon(abandoned)).constructor.name).toBe('MessageAbandoned');
    // Abandoned: the next poll delivers it again, under a new lock.
    const redelivered = await inbox.next();
    expect(redelivered.messageId).toBe('http-abandon');
    expect(redelivered.lockToken).not.toBe(abandoned.lockToken);
    await client.complete(redelivered);
    expect(await feedbackFor('http-abandon')).toMatchObject({ deviceId, statusCode: 'Success' });
    // The lock of the abandoned delivery is gone.
    await expect(client.complete(abandoned)).rejects.toThrow();
    await client.close();
  });

  it('refuses a wrong key and an unknown device with UnauthorizedError', async () => {
    const deviceId = 'http-refused';
    await createSasDevice(deviceId);
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    const wrong = httpClient(`HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${wrongKey}`);
    expect((await firstError(() => wrong.sendEvent(new Message('no')))).name).toBe('UnauthorizedError');
    const unknown = httpClient(`HostName=localhost;DeviceId=http-nobody;SharedAccessKey=${wrongKey}`);
    expect((await firstError(() => unknown.sendEvent(new Message('no')))).name).toBe('UnauthorizedError');
    expect(await telemetryOf(deviceId)).toEqual([]);
    await wrong.close();
    await unknown.close();
  });

  it('authenticates a self-signed X.509 device by its client certificate', async () => {
    const deviceId = 'http-x509';
    const { certificate, privateKey } = await createSelfSignedCertificate({ commonName: deviceId });
    await registry.create({
      deviceId,
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: { primaryThumbprint: certificateThumbprint(certificate, 'sha1') },
      },
    } as Parameters<Registry['create']>[0]);
    const client = httpClient(`HostName=localhost;DeviceId=${deviceId};x509=true`);
    await client.setOptions(x509Options(certificate, privateKey));
    await client.sendEvent(new Message('signed by a certificate'));
    const [event] = await telemetryOf(deviceId);
    expect(event && bytesOf(event).toString()).toBe('signed by a certificate');
    expect(String(event?.systemProperties['iothub-connection-auth-method'])).toContain('"x509"');

    const other = await createSelfSignedCertificate({ commonName: deviceId });
    const stranger = httpClient(`HostName=localhost;DeviceId=${deviceId};x509=true`);
    await stranger.setOptions(x509Options(other.certificate, other.privateKey));
    expect((await firstError(() => stranger.sendEvent(new Message('no')))).name).toBe('UnauthorizedError');
    await client.close();
    await stranger.close();
  });
});
