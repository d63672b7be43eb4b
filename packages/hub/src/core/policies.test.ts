import { createHmac } from 'node:crypto';
import { AuthenticationError } from '@fieldhub/protocol';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createLocalBus } from '../bus/local/local-bus';
import { openSqliteStore } from '../store/sqlite/sqlite-store';
import type { Store } from '../store/store';
import { type CoreContext, defaultCoreOptions } from './context';
import { Policies } from './policies';

const HOST = 'hub.example.test';
let now = Date.UTC(2026, 10, 27, 12, 0, 0);
const stores: Store[] = [];

async function makeContext(store?: Store): Promise<CoreContext> {
  const s = store ?? (await openSqliteStore({ path: ':memory:' }));
  stores.push(s);
  return {
    hubName: 'hub',
    hostName: HOST,
    store: s,
    bus: createLocalBus(),
    logger: pino({ level: 'silent' }),
    now: () => now,
    options: defaultCoreOptions,
  };
}

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

// Written independently of the code under test, as Node's azure-iothub does (§1.3).
function sign(sr: string, key: string, skn: string | undefined, se: number): string {
  const sig = createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}${skn ? `&skn=${skn}` : ''}&se=${se}`;
}

const inOneHour = () => Math.ceil(now / 1000) + 3600;

describe('Policies', () => {
  it('creates the five default policies with 32-byte keys, once', async () => {
    const policies = new Policies(await makeContext());
    await policies.ensureDefaults();
    const first = await policies.list();
    expect(first.map((p) => p.name).sort()).toEqual([
      'device',
      'iothubowner',
      'registryRead',
      'registryReadWrite',
      'service',
    ]);
    for (const p of first) {
      expect(Buffer.from(p.primaryKey, 'base64')).toHaveLength(32);
      expect(p.primaryKey).not.toBe(p.secondaryKey);
    }
    await policies.ensureDefaults();
    expect(await policies.list()).toEqual(first);
    expect((await policies.get('iothubowner'))?.permissions).toEqual([
      'RegistryRead',
      'RegistryWrite',
      'ServiceConnect',
      'DeviceConnect',
    ]);
  });

  it('keeps keys across a reopen of the same store file', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const path = join(await mkdtemp(join(tmpdir(), 'policies-')), 'hub.db');
    const store1 = await openSqliteStore({ path });
    const p1 = new Policies(await makeContext(store1));
    await p1.ensureDefaults();
    const before = await p1.get('service');
    await store1.close();
    const p2 = new Policies(await makeContext(await openSqliteStore({ path })));
    await p2.ensureDefaults();
    expect(await p2.get('service')).toEqual(before);
  });

  it('builds a service connection string', async () => {
    const policies = new Policies(await makeContext());
    await policies.ensureDefaults();
    const key = (await policies.get('iothubowner'))?.primaryKey;
    expect(await policies.connectionString('iothubowner')).toBe(
      `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
    );
    await expect(policies.connectionString('nope')).rejects.toMatchObject({ code: 'ArgumentInvalid' });
  });

  it('accepts tokens signed with the primary or secondary key, any case of host, with or without a path', async () => {
    const policies = new Policies(await makeContext());
    await policies.ensureDefaults();
    const owner = (await policies.get('iothubowner'))!;
    await expect(
      policies.authorizeServiceToken(sign(HOST, owner.primaryKey, 'iothubowner', inOneHour()), 'RegistryWrite'),
    ).resolves.toEqual({ policyName: 'iothubowner' });
    await expect(
      policies.authorizeServiceToken(
        sign('HUB.Example.test', owner.secondaryKey, 'iothubowner', inOneHour()),
        'ServiceConnect',
      ),
    ).resolves.toEqual({ policyName: 'iothubowner' });
    await expect(
      policies.authorizeServiceToken(
        sign(`${HOST}%2Fdevices`, owner.primaryKey, 'iothubowner', inOneHour()),
        'RegistryRead',
      ),
    ).resolves.toEqual({ policyName: 'iothubowner' });
    await expect(
      policies.authorizeServiceToken(sign(`${HOST}:443`, owner.primaryKey, 'iothubowner', inOneHour()), 'RegistryRead'),
    ).resolves.toEqual({ policyName: 'iothubowner' });
  });

  it('rejects with 401 IotHubUnauthorizedAccess: wrong key, expired, other host, unknown policy, missing right, garbage', async () => {
    const policies = new Policies(await makeContext());
    await policies.ensureDefaults();
    const owner = (await policies.get('iothubowner'))!;
    const read = (await policies.get('registryRead'))!;
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    const cases = [
      sign(HOST, wrongKey, 'iothubowner', inOneHour()),
      sign(HOST, owner.primaryKey, 'iothubowner', Math.floor(now / 1000) - 3600),
      sign('other.example.test', owner.primaryKey, 'iothubowner', inOneHour()),
      sign(HOST, owner.primaryKey, 'nosuchpolicy', inOneHour()),
      sign(HOST, owner.primaryKey, undefined, inOneHour()),
      sign(HOST, read.primaryKey, 'registryRead', inOneHour()),
      'SharedAccessSignature garbage',
      'Bearer abc',
    ];
    for (const token of cases) {
      const error = await policies.authorizeServiceToken(token, 'RegistryWrite').catch((e: unknown) => e);
      expect(error, token).toBeInstanceOf(AuthenticationError);
      expect(error).toMatchObject({ code: 'IotHubUnauthorizedAccess', hubCode: 401002, status: 401 });
    }
  });

  it('rotates one key: tokens signed with the old one stop verifying, the other key still works', async () => {
    const policies = new Policies(await makeContext());
    await policies.ensureDefaults();
    const before = (await policies.get('service'))!;
    const after = await policies.rotateKey('service', 'primary');
    expect(after.primaryKey).not.toBe(before.primaryKey);
    expect(after.secondaryKey).toBe(before.secondaryKey);
    await expect(
      policies.authorizeServiceToken(sign(HOST, before.primaryKey, 'service', inOneHour()), 'ServiceConnect'),
    ).rejects.toMatchObject({ code: 'IotHubUnauthorizedAccess' });
    await expect(
      policies.authorizeServiceToken(sign(HOST, after.primaryKey, 'service', inOneHour()), 'ServiceConnect'),
    ).resolves.toEqual({ policyName: 'service' });
    await expect(policies.rotateKey('missing', 'secondary')).rejects.toMatchObject({ code: 'ArgumentInvalid' });
  });

  it('serves policies from memory and forgets one rotated by another process sharing the store and bus', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const path = join(await mkdtemp(join(tmpdir(), 'policies-')), 'hub.db');
    const bus = createLocalBus();
    const first = new Policies({ ...(await makeContext(await openSqliteStore({ path }))), bus });
    const second = new Policies({ ...(await makeContext(await openSqliteStore({ path }))), bus });
    await first.ensureDefaults();
    const before = (await first.get('service'))!;
    expect(first.cached('service')).toEqual(before);
    expect(first.cached('nosuchpolicy')).toBeNull();
    await first.get('nosuchpolicy');
    expect(first.cached('nosuchpolicy')).toBeUndefined();
    expect(await second.get('service')).toEqual(before);

    const after = await second.rotateKey('service', 'primary');
    expect(second.cached('service')).toBeNull();
    await new Promise((resolve) => setImmediate(resolve));
    expect(first.cached('service')).toBeNull();
    expect(await first.get('service')).toEqual(after);
    await expect(
      first.authorizeServiceToken(sign(HOST, before.primaryKey, 'service', inOneHour()), 'ServiceConnect'),
    ).rejects.toMatchObject({ code: 'IotHubUnauthorizedAccess' });
  });

  it('authorises device connections with a DeviceConnect policy token scoped by path segments', async () => {
    const policies = new Policies(await makeContext());
    await policies.ensureDefaults();
    const device = (await policies.get('device'))!;
    const service = (await policies.get('service'))!;
    const se = inOneHour();
    const ok = async (sr: string, moduleId?: string) =>
      policies.authorizeDeviceConnectPolicyToken(sign(sr, device.primaryKey, 'device', se), 'dev1', moduleId);
    await expect(ok(HOST)).resolves.toEqual({ policyName: 'device' });
    await expect(ok(`${HOST}%2Fdevices`)).resolves.toEqual({ policyName: 'device' });
    await expect(ok(`${HOST}%2Fdevices%2Fdev1`)).resolves.toEqual({ policyName: 'device' });
    await expect(ok(`${HOST}%2Fdevices%2Fdev1%2Fmodules%2Fm1`, 'm1')).resolves.toEqual({ policyName: 'device' });
    await expect(ok(`${HOST}%2Fdevices%2Fdev10`)).rejects.toMatchObject({ code: 'IotHubUnauthorizedAccess' });
    await expect(ok(`${HOST}%2Fdevices%2Fdev1%2Fmodules%2Fm1`)).rejects.toMatchObject({
      code: 'IotHubUnauthorizedAccess',
    });
    await expect(
      policies.authorizeDeviceConnectPolicyToken(sign(HOST, service.primaryKey, 'service', se), 'dev1'),
    ).rejects.toMatchObject({ code: 'IotHubUnauthorizedAccess' });
  });

  it('honours the clock: a token expires at se plus 5 minutes of skew', async () => {
    const policies = new Policies(await makeContext());
    await policies.ensureDefaults();
    const owner = (await policies.get('iothubowner'))!;
    const se = Math.floor(now / 1000) + 10;
    const token = sign(HOST, owner.primaryKey, 'iothubowner', se);
    await expect(policies.authorizeServiceToken(token, 'RegistryRead')).resolves.toBeDefined();
    const saved = now;
    now = (se + 300) * 1000;
    await expect(policies.authorizeServiceToken(token, 'RegistryRead')).resolves.toBeDefined();
    now = (se + 301) * 1000;
    await expect(policies.authorizeServiceToken(token, 'RegistryRead')).rejects.toMatchObject({ status: 401 });
    now = saved;
  });
});
