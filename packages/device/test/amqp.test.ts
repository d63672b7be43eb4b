/**
 * `createDeviceClient` of @fieldhub/device over `amqp()` against a real hub (child process): the client and its
 * connection manager on AMQP, where tokens are renewed in place and cloud-to-device messages can be rejected
 * and abandoned (protocol-device.md §3).
 */
import { amqp, createDeviceClient, type DeviceClient, type TransportFactory } from '@fieldhub/device';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubHarness, hubHarness } from './support/hub-process';
import { createSasDevice, serviceCall, telemetryIds } from './support/service-rest';

let harness: HubHarness;
const clients: DeviceClient[] = [];

beforeAll(async () => {
  harness = await hubHarness();
  await harness.start();
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await harness?.dispose();
});

function amqpPort(): number {
  const port = harness.info.ports.amqp;
  if (port === null) throw new Error('the hub serves no AMQP port');
  return port;
}

/** The factory, with every `updateCredentials` the connection manager makes counted (the transport is real). */
function countingRenewals(factory: TransportFactory): { factory: TransportFactory; renewals: () => number } {
  let renewals = 0;
  return {
    renewals: () => renewals,
    factory: {
      name: factory.name,
      capabilities: factory.capabilities,
      create() {
        const transport = factory.create();
        const update = transport.updateCredentials?.bind(transport);
        if (update) {
          transport.updateCredentials = async (credentials, options) => {
            await update(credentials, options);
            renewals++;
          };
        }
        return transport;
      },
    },
  };
}

async function eventually(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('createDeviceClient over amqp()', () => {
  it('sends telemetry over AMQP and over AMQP on WebSockets', async () => {
    for (const [index, transport] of [
      amqp({ port: amqpPort() }),
      amqp({ webSockets: true, port: harness.info.ports.https }),
    ].entries()) {
      const deviceId = `node-amqp-${index}`;
      const { connectionString } = await createSasDevice(harness.info, harness.ca, deviceId);
      const client = await createDeviceClient({ connectionString, ca: harness.ca, transport });
      clients.push(client);
      await client.sendTelemetry({ body: { t: index }, messageId: `amqp-${index}` });
      expect(await telemetryIds(harness.info, harness.ca, deviceId)).toContain(`amqp-${index}`);
    }
  });

  it('renews its SAS token in place, without reconnecting', async () => {
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'node-amqp-renew');
    const { factory, renewals } = countingRenewals(amqp({ port: amqpPort() }));
    const client = await createDeviceClient({
      connectionString,
      ca: harness.ca,
      transport: factory,
      sas: { ttlSeconds: 3, renewalMarginSeconds: 2 },
    });
    clients.push(client);
    const lifecycle: string[] = [];
    client.on('disconnected', () => lifecycle.push('disconnected'));
    client.on('reconnecting', () => lifecycle.push('reconnecting'));
    await eventually(() => renewals() >= 2, 'two renewals');
    await client.sendTelemetry({ body: 'after renewals', messageId: 'renewed-1' });
    expect(lifecycle).toEqual([]);
    expect(client.state).toBe('connected');
  });

  it('rejects and abandons cloud-to-device messages through the client', async () => {
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'node-amqp-c2d');
    const client = await createDeviceClient({
      connectionString,
      ca: harness.ca,
      transport: amqp({ port: amqpPort() }),
    });
    clients.push(client);
    const messages = client.cloudToDeviceMessages();
    const send = (body: unknown) =>
      serviceCall(
        harness.info,
        harness.ca,
        'POST',
        '/fieldhub/devices/node-amqp-c2d/messages/devicebound',
        body,
        [202],
      );

    await send({ n: 1 });
    const first = (await messages.next()).value;
    expect(JSON.parse(first?.text() ?? 'null')).toEqual({ n: 1 });
    await first?.abandon();
    const again = (await messages.next()).value;
    expect(JSON.parse(again?.text() ?? 'null')).toEqual({ n: 1 });
    await again?.reject();

    await send({ n: 2 });
    const second = (await messages.next()).value;
    expect(JSON.parse(second?.text() ?? 'null')).toEqual({ n: 2 });
    await second?.complete();
  });

  it('answers direct methods and sees desired-property patches', async () => {
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'node-amqp-features');
    const client = await createDeviceClient({
      connectionString,
      ca: harness.ca,
      transport: amqp({ port: amqpPort() }),
    });
    clients.push(client);
    client.onDirectMethod('reboot', async (request) => ({ status: 200, payload: { got: request.payload } }));
    const desired = client.desiredPropertyUpdates();
    await client.getTwin();
    const invoked = await serviceCall(harness.info, harness.ca, 'POST', '/twins/node-amqp-features/methods', {
      methodName: 'reboot',
      payload: { delay: 1 },
      responseTimeoutInSeconds: 10,
      connectTimeoutInSeconds: 10,
    });
    expect(invoked).toEqual({ status: 200, payload: { got: { delay: 1 } } });
    await serviceCall(harness.info, harness.ca, 'PATCH', '/twins/node-amqp-features', {
      properties: { desired: { fan: 'on' } },
    });
    expect((await desired.next()).value).toMatchObject({ fan: 'on' });
  });
});
