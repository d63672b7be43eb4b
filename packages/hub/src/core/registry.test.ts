import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createLocalBus } from '../bus/local/local-bus';
import { openSqliteStore } from '../store/sqlite/sqlite-store';
import type { Store } from '../store/store';
import { type CoreContext, defaultCoreOptions } from './context';
import { type IdentityIds, type LifecycleSink, Registry } from './registry';
import { Twins } from './twins';

const stores: Store[] = [];
let now = Date.UTC(2026, 10, 27, 12, 0, 0);

async function setup() {
  const store = await openSqliteStore({ path: ':memory:' });
  stores.push(store);
  const ctx: CoreContext = {
    hubName: 'hub',
    hostName: 'hub.example.test',
    store,
    bus: createLocalBus(),
    logger: pino({ level: 'silent' }),
    now: () => now,
    options: defaultCoreOptions,
  };
  const lifecycle: { op: string; twin: unknown; ids: IdentityIds }[] = [];
  const events: LifecycleSink = {
    deviceLifecycle: async (op, twin, ids) => {
      lifecycle.push({ op, twin, ids });
    },
    twinChanged: async () => {},
  };
  const deleted: IdentityIds[] = [];
  const registry = new Registry(ctx, { events, onDeviceDeleted: [(ids) => void deleted.push(ids)] });
  const twins = new Twins(ctx, { events });
  const replaceTwin = (ids: IdentityIds, body: Record<string, unknown>, ifMatch: string) =>
    twins.replace(ids.deviceId, ids.moduleId, body, ifMatch, { onlyGivenSections: true });
  return { ctx, registry, twins, lifecycle, deleted, replaceTwin };
}

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

const sdkEmptyAuth = { type: 'sas', symmetricKey: { primaryKey: '', secondaryKey: '' } };
const key16 = Buffer.alloc(16, 1).toString('base64');
const key64 = Buffer.alloc(64, 2).toString('base64');
const sha1 = 'AB'.repeat(20);

