/**
 * `createDeviceClient` of @fieldhub/device against a real hub (child process): the Node conveniences on top of
 * device-core (SAS signed by @fieldhub/auth, `ca` and `x509` as Buffers, the durable file queue).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { certificateThumbprint, createSelfSignedCertificate } from '@fieldhub/auth';
import { createDeviceClient, type DeviceClient, fileQueue, mqtt } from '@fieldhub/device';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubHarness, hubHarness } from './support/hub-process';
import { createSasDevice, serviceCall, telemetryIds } from './support/service-rest';

let harness: HubHarness;
let directory: string;
const clients: DeviceClient[] = [];

beforeAll(async () => {
  harness = await hubHarness();
  await harness.start();
  directory = await mkdtemp(join(tmpdir(), 'fieldhub-device-'));
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await harness?.dispose();
  await rm(directory, { recursive: true, force: true });
});

describe('createDeviceClient (@fieldhub/device)', () => {
  it('connects with a SharedAccessKey connection string and a CA given as a Buffer', async () => {
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'node-sas-1');
    const client = await createDeviceClient({
      connectionString,
      ca: Buffer.from(harness.ca),
      transport: mqtt({ port: harness.mqttPort }),
    });
    clients.push(client);
    expect(client.state).toBe('connected');
    expect(client.identity).toEqual({ hostName: 'localhost', deviceId: 'node-sas-1' });
    await client.sendTelemetry({ body: { t: 1 }, messageId: 'sas-1' });
    expect(await telemetryIds(harness.info, harness.ca, 'node-sas-1')).toContain('sas-1');
  });

  it('connects over WebSockets', async () => {
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'node-ws-1');
    const client = await createDeviceClient({
      connectionString,
      ca: harness.ca,
      transport: mqtt({ webSockets: true, port: harness.info.ports.https }),
    });
    clients.push(client);
    await client.sendTelemetry({ body: 'over ws', messageId: 'ws-1' });
    expect(await telemetryIds(harness.info, harness.ca, 'node-ws-1')).toContain('ws-1');
  });

  it('connects with x509=true and a certificate and key given as Buffers', async () => {
    const { certificate, privateKey } = await createSelfSignedCertificate({ commonName: 'node-x509-1' });
    const thumbprint = certificateThumbprint(certificate, 'sha1');
    await serviceCall(harness.info, harness.ca, 'PUT', '/devices/node-x509-1', {
      deviceId: 'node-x509-1',
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: { primaryThumbprint: thumbprint, secondaryThumbprint: thumbprint },
      },
    });
    const client = await createDeviceClient({
      connectionString: `HostName=${harness.info.hostName};DeviceId=node-x509-1;x509=true`,
      x509: { cert: Buffer.from(certificate), key: Buffer.from(privateKey) },
      ca: [Buffer.from(harness.ca)],
      transport: mqtt({ port: harness.mqttPort }),
    });
    clients.push(client);
    await client.sendTelemetry({ body: 'x509', messageId: 'x509-1' });
    expect(await telemetryIds(harness.info, harness.ca, 'node-x509-1')).toContain('x509-1');
  });

  it('sends on the next run what a durable file queue kept when the client closed offline', async () => {
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'node-durable-1');
    const path = join(directory, 'queue.jsonl');
    const options = {
      connectionString,
      ca: harness.ca,
      transport: mqtt({ port: harness.mqttPort }),
      offlineQueue: { durable: fileQueue(path) },
    };
    const first = await createDeviceClient(options);
    await harness.kill();
    const pending = first.sendTelemetry({ body: 'kept on disk', messageId: 'durable-1' });
    pending.catch(() => undefined);
    // Give the queue a moment to store it, then close: the send rejects, the message stays on disk.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await first.close();
    await expect(pending).rejects.toMatchObject({ name: 'ConnectionError' });

    await harness.start();
    const second = await createDeviceClient({ ...options, offlineQueue: { durable: fileQueue(path) } });
    clients.push(second);
    const deadline = Date.now() + 15_000;
    for (;;) {
      if ((await telemetryIds(harness.info, harness.ca, 'node-durable-1')).has('durable-1')) break;
      if (Date.now() > deadline) throw new Error('the stored message never reached the hub');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  it('receives cloud-to-device messages, desired patches and method calls through the client', async () => {
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'node-features-1');
    const client = await createDeviceClient({
      connectionString,
      ca: harness.ca,
      transport: mqtt({ port: harness.mqttPort }),
    });
    clients.push(client);
    client.onDirectMethod('reboot', async (request) => ({ status: 200, payload: { got: request.payload } }));
    const messages = client.cloudToDeviceMessages();
    const desired = client.desiredPropertyUpdates();
    await client.getTwin();

    const invoked = await serviceCall(harness.info, harness.ca, 'POST', '/twins/node-features-1/methods', {
      methodName: 'reboot',
      payload: { delay: 1 },
      responseTimeoutInSeconds: 10,
      connectTimeoutInSeconds: 10,
    });
    expect(invoked).toEqual({ status: 200, payload: { got: { delay: 1 } } });

    await serviceCall(harness.info, harness.ca, 'PATCH', '/twins/node-features-1', {
      properties: { desired: { fan: 'on' } },
    });
    const patch = await desired.next();
    expect(patch.value).toMatchObject({ fan: 'on' });

    await serviceCall(
      harness.info,
      harness.ca,
      'POST',
      '/fieldhub/devices/node-features-1/messages/devicebound',
      { hello: 'device' },
      [202],
    );
    const message = await messages.next();
    expect(JSON.parse(message.value?.text() ?? 'null')).toEqual({ hello: 'device' });
    await message.value?.complete();
    await expect(message.value?.reject()).rejects.toMatchObject({ name: 'UnsupportedFeatureError' });
  });

  it('refuses a connection string together with a credential provider', async () => {
    await expect(
      createDeviceClient({
        connectionString: 'HostName=h;DeviceId=d;SharedAccessKey=AAAA',
        credentialProvider: {
          hostName: 'h',
          deviceId: 'd',
          kind: 'x509',
          getCredentials: async () => ({ hostName: 'h', deviceId: 'd' }),
        },
      }),
    ).rejects.toMatchObject({ name: 'ArgumentError' });
  });
});
