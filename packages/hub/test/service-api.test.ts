import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub, type TestResponse } from './helpers/test-hub';

// The service REST API (protocol-service.md §2.3–§2.10) through a real hub over HTTPS.

let hub: TestHub;

beforeAll(async () => {
  hub = await startTestHub();
});

afterAll(async () => {
  await hub?.stop();
});

const json = 'application/json; charset=utf-8';
const emptySas = { type: 'sas', symmetricKey: { primaryKey: '', secondaryKey: '' } };

function expectError(response: TestResponse, status: number, code: string): void {
  expect(response.status, response.text).toBe(status);
  expect(response.headers['iothub-errorcode']).toBe(code);
  expect(response.headers['content-type']).toContain('application/json');
  expect((response.json as { Message: string }).Message).toMatch(new RegExp(`^ErrorCode:${code};`));
}

type Device = {
  deviceId: string;
  etag: string;
  generationId: string;
  authentication: { symmetricKey: { primaryKey: string } };
};
type Twin = {
  etag: string;
  version: number;
  tags: Record<string, unknown>;
  properties: { desired: Record<string, unknown>; reported: Record<string, unknown> };
};

describe('devices', () => {
  it('creates, reads, updates and deletes a device with the SDK request shapes', async () => {
    const created = await hub.request('PUT', '/devices/crud1', {
      body: { deviceId: 'crud1', authentication: emptySas },
    });
    expect(created.status, created.text).toBe(200);
    expect(created.headers['content-type']).toBe(json);
    const device = created.json as Device;
    expect(device).toMatchObject({
      deviceId: 'crud1',
      status: 'enabled',
      connectionState: 'Disconnected',
      lastActivityTime: '0001-01-01T00:00:00Z',
      cloudToDeviceMessageCount: 0,
      capabilities: { iotEdge: false },
    });
    expect(Buffer.from(device.authentication.symmetricKey.primaryKey, 'base64')).toHaveLength(32);

    const again = await hub.request('PUT', '/devices/crud1', { body: { deviceId: 'crud1' } });
    expectError(again, 409, 'DeviceAlreadyExists');

    const read = await hub.request('GET', '/devices/crud1');
    expect(read.status).toBe(200);
    expect(read.json).toEqual(device);

    const stale = await hub.request('PUT', '/devices/crud1', {
      body: { deviceId: 'crud1', status: 'disabled' },
      headers: { 'if-match': '"not-the-etag"' },
    });
    expectError(stale, 412, 'PreconditionFailed');

    const updated = await hub.request('PUT', '/devices/crud1', {
      body: { deviceId: 'crud1', status: 'disabled', statusReason: 'test', authentication: emptySas },
      headers: { 'if-match': `"${device.etag}"` },
    });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.json).toMatchObject({ status: 'disabled', statusReason: 'test' });
    expect((updated.json as Device).etag).not.toBe(device.etag);
    expect((updated.json as Device).authentication.symmetricKey.primaryKey).toBe(
      device.authentication.symmetricKey.primaryKey,
    );

    const forced = await hub.request('PUT', '/devices/crud1', {
      body: { status: 'enabled' },
      headers: { 'if-match': '"*"' },
    });
    expect(forced.status).toBe(200);

    const missingUpdate = await hub.request('PUT', '/devices/ghost', { body: {}, headers: { 'if-match': '*' } });
    expectError(missingUpdate, 404, 'DeviceNotFound');

    const deleted = await hub.request('DELETE', '/devices/crud1', { headers: { 'if-match': '"*"' } });
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expectError(await hub.request('GET', '/devices/crud1'), 404, 'DeviceNotFound');
    expectError(
      await hub.request('DELETE', '/devices/crud1', { headers: { 'if-match': '"*"' } }),
      404,
      'DeviceNotFound',
    );

    const recreated = await hub.request('PUT', '/devices/crud1', { body: {} });
    expect((recreated.json as Device).generationId).not.toBe(device.generationId);
  });

  it('round-trips ids that need percent-encoding in the path', async () => {
    for (const id of ['a#b?c%d+e', "x(y)!*'=@$,z", 'dots.and-dashes_']) {
      const path = `/devices/${encodeURIComponent(id)}`;
      const created = await hub.request('PUT', path, { body: { deviceId: id } });
      expect(created.status, `${id}: ${created.text}`).toBe(200);
      expect((created.json as Device).deviceId).toBe(id);
      expect(((await hub.request('GET', path)).json as Device).deviceId).toBe(id);
      const twin = await hub.request('PATCH', `/twins/${encodeURIComponent(id)}`, {
        body: { tags: { ok: true } },
        headers: { 'if-match': '"*"' },
      });
      expect(twin.status, twin.text).toBe(200);
      expect(twin.json).toMatchObject({ deviceId: id, tags: { ok: true } });
      expect((await hub.request('DELETE', path, { headers: { 'if-match': '"*"' } })).status).toBe(204);
    }
  });

  it('rejects invalid ids and bodies with 400', async () => {
    expectError(
      await hub.request('PUT', `/devices/${encodeURIComponent('dev/1')}`, { body: {} }),
      400,
      'ArgumentInvalid',
    );
    expectError(await hub.request('PUT', `/devices/${'x'.repeat(129)}`, { body: {} }), 400, 'ArgumentInvalid');
    expectError(
      await hub.request('PUT', `/devices/${encodeURIComponent('sp ace')}`, { body: {} }),
      400,
      'ArgumentInvalid',
    );
    expectError(
      await hub.request('PUT', '/devices/badkey', {
        body: { authentication: { symmetricKey: { primaryKey: 'short' } } },
      }),
      400,
      'ArgumentInvalid',
    );
    expectError(
      await hub.request('PUT', '/devices/badthumb', {
        body: { authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: 'AB' } } },
      }),
      400,
      'ArgumentInvalid',
    );
    expectError(await hub.request('PUT', '/devices/mismatch', { body: { deviceId: 'other' } }), 400, 'ArgumentInvalid');
    expectError(
      await hub.request('PUT', '/devices/badjson', {
        body: '{"deviceId": ',
        headers: { 'content-type': 'application/json' },
      }),
      400,
      'IotHubFormatError',
    );
  });

  it('lists devices with top and counts statistics', async () => {
    for (const id of ['list-a', 'list-b', 'list-c']) await hub.request('PUT', `/devices/${id}`, { body: {} });
    await hub.request('PUT', '/devices/list-b', { body: { status: 'disabled' }, headers: { 'if-match': '"*"' } });
    const all = await hub.request('GET', '/devices');
    expect(all.status).toBe(200);
    const ids = (all.json as Device[]).map((d) => d.deviceId);
    expect(ids).toEqual(expect.arrayContaining(['list-a', 'list-b', 'list-c']));
    expect([...ids].sort()).toEqual(ids);
    const top = await hub.request('GET', '/devices?top=2');
    expect((top.json as Device[]).length).toBe(2);
    expectError(await hub.request('GET', '/devices?top=zero'), 400, 'ArgumentInvalid');

    const stats = await hub.request('GET', '/statistics/devices');
    expect(stats.status).toBe(200);
    const s = stats.json as { totalDeviceCount: number; enabledDeviceCount: number; disabledDeviceCount: number };
    expect(s.totalDeviceCount).toBe(ids.length);
    expect(s.enabledDeviceCount + s.disabledDeviceCount).toBe(s.totalDeviceCount);
    expect(s.disabledDeviceCount).toBeGreaterThanOrEqual(1);
    const service = await hub.request('GET', '/statistics/service');
    expect(service.json).toEqual({ connectedDeviceCount: 0 });
  });
});

