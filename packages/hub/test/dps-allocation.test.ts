import {
  type CertificateWithKey,
  createIntermediateCa,
  createRootCa,
  createSasToken,
  createSelfSignedCertificate,
  createVerificationCertificate,
  issueDeviceCertificate,
  parseCertificate,
} from '@fieldhub/auth';
import { deriveDeviceKey } from '@fieldhub/protocol';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DpsAnswer, DpsPrincipal, DpsProof } from '../src/dps/contract';
import type { ProvisioningService } from '../src/dps/provisioning-service';
import { startTestHub, type TestHub } from './helpers/test-hub';

const hubs: TestHub[] = [];
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((hub) => hub.stop()));
});

async function hub(): Promise<TestHub> {
  const started = await startTestHub();
  hubs.push(started);
  return started;
}

async function sasProof(dps: ProvisioningService, registrationId: string, key: string): Promise<DpsProof> {
  const token = await createSasToken({
    resourceUri: `${dps.idScope}/registrations/${registrationId}`,
    key,
    keyName: 'registration',
    ttlSeconds: 600,
  });
  return { kind: 'sas', token };
}

/** Registers and polls until the operation is done, as a device does. */
async function register(dps: ProvisioningService, registrationId: string, proof: DpsProof): Promise<DpsAnswer> {
  const principal: DpsPrincipal = await dps.authenticate(dps.idScope, registrationId, proof);
  const started = await dps.register(principal);
  expect(started).toMatchObject({ status: 202, body: { status: 'assigning' } });
  for (;;) {
    const answer = await dps.operationStatus(principal, started.body.operationId);
    if (answer.status === 200) return answer;
    expect(answer.body.status).toBe('assigning');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('allocation', () => {
  it('uses the enrollment deviceId, accepts an encoded sr, and answers 404 for an unknown operation', async () => {
    const test = await hub();
    const { dps } = test.hub.core;
    const enrollment = await dps.enrollments.putIndividual('reg-a', {
      deviceId: 'device-of-reg-a',
      attestation: { type: 'symmetricKey' },
      capabilities: { iotEdge: true },
    });
    const key = enrollment.attestation.symmetricKey?.secondaryKey ?? '';
    const answer = await register(dps, 'reg-a', await sasProof(dps, 'reg-a', key));
    expect(answer.body.registrationState).toMatchObject({ deviceId: 'device-of-reg-a', assignedHub: 'localhost' });
    const device = await test.hub.core.registry.getDevice('device-of-reg-a');
    expect(device.capabilities).toEqual({ iotEdge: true });
    const principal = await dps.authenticate(dps.idScope, 'reg-a', await sasProof(dps, 'reg-a', key));
    await expect(dps.operationStatus(principal, '4.0.nothing')).rejects.toMatchObject({ status: 404 });
    // A token for another registration id or another scope does not pass.
    await expect(dps.authenticate(dps.idScope, 'reg-b', await sasProof(dps, 'reg-a', key))).rejects.toMatchObject({
      status: 401,
    });
    await expect(dps.authenticate('0ne99999999', 'reg-a', await sasProof(dps, 'reg-a', key))).rejects.toMatchObject({
      status: 401,
    });
  });

  it('reprovisions by policy: migrate keeps the twin, reset reapplies the initial twin, never leaves it alone', async () => {
    const test = await hub();
    const { dps, twins } = test.hub.core;
    const initialTwin = { tags: { role: 'meter' }, properties: { desired: { rate: 1 } } };
    const cases = [
      {
        id: 'migrate',
        policy: { updateHubAssignment: true, migrateDeviceData: true },
        substatus: 'deviceDataMigrated',
        rate: 9,
      },
      {
        id: 'reset',
        policy: { updateHubAssignment: true, migrateDeviceData: false },
        substatus: 'deviceDataReset',
        rate: 1,
      },
      {
        id: 'never',
        policy: { updateHubAssignment: false, migrateDeviceData: false },
        substatus: 'initialAssignment',
        rate: 9,
      },
    ];
    for (const item of cases) {
      const enrollment = await dps.enrollments.putIndividual(item.id, {
        attestation: { type: 'symmetricKey' },
        initialTwin,
        reprovisionPolicy: item.policy,
      });
      const key = enrollment.attestation.symmetricKey?.primaryKey ?? '';
      const first = await register(dps, item.id, await sasProof(dps, item.id, key));
      expect(first.body.registrationState?.substatus).toBe('initialAssignment');
      await twins.patch(item.id, undefined, { tags: { role: 'changed' }, properties: { desired: { rate: 9 } } });
      const second = await register(dps, item.id, await sasProof(dps, item.id, key));
      expect(second.body.registrationState?.substatus, item.id).toBe(item.substatus);
      const twin = await twins.get(item.id);
      expect(twin.properties.desired.rate, item.id).toBe(item.rate);
      expect(twin.tags, item.id).toEqual({ role: item.rate === 1 ? 'meter' : 'changed' });
    }
  });

  it('keeps the first identity when the registration id comes back in another case', async () => {
    const test = await hub();
    const { dps, registry } = test.hub.core;
    const group = await dps.enrollments.putGroup('cases', { attestation: { type: 'symmetricKey' } });
    const groupKey = group.attestation.symmetricKey?.primaryKey ?? '';
    await register(dps, 'Mixed-Case', await sasProof(dps, 'Mixed-Case', deriveDeviceKey(groupKey, 'Mixed-Case')));
    const again = await register(
      dps,
      'mixed-case',
      await sasProof(dps, 'mixed-case', deriveDeviceKey(groupKey, 'mixed-case')),
    );
    expect(again.body.registrationState).toMatchObject({ registrationId: 'Mixed-Case', deviceId: 'Mixed-Case' });
    expect(await registry.getDeviceRecord('mixed-case')).toBeUndefined();
  });

  it('gives a registration whose device was deleted by hand a new identity', async () => {
    const test = await hub();
    const { dps, registry } = test.hub.core;
    const group = await dps.enrollments.putGroup('lost', { attestation: { type: 'symmetricKey' } });
    const key = deriveDeviceKey(group.attestation.symmetricKey?.primaryKey ?? '', 'lost-1');
    await register(dps, 'lost-1', await sasProof(dps, 'lost-1', key));
    const before = await registry.getDevice('lost-1');
    await registry.deleteDevice('lost-1');
    const again = await register(dps, 'lost-1', await sasProof(dps, 'lost-1', key));
    expect(again.body.registrationState).toMatchObject({ status: 'assigned', substatus: 'initialAssignment' });
    const after = await registry.getDevice('lost-1');
    expect(after.generationId).not.toBe(before.generationId);
    expect(after.authentication.symmetricKey?.primaryKey).toBe(key);
  });

  it('refuses disabled enrollments and groups with status disabled, and creates no device', async () => {
    const test = await hub();
    const { dps, registry } = test.hub.core;
    const enrollment = await dps.enrollments.putIndividual('off-1', {
      attestation: { type: 'symmetricKey' },
      provisioningStatus: 'disabled',
    });
    const individual = await register(
      dps,
      'off-1',
      await sasProof(dps, 'off-1', enrollment.attestation.symmetricKey?.primaryKey ?? ''),
    );
    expect(individual.body).toMatchObject({
      status: 'disabled',
      registrationState: { status: 'disabled', errorCode: 401002 },
    });
    const group = await dps.enrollments.putGroup('off-group', {
      attestation: { type: 'symmetricKey' },
      provisioningStatus: 'disabled',
    });
    const key = deriveDeviceKey(group.attestation.symmetricKey?.primaryKey ?? '', 'off-2');
    expect((await register(dps, 'off-2', await sasProof(dps, 'off-2', key))).body.status).toBe('disabled');
    expect(await registry.getDeviceRecord('off-1')).toBeUndefined();
    expect(await registry.getDeviceRecord('off-2')).toBeUndefined();
    expect(await dps.registrations.get('off-1')).toBeUndefined();
  });

  it('keeps enrollments, registration states and the ID scope across a restart', async () => {
    const test = await hub();
    const before = test.hub.core.dps;
    const enrollment = await before.enrollments.putIndividual('durable', { attestation: { type: 'symmetricKey' } });
    const key = enrollment.attestation.symmetricKey?.primaryKey ?? '';
    const first = await register(before, 'durable', await sasProof(before, 'durable', key));
    const idScope = before.idScope;
    await test.restart();
    const after = test.hub.core.dps;
    expect(after.idScope).toBe(idScope);
    expect(await after.enrollments.getIndividual('durable')).toEqual(enrollment);
    expect(await after.registrations.get('durable')).toMatchObject({
      deviceId: 'durable',
      createdDateTimeUtc: first.body.registrationState?.createdDateTimeUtc,
    });
    const again = await register(after, 'durable', await sasProof(after, 'durable', key));
    expect(again.body.registrationState).toMatchObject({
      deviceId: 'durable',
      createdDateTimeUtc: first.body.registrationState?.createdDateTimeUtc,
    });
    const state = await test.request('GET', '/registrations/durable');
    expect(state.status).toBe(200);
    expect(state.json).toMatchObject({
      registrationId: 'durable',
      deviceId: 'durable',
      status: 'assigned',
      symmetricKey: {},
    });
  });
});

describe('X.509 attestation', () => {
  let root: CertificateWithKey;
  let intermediate: CertificateWithKey;
  beforeAll(async () => {
    root = await createRootCa({ commonName: 'DPS Test Root' });
    intermediate = await createIntermediateCa({ commonName: 'DPS Test Intermediate', issuer: root });
  });

  it('assigns an individual X.509 enrollment to a selfSigned device with its thumbprint, refuses another certificate', async () => {
    const test = await hub();
    const { dps, registry } = test.hub.core;
    const certificate = await createSelfSignedCertificate({ commonName: 'x509-one' });
    const other = await createSelfSignedCertificate({ commonName: 'x509-one' });
    await dps.enrollments.putIndividual('x509-one', {
      attestation: {
        type: 'x509',
        x509: { clientCertificates: { primary: { certificate: certificate.certificate } } },
      },
    });
    const answer = await register(dps, 'x509-one', { kind: 'x509', chain: [certificate.certificate] });
    expect(answer.body.registrationState).toMatchObject({ deviceId: 'x509-one', status: 'assigned', x509: {} });
    const device = await registry.getDevice('x509-one');
    expect(device.authentication).toMatchObject({
      type: 'selfSigned',
      x509Thumbprint: { primaryThumbprint: parseCertificate(certificate.certificate).thumbprintSha1 },
    });
    await expect(
      dps.authenticate(dps.idScope, 'x509-one', { kind: 'x509', chain: [other.certificate] }),
    ).rejects.toMatchObject({ status: 401 });
    // A SAS token does not authenticate an X.509 enrollment.
    await expect(
      dps.authenticate(dps.idScope, 'x509-one', await sasProof(dps, 'x509-one', Buffer.alloc(32).toString('base64'))),
    ).rejects.toMatchObject({ status: 401 });
  });

  it('assigns through a group on a verified CA, refuses while the CA is unverified and a CN that is not the id', async () => {
    const test = await hub();
    const { dps, registry, certificateAuthorities } = test.hub.core;
    await certificateAuthorities.add('dps-root', root.certificate);
    await dps.enrollments.putGroup('ca-group', {
      attestation: { type: 'x509', x509: { caReferences: { primary: 'dps-root' } } },
      initialTwin: { tags: { batch: 7 } },
    });
    const leaf = await issueDeviceCertificate({ issuer: intermediate, deviceId: 'ca-dev-1' });
    const chain = [leaf.certificate, intermediate.certificate];
    await expect(dps.authenticate(dps.idScope, 'ca-dev-1', { kind: 'x509', chain })).rejects.toMatchObject({
      status: 401,
      message: expect.stringContaining('not verified'),
    });
    const { verificationCode } = await certificateAuthorities.generateVerificationCode('dps-root');
    await certificateAuthorities.verify(
      'dps-root',
      await createVerificationCertificate({ ca: root, verificationCode }),
    );
    const answer = await register(dps, 'ca-dev-1', { kind: 'x509', chain });
    expect(answer.body.registrationState).toMatchObject({
      deviceId: 'ca-dev-1',
      substatus: 'initialAssignment',
      x509: { enrollmentGroupId: 'ca-group' },
    });
    expect((await registry.getDevice('ca-dev-1')).authentication.type).toBe('certificateAuthority');
    expect((await test.hub.core.twins.get('ca-dev-1')).tags).toEqual({ batch: 7 });
    await expect(dps.authenticate(dps.idScope, 'someone-else', { kind: 'x509', chain })).rejects.toMatchObject({
      status: 401,
    });
    const query = await test.request('POST', '/registrations/ca-group/query', { body: {} });
    expect(query.status).toBe(200);
    expect(query.json).toEqual([
      expect.objectContaining({ registrationId: 'ca-dev-1', x509: { enrollmentGroupId: 'ca-group' } }),
    ]);
  });

  it('assigns through a group on its own signing certificate, pinning the device to its certificate', async () => {
    const test = await hub();
    const { dps, registry } = test.hub.core;
    await dps.enrollments.putGroup('signed-group', {
      attestation: {
        type: 'x509',
        x509: { signingCertificates: { primary: { certificate: intermediate.certificate } } },
      },
    });
    const leaf = await issueDeviceCertificate({ issuer: intermediate, deviceId: 'signed-1' });
    const answer = await register(dps, 'signed-1', { kind: 'x509', chain: [leaf.certificate] });
    expect(answer.body.registrationState).toMatchObject({ x509: { enrollmentGroupId: 'signed-group' } });
    expect((await registry.getDevice('signed-1')).authentication).toMatchObject({
      type: 'selfSigned',
      x509Thumbprint: { primaryThumbprint: parseCertificate(leaf.certificate).thumbprintSha1 },
    });
    const stranger = await issueDeviceCertificate({ issuer: root, deviceId: 'signed-2' });
    await expect(
      dps.authenticate(dps.idScope, 'signed-2', { kind: 'x509', chain: [stranger.certificate] }),
    ).rejects.toMatchObject({ status: 401 });
  });
});
