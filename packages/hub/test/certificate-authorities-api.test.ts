import {
  type CertificateWithKey,
  createRootCa,
  createVerificationCertificate,
  issueDeviceCertificate,
  parseCertificate,
} from '@fieldhub/auth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub, type TestResponse } from './helpers/test-hub';

// The CA certificate extension routes (docs/rest-extensions.md) and the device chain check behind them, through a
// real hub over HTTPS.

let hub: TestHub;
let fleet: CertificateWithKey;
let foreign: CertificateWithKey;
let other: CertificateWithKey;

beforeAll(async () => {
  [hub, fleet, foreign, other] = await Promise.all([
    startTestHub(),
    createRootCa({ commonName: 'Fleet Root' }),
    createRootCa({ commonName: 'Foreign Root' }),
    createRootCa({ commonName: 'Other Root' }),
  ]);
});

afterAll(async () => {
  await hub?.stop();
});

interface Description {
  name: string;
  subject: string;
  thumbprint: string;
  thumbprintSha256: string;
  expiry: string;
  isVerified: boolean;
  etag: string;
  created: string;
  updated: string;
  verificationCode?: string;
}

function expectError(response: TestResponse, status: number, code: string): void {
  expect(response.status, response.text).toBe(status);
  expect(response.headers['iothub-errorcode']).toBe(code);
  expect((response.json as { Message: string }).Message).toMatch(new RegExp(`^ErrorCode:${code};`));
}

function ok(response: TestResponse): Description {
  expect(response.status, response.text).toBe(200);
  expect(response.headers['content-type']).toContain('application/json');
  return response.json as Description;
}

describe('CA certificates over REST', () => {
  it('adds, generates a code, verifies with a real verification certificate, lists and reads', async () => {
    const added = ok(
      await hub.request('PUT', '/fieldhub/certificates/fleet', { body: { certificate: fleet.certificate } }),
    );
    const info = parseCertificate(fleet.certificate);
    expect(added).toMatchObject({
      name: 'fleet',
      subject: 'Fleet Root',
      thumbprint: info.thumbprintSha1,
      thumbprintSha256: info.thumbprintSha256,
      expiry: info.notAfter.toISOString(),
      isVerified: false,
    });

    const coded = await hub.request('POST', '/fieldhub/certificates/fleet/generateVerificationCode');
    const withCode = ok(coded);
    expect(coded.headers.etag).toBe(`"${withCode.etag}"`);
    expect(withCode.verificationCode).toMatch(/^[0-9A-F]+$/);

    const proof = await createVerificationCertificate({ ca: fleet, verificationCode: withCode.verificationCode ?? '' });
    const verified = ok(
      await hub.request('POST', '/fieldhub/certificates/fleet/verify', { body: { certificate: proof } }),
    );
    expect(verified.isVerified).toBe(true);
    expect(verified).not.toHaveProperty('verificationCode');

    const list = await hub.request('GET', '/fieldhub/certificates', { policy: 'registryRead' });
    expect(list.status).toBe(200);
    expect((list.json as Description[]).map((c) => [c.name, c.isVerified])).toContainEqual(['fleet', true]);
    const one = ok(await hub.request('GET', '/fieldhub/certificates/fleet', { policy: 'registryRead' }));
    expect(one).toEqual(verified);
    expect(await hub.hub.core.certificateAuthorities.verifiedCertificates()).toContain(info.pem);
  });

  it('refuses a verification certificate signed by another key with 400 ArgumentInvalid', async () => {
    ok(await hub.request('PUT', '/fieldhub/certificates/pop', { body: { certificate: other.certificate } }));
    const { verificationCode } = ok(await hub.request('POST', '/fieldhub/certificates/pop/generateVerificationCode'));
    const forged = await createVerificationCertificate({ ca: foreign, verificationCode: verificationCode ?? '' });
    const response = await hub.request('POST', '/fieldhub/certificates/pop/verify', { body: { certificate: forged } });
    expectError(response, 400, 'ArgumentInvalid');
    expect(ok(await hub.request('GET', '/fieldhub/certificates/pop')).isVerified).toBe(false);
  });

  it('accepts isVerified: true at upload', async () => {
    const added = ok(
      await hub.request('PUT', '/fieldhub/certificates/trusted', {
        body: { certificate: other.certificate, isVerified: true },
      }),
    );
    expect(added.isVerified).toBe(true);
  });

  it('answers bad PEM, unknown names, stale etags and missing rights in Azure envelopes', async () => {
    const bad = await hub.request('PUT', '/fieldhub/certificates/bad', { body: { certificate: 'nope' } });
    expectError(bad, 400, 'ArgumentInvalid');
    expect((bad.json as { Message: string }).Message).toContain('certificate');
    expectError(await hub.request('PUT', '/fieldhub/certificates/bad', { body: {} }), 400, 'ArgumentInvalid');
    expectError(await hub.request('GET', '/fieldhub/certificates/missing'), 404, 'ResourceNotFound');
    expectError(await hub.request('DELETE', '/fieldhub/certificates/missing'), 404, 'ResourceNotFound');
    expectError(
      await hub.request('POST', '/fieldhub/certificates/missing/generateVerificationCode'),
      404,
      'ResourceNotFound',
    );

    const added = ok(
      await hub.request('PUT', '/fieldhub/certificates/etagged', { body: { certificate: other.certificate } }),
    );
    expectError(
      await hub.request('PUT', '/fieldhub/certificates/etagged', { body: { certificate: other.certificate } }),
      412,
      'PreconditionFailed',
    );
    expectError(
      await hub.request('DELETE', '/fieldhub/certificates/etagged', { headers: { 'if-match': '"stale"' } }),
      412,
      'PreconditionFailed',
    );
    // Writes need RegistryWrite; reads RegistryRead.
    expectError(
      await hub.request('PUT', '/fieldhub/certificates/x', {
        body: { certificate: other.certificate },
        policy: 'registryRead',
      }),
      401,
      'IotHubUnauthorizedAccess',
    );
    expectError(
      await hub.request('GET', '/fieldhub/certificates', { policy: 'service' }),
      401,
      'IotHubUnauthorizedAccess',
    );
    expectError(await hub.request('GET', '/fieldhub/certificates', { policy: null }), 401, 'IotHubUnauthorizedAccess');

    const deleted = await hub.request('DELETE', '/fieldhub/certificates/etagged', {
      headers: { 'if-match': `"${added.etag}"` },
    });
    expect(deleted.status, deleted.text).toBe(204);
    expectError(await hub.request('GET', '/fieldhub/certificates/etagged'), 404, 'ResourceNotFound');
  });
});

