import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createLocalBus } from '../bus/local/local-bus';
import { openSqliteStore } from '../store/sqlite/sqlite-store';
import type { Store } from '../store/store';
import { type CoreContext, defaultCoreOptions } from './context';
import { type IdentityIds, Registry } from './registry';
import { type DesiredChangeNotification, desiredSubject, Twins } from './twins';

const stores: Store[] = [];
let now = Date.UTC(2026, 10, 27, 12, 0, 0);
const iso = () => new Date(now).toISOString();

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
  const changes: { op: string; ids: IdentityIds; body: unknown }[] = [];
  const twins = new Twins(ctx, {
    events: {
      twinChanged: async (op, ids, body) => {
        changes.push({ op, ids, body });
      },
    },
  });
  const registry = new Registry(ctx);
  const published: { subject: string; payload: DesiredChangeNotification }[] = [];
  const listen = (subject: string) =>
    ctx.bus.subscribe('hub', subject, (payload) =>
      published.push({ subject, payload: payload as DesiredChangeNotification }),
    );
  return { ctx, twins, registry, changes, published, listen };
}

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('Twins', () => {
  it('shows a new device twin with identity fields merged, version 1 and empty sections (§2.8)', async () => {
    const { twins, registry } = await setup();
    const device = await registry.createDevice('d1', {});
    const twin = await twins.get('d1');
    expect(twin).toEqual({
      deviceId: 'd1',
      etag: 'AAAAAAAAAAE=',
      deviceEtag: device.etag,
      status: 'enabled',
      statusReason: null,
      statusUpdateTime: '0001-01-01T00:00:00Z',
      connectionState: 'Disconnected',
      lastActivityTime: '0001-01-01T00:00:00Z',
      cloudToDeviceMessageCount: 0,
      authenticationType: 'sas',
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
      modelId: '',
      version: 1,
      tags: {},
      properties: {
        desired: { $metadata: { $lastUpdated: iso(), $lastUpdatedVersion: 1 }, $version: 1 },
        reported: { $metadata: { $lastUpdated: iso() }, $version: 1 },
      },
      capabilities: { iotEdge: false },
    });
    await expect(twins.get('nope')).rejects.toMatchObject({ code: 'DeviceNotFound', hubCode: 404001 });
  });

  it('patches tags and desired with JSON merge, null deletes, $metadata and versions; publishes the desired patch', async () => {
    const { twins, registry, changes, published, listen } = await setup();
    await registry.createDevice('d1', {});
    listen(desiredSubject('d1'));
    now += 1000;
    const first = await twins.patch(
      'd1',
      undefined,
      {
        tags: { location: { region: 'US', plant: 7 } },
        properties: { desired: { telemetryConfig: { sendFrequency: '5m' }, old: true } },
      },
      '*',
    );
    expect(first.version).toBe(2);
    expect(first.etag).toBe('AAAAAAAAAAI=');
    expect(first.tags).toEqual({ location: { region: 'US', plant: 7 } });
    expect(first.properties.desired).toEqual({
      telemetryConfig: { sendFrequency: '5m' },
      old: true,
      $metadata: {
        $lastUpdated: iso(),
        $lastUpdatedVersion: 2,
        telemetryConfig: {
          $lastUpdated: iso(),
          $lastUpdatedVersion: 2,
          sendFrequency: { $lastUpdated: iso(), $lastUpdatedVersion: 2 },
        },
        old: { $lastUpdated: iso(), $lastUpdatedVersion: 2 },
      },
      $version: 2,
    });
    const t1 = iso();
    now += 1000;
    const second = await twins.patch(
      'd1',
      undefined,
      { tags: { location: { plant: null } }, properties: { desired: { old: null } } },
      `"${first.etag}"`.slice(1, -1),
    );
    expect(second.tags).toEqual({ location: { region: 'US' } });
    expect(second.properties.desired).toEqual({
      telemetryConfig: { sendFrequency: '5m' },
      $metadata: {
        $lastUpdated: iso(),
        $lastUpdatedVersion: 3,
        telemetryConfig: {
          $lastUpdated: t1,
          $lastUpdatedVersion: 2,
          sendFrequency: { $lastUpdated: t1, $lastUpdatedVersion: 2 },
        },
      },
      $version: 3,
    });
    expect(second.version).toBe(3);
    // A tags-only patch moves the twin version, not desired $version, and notifies nobody on the desired subject.
    const third = await twins.patch('d1', undefined, { tags: { x: 1 } });
    expect(third.version).toBe(4);
    expect(third.properties.desired.$version).toBe(3);
    await tick();
    expect(published).toEqual([
      {
        subject: 'twin.desired.d1',
        payload: { version: 2, patch: { telemetryConfig: { sendFrequency: '5m' }, old: true } },
      },
      { subject: 'twin.desired.d1', payload: { version: 3, patch: { old: null } } },
    ]);
    expect(changes.map((c) => c.op)).toEqual(['updateTwin', 'updateTwin', 'updateTwin']);
    expect(changes[1]?.body).toMatchObject({
      version: 3,
      tags: { location: { plant: null } },
      properties: { desired: { old: null, $version: 3, $metadata: { $lastUpdatedVersion: 3 } } },
    });
  });

  it('answers 412001 to a stale etag and keeps the twin', async () => {
    const { twins, registry } = await setup();
    await registry.createDevice('d1', {});
    const before = await twins.get('d1');
    await twins.patch('d1', undefined, { tags: { a: 1 } }, before.etag);
    await expect(twins.patch('d1', undefined, { tags: { a: 2 } }, before.etag)).rejects.toMatchObject({
      code: 'PreconditionFailed',
      hubCode: 412001,
    });
    await expect(twins.replace('d1', undefined, { tags: {} }, before.etag)).rejects.toMatchObject({
      code: 'PreconditionFailed',
    });
    expect((await twins.get('d1')).tags).toEqual({ a: 1 });
  });

  it('refuses reported properties from the back end, but ignores echoed read-only fields', async () => {
    const { twins, registry } = await setup();
    await registry.createDevice('d1', {});
    await expect(twins.patch('d1', undefined, { properties: { reported: { x: 1 } } })).rejects.toMatchObject({
      code: 'ArgumentInvalid',
      status: 400,
    });
    const whole = await twins.get('d1');
    const echoed = await twins.patch('d1', undefined, { ...whole, tags: { a: 1 } }, whole.etag);
    expect(echoed.tags).toEqual({ a: 1 });
    expect(echoed.properties.desired.$version).toBe(1);
  });

  it('enforces twin limits: keys, depth, values, section sizes', async () => {
    const { twins, registry } = await setup();
    await registry.createDevice('d1', {});
    const deep: Record<string, unknown> = {};
    let cursor = deep;
    for (let i = 0; i < 11; i++) {
      const next: Record<string, unknown> = {};
      cursor[`l${i}`] = next;
      cursor = next;
    }
    cursor.leaf = 1;
    const invalid = [
      { tags: { 'a.b': 1 } },
      { tags: { $x: 1 } },
      { tags: { 'a b': 1 } },
      { properties: { desired: deep } },
      { properties: { desired: { s: 'x'.repeat(4097) } } },
      { properties: { desired: { n: 2 ** 53 } } },
      { tags: 'nope' },
      [1, 2],
    ];
    for (const body of invalid) {
      await expect(twins.patch('d1', undefined, body), JSON.stringify(body).slice(0, 60)).rejects.toMatchObject({
        code: 'ArgumentInvalid',
      });
    }
    const bigTags: Record<string, string> = {};
    for (let i = 0; i < 3; i++) bigTags[`k${i}`] = 'x'.repeat(3000);
    await expect(twins.patch('d1', undefined, { tags: bigTags })).rejects.toMatchObject({
      code: 'MessageTooLarge',
      status: 413,
    });
    const bigDesired: Record<string, string> = {};
    for (let i = 0; i < 9; i++) bigDesired[`k${i}`] = 'x'.repeat(4000);
    await expect(twins.patch('d1', undefined, { properties: { desired: bigDesired } })).rejects.toMatchObject({
      code: 'MessageTooLarge',
    });
    // Growing past the limit in two steps fails on the second.
    const half: Record<string, string> = {};
    for (let i = 0; i < 5; i++) half[`a${i}`] = 'x'.repeat(4000);
    await twins.patch('d1', undefined, { properties: { desired: half } });
    const more: Record<string, string> = {};
    for (let i = 0; i < 5; i++) more[`b${i}`] = 'x'.repeat(4000);
    await expect(twins.patch('d1', undefined, { properties: { desired: more } })).rejects.toMatchObject({
      code: 'MessageTooLarge',
    });
    expect((await twins.get('d1')).version).toBe(2);
  });

  it('replaces tags and desired entirely, leaves reported alone, and tells the device which keys went away', async () => {
    const { twins, registry, changes, published, listen } = await setup();
    await registry.createDevice('d1', {});
    listen(desiredSubject('d1'));
    await twins.patch('d1', undefined, { tags: { a: 1 }, properties: { desired: { x: 1, y: 2 } } });
    await twins.updateReported('d1', undefined, { battery: 55 });
    now += 1000;
    const replaced = await twins.replace('d1', undefined, {
      deviceId: 'd1',
      tags: { b: 2 },
      properties: { desired: { y: 3, $version: 99, $metadata: {} }, reported: { ignored: true } },
    });
    expect(replaced.tags).toEqual({ b: 2 });
    expect(replaced.properties.desired).toEqual({
      y: 3,
      $metadata: { $lastUpdated: iso(), $lastUpdatedVersion: 3, y: { $lastUpdated: iso(), $lastUpdatedVersion: 3 } },
      $version: 3,
    });
    expect(replaced.properties.reported).toMatchObject({ battery: 55, $version: 2 });
    expect(replaced.version).toBe(4);
    await tick();
    expect(published.at(-1)?.payload).toEqual({ version: 3, patch: { y: 3, x: null } });
    expect(changes.at(-1)).toMatchObject({ op: 'replaceTwin', body: { deviceId: 'd1', version: 4, tags: { b: 2 } } });
    const emptied = await twins.replace('d1', undefined, {});
    expect(emptied.tags).toEqual({});
    expect(emptied.properties.desired).toMatchObject({ $version: 4 });
    expect(Object.keys(emptied.properties.desired)).toEqual(['$metadata', '$version']);
  });

  it('lets the device patch reported properties and read { desired, reported }', async () => {
    const { twins, registry, changes } = await setup();
    await registry.createDevice('d1', {});
    now += 1000;
    expect(await twins.updateReported('d1', undefined, { battery: 55, fw: { v: '1.0' } })).toEqual({ version: 2 });
    now += 1000;
    expect(await twins.updateReported('d1', undefined, { fw: { v: null }, battery: 54 })).toEqual({ version: 3 });
    const read = await twins.getForDevice('d1');
    expect(read.reported).toEqual({
      battery: 54,
      fw: {},
      $metadata: { $lastUpdated: iso(), battery: { $lastUpdated: iso() }, fw: { $lastUpdated: iso() } },
      $version: 3,
    });
    expect(read.desired).toMatchObject({ $version: 1 });
    expect(changes.at(-1)).toMatchObject({
      op: 'updateTwin',
      body: { version: 3, properties: { reported: { battery: 54, $version: 3 } } },
    });
    await expect(twins.updateReported('d1', undefined, { 'bad.key': 1 })).rejects.toMatchObject({
      code: 'ArgumentInvalid',
    });
    await expect(twins.updateReported('d1', undefined, 'text')).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    await expect(twins.updateReported('ghost', undefined, {})).rejects.toMatchObject({ code: 'DeviceNotFound' });
  });

  it('serialises concurrent updates: every patch gets its own version, notifications in version order', async () => {
    const { twins, registry, published, listen } = await setup();
    await registry.createDevice('d1', {});
    listen(desiredSubject('d1'));
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => twins.patch('d1', undefined, { properties: { desired: { [`k${i}`]: i } } })),
    );
    const twin = await twins.get('d1');
    expect(twin.version).toBe(21);
    expect(twin.properties.desired.$version).toBe(21);
    expect(Object.keys(twin.properties.desired).filter((k) => k.startsWith('k'))).toHaveLength(20);
    await tick();
    expect(published.map((p) => p.payload.version)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
  });

  it('stays consistent when two hub processes (two Twins over one store) patch at once: compare-and-set retries', async () => {
    const { ctx, twins, registry } = await setup();
    const other = new Twins(ctx);
    await registry.createDevice('d1', {});
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 === 0 ? twins : other).patch('d1', undefined, { properties: { desired: { [`k${i}`]: i } } }),
      ),
    );
    const twin = await twins.get('d1');
    expect(twin.version).toBe(11);
    expect(twin.properties.desired.$version).toBe(11);
    expect(Object.keys(twin.properties.desired).filter((k) => k.startsWith('k'))).toHaveLength(10);
  });

  it('serves module twins on their own subject, and lists twins per query collection', async () => {
    const { twins, registry, published, listen } = await setup();
    await registry.createDevice('d1', {});
    await registry.createDevice('d2', { status: 'disabled' });
    await registry.createModule('d1', 'm1', {});
    listen(desiredSubject('d1', 'm1'));
    const module = await twins.patch('d1', 'm1', { properties: { desired: { speed: 3 } } });
    expect(module).toMatchObject({ deviceId: 'd1', moduleId: 'm1', status: 'enabled', version: 2 });
    expect(module).not.toHaveProperty('capabilities');
    await expect(twins.get('d1', 'nope')).rejects.toMatchObject({ code: 'ModuleNotFound', hubCode: 404010 });
    await tick();
    expect(published).toEqual([{ subject: 'twin.desired.d1/m1', payload: { version: 2, patch: { speed: 3 } } }]);
    const devices = await twins.allTwins('devices');
    expect(devices.map((t) => [t.deviceId, t.status])).toEqual([
      ['d1', 'enabled'],
      ['d2', 'disabled'],
    ]);
    const modules = await twins.allTwins('devices.modules');
    expect(modules.map((t) => [t.deviceId, t.moduleId, t.properties.desired.speed])).toEqual([['d1', 'm1', 3]]);
  });

  it('records a model id without a new version', async () => {
    const { twins, registry } = await setup();
    await registry.createDevice('d1', {});
    await twins.setModelId('d1', undefined, 'dtmi:com:example;1');
    expect(await twins.get('d1')).toMatchObject({ modelId: 'dtmi:com:example;1', version: 1 });
    await twins.setModelId('ghost', undefined, 'x');
  });
});
