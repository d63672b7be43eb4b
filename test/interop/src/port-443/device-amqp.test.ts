import { randomBytes, randomUUID } from 'node:crypto';
import { certificateThumbprint, createSelfSignedCertificate, type ThumbprintAlgorithm } from '@fieldhub/auth';
import { NoRetry } from 'azure-iot-common';
import {
  Client as DeviceClient,
  Message,
  ModuleClient,
  SharedAccessKeyAuthenticationProvider,
  type Twin,
} from 'azure-iot-device';
import { Amqp, AmqpWs } from 'azure-iot-device-amqp';
import { Registry, Client as ServiceClient } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTelemetry, readBuiltInEndpoint } from '../support/built-in-endpoint';
import { freePort } from '../support/free-port';
import { type HubProcess, startHubProcess } from '../support/hub-process';
import { deviceSasToken } from '../support/raw-mqtt-device';
import { apiVersion, serviceCall } from '../support/service-rest';

// The official `azure-iot-device` with `azure-iot-device-amqp`, unchanged, against the hub as a child process: the
// scenarios of device-mqtt.test.ts plus what only AMQP can do (cloud-to-device reject and abandon, SAS renewal by a
// CBS put-token on the live connection), protocol-device.md §3. AmqpWs always dials
// wss://<HostName>:443/$iothub/websocket, so this suite binds 443 (port-443/). Plain Amqp dials amqps://<HostName>
// verbatim: the HostName carries the hub's AMQP port (`localhost:<port>`, as in captures/amqp-amqp.txt), and the
// port then appears in the SAS `sr` and the CBS audience. The hub's CA is trusted through NODE_EXTRA_CA_CERTS
// (global-setup.ts), as a field device would trust a real hub's. The service side uses the hub's REST API.

type TransportName = 'Amqp' | 'AmqpWs';

interface TransportCase {
  name: TransportName;
  transport: typeof Amqp | typeof AmqpWs;
  /** The thumbprint the X.509 device is registered with (both are accepted by IoT Hub). */
  thumbprintAlgorithm: ThumbprintAlgorithm;
}

const transports: TransportCase[] = [
  { name: 'Amqp', transport: Amqp, thumbprintAlgorithm: 'sha1' },
  { name: 'AmqpWs', transport: AmqpWs, thumbprintAlgorithm: 'sha256' },
];

let hub: HubProcess;
let amqpPort: number;
let registry: Registry;

beforeAll(async () => {
  // A fixed AMQP port, so that the hub comes back on it after a restart (the HTTPS port is 443 anyway). The CLI
  // takes the last --amqp-port it is given.
  amqpPort = await freePort();
  hub = await startHubProcess({ extraArgs: ['--amqp-port', String(amqpPort)] });
  expect(hub.info.ports.amqp, 'hub.json must carry the AMQP-over-TLS port').toBe(amqpPort);
  registry = Registry.fromConnectionString(hub.info.serviceConnectionString);
});

afterAll(async () => {
  await hub?.dispose();
});

/** The HostName a device connection string carries for this transport. */
function hostNameFor(transport: TransportName): string {
  return transport === 'Amqp' ? `localhost:${amqpPort}` : 'localhost';
}

async function createSasDevice(deviceId: string, status: 'enabled' | 'disabled' = 'enabled'): Promise<string> {
  const { responseBody } = await registry.create({ deviceId, status });
  const key = responseBody.authentication?.symmetricKey?.primaryKey;
  if (!key) throw new Error(`the registry made no key for ${deviceId}`);
  return key;
}

function connectionString(transport: TransportName, deviceId: string, key: string): string {
  return `HostName=${hostNameFor(transport)};DeviceId=${deviceId};SharedAccessKey=${key}`;
}

/** Runs `body` with an open client and closes it afterwards, whatever happens. */
async function withClient<T, C extends DeviceClient | ModuleClient>(
  client: C,
  body: (client: C) => Promise<T>,
): Promise<T> {
  try {
    await client.open();
    return await body(client);
  } finally {
    await client.close().catch(() => {});
  }
}