describe('Registry devices', () => {
  it('creates a device with the exact §2.4 shape, generated keys and never-timestamps', async () => {
    const { registry, lifecycle } = await setup();
    const device = await registry.createDevice('d1', { deviceId: 'd1', authentication: sdkEmptyAuth });
    expect(Object.keys(device)).toEqual([
      'deviceId',
      'generationId',
      'etag',
      'connectionState',
      'status',
      'statusReason',
      'connectionStateUpdatedTime',
      'statusUpdatedTime',
      'lastActivityTime',
      'cloudToDeviceMessageCount',
      'authentication',
      'capabilities',
    ]);
    expect(device).toMatchObject({
      deviceId: 'd1',
      connectionState: 'Disconnected',
      status: 'enabled',
      statusReason: null,
      connectionStateUpdatedTime: '0001-01-01T00:00:00Z',
      statusUpdatedTime: '0001-01-01T00:00:00Z',
      lastActivityTime: '0001-01-01T00:00:00Z',
      cloudToDeviceMessageCount: 0,
      capabilities: { iotEdge: false },
      authentication: { type: 'sas', x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null } },
    });
    expect(Buffer.from(device.authentication.symmetricKey.primaryKey!, 'base64')).toHaveLength(32);
    expect(Buffer.from(device.authentication.symmetricKey.secondaryKey!, 'base64')).toHaveLength(32);
    expect(device.generationId).toMatch(/^\d{18}$/);
    expect(Buffer.from(device.etag, 'base64').toString()).toMatch(/^\d{9}$/);
    expect(lifecycle).toMatchObject([
      { op: 'createDeviceIdentity', ids: { deviceId: 'd1' }, twin: { deviceId: 'd1', version: 1 } },
    ]);
    expect(await registry.getDevice('d1')).toEqual(device);
  });

  it('also generates keys when authentication is absent, and keeps given valid keys', async () => {
    const { registry } = await setup();
    const bare = await registry.createDevice('bare', undefined);
    expect(bare.authentication.type).toBe('sas');
    expect(bare.authentication.symmetricKey.primaryKey).toBeTruthy();
    const given = await registry.createDevice('given', {
      authentication: { symmetricKey: { primaryKey: key16, secondaryKey: key64 } },
    });
    expect(given.authentication.symmetricKey).toEqual({ primaryKey: key16, secondaryKey: key64 });
  });

  it('rejects bad keys, thumbprints, ids and status with 400 ArgumentInvalid', async () => {
    const { registry } = await setup();
    const bad = [
      ['k1', { authentication: { symmetricKey: { primaryKey: 'not base64!' } } }],
      ['k2', { authentication: { symmetricKey: { primaryKey: Buffer.alloc(8).toString('base64') } } }],
      ['k3', { authentication: { symmetricKey: { primaryKey: Buffer.alloc(65).toString('base64') } } }],
      ['t1', { authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: 'AB' } } }],
      ['t2', { authentication: { type: 'selfSigned' } }],
      ['t3', { authentication: { type: 'kerberos' } }],
      ['s1', { status: 'sleeping' }],
      ['s2', { statusReason: 'x'.repeat(129) }],
      ['m1', { deviceId: 'other' }],
      ['bad/id', {}],
      ['x'.repeat(129), {}],
      ['', {}],
      ['sp ace', {}],
    ] as const;
    for (const [id, body] of bad) {
      await expect(registry.createDevice(id, body), id).rejects.toMatchObject({ code: 'ArgumentInvalid', status: 400 });
    }
    expect((await registry.statistics()).totalDeviceCount).toBe(0);
  });

  it('accepts every special character of §2.4 in ids', async () => {
    const { registry } = await setup();
    const id = "a-.+%_#*?!(),=@$':z";
    await registry.createDevice(id, {});
    expect((await registry.getDevice(id)).deviceId).toBe(id);
  });

  it('stores selfSigned, certificateAuthority and none authentication', async () => {
    const { registry } = await setup();
    const self = await registry.createDevice('x1', {
      authentication: { x509Thumbprint: { primaryThumbprint: sha1.toLowerCase() } },
    });
    expect(self.authentication).toEqual({
      symmetricKey: { primaryKey: null, secondaryKey: null },
      x509Thumbprint: { primaryThumbprint: sha1, secondaryThumbprint: null },
      type: 'selfSigned',
    });
    const ca = await registry.createDevice('x2', { authentication: { type: 'certificateAuthority' } });
    expect(ca.authentication.type).toBe('certificateAuthority');
    const none = await registry.createDevice('x3', { authentication: { type: 'None' } });
    expect(none.authentication).toMatchObject({ type: 'none', symmetricKey: { primaryKey: null } });
  });

  it('answers 409001 for a second create and 404001 for a missing device', async () => {
    const { registry } = await setup();
    await registry.putDevice('d1', {}, undefined);
    await expect(registry.putDevice('d1', {}, undefined)).rejects.toMatchObject({
      code: 'DeviceAlreadyExists',
      hubCode: 409001,
    });
    await expect(registry.getDevice('nope')).rejects.toMatchObject({ code: 'DeviceNotFound', hubCode: 404001 });
    await expect(registry.putDevice('nope', {}, '*')).rejects.toMatchObject({ code: 'DeviceNotFound' });
    await expect(registry.deleteDevice('nope', '*')).rejects.toMatchObject({ code: 'DeviceNotFound' });
  });

  it('updates with If-Match * or the current etag; a stale etag answers 412001; every write changes the etag', async () => {
    const { registry } = await setup();
    const created = await registry.createDevice('d1', {});
    now += 1000;
    const disabled = await registry.putDevice(
      'd1',
      { deviceId: 'd1', status: 'disabled', statusReason: 'maintenance' },
      created.etag,
    );
    expect(disabled).toMatchObject({
      status: 'disabled',
      statusReason: 'maintenance',
      statusUpdatedTime: new Date(now).toISOString(),
    });
    expect(disabled.etag).not.toBe(created.etag);
    expect(disabled.generationId).toBe(created.generationId);
    // The SDK's normalised empty keys on update keep the existing keys.
    expect(disabled.authentication.symmetricKey).toEqual(created.authentication.symmetricKey);
    await expect(registry.updateDevice('d1', { status: 'enabled' }, created.etag)).rejects.toMatchObject({
      code: 'PreconditionFailed',
      hubCode: 412001,
    });
    const forced = await registry.updateDevice('d1', { status: 'enabled', authentication: sdkEmptyAuth }, '*');
    expect(forced.status).toBe('enabled');
    expect(forced.authentication.symmetricKey).toEqual(created.authentication.symmetricKey);
    const rekeyed = await registry.updateDevice(
      'd1',
      { authentication: { symmetricKey: { primaryKey: key16, secondaryKey: key16 } } },
      '*',
    );
    expect(rekeyed.authentication.symmetricKey.primaryKey).toBe(key16);
  });

  it('deletes a device with its twin and modules, calls the listeners, and a recreated device has a new generationId', async () => {
    const { registry, twins, lifecycle, deleted } = await setup();
    const first = await registry.createDevice('d1', {});
    await registry.createModule('d1', 'm1', {});
    await twins.patch('d1', undefined, { tags: { a: 1 } }, '*');
    await expect(registry.deleteDevice('d1', 'stale')).rejects.toMatchObject({ code: 'PreconditionFailed' });
    await registry.deleteDevice('d1', first.etag);
    expect(deleted).toEqual([{ deviceId: 'd1', moduleId: 'm1' }, { deviceId: 'd1' }]);
    expect(lifecycle.map((e) => [e.op, e.ids])).toEqual([
      ['createDeviceIdentity', { deviceId: 'd1' }],
      ['createDeviceIdentity', { deviceId: 'd1', moduleId: 'm1' }],
      ['deleteDeviceIdentity', { deviceId: 'd1', moduleId: 'm1' }],
      ['deleteDeviceIdentity', { deviceId: 'd1' }],
    ]);
    await expect(registry.getDevice('d1')).rejects.toMatchObject({ code: 'DeviceNotFound' });
    await expect(registry.getModule('d1', 'm1')).rejects.toMatchObject({ code: 'ModuleNotFound' });
    const again = await registry.createDevice('d1', {});
    expect(again.generationId).not.toBe(first.generationId);
    const twin = await twins.get('d1');
    expect(twin.tags).toEqual({});
    expect(twin.version).toBe(1);
    expect(await registry.listModules('d1')).toEqual([]);
  });

  it('lists devices in id order with top, and counts statistics', async () => {
    const { registry } = await setup();
    for (const id of ['c', 'a', 'b']) await registry.createDevice(id, {});
    await registry.updateDevice('b', { status: 'disabled' }, '*');
    expect((await registry.listDevices()).map((d) => d.deviceId)).toEqual(['a', 'b', 'c']);
    expect((await registry.listDevices(2)).map((d) => d.deviceId)).toEqual(['a', 'b']);
    await expect(registry.listDevices(0)).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    expect(await registry.statistics()).toEqual({ totalDeviceCount: 3, enabledDeviceCount: 2, disabledDeviceCount: 1 });
    expect(await registry.serviceStatistics()).toEqual({ connectedDeviceCount: 0 });
  });

  it('tracks connection state and activity without changing the etag', async () => {
    const { registry } = await setup();
    const created = await registry.createDevice('d1', {});
    now += 5000;
    await registry.setConnectionState('d1', undefined, true);
    let device = await registry.getDevice('d1');
    expect(device).toMatchObject({
      connectionState: 'Connected',
      connectionStateUpdatedTime: new Date(now).toISOString(),
      lastActivityTime: new Date(now).toISOString(),
      etag: created.etag,
    });
    expect(await registry.serviceStatistics()).toEqual({ connectedDeviceCount: 1 });
    now += 60_000;
    await registry.touchActivity('d1');
    expect((await registry.getDevice('d1')).lastActivityTime).toBe(new Date(now).toISOString());
    const touched = now;
    now += 1000; // within the coalescing interval: no write
    await registry.touchActivity('d1');
    expect((await registry.getDevice('d1')).lastActivityTime).toBe(new Date(touched).toISOString());
    await registry.resetConnectionStates();
    device = await registry.getDevice('d1');
    expect(device.connectionState).toBe('Disconnected');
    // Unknown identities are ignored: a session may outlive its device.
    await registry.setConnectionState('ghost', undefined, true);
    await registry.touchActivity('ghost', 'm');
  });

  it('reports the cloud-to-device message count from the counter it was given', async () => {
    const { ctx } = await setup();
    const registry = new Registry(ctx, { cloudToDeviceMessageCount: async (d, m) => (m ? 2 : d.length) });
    expect((await registry.createDevice('abc', {})).cloudToDeviceMessageCount).toBe(3);
    expect((await registry.createModule('abc', 'm', {})).cloudToDeviceMessageCount).toBe(2);
  });
});

