import { createSasToken } from '@fieldhub/auth';
import { parseConnectionString } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from './helpers/test-hub';

/** An enrollment as JSON: the tests read nested fields freely. */
// biome-ignore lint/suspicious/noExplicitAny: the tests read nested JSON fields of answers
type Json = Record<string, any>;

let test: TestHub;
beforeAll(async () => {
  test = await startTestHub();
});
afterAll(async () => {
  await test?.stop();
});

/** A token of the DPS policy, signed with the key of hub.json's `dps.serviceConnectionString`. */
async function dpsToken(key?: string): Promise<string> {
  const dps = test.info.dps;
  if (!dps) throw new Error('hub.json has no dps');
  const parsed = parseConnectionString(dps.serviceConnectionString);
  return createSasToken({
    resourceUri: parsed.hostName,
    key: key ?? parsed.sharedAccessKey ?? '',
    keyName: parsed.sharedAccessKeyName ?? '',
    ttlSeconds: 600,
  });
}

async function dps(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  return test.request(method, path, {
    ...(body === undefined ? {} : { body }),
    headers: { authorization: await dpsToken(), ...headers },
  });
}

function expectDpsError(response: { status: number; json: unknown }, status: number, errorCode: number) {
  expect(response.status).toBe(status);
  expect(response.json).toMatchObject({
    errorCode,
    trackingId: expect.any(String),
    message: expect.any(String),
    timestampUtc: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
  });
}

