import { randomBytes, randomUUID } from 'node:crypto';
import { certificateThumbprint, createSelfSignedCertificate, type ThumbprintAlgorithm } from '@fieldhub/auth';
import { NoRetry } from 'azure-iot-common';
import { Client as DeviceClient, Message, type Twin } from 'azure-iot-device';
import { Mqtt, MqttWs } from 'azure-iot-device-mqtt';
import { Registry, Client as ServiceClient } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTelemetry, readBuiltInEndpoint } from '../support/built-in-endpoint';
import { freePort } from '../support/free-port';
import { type HubProcess, startHubProcess } from '../support/hub-process';
import { deviceSasToken } from '../support/raw-mqtt-device';
import { apiVersion, serviceCall } from '../support/service-rest';

// The official `azure-iot-device` with `azure-iot-device-mqtt`, unchanged, against the hub as a child process.
// MqttWs always dials wss://<HostName>:443/$iothub/websocket, so this suite binds 443 (port-443/). Plain Mqtt dials
// mqtts://<HostName> verbatim: the HostName carries the hub's MQTT port (`localhost:<port>`, as in the captures),
// and the same port then appears in the MQTT username and the SAS `sr`. The hub's CA is trusted through
// NODE_EXTRA_CA_CERTS (global-setup.ts), as a field device would trust a real hub's.

type TransportName = 'Mqtt' | 'MqttWs';

interface TransportCase {
  name: TransportName;
  transport: typeof Mqtt | typeof MqttWs;
  /** The thumbprint the X.509 device is registered with (both are accepted by IoT Hub). */
  thumbprintAlgorithm: ThumbprintAlgorithm;
}

const transports: TransportCase[] = [
  { name: 'Mqtt', transport: Mqtt, thumbprintAlgorithm: 'sha1' },
  { name: 'MqttWs', transport: MqttWs, thumbprintAlgorithm: 'sha256' },
];

let hub: HubProcess;
let mqttPort: number;
let registry: Registry;

beforeAll(async () => {
  // A fixed MQTT port, so that the hub comes back on it after a restart (the HTTPS port is 443 anyway).
  mqttPort = await freePort();
  hub = await startHubProcess({ mqttPort });
  expect(hub.info.ports.mqtt, 'hub.json must carry the MQTT-over-TLS port').toBe(mqttPort);
  registry = Registry.fromConnectionString(hub.info.serviceConnectionString);
});

afterAll(async () => {
  await hub?.dispose();
});