describe('modules', () => {
  it('creates, lists, reads, updates and deletes modules', async () => {
    expectError(await hub.request('PUT', '/devices/nomod/modules/m1', { body: {} }), 404, 'DeviceNotFound');
    await hub.request('PUT', '/devices/mod1', { body: {} });
    const created = await hub.request('PUT', '/devices/mod1/modules/m1', {
      body: { deviceId: 'mod1', moduleId: 'm1', authentication: emptySas },
    });
    expect(created.status, created.text).toBe(200);
    const module = created.json as { moduleId: string; etag: string; managedBy: string | null };
    expect(module).toMatchObject({
      moduleId: 'm1',
      deviceId: 'mod1',
      managedBy: null,
      connectionState: 'Disconnected',
    });
    expectError(await hub.request('PUT', '/devices/mod1/modules/m1', { body: {} }), 409, 'ModuleAlreadyExistsOnDevice');
    await hub.request('PUT', `/devices/mod1/modules/${encodeURIComponent('$edgeAgent')}`, { body: {} });
    const list = await hub.request('GET', '/devices/mod1/modules');
    expect((list.json as { moduleId: string }[]).map((m) => m.moduleId)).toEqual(['$edgeAgent', 'm1']);
    expect((await hub.request('GET', '/devices/mod1/modules/m1')).json).toMatchObject({ moduleId: 'm1' });
    expectError(await hub.request('GET', '/devices/mod1/modules/zz'), 404, 'ModuleNotFound');
    expectError(
      await hub.request('PUT', '/devices/mod1/modules/m1', { body: {}, headers: { 'if-match': '"old"' } }),
      412,
      'PreconditionFailed',
    );
    const updated = await hub.request('PUT', '/devices/mod1/modules/m1', {
      body: { managedBy: 'ops' },
      headers: { 'if-match': `"${module.etag}"` },
    });
    expect(updated.json).toMatchObject({ managedBy: 'ops' });
    expect((await hub.request('DELETE', '/devices/mod1/modules/m1', { headers: { 'if-match': '"*"' } })).status).toBe(
      204,
    );
    expectError(await hub.request('GET', '/devices/mod1/modules/m1'), 404, 'ModuleNotFound');
  });
});