describe('provisioning service API: individual enrollments', () => {
  it('creates, reads, updates with If-Match, queries and deletes an enrollment', async () => {
    const created = await dps('PUT', '/enrollments/rest-dev-1', {
      registrationId: 'rest-dev-1',
      deviceId: 'rest-device-1',
      attestation: { type: 'symmetricKey' },
      initialTwin: { tags: { floor: 3 }, properties: { desired: { mode: 'eco' } } },
      provisioningStatus: 'enabled',
    });
    expect(created.status).toBe(200);
    const enrollment = created.json as Json;
    expect(enrollment).toMatchObject({
      registrationId: 'rest-dev-1',
      deviceId: 'rest-device-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: expect.any(String) } },
      iotHubHostName: 'localhost',
      iotHubs: ['localhost'],
      provisioningStatus: 'enabled',
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: true },
      capabilities: { iotEdge: false },
      initialTwin: { tags: { floor: 3 }, properties: { desired: { mode: 'eco' } } },
      etag: expect.any(String),
      createdDateTimeUtc: expect.any(String),
      lastUpdatedDateTimeUtc: expect.any(String),
    });
    expect(Buffer.from(enrollment.attestation.symmetricKey.primaryKey, 'base64')).toHaveLength(64);
    expect(created.headers.etag).toBe(`"${enrollment.etag}"`);

    const read = await dps('GET', '/enrollments/REST-DEV-1');
    expect(read.status).toBe(200);
    expect(read.json).toEqual(enrollment);

    const stale = await dps(
      'PUT',
      '/enrollments/rest-dev-1',
      { ...enrollment, provisioningStatus: 'disabled' },
      { 'if-match': '"not-the-etag"' },
    );
    expectDpsError(stale, 412, 412001);

    const updated = await dps(
      'PUT',
      '/enrollments/rest-dev-1',
      { ...enrollment, provisioningStatus: 'disabled' },
      { 'if-match': `"${enrollment.etag}"` },
    );
    expect(updated.status).toBe(200);
    const next = updated.json as Json;
    expect(next.provisioningStatus).toBe('disabled');
    expect(next.etag).not.toBe(enrollment.etag);
    expect(next.createdDateTimeUtc).toBe(enrollment.createdDateTimeUtc);
    expect(next.attestation.symmetricKey).toEqual(enrollment.attestation.symmetricKey);

    const query = await dps('POST', '/enrollments/query', { query: '*' });
    expect(query.status).toBe(200);
    expect(query.headers['x-ms-item-type']).toBe('Enrollment');
    expect((query.json as { registrationId: string }[]).map((item) => item.registrationId)).toContain('rest-dev-1');

    expectDpsError(await dps('DELETE', '/enrollments/rest-dev-1', undefined, { 'if-match': '"old"' }), 412, 412001);
    expect((await dps('DELETE', '/enrollments/rest-dev-1')).status).toBe(204);
    expectDpsError(await dps('GET', '/enrollments/rest-dev-1'), 404, 404000);
    expectDpsError(await dps('DELETE', '/enrollments/rest-dev-1'), 404, 404000);
  });

  it('keeps given keys and refuses bad input with 400', async () => {
    const key = Buffer.alloc(32, 1).toString('base64');
    const given = await dps('PUT', '/enrollments/given-keys', {
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: key } },
    });
    expect(given.status).toBe(200);
    expect((given.json as Json).attestation.symmetricKey).toEqual({ primaryKey: key, secondaryKey: key });

    const cases: [string, unknown][] = [
      ['no attestation', { registrationId: 'bad-1' }],
      ['tpm', { attestation: { type: 'tpm', tpm: { endorsementKey: 'AAAA' } } }],
      ['another hub', { attestation: { type: 'symmetricKey' }, iotHubHostName: 'other.azure-devices.net' }],
      ['another hub in the list', { attestation: { type: 'symmetricKey' }, iotHubs: ['localhost', 'elsewhere'] }],
      ['short key', { attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'AAAA' } } }],
      ['bad status', { attestation: { type: 'symmetricKey' }, provisioningStatus: 'paused' }],
      ['bad twin', { attestation: { type: 'symmetricKey' }, initialTwin: { tags: 5 } }],
      // Twin rules are checked when the enrollment is stored, not at each device's registration (which would fail).
      ['twin key with a dot', { attestation: { type: 'symmetricKey' }, initialTwin: { tags: { 'a.b': 1 } } }],
      [
        'twin key with a $',
        { attestation: { type: 'symmetricKey' }, initialTwin: { properties: { desired: { $x: 1 } } } },
      ],
      ['twin null', { attestation: { type: 'symmetricKey' }, initialTwin: { properties: { desired: { a: null } } } }],
      [
        'not a certificate',
        { attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: 'nope' } } } } },
      ],
      ['group form on an individual', { attestation: { type: 'x509', x509: { caReferences: { primary: 'ca' } } } }],
      ['other id in body', { registrationId: 'someone-else', attestation: { type: 'symmetricKey' } }],
    ];
    for (const [name, body] of cases) {
      const response = await dps('PUT', '/enrollments/bad-1', body);
      expect(response.status, name).toBe(400);
      expect((response.json as { errorCode: number }).errorCode, name).toBe(400004);
    }
    const badId = await dps('PUT', '/enrollments/-bad-', { attestation: { type: 'symmetricKey' } });
    expect(badId.status).toBe(400);
    const malformed = await dps('PUT', '/enrollments/bad-1', '{not json', { 'content-type': 'application/json' });
    expect(malformed.status).toBe(400);
    expectDpsError(await dps('GET', '/enrollments/bad-1'), 404, 404000);
    expectDpsError(
      await dps('POST', '/enrollments/query', { query: "SELECT * FROM enrollments WHERE x = 'y'" }),
      400,
      400004,
    );
  });

  it('runs a bulk operation and reports each failure', async () => {
    const created = await dps('POST', '/enrollments', {
      mode: 'create',
      enrollments: [
        { registrationId: 'bulk-1', attestation: { type: 'symmetricKey' } },
        { registrationId: 'bulk-2', attestation: { type: 'tpm' } },
      ],
    });
    expect(created.status).toBe(200);
    expect(created.json).toMatchObject({
      isSuccessful: false,
      errors: [{ registrationId: 'bulk-2', errorCode: 400004 }],
    });
    const again = await dps('POST', '/enrollments', {
      mode: 'create',
      enrollments: [{ registrationId: 'bulk-1', attestation: { type: 'symmetricKey' } }],
    });
    expect(again.json).toMatchObject({
      isSuccessful: false,
      errors: [{ registrationId: 'bulk-1', errorCode: 409001 }],
    });
    const deleted = await dps('POST', '/enrollments', { mode: 'delete', enrollments: [{ registrationId: 'bulk-1' }] });
    expect(deleted.json).toEqual({ isSuccessful: true, errors: [] });
    expect((await dps('POST', '/enrollments', { mode: 'explode', enrollments: [] })).status).toBe(400);
  });
});