describe('Registry modules', () => {
  it('creates, reads, lists, updates and deletes modules with the §2.5 shape', async () => {
    const { registry, deleted } = await setup();
    await expect(registry.createModule('d1', 'm1', {})).rejects.toMatchObject({ code: 'DeviceNotFound' });
    await registry.createDevice('d1', {});
    const m1 = await registry.putModule(
      'd1',
      'm1',
      { moduleId: 'm1', deviceId: 'd1', authentication: sdkEmptyAuth },
      undefined,
    );
    expect(Object.keys(m1)).toEqual([
      'moduleId',
      'managedBy',
      'deviceId',
      'generationId',
      'etag',
      'connectionState',
      'connectionStateUpdatedTime',
      'lastActivityTime',
      'cloudToDeviceMessageCount',
      'authentication',
    ]);
    expect(m1).toMatchObject({ moduleId: 'm1', deviceId: 'd1', managedBy: null, connectionState: 'Disconnected' });
    await registry.createModule('d1', '$edgeAgent', {});
    await expect(registry.createModule('d1', 'm1', {})).rejects.toMatchObject({
      code: 'ModuleAlreadyExistsOnDevice',
      hubCode: 409301,
    });
    expect((await registry.listModules('d1')).map((m) => m.moduleId)).toEqual(['$edgeAgent', 'm1']);
    await expect(registry.listModules('nope')).rejects.toMatchObject({ code: 'DeviceNotFound' });
    const updated = await registry.putModule('d1', 'm1', { managedBy: 'someone' }, m1.etag);
    expect(updated.managedBy).toBe('someone');
    expect(updated.etag).not.toBe(m1.etag);
    expect(updated.authentication.symmetricKey).toEqual(m1.authentication.symmetricKey);
    await expect(registry.updateModule('d1', 'm1', {}, m1.etag)).rejects.toMatchObject({ code: 'PreconditionFailed' });
    await expect(registry.updateModule('d1', 'm9', {}, '*')).rejects.toMatchObject({
      code: 'ModuleNotFound',
      hubCode: 404010,
    });
    await registry.deleteModule('d1', 'm1', '*');
    expect(deleted).toEqual([{ deviceId: 'd1', moduleId: 'm1' }]);
    await expect(registry.getModule('d1', 'm1')).rejects.toMatchObject({ code: 'ModuleNotFound' });
    await expect(registry.deleteModule('d1', 'm1')).rejects.toMatchObject({ code: 'ModuleNotFound' });
    await expect(registry.createModule('d1', 'bad/module', {})).rejects.toMatchObject({ code: 'ArgumentInvalid' });
  });

  it('does not let one device see another device with a common id prefix as its modules', async () => {
    const { registry } = await setup();
    await registry.createDevice('d1', {});
    await registry.createDevice('d10', {});
    await registry.createModule('d10', 'm', {});
    expect(await registry.listModules('d1')).toEqual([]);
    await registry.deleteDevice('d1');
    expect((await registry.listModules('d10')).length).toBe(1);
  });
});