/** Waits until the hub's registry shows no cloud-to-device message queued for the device. */
async function settledAtHub(deviceId: string): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt += 1) {
    const { responseBody } = await registry.get(deviceId);
    if (Number(responseBody.cloudToDeviceMessageCount) === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${deviceId} still has queued cloud-to-device messages`);
}

/** Sends a cloud-to-device message through the hub's REST extension (independent of the AMQP service links). */
async function sendCloudToDevice(deviceId: string, messageId: string, body: string, ack = 'none'): Promise<void> {
  await serviceCall(hub.info, 'POST', `/fieldhub/devices/${deviceId}/messages/devicebound`, [202], {
    body,
    headers: {
      'content-type': 'text/plain',
      'iothub-messageid': messageId,
      'iothub-correlationid': `corr-${messageId}`,
      'iothub-ack': ack,
      'iothub-contentencoding': 'utf-8',
      'iothub-app-color': 'blue',
    },
  });
}

interface FeedbackRecordJson {
  originalMessageId: string;
  deviceId: string;
  statusCode: string;
  description: string;
}

/**
 * Waits for the feedback record of one cloud-to-device message, completing every batch it reads. The SDK settles a
 * delivery without waiting for the hub (settled=true on the disposition), so the record is polled for (bounded by
 * attempts, not asserted on time).
 */
async function feedbackFor(originalMessageId: string): Promise<FeedbackRecordJson> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const response = await serviceCall(
      hub.info,
      'GET',
      `/messages/serviceBound/feedback?api-version=${apiVersion}`,
      [200, 204],
    );
    if (response.status === 200) {
      const records = response.json<FeedbackRecordJson[]>();
      const lockToken = String(response.headers.etag ?? '').replace(/"/g, '');
      await serviceCall(
        hub.info,
        'DELETE',
        `/messages/serviceBound/feedback/${lockToken}?api-version=${apiVersion}`,
        [204],
      );
      const record = records.find((candidate) => candidate.originalMessageId === originalMessageId);
      if (record) return record;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no feedback record for ${originalMessageId}`);
}

/**
 * Hands out the cloud-to-device messages the client receives, in order, unsettled: the test completes, rejects or
 * abandons each. One listener for the client's life (the SDK detaches its receiver when the last one goes).
 */
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

/**
 * The delivery count IoT Hub stamps on a cloud-to-device message: the `iothub-deliverycount` message annotation
 * (protocol-device.md §3.4; the .NET device SDK reads it into Message.DeliveryCount, the Node SDK leaves it on the
 * AMQP message it wraps).
 */
function deliveryCount(message: Message): number | undefined {
  const transportMessage = (message as unknown as { transportObj?: { message_annotations?: Record<string, unknown> } })
    .transportObj;
  const value = transportMessage?.message_annotations?.['iothub-deliverycount'];
  return value === undefined ? undefined : Number(value);
}

/**
 * The first error a client meets: from open() (SAS: the CBS put-token is part of connecting) or from the first
 * telemetry send (X.509: the SDK skips CBS, so the hub sees the device's identity first in the link address). Never
 * retried, so a refusal surfaces at once.
 */
async function firstError(client: DeviceClient): Promise<Error> {
  client.setRetryPolicy(new NoRetry());
  try {
    await client.open();
    await client.sendEvent(new Message('should not be accepted'));
  } catch (error) {
    return error as Error;
  } finally {
    await client.close().catch(() => {});
  }
  throw new Error('the hub accepted the connection and the telemetry');
}

/**
 * A refusal the SDK understood as an authentication failure: a CBS put-token answered with `status-code` 401
 * (azure-iot-amqp-base turns any status but 200 into UnauthorizedError), or a link attach refused with
 * `amqp:unauthorized-access` (translated to UnauthorizedError). A hub that just drops the connection would surface as
 * NotConnectedError instead.
 */
function expectAuthenticationFailure(error: Error): void {
  expect(`${error.name}: ${error.message}`).toMatch(/^UnauthorizedError: /);
}

function isDeviceNotOnline(error: unknown): boolean {
  const detail = (error as { responseBody?: unknown }).responseBody ?? (error as Error).message;
  return JSON.stringify(detail ?? '').includes('DeviceNotOnline') || String(detail).includes('404103');
}

/**
 * Invokes a direct method once the device's method links are attached. The SDK attaches them asynchronously after
 * onDeviceMethod() / onMethod() and offers no completion signal; until they are attached IoT Hub answers 404103
 * DeviceNotOnline, which is retried (bounded by attempts).
 */
