import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  HubError,
  TimeoutError,
} from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { type MethodRequest, methodSubject } from '../../hub/src/core/direct-methods';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { createServiceClient, type ServiceClient, type TelemetryEvent } from '../src/index';

/** Rejects with what `promise` throws, or fails when it resolves. */
async function failure(promise: Promise<unknown>): Promise<HubError> {
  try {
    await promise;
  } catch (error) {
    expect(HubError.is(error)).toBe(true);
    return error as HubError;
  }
  throw new Error('expected a rejection');
}

/** Takes `count` events from an iterator, then stops it. */
async function take<T>(iterable: AsyncIterable<T>, count: number): Promise<T[]> {
  const items: T[] = [];
  if (count === 0) return items;
  for await (const item of iterable) {
    items.push(item);
    if (items.length >= count) break;
  }
  return items;
}

describe('@fieldhub/service against a real hub', () => {
  let testHub: TestHub;
  let service: ServiceClient;
  let connectionString: string;

  const withPort = (cs: string) => cs.replace(/HostName=([^;]+)/, `HostName=$1:${testHub.info.ports.https}`);
  /** The AMQP port from hub.json, as a tool passes it. */
  const amqpPort = () => testHub.info.ports.amqp ?? undefined;

  beforeAll(async () => {
    testHub = await startTestHub();
    connectionString = withPort(testHub.info.serviceConnectionString);
    service = createServiceClient({ connectionString, ca: testHub.ca, amqpPort: amqpPort() });
  });
  afterAll(async () => {
    await service?.close();
    await testHub?.stop();
  });

  describe('client', () => {
    it('is created synchronously and closes idempotently, also through await using', async () => {
      const client = createServiceClient({ connectionString, ca: testHub.ca, amqpPort: amqpPort() });
      expect(client.hostName).toBe(`localhost:${testHub.info.ports.https}`);
      expect((await client.devices.statistics()).totalDeviceCount).toBeGreaterThanOrEqual(0);
      await client.close();
      await client.close();
      const error = await failure(client.devices.statistics());
      expect(error).toBeInstanceOf(AbortError);
      {
        await using disposable = createServiceClient({ connectionString, ca: testHub.ca });
        await disposable.devices.statistics();
      }
    });

    it('runs 50 calls at once without a MaxListenersExceededWarning', async () => {
      const warnings: Error[] = [];
      const onWarning = (warning: Error) => warnings.push(warning);
      process.on('warning', onWarning);
      try {
        const answers = await Promise.all(Array.from({ length: 50 }, () => service.devices.statistics()));
        expect(answers).toHaveLength(50);
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        process.off('warning', onWarning);
      }
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
    });

    it('dials the port option when the host name has none', async () => {
      await using client = createServiceClient({
        connectionString: testHub.info.serviceConnectionString,
        ca: testHub.ca,
        port: testHub.info.ports.https,
      });
      expect(await client.devices.serviceStatistics()).toEqual({ connectedDeviceCount: expect.any(Number) });
    });

    it('authenticates with a ready-made SharedAccessSignature connection string', async () => {
      const token = await testHub.serviceToken('iothubowner');
      await using client = createServiceClient({
        connectionString: `HostName=localhost:${testHub.info.ports.https};SharedAccessSignature=${token}`,
        ca: testHub.ca,
      });
      expect(Array.isArray(await client.devices.list())).toBe(true);
    });

    it('refuses a device connection string with an ArgumentError', () => {
      expect(() =>
        createServiceClient({ connectionString: 'HostName=h;DeviceId=d;SharedAccessKey=AAAA', ca: testHub.ca }),
      ).toThrow(ArgumentError);
    });

    it('maps a wrong key to AuthenticationError 401002', async () => {
      const wrong = connectionString.replace(
        /SharedAccessKey=[^;]+/,
        `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`,
      );
      await using client = createServiceClient({ connectionString: wrong, ca: testHub.ca });
      const error = await failure(client.devices.list());
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.hubCode).toBe(401002);
      expect(error.status).toBe(401);
    });

    it('maps a policy without the permission to AuthenticationError', async () => {
      const registryRead = withPort(await testHub.hub.core.policies.connectionString('registryRead'));
      await using client = createServiceClient({ connectionString: registryRead, ca: testHub.ca });
      expect(Array.isArray(await client.devices.list())).toBe(true);
      expect(await failure(client.devices.create('never'))).toBeInstanceOf(AuthenticationError);
    });

    it('maps an unreachable hub to a retryable ConnectionError', async () => {
      await using client = createServiceClient({ connectionString, ca: testHub.ca, port: 1 });
      const error = await failure(client.devices.list());
      expect(error).toBeInstanceOf(ConnectionError);
      expect(error.isRetryable).toBe(true);
    });

    it('rejects with AbortError when the signal is aborted', async () => {
      const error = await failure(service.devices.list({ signal: AbortSignal.abort() }));
      expect(error).toBeInstanceOf(AbortError);
    });

    it('refuses a certificate it does not trust', async () => {
      await using client = createServiceClient({ connectionString });
      expect(await failure(client.devices.list())).toBeInstanceOf(ConnectionError);
    });
  });

  describe('devices', () => {
    it('creates a device from an id with generated keys, and refuses a second create with 409001', async () => {
      const device = await service.devices.create('reg-1');
      expect(device).toMatchObject({ deviceId: 'reg-1', status: 'enabled', connectionState: 'Disconnected' });
      expect(device.authentication.symmetricKey?.primaryKey).toMatch(/^[A-Za-z0-9+/]+=*$/);
      expect(device.etag).toBeTruthy();
      const error = await failure(service.devices.create({ deviceId: 'reg-1' }));
      expect(error.code).toBe('DeviceAlreadyExists');
      expect(error.hubCode).toBe(409001);
    });

    it('creates from a description and gets it back', async () => {
      const created = await service.devices.create({ deviceId: 'reg#2?(x)', status: 'disabled', statusReason: 'test' });
      const read = await service.devices.get('reg#2?(x)');
      expect(read).toMatchObject({
        deviceId: 'reg#2?(x)',
        status: 'disabled',
        statusReason: 'test',
        etag: created.etag,
      });
    });

    it('answers DeviceNotFound 404001 for an unknown device', async () => {
      const error = await failure(service.devices.get('nobody'));
      expect(error.code).toBe('DeviceNotFound');
      expect(error.hubCode).toBe(404001);
    });

    it('updates with the etag, refuses a stale one with 412001, and forces without', async () => {
      const device = await service.devices.create('reg-3');
      const updated = await service.devices.update({ ...device, status: 'disabled' });
      expect(updated.status).toBe('disabled');
      expect(updated.etag).not.toBe(device.etag);
      const stale = await failure(service.devices.update({ ...device, status: 'enabled' }));
      expect(stale.code).toBe('PreconditionFailed');
      expect(stale.hubCode).toBe(412001);
      const forced = await service.devices.update({ deviceId: 'reg-3', status: 'enabled' }, { force: true });
      expect(forced.status).toBe('enabled');
      const explicit = await service.devices.update({ deviceId: 'reg-3', status: 'disabled' }, { etag: forced.etag });
      expect(explicit.status).toBe('disabled');
      await expect(service.devices.update({ deviceId: 'reg-3' })).rejects.toBeInstanceOf(ArgumentError);
    });

    it('deletes conditionally and unconditionally', async () => {
      const device = await service.devices.create('reg-4');
      expect((await failure(service.devices.delete('reg-4', { etag: 'stale' }))).hubCode).toBe(412001);
      await service.devices.delete('reg-4', { etag: device.etag });
      expect((await failure(service.devices.get('reg-4'))).code).toBe('DeviceNotFound');
      await service.devices.create('reg-4');
      await service.devices.delete('reg-4');
      expect((await failure(service.devices.delete('reg-4'))).code).toBe('DeviceNotFound');
    });

    it('lists devices, at most top', async () => {
      await service.devices.create('list-a');
      await service.devices.create('list-b');
      const all = await service.devices.list();
      expect(all.map((d) => d.deviceId)).toEqual(expect.arrayContaining(['list-a', 'list-b']));
      expect(await service.devices.list({ top: 1 })).toHaveLength(1);
      await expect(service.devices.list({ top: 0 })).rejects.toBeInstanceOf(ArgumentError);
    });

    it('runs bulk operations and reports failed items without throwing', async () => {
      const created = await service.devices.bulk([
        { operation: 'create', deviceId: 'bulk-1' },
        { operation: 'create', deviceId: 'bulk-2', status: 'disabled' },
      ]);
      expect(created).toMatchObject({ isSuccessful: true, errors: [] });
      const bulk1 = await service.devices.get('bulk-1');
      expect((await service.devices.get('bulk-2')).status).toBe('disabled');

      const mixed = await service.devices.bulk([
        { operation: 'update', deviceId: 'bulk-1', etag: bulk1.etag, status: 'disabled' },
        { operation: 'delete', deviceId: 'bulk-2', etag: 'stale' },
      ]);
      expect(mixed.isSuccessful).toBe(false);
      expect(mixed.errors).toHaveLength(1);
      expect(mixed.errors[0]).toMatchObject({ deviceId: 'bulk-2' });
      expect((await service.devices.get('bulk-1')).status).toBe('disabled');
      const twin = await service.twins.get('bulk-1');
      expect(
        await service.devices.bulk([
          { operation: 'updateTwin', deviceId: 'bulk-1', twinEtag: twin.etag, tags: { bulk: true } },
        ]),
      ).toMatchObject({ isSuccessful: true });
      expect((await service.twins.get('bulk-1')).tags).toEqual({ bulk: true });

      expect(await service.devices.bulk([{ operation: 'delete', deviceId: 'bulk-2' }])).toMatchObject({
        isSuccessful: true,
      });
      expect((await failure(service.devices.get('bulk-2'))).code).toBe('DeviceNotFound');
      await expect(service.devices.bulk([])).rejects.toBeInstanceOf(ArgumentError);
    });

    it('reads registry and service statistics', async () => {
      const before = await service.devices.statistics();
      await service.devices.create({ deviceId: 'stats-off', status: 'disabled' });
      const after = await service.devices.statistics();
      expect(after.totalDeviceCount).toBe(before.totalDeviceCount + 1);
      expect(after.disabledDeviceCount).toBe(before.disabledDeviceCount + 1);
      expect(after.enabledDeviceCount + after.disabledDeviceCount).toBe(after.totalDeviceCount);
      expect(await service.devices.serviceStatistics()).toEqual({ connectedDeviceCount: 0 });
    });
  });

  describe('devices.modules', () => {
    it('creates, gets, lists, updates and deletes modules', async () => {
      await service.devices.create('mod-dev');
      const module = await service.devices.modules.create({ deviceId: 'mod-dev', moduleId: 'm1' });
      expect(module).toMatchObject({ deviceId: 'mod-dev', moduleId: 'm1' });
      expect(module.authentication.symmetricKey?.primaryKey).toBeTruthy();
      expect((await failure(service.devices.modules.create({ deviceId: 'mod-dev', moduleId: 'm1' }))).status).toBe(409);
      expect(await service.devices.modules.get('mod-dev', 'm1')).toMatchObject({ etag: module.etag });
      await service.devices.modules.create({ deviceId: 'mod-dev', moduleId: 'm2' });
      expect((await service.devices.modules.list('mod-dev')).map((m) => m.moduleId).sort()).toEqual(['m1', 'm2']);

      const updated = await service.devices.modules.update({ ...module, managedBy: 'ops' });
      expect(updated.managedBy).toBe('ops');
      expect((await failure(service.devices.modules.update({ ...module, managedBy: 'x' }))).hubCode).toBe(412001);
      await service.devices.modules.update({ deviceId: 'mod-dev', moduleId: 'm1', managedBy: null }, { force: true });

      await service.devices.modules.delete('mod-dev', 'm2');
      await service.devices.modules.delete('mod-dev', 'm1', {
        etag: (await service.devices.modules.get('mod-dev', 'm1')).etag,
      });
      expect((await failure(service.devices.modules.get('mod-dev', 'm1'))).code).toBe('ModuleNotFound');
      expect(await service.devices.modules.list('mod-dev')).toEqual([]);
    });
  });

  describe('twins', () => {
    it('gets, patches (with etag) and replaces a device twin', async () => {
      await service.devices.create('twin-1');
      const twin = await service.twins.get('twin-1');
      expect(twin).toMatchObject({ deviceId: 'twin-1', tags: {}, properties: { desired: {}, reported: {} } });
      const patched = await service.twins.patch(
        'twin-1',
        { tags: { site: 'plant-1', floor: 2 }, properties: { desired: { interval: 5 } } },
        { etag: twin.etag },
      );
      expect(patched.tags).toEqual({ site: 'plant-1', floor: 2 });
      expect(patched.properties.desired).toMatchObject({ interval: 5 });
      expect(patched.etag).not.toBe(twin.etag);

      const stale = await failure(service.twins.patch('twin-1', { tags: { x: 1 } }, { etag: twin.etag }));
      expect(stale.code).toBe('PreconditionFailed');

      const merged = await service.twins.patch('twin-1', { tags: { floor: null, wing: 'b' } });
      expect(merged.tags).toEqual({ site: 'plant-1', wing: 'b' });

      const replaced = await service.twins.replace('twin-1', { tags: { only: true } }, { etag: merged.etag });
      expect(replaced.tags).toEqual({ only: true });
      expect(replaced.properties.desired).not.toHaveProperty('interval');
      expect((await failure(service.twins.get('nobody'))).code).toBe('DeviceNotFound');
    });

    it('reads and writes a module twin', async () => {
      await service.devices.create('twin-2');
      await service.devices.modules.create({ deviceId: 'twin-2', moduleId: 'edge' });
      const patched = await service.twins.patch(
        'twin-2',
        { properties: { desired: { mode: 'eco' } } },
        { moduleId: 'edge' },
      );
      expect(patched).toMatchObject({ deviceId: 'twin-2', moduleId: 'edge' });
      expect((await service.twins.get('twin-2', { moduleId: 'edge' })).properties.desired).toMatchObject({
        mode: 'eco',
      });
      expect((await service.twins.get('twin-2')).properties.desired).not.toHaveProperty('mode');
      const replaced = await service.twins.replace('twin-2', { tags: { t: 1 } }, { moduleId: 'edge' });
      expect(replaced.tags).toEqual({ t: 1 });
    });
  });

  describe('query', () => {
    it('iterates every item across pages, following x-ms-continuation until it is absent', async () => {
      for (let index = 0; index < 5; index++) {
        await service.devices.create(`q-${index}`);
        await service.twins.patch(`q-${index}`, { tags: { site: 'plant-q' } });
      }
      const text = "SELECT * FROM devices WHERE tags.site = 'plant-q'";
      const items = [];
      for await (const twin of service.query<{ deviceId: string }>(text, { pageSize: 2 })) items.push(twin.deviceId);
      expect(items.sort()).toEqual(['q-0', 'q-1', 'q-2', 'q-3', 'q-4']);

      const pages = [];
      for await (const page of service.query(text, { pageSize: 2 }).pages()) pages.push(page);
      expect(pages.map((p) => p.items.length)).toEqual([2, 2, 1]);
      expect(pages.map((p) => p.continuationToken === undefined)).toEqual([false, false, true]);
      expect(pages[0]?.itemType).toBe('twin');

      const resumed = await service
        .query(text, { pageSize: 2, continuationToken: pages[1]?.continuationToken ?? '' })
        .toArray();
      expect(resumed).toHaveLength(1);
    });

    it('reads raw projections and counts', async () => {
      const [count] = await service
        .query<{ n: number }>("SELECT COUNT() AS n FROM devices WHERE tags.site = 'plant-q'")
        .toArray();
      expect(count).toEqual({ n: 5 });
    });

    it('maps a query the hub cannot parse to an ArgumentError', async () => {
      const error = await failure(service.query('SELEKT nothing').toArray());
      expect(error.status).toBe(400);
      expect(() => service.query('')).toThrow(ArgumentError);
    });
  });

  describe('directMethods', () => {
    const online = (
      deviceId: string,
      moduleId: string | undefined,
      handler: (request: MethodRequest) => Promise<unknown>,
    ) => {
      const { context } = testHub.hub.core;
      return context.bus.respond(context.hubName, methodSubject(deviceId, moduleId), (payload) =>
        handler(payload as MethodRequest),
      );
    };

    beforeAll(async () => {
      await service.devices.create('meth-1');
      await service.devices.modules.create({ deviceId: 'meth-1', moduleId: 'mod' });
    });

    it('invokes a device method and returns the status and payload the device chose', async () => {
      const stop = online('meth-1', undefined, async (request) => ({
        status: 201,
        payload: { method: request.methodName, got: request.payload },
      }));
      try {
        const result = await service.directMethods.invoke('meth-1', {
          methodName: 'reboot',
          payload: { delay: 5 },
          responseTimeoutInSeconds: 10,
        });
        expect(result).toEqual({ status: 201, payload: { method: 'reboot', got: { delay: 5 } } });
      } finally {
        stop();
      }
    });

    it('invokes a module method', async () => {
      const stop = online('meth-1', 'mod', async () => ({ status: 200, payload: 'module says hi' }));
      try {
        expect(await service.directMethods.invoke('meth-1', { methodName: 'hi', moduleId: 'mod' })).toEqual({
          status: 200,
          payload: 'module says hi',
        });
      } finally {
        stop();
      }
    });

    it('rejects with DeviceNotOnline 404103 when the device is not connected', async () => {
      const error = await failure(service.directMethods.invoke('meth-1', { methodName: 'reboot' }));
      expect(error.code).toBe('DeviceNotOnline');
      expect(error.hubCode).toBe(404103);
      expect((await failure(service.directMethods.invoke('nobody', { methodName: 'x' }))).code).toBe('DeviceNotFound');
    });

    it('waits connectTimeoutInSeconds for the device', async () => {
      let stop: (() => void) | undefined;
      const timer = setTimeout(() => {
        stop = online('meth-1', undefined, async () => ({ status: 200, payload: null }));
      }, 300);
      try {
        expect(
          await service.directMethods.invoke('meth-1', { methodName: 'late', connectTimeoutInSeconds: 5 }),
        ).toEqual({ status: 200, payload: null });
      } finally {
        clearTimeout(timer);
        stop?.();
      }
    });

    it('rejects with TimeoutError 504101 when the device does not answer in time', async () => {
      const stop = online('meth-1', undefined, () => new Promise(() => undefined));
      try {
        const error = await failure(
          service.directMethods.invoke('meth-1', { methodName: 'slow', responseTimeoutInSeconds: 5 }),
        );
        expect(error).toBeInstanceOf(TimeoutError);
        expect(error.hubCode).toBe(504101);
      } finally {
        stop();
      }
    });

    it('aborts a pending invocation', async () => {
      const stop = online('meth-1', undefined, () => new Promise(() => undefined));
      try {
        const controller = new AbortController();
        setTimeout(() => controller.abort(), 200);
        const error = await failure(
          service.directMethods.invoke('meth-1', { methodName: 'slow' }, { signal: controller.signal }),
        );
        expect(error).toBeInstanceOf(AbortError);
      } finally {
        stop();
      }
    });
  });

  describe('cloudToDevice', () => {
    beforeAll(async () => {
      await service.devices.create('c2d-1');
      await service.devices.create('c2d#2?');
    });

    it('queues a message with its fields and properties over AMQP', async () => {
      const before = Date.now();
      const result = await service.cloudToDevice.send(
        'c2d-1',
        {
          body: { hello: 'world' },
          messageId: 'm-1',
          correlationId: 'c-1',
          properties: { Priority: 'high', note: 'a;b=c ü' },
        },
        { ack: 'full' },
      );
      expect(result).toMatchObject({ messageId: 'm-1', expiryTimeUtc: undefined });
      expect(result.enqueuedTimeUtc.getTime()).toBeGreaterThanOrEqual(before);
      expect(await testHub.hub.core.cloudToDevice.count('c2d-1')).toBe(1);

      const delivery = await testHub.hub.core.cloudToDevice.receive('c2d-1');
      expect(delivery?.message).toMatchObject({
        messageId: 'm-1',
        correlationId: 'c-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        ack: 'full',
      });
      // AMQP application properties keep their names as written (HTTP headers lower-cased them).
      expect(delivery?.message.properties).toMatchObject({ Priority: 'high', note: 'a;b=c ü' });
      expect(Buffer.from(delivery?.message.body ?? []).toString()).toBe('{"hello":"world"}');
      await testHub.hub.core.cloudToDevice.complete('c2d-1', delivery?.lockToken ?? '');
    });

    it('sends bytes and strings as they are, with an expiry, UUID ids and an encoded device id', async () => {
      const expiry = new Date(Date.now() + 60_000);
      const sent = await service.cloudToDevice.send('c2d-1', {
        body: new Uint8Array([0, 1, 255]),
        expiryTimeUtc: expiry,
      });
      expect(sent.messageId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(sent.expiryTimeUtc?.getTime()).toBe(expiry.getTime());
      await service.cloudToDevice.send('c2d-1', { body: 'plain', contentType: 'text/plain' });
      const first = await testHub.hub.core.cloudToDevice.receive('c2d-1');
      expect([...(first?.message.body ?? [])]).toEqual([0, 1, 255]);
      expect(first?.message.expiryTimeUtc).toBe(expiry.getTime());
      expect(first?.message.contentType).toBeUndefined();
      // The generated id travelled as an AMQP uuid and comes back in its canonical form.
      expect(first?.message.messageId).toBe(sent.messageId);
      await testHub.hub.core.cloudToDevice.complete('c2d-1', first?.lockToken ?? '');
      const second = await testHub.hub.core.cloudToDevice.receive('c2d-1');
      expect(Buffer.from(second?.message.body ?? []).toString()).toBe('plain');
      expect(second?.message.contentType).toBe('text/plain');
      await testHub.hub.core.cloudToDevice.complete('c2d-1', second?.lockToken ?? '');

      await service.cloudToDevice.send('c2d#2?', { body: 'encoded' });
      const encoded = await testHub.hub.core.cloudToDevice.receive('c2d#2?');
      expect(Buffer.from(encoded?.message.body ?? []).toString()).toBe('encoded');
      await testHub.hub.core.cloudToDevice.complete('c2d#2?', encoded?.lockToken ?? '');
    });

    it('maps hub refusals to typed errors: unknown device, full queue, too large, bad arguments', async () => {
      const unknown = await failure(service.cloudToDevice.send('nobody', { body: 'x' }));
      expect(unknown).toMatchObject({ code: 'DeviceNotFound', hubCode: 404001 });
      await expect(service.cloudToDevice.send('c2d-1', { body: 'x', properties: { '': 'v' } })).rejects.toBeInstanceOf(
        ArgumentError,
      );
      await expect(
        service.cloudToDevice.send('c2d-1', { body: 'x' }, { ack: 'sometimes' as 'full' }),
      ).rejects.toBeInstanceOf(ArgumentError);
      const tooLarge = await failure(service.cloudToDevice.send('c2d-1', { body: new Uint8Array(70 * 1024) }));
      expect(tooLarge.code).toBe('MessageTooLarge');

      await service.devices.create('c2d-full');
      for (let index = 0; index < 50; index++) await service.cloudToDevice.send('c2d-full', { body: `m${index}` });
      const full = await failure(service.cloudToDevice.send('c2d-full', { body: 'one too many' }));
      expect(full).toMatchObject({ code: 'DeviceMaximumQueueDepthExceeded', hubCode: 403004 });
      // The link survives refusals: the next send on it works.
      await service.cloudToDevice.purge('c2d-full');
      await service.cloudToDevice.send('c2d-full', { body: 'fits again' });
      await service.devices.delete('c2d-full');
    });

    it('refuses a policy without ServiceConnect with an AuthenticationError', async () => {
      const registryRead = withPort(await testHub.hub.core.policies.connectionString('registryRead'));
      await using client = createServiceClient({
        connectionString: registryRead,
        ca: testHub.ca,
        amqpPort: amqpPort(),
      });
      expect(await failure(client.cloudToDevice.send('c2d-1', { body: 'x' }))).toBeInstanceOf(AuthenticationError);
      expect(await failure(take(client.cloudToDevice.feedback(), 1))).toBeInstanceOf(AuthenticationError);
      expect(await failure(take(client.telemetry.read(), 1))).toBeInstanceOf(AuthenticationError);
    });

    it('maps a wrong key (CBS put-token refused) to AuthenticationError', async () => {
      const wrong = connectionString.replace(
        /SharedAccessKey=[^;]+/,
        `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`,
      );
      await using client = createServiceClient({ connectionString: wrong, ca: testHub.ca, amqpPort: amqpPort() });
      expect(await failure(client.cloudToDevice.send('c2d-1', { body: 'x' }))).toBeInstanceOf(AuthenticationError);
      expect(await failure(take(client.telemetry.read(), 1))).toBeInstanceOf(AuthenticationError);
    });

    it('sends 50 messages at once on one link, in order, without a MaxListenersExceededWarning', async () => {
      await service.devices.create('c2d-burst');
      const warnings: Error[] = [];
      const onWarning = (warning: Error) => warnings.push(warning);
      process.on('warning', onWarning);
      try {
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, index) =>
            service.cloudToDevice.send('c2d-burst', { body: `m${index}`, messageId: `burst-${index}` }),
          ),
        );
        expect(results).toHaveLength(50);
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        process.off('warning', onWarning);
      }
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
      const first = await testHub.hub.core.cloudToDevice.receive('c2d-burst');
      expect(first?.message.messageId).toBe('burst-0');
      await service.devices.delete('c2d-burst');
    });

    it('sends with a ready-made SharedAccessSignature connection string', async () => {
      const token = await testHub.serviceToken('iothubowner');
      await using client = createServiceClient({
        connectionString: `HostName=localhost:${testHub.info.ports.https};SharedAccessSignature=${token}`,
        ca: testHub.ca,
        amqpPort: amqpPort(),
      });
      await client.cloudToDevice.send('c2d-1', { body: 'by token', messageId: 'sas-1' });
      const delivery = await testHub.hub.core.cloudToDevice.receive('c2d-1');
      expect(delivery?.message.messageId).toBe('sas-1');
      await testHub.hub.core.cloudToDevice.complete('c2d-1', delivery?.lockToken ?? '');
    });

    it('sends over AMQP over WebSockets on the HTTPS port', async () => {
      await using client = createServiceClient({ connectionString, ca: testHub.ca, webSockets: true });
      await client.cloudToDevice.send('c2d-1', { body: 'over ws', messageId: 'ws-1' });
      const delivery = await testHub.hub.core.cloudToDevice.receive('c2d-1');
      expect(delivery?.message.messageId).toBe('ws-1');
      await testHub.hub.core.cloudToDevice.complete('c2d-1', delivery?.lockToken ?? '');
    });

    it('lets a Node process exit once the client is closed (nothing left holding the event loop)', async () => {
      const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
      // The built package, as a tool such as the CLI loads it (built by `npm run build`).
      if (!existsSync(dist)) throw new Error(`build @fieldhub/service first: ${dist} is missing`);
      const script = `
        const { createServiceClient } = await import(${JSON.stringify(dist)});
        const service = createServiceClient(JSON.parse(process.env.OPTIONS));
        await service.cloudToDevice.send('c2d-1', { body: 'from a child', messageId: 'child-1' });
        for await (const event of service.telemetry.read({ from: 'earliest' })) break;
        try {
          for await (const record of service.cloudToDevice.feedback({ signal: AbortSignal.timeout(200) })) break;
        } catch (error) {
          if (error.name !== 'AbortError') throw error;
        }
        await service.close();
      `;
      await testHub.hub.core.telemetry.append({ deviceId: 'child', body: new Uint8Array([1]) });
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        env: { ...process.env, OPTIONS: JSON.stringify({ connectionString, ca: testHub.ca, amqpPort: amqpPort() }) },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      // A child that does not exit fails the test by its timeout; it must not outlive it.
      onTestFinished(() => {
        child.kill();
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      const code = await new Promise((resolve) => child.once('exit', resolve));
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const delivery = await testHub.hub.core.cloudToDevice.receive('c2d-1');
      expect(delivery?.message.messageId).toBe('child-1');
      await testHub.hub.core.cloudToDevice.complete('c2d-1', delivery?.lockToken ?? '');
    });

    it('maps an unreachable AMQP port to a retryable ConnectionError', async () => {
      await using client = createServiceClient({ connectionString, ca: testHub.ca, amqpPort: 1 });
      const error = await failure(client.cloudToDevice.send('c2d-1', { body: 'x' }));
      expect(error).toBeInstanceOf(ConnectionError);
      expect(error.isRetryable).toBe(true);
    });

    it('aborts a send whose signal is aborted', async () => {
      const error = await failure(service.cloudToDevice.send('c2d-1', { body: 'x' }, { signal: AbortSignal.abort() }));
      expect(error).toBeInstanceOf(AbortError);
    });

    it('purges a device queue', async () => {
      await service.cloudToDevice.send('c2d-1', { body: 'a' });
      await service.cloudToDevice.send('c2d-1', { body: 'b' });
      expect(await service.cloudToDevice.purge('c2d-1')).toMatchObject({ totalMessagesPurged: 2, deviceId: 'c2d-1' });
      expect(await testHub.hub.core.cloudToDevice.count('c2d-1')).toBe(0);
      expect((await failure(service.cloudToDevice.purge('nobody'))).code).toBe('DeviceNotFound');
    });

    it('reads feedback at least once: a batch left midway comes again, a finished one is completed', async () => {
      const { cloudToDevice } = testHub.hub.core;
      // Drop the feedback earlier tests produced.
      for (let batch = await cloudToDevice.receiveFeedback(); batch; batch = await cloudToDevice.receiveFeedback()) {
        await cloudToDevice.completeFeedback(batch.lockToken);
      }
      await service.cloudToDevice.send('c2d-1', { body: 'fb', messageId: 'fb-1' }, { ack: 'full' });
      const delivery = await cloudToDevice.receive('c2d-1');
      await cloudToDevice.complete('c2d-1', delivery?.lockToken ?? '');

      // Stops after the record, before asking for more: the batch is released and comes again.
      const [first] = await take(service.cloudToDevice.feedback(), 1);
      expect(first).toMatchObject({ originalMessageId: 'fb-1', deviceId: 'c2d-1', statusCode: 'Success' });

      const controller = new AbortController();
      const iterator = service.cloudToDevice.feedback({ signal: controller.signal });
      const again = await iterator.next();
      expect(again.value).toMatchObject({ originalMessageId: 'fb-1' });
      // Asking for the next record accepts the batch; nothing else waits, so it waits until aborted.
      const next = iterator.next();
      await expect.poll(async () => (await cloudToDevice.depths()).feedback).toBe(0);
      controller.abort();
      await expect(next).rejects.toBeInstanceOf(AbortError);
      expect(await cloudToDevice.receiveFeedback()).toBeUndefined();
    });

    it('ends a feedback iterator quietly when the client closes', async () => {
      const client = createServiceClient({ connectionString, ca: testHub.ca, amqpPort: amqpPort() });
      const reading = take(client.cloudToDevice.feedback(), 1);
      await new Promise((resolve) => setTimeout(resolve, 150));
      await client.close();
      expect(await reading).toEqual([]);
    });

    it('receives feedback that arrives later, for a rejected message', async () => {
      const { cloudToDevice } = testHub.hub.core;
      const reading = take(service.cloudToDevice.feedback(), 1);
      await service.cloudToDevice.send('c2d-1', { body: 'late', messageId: 'fb-2' }, { ack: 'negative' });
      const delivery = await cloudToDevice.receive('c2d-1');
      await cloudToDevice.reject('c2d-1', delivery?.lockToken ?? '');
      const [record] = await reading;
      expect(record).toMatchObject({ originalMessageId: 'fb-2', statusCode: 'Rejected' });
    });
  });

  describe('telemetry', () => {
    const append = (deviceId: string, body: string | Uint8Array, extra: Record<string, unknown> = {}) =>
      testHub.hub.core.telemetry.append({
        deviceId,
        body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
        ...(typeof body === 'string' ? { contentType: 'text/plain' } : {}),
        ...extra,
      });
    /** Waits until the hub has a reader open on every partition (a `latest` reader starts there). */
    const readersOpen = (count: number) =>
      expect.poll(() => testHub.hub.core.telemetry.openReaders, { timeout: 10_000 }).toBeGreaterThanOrEqual(count);

    it('reads from earliest with every field, and ends once caught up when live is false', async () => {
      await append('tel-1', '{"t":21}', {
        messageId: 'tm-1',
        correlationId: 'tc-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        properties: { temp: '21' },
      });
      await append('tel-1', new Uint8Array([0xff, 0x00, 0x10]), { messageId: 'tm-2' });
      const events: TelemetryEvent[] = [];
      for await (const event of service.telemetry.read({ from: 'earliest', live: false })) {
        if (event.deviceId === 'tel-1') events.push(event);
      }
      expect(events).toHaveLength(2);
      const [json, binary] = events;
      expect(json).toMatchObject({
        deviceId: 'tel-1',
        moduleId: undefined,
        messageId: 'tm-1',
        correlationId: 'tc-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        properties: { temp: '21' },
        bodyText: '{"t":21}',
        sequenceNumber: expect.any(Number),
        partition: expect.any(Number),
        offset: expect.any(String),
      });
      expect(json?.systemProperties['iothub-connection-device-id']).toBe('tel-1');
      expect(json?.systemProperties['x-opt-sequence-number']).toBe(json?.sequenceNumber);
      expect(json?.enqueuedTime).toBeInstanceOf(Date);
      expect(new TextDecoder().decode(json?.body)).toBe('{"t":21}');
      expect(binary?.bodyText).toBeUndefined();
      expect([...(binary?.body ?? [])]).toEqual([0xff, 0x00, 0x10]);
      expect(binary?.sequenceNumber).toBeGreaterThan(json?.sequenceNumber ?? Number.POSITIVE_INFINITY);
    });

    it('reads every partition: events of many devices all arrive', async () => {
      const devices = Array.from({ length: 12 }, (_, index) => `spread-${index}`);
      const appended = await Promise.all(devices.map((deviceId) => append(deviceId, deviceId)));
      const partitions = new Set(appended.map((event) => event.partition));
      expect(partitions.size).toBeGreaterThan(1);
      const seen = new Set<string>();
      for await (const event of service.telemetry.read({ from: 'earliest', live: false })) {
        if (event.deviceId?.startsWith('spread-')) seen.add(event.deviceId);
      }
      expect([...seen].sort()).toEqual([...devices].sort());
    });

    it('reads after a sequence number in one partition, and after an enqueued time', async () => {
      const first = await append('tel-2', 'one');
      await new Promise((resolve) => setTimeout(resolve, 5));
      const second = await append('tel-2', 'two');
      const afterFirst = [];
      for await (const event of service.telemetry.read({
        from: { sequenceNumber: first.sequenceNumber },
        partition: first.partition,
        live: false,
      })) {
        if (event.deviceId === 'tel-2') afterFirst.push(event.bodyText);
      }
      expect(afterFirst).toEqual(['two']);

      const byTime = [];
      for await (const event of service.telemetry.read({
        from: { enqueuedTime: new Date(first.enqueuedTime) },
        live: false,
      })) {
        if (event.deviceId === 'tel-2') byTime.push(event.sequenceNumber);
      }
      expect(byTime).toEqual([second.sequenceNumber]);
    });

    it('tails live events from latest and stops on abort, releasing the hub readers', async () => {
      await append('tel-3', 'old');
      const controller = new AbortController();
      const iterator = service.telemetry.read({ signal: controller.signal, consumerGroup: '$Default' });
      const next = iterator.next();
      await readersOpen(testHub.hub.core.telemetry.partitionCount);
      await append('tel-3', 'new');
      const result = await next;
      expect(result.value).toMatchObject({ deviceId: 'tel-3', bodyText: 'new' });
      const pending = iterator.next();
      controller.abort();
      await expect(pending).rejects.toBeInstanceOf(AbortError);
      await expect.poll(() => testHub.hub.core.telemetry.openReaders).toBe(0);
    });

    it('releases the hub readers when the consumer breaks out', async () => {
      await append('tel-4', 'x');
      await take(service.telemetry.read({ from: 'earliest' }), 1);
      await expect.poll(() => testHub.hub.core.telemetry.openReaders).toBe(0);
    });

    it('reads through a named consumer group and refuses an unknown one and an unknown partition', async () => {
      await testHub.hub.core.telemetry.createConsumerGroup('analytics');
      const events = await take(service.telemetry.read({ consumerGroup: 'analytics', from: 'earliest' }), 1);
      expect(events).toHaveLength(1);
      const error = await failure(take(service.telemetry.read({ consumerGroup: 'nope' }), 1));
      expect(error.code).toBe('ResourceNotFound');
      const partition = await failure(take(service.telemetry.read({ partition: 999 }), 1));
      expect(partition.isRetryable).toBe(false);
      await expect(take(service.telemetry.read({ partition: -1 }), 1)).rejects.toBeInstanceOf(ArgumentError);
    });

    it('reads over AMQP over WebSockets', async () => {
      const appended = await append('tel-ws', 'over ws');
      await using client = createServiceClient({ connectionString, ca: testHub.ca, webSockets: true });
      const [event] = await take(
        client.telemetry.read({
          from: { sequenceNumber: appended.sequenceNumber - 1 },
          partition: appended.partition,
        }),
        1,
      );
      expect(event).toMatchObject({ deviceId: 'tel-ws', bodyText: 'over ws' });
    });

    it('ends a live read quietly when the client closes', async () => {
      const client = createServiceClient({ connectionString, ca: testHub.ca, amqpPort: amqpPort() });
      const reading = (async () => {
        const seen = [];
        for await (const event of client.telemetry.read({ from: 'latest' })) seen.push(event);
        return seen;
      })();
      await new Promise((resolve) => setTimeout(resolve, 200));
      await client.close();
      expect(await reading).toEqual([]);
    });
  });

  describe('telemetry reconnect', () => {
    /** A port that was free a moment ago, so that a restarted hub listens where the client dials. */
    const freePort = () =>
      new Promise<number>((resolve, reject) => {
        const server = createServer();
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
          const address = server.address();
          server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
        });
      });

    it('reconnects after the hub restarts and resumes after the last event, per partition and across', async () => {
      const port = await freePort();
      const amqp = await freePort();
      const restartable = await startTestHub({ ports: { https: port, amqp } });
      try {
        await using client = createServiceClient({
          connectionString: restartable.info.serviceConnectionString,
          ca: restartable.ca,
          port,
          amqpPort: amqp,
        });
        const append = (body: string) =>
          restartable.hub.core.telemetry.append({
            deviceId: 'rc-1',
            body: new TextEncoder().encode(body),
            contentType: 'text/plain',
          });
        const before = await append('before');
        const controller = new AbortController();
        const across = client.telemetry.read({ from: 'earliest', signal: controller.signal });
        const single = client.telemetry.read({
          from: 'earliest',
          partition: before.partition,
          signal: controller.signal,
        });
        expect((await across.next()).value).toMatchObject({ bodyText: 'before' });
        expect((await single.next()).value).toMatchObject({ bodyText: 'before' });
        const nextAcross = across.next();
        const nextSingle = single.next();

        await restartable.restart();
        await append('after');

        expect((await nextAcross).value).toMatchObject({ bodyText: 'after' });
        expect((await nextSingle).value).toMatchObject({ bodyText: 'after' });
        controller.abort();
        await expect(across.next()).rejects.toBeInstanceOf(AbortError);
      } finally {
        await restartable.stop();
      }
    });

    it('reattaches the feedback receiver and the sender after the hub restarts', async () => {
      const port = await freePort();
      const amqp = await freePort();
      const restartable = await startTestHub({ ports: { https: port, amqp } });
      try {
        await using client = createServiceClient({
          connectionString: restartable.info.serviceConnectionString,
          ca: restartable.ca,
          port,
          amqpPort: amqp,
        });
        await client.devices.create('rc-fb');
        await client.cloudToDevice.send('rc-fb', { body: 'before', messageId: 'rc-before' });
        const reading = take(client.cloudToDevice.feedback(), 1);
        // Let the feedback link attach before the restart cuts it.
        await new Promise((resolve) => setTimeout(resolve, 200));

        await restartable.restart();
        await client.cloudToDevice.send('rc-fb', { body: 'after', messageId: 'rc-after' }, { ack: 'positive' });
        const { cloudToDevice } = restartable.hub.core;
        for (
          let delivery = await cloudToDevice.receive('rc-fb');
          delivery;
          delivery = await cloudToDevice.receive('rc-fb')
        ) {
          await cloudToDevice.complete('rc-fb', delivery.lockToken);
        }
        const [record] = await reading;
        expect(record).toMatchObject({ originalMessageId: 'rc-after', statusCode: 'Success' });
      } finally {
        await restartable.stop();
      }
    });
  });
});