describe('Registry bulk', () => {
  it('creates, updates and deletes in one request with case-insensitive modes', async () => {
    const { registry, twins, replaceTwin } = await setup();
    const result = await registry.bulk(
      [
        {
          id: 'a',
          importMode: 'create',
          authentication: sdkEmptyAuth,
          tags: { t: 1 },
          properties: { desired: { x: 1 } },
        },
        {
          id: 'b',
          importMode: 'Create',
          authentication: { x509Thumbprint: { primaryThumbprint: sha1 }, type: 'selfSigned' },
        },
        { id: 'b', moduleId: 'm', importMode: 'CREATE' },
      ],
      replaceTwin,
    );
    expect(result).toEqual({ isSuccessful: true, errors: [], warnings: [] });
    expect((await twins.get('a')).tags).toEqual({ t: 1 });
    expect((await twins.get('a')).properties.desired).toMatchObject({ x: 1, $version: 1 });
    expect((await registry.getDevice('b')).authentication.type).toBe('selfSigned');
    expect((await registry.getModule('b', 'm')).moduleId).toBe('m');

    const a = await registry.getDevice('a');
    const second = await registry.bulk(
      [
        { id: 'a', importMode: 'UpdateIfMatchETag', eTag: a.etag, status: 'disabled' },
        { id: 'b', importMode: 'Delete' },
        { id: 'zz', importMode: 'update' },
        { id: 'a', moduleId: 'nope', importMode: 'deleteIfMatchETag', eTag: 'x' },
        { id: 'c', importMode: 'createOrUpdate' },
      ],
      replaceTwin,
    );
    expect(second.isSuccessful).toBe(false);
    expect(second.errors).toEqual([
      {
        deviceId: 'zz',
        errorCode: 'DeviceNotFound',
        errorStatus: expect.any(String),
        moduleId: null,
        operation: 'update',
      },
      {
        deviceId: 'a',
        errorCode: 'ModuleNotFound',
        errorStatus: expect.any(String),
        moduleId: 'nope',
        operation: 'deleteIfMatchETag',
      },
    ]);
    expect((await registry.getDevice('a')).status).toBe('disabled');
    await expect(registry.getDevice('b')).rejects.toMatchObject({ code: 'DeviceNotFound' });
    expect((await registry.getDevice('c')).status).toBe('enabled');
  });

  it('reports per-item errors: exists, stale etag, bad id', async () => {
    const { registry, replaceTwin } = await setup();
    await registry.createDevice('a', {});
    const result = await registry.bulk(
      [
        { id: 'a', importMode: 'create' },
        { id: 'a', moduleId: 'm', importMode: 'updateIfMatchETag', eTag: '"stale"' },
        { id: 'bad id', importMode: 'create' },
        { id: 'ok', importMode: 'create' },
      ],
      replaceTwin,
    );
    expect(result.errors.map((e) => [e.deviceId, e.errorCode])).toEqual([
      ['a', 'DeviceAlreadyExists'],
      ['a', 'ModuleNotFound'],
      ['bad id', 'ArgumentInvalid'],
    ]);
    expect((await registry.getDevice('ok')).deviceId).toBe('ok');
  });

  it('updates twins with updateTwin and updateTwinIfMatchETag', async () => {
    const { registry, twins, replaceTwin } = await setup();
    await registry.createDevice('a', {});
    await twins.patch('a', undefined, { tags: { keep: 1 }, properties: { desired: { old: 1 } } });
    const twin = await twins.get('a');
    const result = await registry.bulk(
      [{ id: 'a', importMode: 'updateTwinIfMatchETag', twinETag: twin.etag, properties: { desired: { fresh: 2 } } }],
      replaceTwin,
    );
    expect(result.isSuccessful).toBe(true);
    const after = await twins.get('a');
    expect(after.tags).toEqual({ keep: 1 });
    expect(after.properties.desired).toMatchObject({ fresh: 2 });
    expect(after.properties.desired).not.toHaveProperty('old');
    const stale = await registry.bulk(
      [{ id: 'a', importMode: 'updateTwinIfMatchETag', twinETag: twin.etag, tags: {} }],
      replaceTwin,
    );
    expect(stale.errors[0]).toMatchObject({ errorCode: 'PreconditionFailed', operation: 'updateTwinIfMatchETag' });
  });

  it('rejects malformed requests as a whole', async () => {
    const { registry, replaceTwin } = await setup();
    await expect(registry.bulk({}, replaceTwin)).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    await expect(registry.bulk([], replaceTwin)).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    const many = Array.from({ length: 101 }, (_, i) => ({ id: `d${i}`, importMode: 'create' }));
    await expect(registry.bulk(many, replaceTwin)).rejects.toMatchObject({ code: 'TooManyDevices', hubCode: 413002 });
    await expect(
      registry.bulk(
        [
          { id: 'a', importMode: 'create' },
          { id: 'a', importMode: 'delete' },
        ],
        replaceTwin,
      ),
    ).rejects.toMatchObject({ code: 'DeviceDefinedMultipleTimes', hubCode: 400011 });
    await expect(registry.bulk([{ id: 'a', importMode: 'explode' }], replaceTwin)).rejects.toMatchObject({
      code: 'ArgumentInvalid',
    });
    await expect(registry.bulk([{ importMode: 'create' }], replaceTwin)).rejects.toMatchObject({
      code: 'ArgumentInvalid',
    });
    expect((await registry.statistics()).totalDeviceCount).toBe(0);
    const hundred = Array.from({ length: 100 }, (_, i) => ({ id: `d${i}`, importMode: 'create' }));
    expect((await registry.bulk(hundred, replaceTwin)).isSuccessful).toBe(true);
  });
});