describe('authenticateDevice against CAs uploaded over REST', () => {
  it('accepts a device certificate from the verified CA with CN = device id', async () => {
    const device = await issueDeviceCertificate({ issuer: fleet, deviceId: 'cam-1' });
    const result = await hub.hub.core.certificateAuthorities.authenticateDevice('cam-1', [device.certificate]);
    expect(result).toEqual({ ok: true, commonName: 'cam-1', certificateAuthority: 'fleet' });
  });

  it('refuses an unverified CA, a wrong CN, an expired certificate and a foreign CA', async () => {
    const cas = hub.hub.core.certificateAuthorities;
    // A root of its own: 'pop' shares Other Root with the verified 'trusted' upload, so it proves nothing here.
    const unverifiedRoot = await createRootCa({ commonName: 'Unverified Root' });
    ok(
      await hub.request('PUT', '/fieldhub/certificates/unverified', {
        body: { certificate: unverifiedRoot.certificate },
      }),
    );
    const fromUnverified = await issueDeviceCertificate({ issuer: unverifiedRoot, deviceId: 'cam-2' });
    expect(await cas.authenticateDevice('cam-2', [fromUnverified.certificate])).toMatchObject({
      ok: false,
      reason: expect.stringContaining('does not chain'),
    });

    const device = await issueDeviceCertificate({ issuer: fleet, deviceId: 'cam-1' });
    expect(await cas.authenticateDevice('cam-9', [device.certificate])).toMatchObject({
      ok: false,
      reason: expect.stringContaining('does not match'),
    });

    const expired = await issueDeviceCertificate({
      issuer: fleet,
      deviceId: 'cam-1',
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    expect(await cas.authenticateDevice('cam-1', [expired.certificate])).toMatchObject({
      ok: false,
      reason: expect.stringContaining('expired'),
    });

    const stranger = await issueDeviceCertificate({ issuer: foreign, deviceId: 'cam-1' });
    expect((await cas.authenticateDevice('cam-1', [stranger.certificate])).ok).toBe(false);
  });
});
