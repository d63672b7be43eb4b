import { Agent, type AgentOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { type ConnectionOptions, connect } from 'node:tls';
import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from './helpers/test-hub';

// The official Node service SDK (azure-iothub 1.16) against the hub's REST API (protocol-service.md §2). The SDK
// always dials port 443 (§0 item 4); an agent redirects its connections to the test hub's port, changing nothing
// else: TLS, host name, tokens and requests are the SDK's own.

let hub: TestHub;

/** An HTTPS agent whose sockets go to the test hub's port, whatever port the request names. */
class TestHubAgent extends Agent {
  constructor(
    private readonly port: number,
    private readonly ca: string,
    options?: AgentOptions,
  ) {
    super(options);
  }

  override createConnection(options: ConnectionOptions): Duplex {
    return connect({ ...options, host: '127.0.0.1', port: this.port, servername: 'localhost', ca: this.ca });
  }
}

function sdkRegistry(connectionString = hub.info.serviceConnectionString): Registry {
  const registry = Registry.fromConnectionString(connectionString);
  const agent = new TestHubAgent(hub.info.ports.https, hub.ca);
  // The registry's REST client forwards `http.agent` to every request (azure-iot-http-base `setOptions`).
  (registry as unknown as { _restApiClient: { setOptions(options: unknown): void } })._restApiClient.setOptions({
    http: { agent },
  });
  return registry;
}

beforeAll(async () => {
  hub = await startTestHub();
});

afterAll(async () => {
  await hub?.stop();
});

describe('azure-iothub Registry against the hub', () => {
  it('creates, reads, updates, lists and deletes devices', async () => {
    const registry = sdkRegistry();
    const created = await registry.create({ deviceId: 'sdk-1' });
    expect(created.responseBody.deviceId).toBe('sdk-1');
    expect(created.responseBody.authentication?.symmetricKey?.primaryKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    await expect(registry.create({ deviceId: 'sdk-1' })).rejects.toMatchObject({ name: 'DeviceAlreadyExistsError' });

    const got = await registry.get('sdk-1');
    expect(got.responseBody.etag).toBe(created.responseBody.etag);

    const updated = await registry.update({ deviceId: 'sdk-1', status: 'disabled' });
    expect(updated.responseBody.status).toBe('disabled');
    expect(updated.responseBody.authentication?.symmetricKey?.primaryKey).toBe(
      created.responseBody.authentication?.symmetricKey?.primaryKey,
    );

    const list = await registry.list();
    expect(list.responseBody.map((d) => d.deviceId)).toContain('sdk-1');

    const stats = await registry.getRegistryStatistics();
    expect(stats.responseBody).toMatchObject({ totalDeviceCount: 1, disabledDeviceCount: 1 });

    await registry.delete('sdk-1');
    await expect(registry.get('sdk-1')).rejects.toMatchObject({ name: 'DeviceNotFoundError' });
  });

  it('runs bulk operations with the SDK modes (Update, Delete)', async () => {
    const registry = sdkRegistry();
    const added = await registry.addDevices([{ deviceId: 'bulk-1' }, { deviceId: 'bulk-2' }]);
    expect(added.responseBody).toMatchObject({ isSuccessful: true, errors: [] });
    const updated = await registry.updateDevices([{ deviceId: 'bulk-1', status: 'disabled' }], true);
    expect(updated.responseBody.isSuccessful).toBe(true);
    expect((await registry.get('bulk-1')).responseBody.status).toBe('disabled');
    const removed = await registry.removeDevices([{ deviceId: 'bulk-1' }, { deviceId: 'bulk-2' }], true);
    expect(removed.responseBody.isSuccessful).toBe(true);
    await expect(registry.get('bulk-2')).rejects.toMatchObject({ name: 'DeviceNotFoundError' });
  });

  it('reads and updates twins, and queries them page by page', async () => {
    const registry = sdkRegistry();
    for (let i = 0; i < 3; i++) await registry.create({ deviceId: `tw-${i}` });
    const { responseBody: twin } = await registry.getTwin('tw-0');
    expect(twin.deviceId).toBe('tw-0');
    const updated = await twin.update({ tags: { site: 'north' }, properties: { desired: { rate: 2 } } });
    expect(updated.result.tags).toEqual({ site: 'north' });
    expect(updated.result.properties.desired.rate).toBe(2);
    expect(updated.result.etag).not.toBe('*');
    await registry.updateTwin('tw-1', { tags: { site: 'north' } }, '*');

    const query = registry.createQuery("SELECT * FROM devices WHERE tags.site = 'north'", 1);
    const seen: string[] = [];
    while (query.hasMoreResults) {
      const page = await query.nextAsTwin();
      seen.push(...page.result.map((t) => t.deviceId));
    }
    expect(seen.sort()).toEqual(['tw-0', 'tw-1']);
  });

  it('manages modules and module twins', async () => {
    const registry = sdkRegistry();
    await registry.create({ deviceId: 'mod-dev' });
    await registry.addModule({ deviceId: 'mod-dev', moduleId: 'm1' });
    const modules = await registry.getModulesOnDevice('mod-dev');
    expect(modules.responseBody.map((m) => m.moduleId)).toEqual(['m1']);
    const moduleTwin = await registry.getModuleTwin('mod-dev', 'm1');
    expect(moduleTwin.responseBody.moduleId).toBe('m1');
    const patched = await registry.updateModuleTwin('mod-dev', 'm1', { properties: { desired: { speed: 1 } } }, '*');
    expect(patched.responseBody.properties.desired.speed).toBe(1);
    await registry.removeModule('mod-dev', 'm1');
    await expect(registry.getModule('mod-dev', 'm1')).rejects.toBeDefined();
  });

  it('is refused with UnauthorizedError for a policy without the right', async () => {
    const registry = sdkRegistry(await hub.hub.core.policies.connectionString('registryRead'));
    await expect(registry.create({ deviceId: 'nope' })).rejects.toMatchObject({ name: 'UnauthorizedError' });
    expect((await registry.list()).responseBody).toBeInstanceOf(Array);
  });
});