describe('bulk', () => {
  it('answers 200 when every item succeeds and 400 with the same body shape otherwise', async () => {
    const ok = await hub.request('POST', '/devices', {
      body: [
        { id: 'bulk-a', importMode: 'create', authentication: emptySas },
        {
          id: 'bulk-b',
          importMode: 'create',
          authentication: { x509Thumbprint: { primaryThumbprint: 'AB'.repeat(20) }, type: 'selfSigned' },
        },
      ],
    });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.headers['content-type']).toBe(json);
    expect(ok.json).toEqual({ isSuccessful: true, errors: [], warnings: [] });

    const mixed = await hub.request('POST', '/devices', {
      body: [
        { id: 'bulk-a', importMode: 'Create' },
        { id: 'bulk-b', importMode: 'Delete' },
      ],
    });
    expect(mixed.status).toBe(400);
    expect(mixed.json).toEqual({
      isSuccessful: false,
      errors: [
        {
          deviceId: 'bulk-a',
          errorCode: 'DeviceAlreadyExists',
          errorStatus: expect.any(String),
          moduleId: null,
          operation: 'create',
        },
      ],
      warnings: [],
    });
    expectError(await hub.request('GET', '/devices/bulk-b'), 404, 'DeviceNotFound');
  });

  it('refuses more than 100 devices, duplicates, and non-arrays', async () => {
    const many = Array.from({ length: 101 }, (_, i) => ({ id: `many${i}`, importMode: 'create' }));
    expectError(await hub.request('POST', '/devices', { body: many }), 413, 'TooManyDevices');
    expectError(
      await hub.request('POST', '/devices', {
        body: [
          { id: 'dup', importMode: 'create' },
          { id: 'dup', importMode: 'create' },
        ],
      }),
      400,
      'DeviceDefinedMultipleTimes',
    );
    expectError(await hub.request('POST', '/devices', { body: { id: 'x' } }), 400, 'ArgumentInvalid');
    expectError(await hub.request('GET', '/devices/dup'), 404, 'DeviceNotFound');
  });
});

