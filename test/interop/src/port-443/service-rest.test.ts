import { Client, Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubProcess, startHubProcess } from '../support/hub-process';

// The official `azure-iothub` package, unchanged: only the connection string and the trusted CA
// (NODE_EXTRA_CA_CERTS, set by global-setup.ts) differ from talking to Azure IoT Hub.

function withPolicy(connectionString: string, policy: string, key: string): string {
  return connectionString
    .replace(/SharedAccessKeyName=[^;]+/, `SharedAccessKeyName=${policy}`)
    .replace(/SharedAccessKey=[^;]+$/, `SharedAccessKey=${key}`);
}

describe('azure-iothub against the hub (REST, port 443)', () => {
  let hub: HubProcess;
  let registry: Registry;

  beforeAll(async () => {
    hub = await startHubProcess();
    registry = Registry.fromConnectionString(hub.info.serviceConnectionString);
  });

  afterAll(async () => {
    await hub?.dispose();
  });

  it('creates, gets, updates, lists and deletes a device', async () => {
    const created = await registry.create({ deviceId: 'interop-d1' });
    expect(created.responseBody.deviceId).toBe('interop-d1');
    expect(created.responseBody.authentication?.symmetricKey?.primaryKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(created.responseBody.etag).toBeTruthy();

    const fetched = await registry.get('interop-d1');
    expect(fetched.responseBody.generationId).toBe(created.responseBody.generationId);

    const updated = await registry.update({ deviceId: 'interop-d1', status: 'disabled', statusReason: 'maintenance' });
    expect(updated.responseBody.status).toBe('disabled');
    expect(updated.responseBody.etag).not.toBe(created.responseBody.etag);

    const listed = await registry.list();
    expect(listed.responseBody.map((device) => device.deviceId)).toContain('interop-d1');

    await registry.delete('interop-d1');
    await expect(registry.get('interop-d1')).rejects.toMatchObject({ name: 'DeviceNotFoundError' });
  });

  it('refuses to create a device that exists', async () => {
    await registry.create({ deviceId: 'interop-dup' });
    await expect(registry.create({ deviceId: 'interop-dup' })).rejects.toMatchObject({
      name: 'DeviceAlreadyExistsError',
    });
  });

  it('adds, updates and removes devices in bulk', async () => {
    const ids = ['bulk-1', 'bulk-2', 'bulk-3'];
    const added = await registry.addDevices(ids.map((deviceId) => ({ deviceId })));
    expect(added.responseBody.isSuccessful).toBe(true);
    const updated = await registry.updateDevices(
      ids.map((deviceId) => ({ deviceId, status: 'disabled' })),
      true,
    );
    expect(updated.responseBody.isSuccessful).toBe(true);
    expect((await registry.get('bulk-2')).responseBody.status).toBe('disabled');
    const removed = await registry.removeDevices(
      ids.map((deviceId) => ({ deviceId })),
      true,
    );
    expect(removed.responseBody.isSuccessful).toBe(true);
    await expect(registry.get('bulk-3')).rejects.toMatchObject({ name: 'DeviceNotFoundError' });
  });

  it('reads and patches twins with etags', async () => {
    await registry.create({ deviceId: 'interop-twin' });
    const { responseBody: twin } = await registry.getTwin('interop-twin');
    expect(twin.deviceId).toBe('interop-twin');
    const patched = await registry.updateTwin(
      'interop-twin',
      { tags: { site: 'plant-1' }, properties: { desired: { interval: 5 } } },
      twin.etag,
    );
    expect(patched.responseBody.tags).toEqual({ site: 'plant-1' });
    expect(patched.responseBody.properties.desired.interval).toBe(5);
    expect(patched.responseBody.properties.desired.$version).toBeGreaterThan(twin.properties.desired.$version);
    // The old etag is stale now.
    await expect(registry.updateTwin('interop-twin', { tags: { site: 'plant-2' } }, twin.etag)).rejects.toMatchObject({
      name: 'InvalidEtagError',
    });
    // Twin.update through the twin object (etag from the last read).
    const { responseBody: fresh } = await registry.getTwin('interop-twin');
    const etagBefore = fresh.etag;
    const { result: afterUpdate } = await fresh.update({ tags: { line: 'a' } });
    expect(afterUpdate.tags).toMatchObject({ site: 'plant-1', line: 'a' });
    expect(afterUpdate.etag).not.toBe(etagBefore);
  });

  it('queries twins page by page', async () => {
    const ids = Array.from({ length: 7 }, (_, index) => `query-${index}`);
    await registry.addDevices(ids.map((deviceId) => ({ deviceId })));
    for (const deviceId of ids.slice(0, 5)) {
      const { responseBody: twin } = await registry.getTwin(deviceId);
      await registry.updateTwin(deviceId, { tags: { fleet: 'q' } }, twin.etag);
    }
    const query = registry.createQuery("SELECT * FROM devices WHERE tags.fleet = 'q'", 2);
    const seen: string[] = [];
    let pages = 0;
    do {
      const page = await query.nextAsTwin();
      pages += 1;
      for (const twin of page.result) seen.push(twin.deviceId);
    } while (query.hasMoreResults);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual(ids.slice(0, 5).sort());

    const count = registry.createQuery("SELECT COUNT() AS total FROM devices WHERE STARTSWITH(deviceId, 'query-')");
    const { result } = await count.next();
    expect(result).toEqual([{ total: 7 }]);
  });

  it('answers invokeDeviceMethod for an offline device with 404103', async () => {
    await registry.create({ deviceId: 'interop-offline' });
    const client = Client.fromConnectionString(hub.info.serviceConnectionString);
    const error = await client
      .invokeDeviceMethod('interop-offline', { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 5 })
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    expect(error).toBeInstanceOf(Error);
    expect(JSON.stringify((error as { responseBody?: unknown }).responseBody ?? (error as Error).message)).toContain(
      'DeviceNotOnline',
    );
    await client.close();
  });

  it('refuses a wrong key with 401 and a registryRead token cannot create', async () => {
    const wrong = Registry.fromConnectionString(
      withPolicy(hub.info.serviceConnectionString, 'iothubowner', Buffer.alloc(32, 7).toString('base64')),
    );
    await expect(wrong.get('anything')).rejects.toMatchObject({ name: 'UnauthorizedError' });

    const owner = Registry.fromConnectionString(hub.info.serviceConnectionString);
    await owner.create({ deviceId: 'interop-readable' });
    const readKey = await readPolicyKey(hub, 'registryRead');
    const reader = Registry.fromConnectionString(withPolicy(hub.info.serviceConnectionString, 'registryRead', readKey));
    expect((await reader.get('interop-readable')).responseBody.deviceId).toBe('interop-readable');
    await expect(reader.create({ deviceId: 'interop-nope' })).rejects.toMatchObject({ name: 'UnauthorizedError' });
  });
});

/** Reads a policy's primary key the way an operator would: from the hub's REST extension for policies. */
async function readPolicyKey(hub: HubProcess, policy: string): Promise<string> {
  const { request } = await import('node:https');
  const { createSasToken } = await import('@fieldhub/auth');
  const key = /SharedAccessKey=([^;]+)/.exec(hub.info.serviceConnectionString)?.[1] ?? '';
  const token = await createSasToken({ resourceUri: hub.info.hostName, key, keyName: 'iothubowner', ttlSeconds: 600 });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: 'localhost',
        port: 443,
        path: `/fieldhub/policies/${policy}?api-version=2021-04-12`,
        headers: { authorization: token },
      },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`policy read answered ${res.statusCode}: ${body}`));
          resolve((JSON.parse(body) as { primaryKey: string }).primaryKey);
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}
