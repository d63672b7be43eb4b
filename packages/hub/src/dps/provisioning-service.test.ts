import { createSasToken } from '@fieldhub/auth';
import { deriveDeviceKey } from '@fieldhub/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CertificateAuthorities } from '../core/certificate-authorities';
import { Registry } from '../core/registry';
import { createTestCore, type TestCore } from '../core/telemetry-test-support';
import { Twins } from '../core/twins';
import type { DpsAnswer, DpsPrincipal } from './contract';
import {
  maxAssigningPerRegistration,
  maxOperationsPerRegistration,
  operationTtlMs,
  ProvisioningService,
  resolveIdScope,
} from './provisioning-service';

let core: TestCore;
let dps: ProvisioningService;

function service(enabled = true): ProvisioningService {
  const registry = new Registry(core.ctx);
  const twins = new Twins(core.ctx);
  return new ProvisioningService(
    core.ctx,
    { registry, twins, certificateAuthorities: new CertificateAuthorities(core.ctx) },
    { idScope: '0ne0000ABCD', hostName: 'dps.local', enabled },
  );
}

beforeEach(async () => {
  core = await createTestCore();
  dps = service();
});
afterEach(async () => {
  await dps.stop();
  await core.close();
});

function token(
  registrationId: string,
  key: string,
  options: { encode?: boolean; keyName?: string; ttl?: number } = {},
) {
  return createSasToken({
    resourceUri: `0ne0000ABCD/registrations/${registrationId}`,
    key,
    keyName: options.keyName ?? 'registration',
    ttlSeconds: options.ttl ?? 600,
    now: new Date(core.ctx.now()),
    encodeResourceUri: options.encode ?? false,
  });
}

async function settle(principal: DpsPrincipal, started: DpsAnswer): Promise<DpsAnswer> {
  await dps.stop();
  return dps.operationStatus(principal, started.body.operationId);
}

describe('SAS attestation', () => {
  it('verifies the literal sr whether encoded or not, and only with skn=registration', async () => {
    const { attestation } = await dps.enrollments.putIndividual('dev-1', { attestation: { type: 'symmetricKey' } });
    const key = attestation.symmetricKey?.primaryKey ?? '';
    for (const encode of [false, true]) {
      const principal = await dps.authenticate('0ne0000abcd', 'dev-1', {
        kind: 'sas',
        token: await token('dev-1', key, { encode }),
      });
      expect(principal).toMatchObject({
        idScope: '0ne0000ABCD',
        registrationId: 'dev-1',
        expiresAtMs: expect.any(Number),
      });
    }
    await expect(
      dps.authenticate('0ne0000ABCD', 'dev-1', { kind: 'sas', token: await token('dev-1', key, { keyName: 'owner' }) }),
    ).rejects.toMatchObject({ hubCode: 401002 });
    await expect(
      dps.authenticate('0ne0000ABCD', 'dev-1', { kind: 'sas', token: 'SharedAccessSignature nonsense' }),
    ).rejects.toMatchObject({
      hubCode: 401002,
    });
  });

  it('refuses an expired token (past the 5 minutes of skew)', async () => {
    const { attestation } = await dps.enrollments.putIndividual('dev-1', { attestation: { type: 'symmetricKey' } });
    const expired = await token('dev-1', attestation.symmetricKey?.primaryKey ?? '', { ttl: 1 });
    core.advance(302_000);
    await expect(dps.authenticate('0ne0000ABCD', 'dev-1', { kind: 'sas', token: expired })).rejects.toMatchObject({
      status: 401,
    });
  });

  it('lets the individual enrollment decide alone: a group key does not authenticate its registration id', async () => {
    const group = await dps.enrollments.putGroup('g', { attestation: { type: 'symmetricKey' } });
    const derived = deriveDeviceKey(group.attestation.symmetricKey?.primaryKey ?? '', 'dev-9');
    await expect(
      dps.authenticate('0ne0000ABCD', 'dev-9', { kind: 'sas', token: await token('dev-9', derived) }),
    ).resolves.toMatchObject({
      enrollmentGroupId: 'g',
    });
    await dps.enrollments.putIndividual('dev-9', { attestation: { type: 'symmetricKey' } });
    await expect(
      dps.authenticate('0ne0000ABCD', 'dev-9', { kind: 'sas', token: await token('dev-9', derived) }),
    ).rejects.toMatchObject({
      status: 401,
    });
  });

  it('accepts either group key, and the derived key only for its own registration id', async () => {
    const group = await dps.enrollments.putGroup('g', { attestation: { type: 'symmetricKey' } });
    const secondary = deriveDeviceKey(group.attestation.symmetricKey?.secondaryKey ?? '', 'dev-a');
    await expect(
      dps.authenticate('0ne0000ABCD', 'dev-a', { kind: 'sas', token: await token('dev-a', secondary) }),
    ).resolves.toBeTruthy();
    await expect(
      dps.authenticate('0ne0000ABCD', 'dev-b', { kind: 'sas', token: await token('dev-b', secondary) }),
    ).rejects.toMatchObject({
      status: 401,
    });
    // The group key itself is not a device key.
    const raw = group.attestation.symmetricKey?.primaryKey ?? '';
    await expect(
      dps.authenticate('0ne0000ABCD', 'dev-a', { kind: 'sas', token: await token('dev-a', raw) }),
    ).rejects.toMatchObject({
      status: 401,
    });
  });

  it('refuses everything when the service is disabled', async () => {
    const off = service(false);
    const { attestation } = await off.enrollments.putIndividual('dev-1', { attestation: { type: 'symmetricKey' } });
    await expect(
      off.authenticate('0ne0000ABCD', 'dev-1', {
        kind: 'sas',
        token: await token('dev-1', attestation.symmetricKey?.primaryKey ?? ''),
      }),
    ).rejects.toMatchObject({ status: 401 });
  });
});