/** The HostName a device connection string carries for this transport. */
function hostNameFor(transport: TransportName): string {
  return transport === 'Mqtt' ? `localhost:${mqttPort}` : 'localhost';
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
async function withClient<T>(client: DeviceClient, body: (client: DeviceClient) => Promise<T>): Promise<T> {
  try {
    await client.open();
    return await body(client);
  } finally {
    await client.close().catch(() => {});
  }
}

/** Sends a cloud-to-device message through the hub's REST extension (the AMQP head does not exist yet). */
/** Waits until the hub's registry shows no cloud-to-device message queued for the device. */
async function completedAtHub(deviceId: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const { responseBody } = await registry.get(deviceId);
    if (responseBody.cloudToDeviceMessageCount === 0) return;
    if (Date.now() > deadline) throw new Error(`${deviceId} still has queued cloud-to-device messages`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

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
 * Waits for the feedback record of one cloud-to-device message, completing every batch it reads. Over MQTT the
 * device's PUBACK is the completion and the SDK's complete() resolves without waiting for the hub, so the record is
 * polled for (bounded by attempts, not asserted on time).
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
 * Completes every cloud-to-device message the client receives and hands them out in order. One listener for the
 * client's life: the SDK unsubscribes from cloud-to-device messages when its last `message` listener goes.
 */
function cloudToDeviceInbox(client: DeviceClient): { next(): Promise<Message> } {
  const arrived: Message[] = [];
  const waiting: ((message: Message) => void)[] = [];
  client.on('message', (message: Message) => {
    void client.complete(message).then(() => {
      const waiter = waiting.shift();
      if (waiter) waiter(message);
      else arrived.push(message);
    });
  });
  return {
    next: () => {
      const message = arrived.shift();
      return message ? Promise.resolve(message) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/** The error `open()` rejects with (never retried, so a refusal surfaces at once). */
async function openError(client: DeviceClient): Promise<Error> {
  client.setRetryPolicy(new NoRetry());
  try {
    await client.open();
  } catch (error) {
    return error as Error;
  } finally {
    await client.close().catch(() => {});
  }
  throw new Error('open() resolved; the hub accepted the connection');
}

/**
 * A refusal the SDK understood as an authentication failure: the hub answered CONNECT with CONNACK 4 or 5, which
 * azure-iot-device-mqtt turns into UnauthorizedError ("Connection refused: Not authorized"). A hub that just drops
 * the connection would surface as NotConnectedError instead.
 */
function expectAuthenticationFailure(error: Error): void {
  expect(`${error.name}: ${error.message}`).toMatch(/^UnauthorizedError: .*(Not authorized|Bad username or password)/);
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
    expectAuthenticationFailure(await openError(client));
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

      await new Promise<void>((resolve, reject) =>
        twin.properties.reported.update({ firmware: '1.0.0', nested: { a: 1 } }, (error?: Error) =>
          error ? reject(error) : resolve(),
        ),
      );
      const { responseBody: serviceView } = await registry.getTwin(deviceId);
      expect(serviceView.properties.reported.firmware).toBe('1.0.0');
      expect(serviceView.properties.reported.nested).toEqual({ a: 1 });

      const patches: Record<string, unknown>[] = [];
      const patched = new Promise<Record<string, unknown>>((resolve) => {
        twin.on('properties.desired', (desired: Record<string, unknown>) => {
          patches.push(desired);
          if (desired.setpoint === 5) resolve(desired);
        });
      });
      // The SDK subscribes to desired patches when the listener is added; a twin GET issued after it is answered
      // only after the hub has taken the SUBSCRIBE (packets of one connection are handled in order).
      await twin.get();
      await registry.updateTwin(deviceId, { properties: { desired: { setpoint: 5 } } }, serviceView.etag);
      const desired = await patched;
      expect(desired.setpoint).toBe(5);
      expect(desired.$version).toBeGreaterThan(desiredVersion);
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
        // The method subscription goes out when the handler is registered; telemetry acknowledged after it shows
        // the hub has taken the SUBSCRIBE.
        await client.sendEvent(new Message('methods enabled'));
        const { result } = await service.invokeDeviceMethod(deviceId, {
          methodName: 'reboot',
          payload: { delay: 1 },
          responseTimeoutInSeconds: 30,
        });
        expect(result).toEqual({ status: 200, payload: { ok: true, echo: { delay: 1 } } });
        expect(seen).toEqual([{ delay: 1 }]);
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
      expect(message.properties.getValue('color')).toBe('blue');
    });
    const record = await feedbackFor(messageId);
    expect(record).toMatchObject({ originalMessageId: messageId, deviceId, statusCode: 'Success' });
  });

  it('reconnects after the hub restarts and receives a message queued meanwhile', async () => {
    const deviceId = id('restart');
    const key = await createSasDevice(deviceId);
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    await withClient(client, async () => {
      // A C2D subscription makes the SDK reconnect by itself when the connection drops (its retry policy).
      const inbox = cloudToDeviceInbox(client);
      await sendCloudToDevice(deviceId, 'before-restart', 'one');
      expect((await inbox.next()).messageId).toBe('before-restart');
      // The SDK completes by PUBACK; wait until the hub has it, or the message is (rightly) redelivered after the
      // restart as one whose completion never arrived.
      await completedAtHub(deviceId);

      const reconnected = new Promise<void>((resolve) => client.once('connect', () => resolve()));
      await hub.stop();
      hub = await hub.restart();
      expect(hub.info.ports.mqtt).toBe(mqttPort);
      await sendCloudToDevice(deviceId, 'while-away', 'two');
      expect((await inbox.next()).messageId).toBe('while-away');
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
    expectAuthenticationFailure(await openError(client));
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
    expectAuthenticationFailure(await openError(client));
  });

  it('refuses a disabled device as an authentication failure', async () => {
    const deviceId = id('disabled');
    const key = await createSasDevice(deviceId, 'disabled');
    const client = DeviceClient.fromConnectionString(connectionString(name, deviceId, key), transport);
    expectAuthenticationFailure(await openError(client));
  });
});