describe('provisioning service API: enrollment groups', () => {
  it('creates, pages, reads and deletes groups', async () => {
    for (const id of ['group-a', 'group-b', 'group-c']) {
      const response = await dps('PUT', `/enrollmentGroups/${id}`, {
        enrollmentGroupId: id,
        attestation: { type: 'symmetricKey' },
        reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
      });
      expect(response.status).toBe(200);
      expect(response.json).toMatchObject({
        enrollmentGroupId: id,
        attestation: {
          type: 'symmetricKey',
          symmetricKey: { primaryKey: expect.any(String), secondaryKey: expect.any(String) },
        },
        reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
      });
    }
    const ids: string[] = [];
    let continuation: string | undefined;
    do {
      const page = await dps(
        'POST',
        '/enrollmentGroups/query',
        { query: '*' },
        {
          'x-ms-max-item-count': '2',
          ...(continuation === undefined ? {} : { 'x-ms-continuation': continuation }),
        },
      );
      expect(page.status).toBe(200);
      expect(page.headers['x-ms-item-type']).toBe('EnrollmentGroup');
      const items = page.json as { enrollmentGroupId: string }[];
      expect(items.length).toBeLessThanOrEqual(2);
      ids.push(...items.map((item) => item.enrollmentGroupId));
      continuation = page.headers['x-ms-continuation'] as string | undefined;
    } while (continuation !== undefined);
    expect(ids).toEqual(expect.arrayContaining(['group-a', 'group-b', 'group-c']));
    expect(new Set(ids).size).toBe(ids.length);

    const read = await dps('GET', '/enrollmentGroups/group-b');
    expect(read.status).toBe(200);
    expect(
      (await dps('DELETE', '/enrollmentGroups/group-b', undefined, { 'if-match': `"${(read.json as Json).etag}"` }))
        .status,
    ).toBe(204);
    expectDpsError(await dps('GET', '/enrollmentGroups/group-b'), 404, 404000);
    const clientCertificates = await dps('PUT', '/enrollmentGroups/bad-group', {
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: 'x' } } } },
    });
    expectDpsError(clientCertificates, 400, 400004);
    const unknownCa = await dps('PUT', '/enrollmentGroups/typo-group', {
      attestation: { type: 'x509', x509: { caReferences: { primary: 'no-such-ca' } } },
    });
    expectDpsError(unknownCa, 400, 400004);
    expect((unknownCa.json as Json).message).toContain('no-such-ca');
    expectDpsError(await dps('GET', '/enrollmentGroups/typo-group'), 404, 404000);
  });
});

describe('provisioning service API: what azure-iot-provisioning-service sends', () => {
  it('takes its token (se in milliseconds, as fromConnectionString signs it), bare If-Match and api-version 2018-04-01', async () => {
    const parsed = parseConnectionString(test.info.dps?.serviceConnectionString ?? '');
    // azure-iot-common's SharedAccessSignature.create(host, name, key, Date.now()): the expiry is milliseconds.
    const authorization = await createSasToken({
      resourceUri: parsed.hostName,
      key: parsed.sharedAccessKey ?? '',
      keyName: parsed.sharedAccessKeyName ?? '',
      expiresAt: Date.now(),
    });
    const sdk = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
      test.request(method, `${path}?api-version=2018-04-01`, {
        apiVersion: false,
        ...(body === undefined ? {} : { body }),
        headers: { authorization, accept: 'application/json', ...headers },
      });
    const created = await sdk('PUT', '/enrollmentGroups/sdk-group', {
      enrollmentGroupId: 'sdk-group',
      attestation: { type: 'symmetricKey' },
    });
    expect(created.status).toBe(200);
    const { etag } = created.json as Json;
    // The SDK sends the enrollment's etag as If-Match, unquoted.
    const updated = await sdk(
      'PUT',
      '/enrollmentGroups/sdk-group',
      { ...(created.json as Json), provisioningStatus: 'disabled' },
      { 'If-Match': etag },
    );
    expect(updated.status).toBe(200);
    const page = await sdk('POST', '/enrollmentGroups/query', { query: '*' }, { 'x-ms-max-item-count': '10' });
    expect(page.status).toBe(200);
    expect((page.json as Json[]).some((item) => item.enrollmentGroupId === 'sdk-group')).toBe(true);
    expect(
      (await sdk('DELETE', '/enrollmentGroups/sdk-group', undefined, { 'If-Match': (updated.json as Json).etag }))
        .status,
    ).toBe(204);
  });
});

describe('provisioning service API: authorization', () => {
  it('accepts the DPS policy and the hub owner, refuses others with 401 in DPS shape', async () => {
    expect((await test.request('GET', '/enrollments/query-nothing', { policy: 'iothubowner' })).status).toBe(404);
    expectDpsError(await test.request('GET', '/enrollments/anything', { policy: null }), 401, 401002);
    const wrongKey = await dpsToken(Buffer.alloc(32, 9).toString('base64'));
    expectDpsError(
      await test.request('GET', '/enrollments/anything', { headers: { authorization: wrongKey } }),
      401,
      401002,
    );
    // registryRead may read, not write.
    expect((await test.request('POST', '/enrollments/query', { policy: 'registryRead', body: {} })).status).toBe(200);
    expectDpsError(
      await test.request('PUT', '/enrollments/by-reader', {
        policy: 'registryRead',
        body: { attestation: { type: 'symmetricKey' } },
      }),
      401,
      401002,
    );
    const noVersion = await test.request('GET', '/enrollments/anything', {
      apiVersion: false,
      headers: { authorization: await dpsToken() },
    });
    expectDpsError(noVersion, 400, 400004);
  });
});