async function invokeWhenOnline(
  service: ServiceClient,
  deviceId: string,
  moduleId: string | undefined,
  params: { methodName: string; payload: unknown; responseTimeoutInSeconds: number },
): Promise<unknown> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const { result } = moduleId
        ? await service.invokeDeviceMethod(deviceId, moduleId, params)
        : await service.invokeDeviceMethod(deviceId, params);
      return result;
    } catch (error) {
      if (attempt >= 100 || !isDeviceNotOnline(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** The outcomes of every CBS put-token the transport sends (connect and renewals), observed, not altered. */
function observePutTokens(transport: Amqp): { outcomes: (Error | null)[]; settled(count: number): Promise<void> } {
  type PutToken = (audience: unknown, token: unknown, callback: (error?: Error | null) => void) => void;
  const base = (transport as unknown as { _amqp: { putToken: PutToken } })._amqp;
  const original = base.putToken.bind(base);
  const outcomes: (Error | null)[] = [];
  const waiters: (() => void)[] = [];
  base.putToken = (audience, token, callback) => {
    original(audience, token, (error?: Error | null) => {
      outcomes.push(error ?? null);
      for (const waiter of waiters.splice(0)) waiter();
      callback(error);
    });
  };
  return {
    outcomes,
    async settled(count: number) {
      while (outcomes.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
    },
  };
}

describe.each(transports)('azure-iot-device over $name', ({ name, transport, thumbprintAlgorithm }) => {
  const id = (suffix: string) => `${name.toLowerCase()}-${suffix}`;

  it('connects with a SAS key and sends telemetry that reaches the built-in endpoint with its properties', async () => {
    const deviceId = id('telemetry');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    const messageId = `mid-${randomUUID()}`;
    await withClient(client, async () => {
      const message = new Message(JSON.stringify({ temperature: 21.5 }));
      message.messageId = messageId;
      message.correlationId = 'cid-1';
      message.contentType = 'application/json';
      message.contentEncoding = 'utf-8';
      message.properties.add('alert', 'high temp');
      message.properties.add('n', '1');
      await client.sendEvent(message);
    });

    const events = await readBuiltInEndpoint(hub.info);
    const event = events.find((candidate) => isTelemetry(candidate) && candidate.messageId === messageId);
    expect(event).toBeDefined();
    expect(event).toMatchObject({
      deviceId,
      moduleId: null,
      messageId,
      correlationId: 'cid-1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      properties: { alert: 'high temp', n: '1' },
      body: '{"temperature":21.5}',
      bodyEncoding: 'utf-8',
    });
    expect(event?.systemProperties).toMatchObject({ 'iothub-connection-device-id': deviceId });
    expect(String(event?.systemProperties['iothub-connection-auth-method'])).toContain('"sas"');
    expect(event?.systemProperties['iothub-connection-auth-generation-id']).toBeTruthy();
    expect(event?.systemProperties['iothub-enqueuedtime']).toBeTruthy();
  });

  it('keeps a UUID-shaped correlation id (sent as an AMQP uuid) as its string form', async () => {
    const deviceId = id('uuid-correlation');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    const messageId = randomUUID();
    const correlationId = randomUUID();
    await withClient(client, async () => {
      const message = new Message('uuid ids');
      message.messageId = messageId;
      message.correlationId = correlationId;
      await client.sendEvent(message);
    });
    const events = await readBuiltInEndpoint(hub.info);
    const event = events.find((candidate) => isTelemetry(candidate) && candidate.deviceId === deviceId);
    expect(event).toMatchObject({ messageId, correlationId });
  });

  it(`connects with a self-signed X.509 certificate registered by its ${thumbprintAlgorithm} thumbprint`, async () => {
    const deviceId = id('x509');
    const { certificate, privateKey } = await createSelfSignedCertificate({ commonName: deviceId });
    const primaryThumbprint = certificateThumbprint(certificate, thumbprintAlgorithm);
    await registry.create({
      deviceId,
      authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint } },
    } as Parameters<Registry['create']>[0]);
    const client = DeviceClient.fromConnectionString(
      `HostName=${hostNameFor(name)};DeviceId=${deviceId};x509=true`,
      transport,
    );
    await client.setOptions({ cert: certificate, key: privateKey });
    const messageId = `x509-${randomUUID()}`;
    await withClient(client, async () => {
      const message = new Message('from a certificate');
      message.messageId = messageId;
      await client.sendEvent(message);
      const twin = await client.getTwin();
      expect(twin.properties.desired.$version).toBeGreaterThanOrEqual(1);
    });
    const events = await readBuiltInEndpoint(hub.info);
    const event = events.find((candidate) => candidate.messageId === messageId);
    expect(event?.deviceId).toBe(deviceId);
    expect(String(event?.systemProperties['iothub-connection-auth-method'])).toMatch(/x509/i);
  });

  it('refuses a self-signed certificate whose thumbprint is not registered', async () => {
    const deviceId = id('x509-wrong');
    const registered = await createSelfSignedCertificate({ commonName: deviceId });
    const presented = await createSelfSignedCertificate({ commonName: deviceId });
    await registry.create({
      deviceId,
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: { primaryThumbprint: certificateThumbprint(registered.certificate, thumbprintAlgorithm) },
      },
    } as Parameters<Registry['create']>[0]);
    const client = DeviceClient.fromConnectionString(
      `HostName=${hostNameFor(name)};DeviceId=${deviceId};x509=true`,
      transport,
    );
    await client.setOptions({ cert: presented.certificate, key: presented.privateKey });
    expectAuthenticationFailure(await firstError(client));
    const events = await readBuiltInEndpoint(hub.info);
    expect(events.filter((event) => isTelemetry(event) && event.deviceId === deviceId)).toEqual([]);
  });

  it('gets its twin, reports properties the service reads, and receives desired properties the service sets', async () => {
    const deviceId = id('twin');
    const key = await createSasDevice(deviceId);
    const { responseBody: initial } = await registry.getTwin(deviceId);
    await registry.updateTwin(deviceId, { properties: { desired: { fromHub: 'hello' } } }, initial.etag);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    await withClient(client, async () => {
      const twin: Twin = await client.getTwin();
      expect(twin.properties.desired.fromHub).toBe('hello');
      const desiredVersion = twin.properties.desired.$version as number;
      expect(twin.properties.reported.$version).toBeGreaterThanOrEqual(1);

      await new Promise<void>((resolve, reject) =>
        twin.properties.reported.update({ firmware: '1.0.0', nested: { a: 1 } }, (error?: Error) =>
          error ? reject(error) : resolve(),
        ),
      );
      const { responseBody: serviceView } = await registry.getTwin(deviceId);
      expect(serviceView.properties.reported.firmware).toBe('1.0.0');
      expect(serviceView.properties.reported.nested).toEqual({ a: 1 });

      const patched = new Promise<Record<string, unknown>>((resolve) => {
        twin.on('properties.desired', (desired: Record<string, unknown>) => {
          if (desired.setpoint === 5) resolve(desired);
        });
      });
      // Adding the listener sends the subscription (a twin PUT on /notifications/twin/properties/desired) without a
      // way to wait for its answer; a second PUT, whose answer is awaited, shows the hub has taken it.
      await new Promise<void>((resolve, reject) =>
        twin.enableTwinDesiredPropertiesUpdates((error?: Error) => (error ? reject(error) : resolve())),
      );
      await registry.updateTwin(deviceId, { properties: { desired: { setpoint: 5 } } }, serviceView.etag);
      const desired = await patched;
      expect(desired.setpoint).toBe(5);
      expect(desired.$version).toBeGreaterThan(desiredVersion);
      // The patch carries only the change, as IoT Hub sends it (no correlation id, §3.5).
      expect(desired.fromHub).toBeUndefined();
      expect(twin.properties.desired.fromHub).toBe('hello');
    });
  });

  it('answers a direct method invoked with the service client', async () => {
    const deviceId = id('method');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    const service = ServiceClient.fromConnectionString(hub.info.serviceConnectionString);
    try {
      await withClient(client, async () => {
        const seen: unknown[] = [];
        client.onDeviceMethod('reboot', (request, response) => {
          seen.push(request.payload);
          response.send(200, { ok: true, echo: request.payload }, () => {});
        });
        const result = await invokeWhenOnline(service, deviceId, undefined, {
          methodName: 'reboot',
          payload: { delay: 1 },
          responseTimeoutInSeconds: 30,
        });
        expect(result).toEqual({ status: 200, payload: { ok: true, echo: { delay: 1 } } });
        expect(seen).toEqual([{ delay: 1 }]);

        // A second call on the same links, with a status the device chose.
        client.onDeviceMethod('fail', (_request, response) => {
          response.send(503, { reason: 'busy' }, () => {});
        });
        const failed = await invokeWhenOnline(service, deviceId, undefined, {
          methodName: 'fail',
          payload: null,
          responseTimeoutInSeconds: 30,
        });
        expect(failed).toEqual({ status: 503, payload: { reason: 'busy' } });
      });
    } finally {
      await service.close().catch(() => {});
    }
  });

  it('receives and completes a cloud-to-device message, which produces its feedback record', async () => {
    const deviceId = id('c2d');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    const messageId = `c2d-${randomUUID()}`;
    await withClient(client, async () => {
      const inbox = cloudToDeviceInbox(client);
      await sendCloudToDevice(deviceId, messageId, 'hello device', 'full');
      const message = await inbox.next();
      expect(message.getData().toString()).toBe('hello device');
      expect(message.messageId).toBe(messageId);
      expect(message.correlationId).toBe(`corr-${messageId}`);
      expect(message.contentType).toBe('text/plain');
      expect(message.contentEncoding).toBe('utf-8');
      expect(message.properties.getValue('color')).toBe('blue');
      await client.complete(message);
    });
    const record = await feedbackFor(messageId);
    expect(record).toMatchObject({ originalMessageId: messageId, deviceId, statusCode: 'Success' });
    await settledAtHub(deviceId);
  });

  it('rejects a cloud-to-device message: never redelivered, feedback Rejected', async () => {
    const deviceId = id('c2d-reject');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    const rejectedId = `rejected-${randomUUID()}`;
    await withClient(client, async () => {
      const inbox = cloudToDeviceInbox(client);
      await sendCloudToDevice(deviceId, rejectedId, 'not for me', 'full');
      const message = await inbox.next();
      expect(message.messageId).toBe(rejectedId);
      await client.reject(message);
      // The next message is the one sent after, not the rejected one again (rejection dead-letters it).
      await sendCloudToDevice(deviceId, 'after-reject', 'next');
      const next = await inbox.next();
      expect(next.messageId).toBe('after-reject');
      await client.complete(next);
    });
    const record = await feedbackFor(rejectedId);
    expect(record).toMatchObject({ originalMessageId: rejectedId, deviceId, statusCode: 'Rejected' });
    await settledAtHub(deviceId);
  });

  it('abandons a cloud-to-device message: redelivered with its delivery count one up, then completed, feedback Success', async () => {
    const deviceId = id('c2d-abandon');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    const messageId = `abandoned-${randomUUID()}`;
    await withClient(client, async () => {
      const inbox = cloudToDeviceInbox(client);
      await sendCloudToDevice(deviceId, messageId, 'try again', 'full');
      const first = await inbox.next();
      expect(first.messageId).toBe(messageId);
      const firstCount = deliveryCount(first);
      expect(firstCount, 'no iothub-deliverycount annotation').toBeTypeOf('number');
      await client.abandon(first);

      const second = await inbox.next();
      expect(second.messageId).toBe(messageId);
      expect(second.getData().toString()).toBe('try again');
      expect(second.properties.getValue('color')).toBe('blue');
      expect(deliveryCount(second)).toBe((firstCount ?? 0) + 1);
      await client.complete(second);
    });
    const record = await feedbackFor(messageId);
    expect(record).toMatchObject({ originalMessageId: messageId, deviceId, statusCode: 'Success' });
    await settledAtHub(deviceId);
  });

  it('renews its SAS token with a CBS put-token on the live connection', async () => {
    const deviceId = id('renewal');
    const key = await createSasDevice(deviceId);
    // Tokens valid 10 s, renewed 7 s before they end: a put-token every 3 s (the SDK default is 1 h and 15 min).
    const provider = SharedAccessKeyAuthenticationProvider.fromConnectionString(
      connectionString(name, deviceId, key),
      10,
      7,
    );
    const amqpTransport = new transport(provider);
    const putTokens = observePutTokens(amqpTransport);
    let connects = 0;
    let disconnects = 0;
    amqpTransport.on('connected', () => {
      connects += 1;
    });
    amqpTransport.on('disconnect', () => {
      disconnects += 1;
    });
    const client = new DeviceClient(amqpTransport);
    await withClient(client, async () => {
      // The put-token of connecting, then two renewals.
      await putTokens.settled(3);
      expect(putTokens.outcomes).toEqual([null, null, null]);
      const messageId = `renewed-${randomUUID()}`;
      const message = new Message('after two renewals');
      message.messageId = messageId;
      await client.sendEvent(message);
      expect({ connects, disconnects }).toEqual({ connects: 1, disconnects: 0 });
      const events = await readBuiltInEndpoint(hub.info);
      expect(events.some((event) => event.messageId === messageId && event.deviceId === deviceId)).toBe(true);
    });
  }, 60_000);

  it('serves a module identity: telemetry, module twin and module direct methods', async () => {
    const deviceId = id('module-host');
    const moduleId = 'filter';
    await createSasDevice(deviceId);
    const { responseBody } = await registry.addModule({ deviceId, moduleId });
    const key = (responseBody as { authentication?: { symmetricKey?: { primaryKey?: string } } }).authentication
      ?.symmetricKey?.primaryKey;
    if (!key) throw new Error('the registry made no module key');
    const client = ModuleClient.fromConnectionString(
      `HostName=${hostNameFor(name)};DeviceId=${deviceId};ModuleId=${moduleId};SharedAccessKey=${key}`,
      transport,
    );
    const service = ServiceClient.fromConnectionString(hub.info.serviceConnectionString);
    const messageId = `module-${randomUUID()}`;
    try {
      await withClient(client, async () => {
        const message = new Message('from a module');
        message.messageId = messageId;
        message.properties.add('stage', 'filtered');
        await client.sendEvent(message);

        const twin = await client.getTwin();
        await new Promise<void>((resolve, reject) =>
          twin.properties.reported.update({ threshold: 7 }, (error?: Error) => (error ? reject(error) : resolve())),
        );
        const { responseBody: moduleTwin } = await registry.getModuleTwin(deviceId, moduleId);
        expect(
          (moduleTwin as { properties: { reported: Record<string, unknown> } }).properties.reported.threshold,
        ).toBe(7);

        client.onMethod('ping', (request, response) => {
          response?.send(200, { pong: request?.payload }, () => {});
        });
        const result = await invokeWhenOnline(service, deviceId, moduleId, {
          methodName: 'ping',
          payload: 'hi',
          responseTimeoutInSeconds: 30,
        });
        expect(result).toEqual({ status: 200, payload: { pong: 'hi' } });
      });
    } finally {
      await service.close().catch(() => {});
    }
    const events = await readBuiltInEndpoint(hub.info);
    const event = events.find((candidate) => candidate.messageId === messageId);
    expect(event).toMatchObject({ deviceId, moduleId, properties: { stage: 'filtered' } });
    expect(event?.systemProperties).toMatchObject({
      'iothub-connection-device-id': deviceId,
      'iothub-connection-module-id': moduleId,
    });
  });

  it('reconnects after the hub restarts and receives a message queued meanwhile', async () => {
    const deviceId = id('restart');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    await withClient(client, async () => {
      // A C2D receiver makes the SDK reconnect by itself when the connection drops (its retry policy).
      const inbox = cloudToDeviceInbox(client);
      await sendCloudToDevice(deviceId, 'before-restart', 'one');
      const before = await inbox.next();
      expect(before.messageId).toBe('before-restart');
      await client.complete(before);
      // The SDK settles without waiting for the hub; wait until the hub has the completion, or the message is
      // (rightly) redelivered after the restart as one whose completion never arrived.
      await settledAtHub(deviceId);

      const reconnected = new Promise<void>((resolve) => client.once('connect', () => resolve()));
      await hub.stop();
      hub = await hub.restart();
      expect(hub.info.ports.amqp).toBe(amqpPort);
      await sendCloudToDevice(deviceId, 'while-away', 'two');
      const whileAway = await inbox.next();
      expect(whileAway.messageId).toBe('while-away');
      await client.complete(whileAway);
      await reconnected;

      const messageId = `after-restart-${randomUUID()}`;
      const message = new Message('back');
      message.messageId = messageId;
      await client.sendEvent(message);
      const events = await readBuiltInEndpoint(hub.info);
      expect(events.some((event) => event.messageId === messageId && event.deviceId === deviceId)).toBe(true);
    });
  }, 120_000);

  it('refuses a wrong key as an authentication failure', async () => {
    const deviceId = id('bad-key');
    await createSasDevice(deviceId);
    const wrongKey = randomBytes(32).toString('base64');
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, wrongKey), transport);
    expectAuthenticationFailure(await firstError(client));
  });

  it('refuses an expired SAS token as an authentication failure', async () => {
    const deviceId = id('expired');
    const key = await createSasDevice(deviceId);
    // An hour ago: well past any clock-skew allowance.
    const expired = await deviceSasToken(hostNameFor(name), deviceId, key, {
      expiresAt: Math.floor(Date.now() / 1000) - 3600,
    });
    const client = DeviceClient.fromConnectionString(
      `HostName=${hostNameFor(name)};DeviceId=${deviceId};SharedAccessSignature=${expired}`,
      transport,
    );
    expectAuthenticationFailure(await firstError(client));
  });

  it('refuses a disabled device as an authentication failure', async () => {
    const deviceId = id('disabled');
    const key = await createSasDevice(deviceId, 'disabled');
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    expectAuthenticationFailure(await firstError(client));
  });
});