describe('operations', () => {
  it('answers 202 while assigning, 200 when done, 404 after the TTL or for another registration', async () => {
    const { attestation } = await dps.enrollments.putIndividual('dev-1', { attestation: { type: 'symmetricKey' } });
    const key = attestation.symmetricKey?.primaryKey ?? '';
    const principal = await dps.authenticate('0ne0000ABCD', 'dev-1', { kind: 'sas', token: await token('dev-1', key) });
    const started = await dps.register(principal);
    expect(started).toMatchObject({ status: 202, body: { status: 'assigning' }, retryAfterSeconds: 1 });
    expect(started.body.operationId).toMatch(/^4\.[0-9a-f]{16}\.[0-9a-f-]{36}$/);
    const done = await settle(principal, started);
    expect(done).toMatchObject({ status: 200, body: { status: 'assigned', registrationState: { deviceId: 'dev-1' } } });
    await dps.enrollments.putIndividual('dev-2', { attestation: { type: 'symmetricKey' } });
    const other: DpsPrincipal = { ...principal, registrationId: 'dev-2' };
    await expect(dps.operationStatus(other, started.body.operationId)).rejects.toMatchObject({ status: 404 });
    core.advance(operationTtlMs + 1);
    await expect(dps.operationStatus(principal, started.body.operationId)).rejects.toMatchObject({ status: 404 });
  });

  it('refuses 429 a registration id with too many registrations assigning, and keeps only its newest operations', async () => {
    const { attestation } = await dps.enrollments.putIndividual('loop', { attestation: { type: 'symmetricKey' } });
    const key = attestation.symmetricKey?.primaryKey ?? '';
    const principal = await dps.authenticate('0ne0000ABCD', 'loop', { kind: 'sas', token: await token('loop', key) });
    const burst = await Promise.allSettled(
      Array.from({ length: maxAssigningPerRegistration + 1 }, () => dps.register(principal)),
    );
    expect(burst.filter((result) => result.status === 'fulfilled')).toHaveLength(maxAssigningPerRegistration);
    expect(burst.at(-1)).toMatchObject({ status: 'rejected', reason: { status: 429 } });
    await dps.stop();
    const first = burst[0]?.status === 'fulfilled' ? burst[0].value : undefined;
    let last: DpsAnswer | undefined;
    for (let i = 0; i < maxOperationsPerRegistration; i++) {
      last = await dps.register(principal);
      await dps.stop();
    }
    await expect(dps.operationStatus(principal, String(first?.body.operationId))).rejects.toMatchObject({
      status: 404,
    });
    expect(await dps.operationStatus(principal, String(last?.body.operationId))).toMatchObject({ status: 200 });
  });

  it('refuses a principal it did not authenticate', async () => {
    await expect(
      dps.register({ idScope: '0ne0000ABCD', registrationId: 'x', expiresAtMs: undefined }),
    ).rejects.toMatchObject({
      status: 401,
    });
  });

  it('ends with failed when the enrollment was deleted between authentication and assignment', async () => {
    const { attestation } = await dps.enrollments.putIndividual('gone', { attestation: { type: 'symmetricKey' } });
    const principal = await dps.authenticate('0ne0000ABCD', 'gone', {
      kind: 'sas',
      token: await token('gone', attestation.symmetricKey?.primaryKey ?? ''),
    });
    await dps.enrollments.deleteIndividual('gone');
    const done = await settle(principal, await dps.register(principal));
    expect(done.body).toMatchObject({ status: 'failed', registrationState: { status: 'failed', errorCode: 401002 } });
  });
});

describe('resolveIdScope', () => {
  it('generates an Azure-style scope once and keeps it; a configured scope wins', async () => {
    const first = await resolveIdScope(core.ctx, undefined);
    expect(first).toMatch(/^0ne[0-9A-F]{8}$/);
    expect(await resolveIdScope(core.ctx, undefined)).toBe(first);
    expect(await resolveIdScope(core.ctx, '0neCONFIGURED')).toBe('0neCONFIGURED');
  });
});
