import { createSasToken } from '@fieldhub/auth';
import { deriveDeviceKey } from '@fieldhub/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import type { DpsAnswer, DpsService } from '../src/dps/contract';
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

function registrationToken(dps: DpsService, registrationId: string, key: string): Promise<string> {
  return createSasToken({
    resourceUri: `${dps.idScope}/registrations/${registrationId}`,
    key,
    keyName: 'registration',
    ttlSeconds: 600,
    encodeResourceUri: false,
  });
}

/** Registers and polls as a device does, until the operation is done. */
async function registerWithKey(dps: DpsService, registrationId: string, key: string): Promise<DpsAnswer> {
  const principal = await dps.authenticate(dps.idScope, registrationId, {
    kind: 'sas',
    token: await registrationToken(dps, registrationId, key),
  });
  const started = await dps.register(principal);
  expect(started.status).toBe(202);
  expect(started.body.status).toBe('assigning');
  expect(started.retryAfterSeconds).toBeGreaterThanOrEqual(1);
  for (;;) {
    const answer = await dps.operationStatus(principal, started.body.operationId);
    if (answer.status === 200) return answer;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('core.dps with symmetric keys', () => {
  it('assigns an individual enrollment: the device exists with the enrollment keys and the initial twin', async () => {
    const test = await hub();
    const { dps } = test.hub.core;
    const enrollment = await dps.enrollments.putIndividual('sensor-1', {
      registrationId: 'sensor-1',
      attestation: { type: 'symmetricKey' },
      initialTwin: { tags: { site: 'north' }, properties: { desired: { interval: 5 } } },
    });
    const key = enrollment.attestation.symmetricKey?.primaryKey ?? '';
    const answer = await registerWithKey(dps, 'sensor-1', key);
    expect(answer.body).toMatchObject({
      status: 'assigned',
      registrationState: {
        registrationId: 'sensor-1',
        assignedHub: 'localhost',
        deviceId: 'sensor-1',
        status: 'assigned',
        substatus: 'initialAssignment',
      },
    });
    const device = await test.hub.core.registry.getDevice('sensor-1');
    expect(device.authentication).toMatchObject({ type: 'sas', symmetricKey: { primaryKey: key } });
    const twin = await test.hub.core.twins.get('sensor-1');
    expect(twin.tags).toEqual({ site: 'north' });
    expect(twin.properties.desired).toMatchObject({ interval: 5 });
  });

  it('assigns through a group with the derived key; registering again keeps the identity', async () => {
    const test = await hub();
    const { dps } = test.hub.core;
    const group = await dps.enrollments.putGroup('fleet', {
      enrollmentGroupId: 'fleet',
      attestation: { type: 'symmetricKey' },
    });
    const groupKey = group.attestation.symmetricKey?.secondaryKey ?? '';
    const deviceKey = deriveDeviceKey(groupKey, 'node-7');
    const first = await registerWithKey(dps, 'node-7', deviceKey);
    expect(first.body.registrationState).toMatchObject({
      deviceId: 'node-7',
      substatus: 'initialAssignment',
      symmetricKey: { enrollmentGroupId: 'fleet' },
    });
    const device = await test.hub.core.registry.getDevice('node-7');
    expect(device.authentication).toMatchObject({
      type: 'sas',
      symmetricKey: { primaryKey: deriveDeviceKey(group.attestation.symmetricKey?.primaryKey ?? '', 'node-7') },
    });
    const second = await registerWithKey(dps, 'node-7', deviceKey);
    expect(second.body.registrationState).toMatchObject({ deviceId: 'node-7', substatus: 'deviceDataMigrated' });
    expect((await test.hub.core.registry.getDevice('node-7')).generationId).toBe(device.generationId);
  });

  it('refuses a wrong key and an unknown registration with 401', async () => {
    const test = await hub();
    const { dps } = test.hub.core;
    await dps.enrollments.putIndividual('known', { attestation: { type: 'symmetricKey' } });
    const wrong = Buffer.alloc(32, 7).toString('base64');
    for (const id of ['known', 'unknown']) {
      await expect(
        dps.authenticate(dps.idScope, id, { kind: 'sas', token: await registrationToken(dps, id, wrong) }),
      ).rejects.toMatchObject({ status: 401, hubCode: 401002 });
    }
  });
});

describe('dps.enabled: false', () => {
  it('writes dps: null to hub.json, refuses registrations and answers 404 on the service API', async () => {
    const test = await startTestHub({ dps: { enabled: false } });
    hubs.push(test);
    expect(test.info.dps).toBeNull();
    const { dps } = test.hub.core;
    const enrollment = await dps.enrollments.putIndividual('off', { attestation: { type: 'symmetricKey' } });
    const token = await registrationToken(dps, 'off', enrollment.attestation.symmetricKey?.primaryKey ?? '');
    await expect(dps.authenticate(dps.idScope, 'off', { kind: 'sas', token })).rejects.toMatchObject({ status: 401 });
    const response = await test.request('GET', '/enrollments/off');
    expect(response.status).toBe(404);
    expect(response.json).toMatchObject({ errorCode: 404000 });
  });
});