describe('twins', () => {
  it('gets, patches and replaces a device twin with etags', async () => {
    await hub.request('PUT', '/devices/twin1', { body: {} });
    const first = await hub.request('GET', '/twins/twin1');
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toBe(json);
    const twin = first.json as Twin;
    expect(twin).toMatchObject({ deviceId: 'twin1', version: 1, etag: 'AAAAAAAAAAE=', authenticationType: 'sas' });

    const patched = await hub.request('PATCH', '/twins/twin1', {
      body: { tags: { region: 'eu' }, properties: { desired: { rate: 5, old: 1 } } },
      headers: { 'if-match': `"${twin.etag}"` },
    });
    expect(patched.status, patched.text).toBe(200);
    const afterPatch = patched.json as Twin;
    expect(afterPatch).toMatchObject({
      version: 2,
      tags: { region: 'eu' },
      properties: { desired: { rate: 5, old: 1, $version: 2 } },
    });

    expectError(
      await hub.request('PATCH', '/twins/twin1', {
        body: { tags: { a: 1 } },
        headers: { 'if-match': `"${twin.etag}"` },
      }),
      412,
      'PreconditionFailed',
    );

    const deletedKey = await hub.request('PATCH', '/twins/twin1', {
      body: { properties: { desired: { old: null } } },
      headers: { 'if-match': '"*"' },
    });
    expect((deletedKey.json as Twin).properties.desired).not.toHaveProperty('old');

    const replaced = await hub.request('PUT', '/twins/twin1', {
      body: { tags: { only: 'this' }, properties: { desired: { fresh: true } } },
      headers: { 'if-match': `"${(deletedKey.json as Twin).etag}"` },
    });
    expect(replaced.status, replaced.text).toBe(200);
    expect(replaced.json).toMatchObject({
      tags: { only: 'this' },
      properties: { desired: { fresh: true, $version: 4 } },
    });
    expect((replaced.json as Twin).properties.desired).not.toHaveProperty('rate');

    expectError(
      await hub.request('PATCH', '/twins/twin1', {
        body: { properties: { reported: { x: 1 } } },
        headers: { 'if-match': '"*"' },
      }),
      400,
      'ArgumentInvalid',
    );
    expectError(await hub.request('GET', '/twins/ghost'), 404, 'DeviceNotFound');
  });

  it('enforces twin limits over HTTP', async () => {
    await hub.request('PUT', '/devices/twinlimits', { body: {} });
    const big: Record<string, string> = {};
    for (let i = 0; i < 9; i++) big[`k${i}`] = 'x'.repeat(4000);
    expectError(
      await hub.request('PATCH', '/twins/twinlimits', {
        body: { properties: { desired: big } },
        headers: { 'if-match': '"*"' },
      }),
      413,
      'MessageTooLarge',
    );
    expectError(
      await hub.request('PATCH', '/twins/twinlimits', { body: { tags: { 'a.b': 1 } }, headers: { 'if-match': '"*"' } }),
      400,
      'ArgumentInvalid',
    );
    expectError(
      await hub.request('PATCH', '/twins/twinlimits', {
        body: { properties: { desired: { s: 'x'.repeat(5000) } } },
        headers: { 'if-match': '"*"' },
      }),
      400,
      'ArgumentInvalid',
    );
    expect(((await hub.request('GET', '/twins/twinlimits')).json as Twin).version).toBe(1);
  });

  it('serves module twins', async () => {
    await hub.request('PUT', '/devices/twinmod', { body: {} });
    await hub.request('PUT', '/devices/twinmod/modules/m1', { body: {} });
    const patched = await hub.request('PATCH', '/twins/twinmod/modules/m1', {
      body: { properties: { desired: { speed: 3 } } },
      headers: { 'if-match': '"*"' },
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json).toMatchObject({ deviceId: 'twinmod', moduleId: 'm1', properties: { desired: { speed: 3 } } });
    const put = await hub.request('PUT', '/twins/twinmod/modules/m1', { body: { tags: { t: 1 } } });
    expect(put.json).toMatchObject({ tags: { t: 1 } });
    expect((put.json as Twin).properties.desired).not.toHaveProperty('speed');
    expect((await hub.request('GET', '/twins/twinmod/modules/m1')).json).toMatchObject({ moduleId: 'm1' });
    expectError(await hub.request('GET', '/twins/twinmod/modules/none'), 404, 'ModuleNotFound');
  });
});

describe('query', () => {
  it('pages with x-ms-max-item-count and x-ms-continuation, absent on the last page', async () => {
    for (let i = 0; i < 5; i++) {
      await hub.request('PUT', `/devices/q${i}`, { body: {} });
      await hub.request('PATCH', `/twins/q${i}`, {
        body: { tags: { group: 'paging', n: i } },
        headers: { 'if-match': '"*"' },
      });
    }
    const query = { query: "SELECT * FROM devices WHERE tags.group = 'paging'" };
    const seen: string[] = [];
    let continuation: string | undefined;
    let pages = 0;
    do {
      const headers: Record<string, string> = { 'x-ms-max-item-count': '2' };
      if (continuation) headers['x-ms-continuation'] = continuation;
      const page = await hub.request('POST', '/devices/query', { body: query, headers });
      expect(page.status, page.text).toBe(200);
      expect(page.headers['content-type']).toBe(json);
      expect(page.headers['x-ms-item-type']).toBe('twin');
      seen.push(...(page.json as { deviceId: string }[]).map((t) => t.deviceId));
      continuation = page.headers['x-ms-continuation'] as string | undefined;
      pages++;
    } while (continuation !== undefined && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(['q0', 'q1', 'q2', 'q3', 'q4']);

    const single = await hub.request('POST', '/devices/query', { body: query });
    expect((single.json as unknown[]).length).toBe(5);
    expect(single.headers).not.toHaveProperty('x-ms-continuation');

    const count = await hub.request('POST', '/devices/query', {
      body: { query: "SELECT COUNT() AS n FROM devices WHERE tags.group = 'paging'" },
    });
    expect(count.json).toEqual([{ n: 5 }]);
    expect(count.headers['x-ms-item-type']).toBe('raw');
  });

  it('queries module twins and rejects bad queries', async () => {
    await hub.request('PUT', '/devices/qm', { body: {} });
    await hub.request('PUT', '/devices/qm/modules/mm', { body: {} });
    const modules = await hub.request('POST', '/devices/query', {
      body: { query: "SELECT * FROM devices.modules WHERE deviceId = 'qm'" },
    });
    expect(modules.json).toEqual([expect.objectContaining({ deviceId: 'qm', moduleId: 'mm' })]);
    expectError(
      await hub.request('POST', '/devices/query', { body: { query: 'SELEKT * FROM devices' } }),
      400,
      'ArgumentInvalid',
    );
    expectError(await hub.request('POST', '/devices/query', { body: {} }), 400, 'ArgumentInvalid');
    expectError(
      await hub.request('POST', '/devices/query', {
        body: { query: 'SELECT * FROM devices' },
        headers: { 'x-ms-max-item-count': 'lots' },
      }),
      400,
      'ArgumentInvalid',
    );
  });
});

describe('protocol errors and authorisation', () => {
  it('requires api-version', async () => {
    expectError(await hub.request('GET', '/devices/x', { apiVersion: false }), 400, 'InvalidProtocolVersion');
    expectError(await hub.request('GET', '/twins/x', { apiVersion: false }), 400, 'InvalidProtocolVersion');
  });

  it('answers 404 to unknown paths and 405 to wrong methods', async () => {
    const unknown = await hub.request('GET', '/nothing/here');
    expect(unknown.status).toBe(404);
    const wrongMethod = await hub.request('POST', '/devices/some-device');
    expect(wrongMethod.status).toBe(405);
    expect((await hub.request('DELETE', '/twins/some-device')).status).toBe(405);
  });

  it('answers 401 IotHubUnauthorizedAccess to missing, wrong, expired and insufficient tokens', async () => {
    expectError(await hub.request('GET', '/devices', { policy: null }), 401, 'IotHubUnauthorizedAccess');
    const wrongKey = Buffer.alloc(32, 9).toString('base64');
    const se = Math.ceil(Date.now() / 1000) + 3600;
    const host = hub.info.hostName;
    const sign = (key: string, expiry: number) => {
      const sig = createHmac('sha256', Buffer.from(key, 'base64')).update(`${host}\n${expiry}`).digest('base64');
      return `SharedAccessSignature sr=${host}&sig=${encodeURIComponent(sig)}&skn=iothubowner&se=${expiry}`;
    };
    expectError(
      await hub.request('GET', '/devices', { headers: { authorization: sign(wrongKey, se) } }),
      401,
      'IotHubUnauthorizedAccess',
    );
    const ownerKey = /SharedAccessKey=([^;]+)/.exec(hub.info.serviceConnectionString)?.[1] ?? '';
    expect((await hub.request('GET', '/devices', { headers: { authorization: sign(ownerKey, se) } })).status).toBe(200);
    const expired = sign(ownerKey, Math.floor(Date.now() / 1000) - 3600);
    expectError(
      await hub.request('GET', '/devices', { headers: { authorization: expired } }),
      401,
      'IotHubUnauthorizedAccess',
    );
    expectError(
      await hub.request('GET', '/devices', { headers: { authorization: 'Bearer nope' } }),
      401,
      'IotHubUnauthorizedAccess',
    );

    // registryRead reads but cannot write; service reaches twins but not the registry.
    expect((await hub.request('GET', '/devices', { policy: 'registryRead' })).status).toBe(200);
    expectError(
      await hub.request('PUT', '/devices/byreader', { body: {}, policy: 'registryRead' }),
      401,
      'IotHubUnauthorizedAccess',
    );
    expectError(
      await hub.request('POST', '/devices', { body: [{ id: 'x', importMode: 'create' }], policy: 'registryRead' }),
      401,
      'IotHubUnauthorizedAccess',
    );
    expectError(await hub.request('GET', '/twins/twin1', { policy: 'registryRead' }), 401, 'IotHubUnauthorizedAccess');
    expectError(await hub.request('GET', '/devices', { policy: 'service' }), 401, 'IotHubUnauthorizedAccess');
    expectError(await hub.request('GET', '/devices', { policy: 'device' }), 401, 'IotHubUnauthorizedAccess');
    expect((await hub.request('PUT', '/devices/bywriter', { body: {}, policy: 'registryReadWrite' })).status).toBe(200);
    expect(
      (await hub.request('POST', '/devices/query', { body: { query: 'SELECT * FROM devices' }, policy: 'service' }))
        .status,
    ).toBe(200);
    expectError(await hub.request('GET', '/devices/byreader'), 404, 'DeviceNotFound');
  });

  it('accepts a token that verified before only while its policy keeps its keys and rights', async () => {
    const policy = (await hub.request('GET', '/fieldhub/policies/registryRead')).json as { primaryKey: string };
    const host = hub.info.hostName;
    const se = Math.ceil(Date.now() / 1000) + 3600;
    const sig = createHmac('sha256', Buffer.from(policy.primaryKey, 'base64'))
      .update(`${host}\n${se}`)
      .digest('base64');
    const authorization = `SharedAccessSignature sr=${host}&sig=${encodeURIComponent(sig)}&skn=registryRead&se=${se}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      expect((await hub.request('GET', '/devices', { headers: { authorization } })).status).toBe(200);
      expectError(
        await hub.request('PUT', '/devices/remembered', { body: {}, headers: { authorization } }),
        401,
        'IotHubUnauthorizedAccess',
      );
    }
    const rotated = await hub.request('POST', '/fieldhub/policies/registryRead/rotate?key=primary');
    expect(rotated.status, rotated.text).toBe(200);
    expectError(await hub.request('GET', '/devices', { headers: { authorization } }), 401, 'IotHubUnauthorizedAccess');
  });

  it('keeps serving after all the bad input', async () => {
    const response = await hub.request('GET', '/statistics/devices');
    expect(response.status).toBe(200);
  });
});

describe('persistence', () => {
  it('keeps devices, twins and policy keys across a restart on the same data dir', async () => {
    const created = await hub.request('PUT', '/devices/persist1', { body: {} });
    const device = created.json as Device;
    await hub.request('PUT', '/devices/persist1/modules/pm', { body: {} });
    const twin = (
      await hub.request('PATCH', '/twins/persist1', {
        body: { tags: { kept: true }, properties: { desired: { d: 1 } } },
        headers: { 'if-match': '"*"' },
      })
    ).json as Twin;
    const connectionString = hub.info.serviceConnectionString;
    const readKey = await hub.hub.core.policies.connectionString('registryRead');

    await hub.restart();

    expect(hub.info.serviceConnectionString).toBe(connectionString);
    expect(await hub.hub.core.policies.connectionString('registryRead')).toBe(readKey);
    const after = await hub.request('GET', '/devices/persist1');
    expect(after.status).toBe(200);
    expect(after.json).toMatchObject({
      deviceId: 'persist1',
      etag: device.etag,
      generationId: device.generationId,
      authentication: device.authentication,
    });
    expect((await hub.request('GET', '/twins/persist1')).json).toEqual(twin);
    expect((await hub.request('GET', '/devices/persist1/modules/pm')).status).toBe(200);
  });
});
