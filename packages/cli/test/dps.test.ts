import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CertificateWithKey,
  createRootCa,
  createSasToken,
  createSelfSignedCertificate,
  issueDeviceCertificate,
} from '@fieldhub/auth';
import { deriveDeviceKey, parseConnectionString } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { buildIfMissing, expectFailure, run } from './helpers/run-cli';

// `fieldhub dps ...` run as the built CLI (packages/cli/dist) against a real in-process hub, through its hub.json.

interface EnrollmentJson {
  registrationId?: string;
  enrollmentGroupId?: string;
  deviceId?: string;
  provisioningStatus: string;
  etag: string;
  attestation: {
    type: string;
    symmetricKey?: { primaryKey: string; secondaryKey: string };
    x509?: {
      clientCertificates?: { primary: { info: { subjectName: string; sha256Thumbprint: string } } };
      signingCertificates?: { primary: { info: { subjectName: string } } };
      caReferences?: { primary: string };
    };
  };
  initialTwin?: { tags?: Record<string, unknown>; properties?: { desired?: Record<string, unknown> } };
  reprovisionPolicy?: { updateHubAssignment: boolean; migrateDeviceData: boolean };
  capabilities?: { iotEdge: boolean };
}

let hub: TestHub;
let files: string;
let idScope: string;
let fleet: CertificateWithKey;
const file = (name: string, text: string): string => {
  const path = join(files, name);
  writeFileSync(path, text);
  return path;
};
const dps = (...args: string[]) => run(['dps', ...args, '--data-dir', hub.dataDir]);
const json = <T>(text: string): T => JSON.parse(text) as T;

/** Registers a device through the hub's provisioning service as a head would, polling until it is done. */
async function register(registrationId: string, key: string): Promise<{ status: string; deviceId?: string }> {
  const service = hub.hub.core.dps;
  const token = await createSasToken({
    resourceUri: `${idScope}/registrations/${registrationId}`,
    key,
    keyName: 'registration',
    encodeResourceUri: false,
    ttlSeconds: 3600,
  });
  const principal = await service.authenticate(idScope, registrationId, { kind: 'sas', token });
  let answer = await service.register(principal);
  for (let attempt = 0; answer.status === 202 && attempt < 100; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    answer = await service.operationStatus(principal, answer.body.operationId);
  }
  return {
    status: answer.body.status,
    ...(answer.body.registrationState?.deviceId === undefined
      ? {}
      : { deviceId: answer.body.registrationState.deviceId }),
  };
}

beforeAll(async () => {
  await buildIfMissing();
  files = mkdtempSync(join(tmpdir(), 'fieldhub-dps-cli-'));
  [hub, fleet] = await Promise.all([startTestHub(), createRootCa({ commonName: 'DPS Fleet Root' })]);
  if (!hub.info.dps) throw new Error('the test hub runs no provisioning service');
  idScope = hub.info.dps.idScope;
}, 120_000);

afterAll(async () => {
  await hub?.stop();
  if (files) rmSync(files, { recursive: true, force: true });
});

describe('fieldhub dps', () => {
  it('prints where devices register', async () => {
    const text = await dps('info');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`ID scope\\s+${idScope}`));
    expect(text.stdout).toMatch(/provisioning host\s+localhost/);
    const info = json<Record<string, unknown>>((await dps('info', '--json')).stdout);
    expect(info).toEqual({ host: 'localhost', idScope, ports: hub.info.dps?.ports });
    expect(JSON.stringify(info)).not.toContain('SharedAccessKey');
  });

  it('lists nothing on a new hub', async () => {
    const text = await dps('enrollment', 'list');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('No enrollments');
    expect(json((await dps('enrollment', 'list', '--json')).stdout)).toEqual({ enrollments: [], enrollmentGroups: [] });
  });

  it('creates a symmetric-key group whose --json carries its primaryKey; derived keys register devices', async () => {
    const created = await dps('enrollment', 'create', '--group', 'thermostats', '--json');
    expect(created.code, created.stderr).toBe(0);
    const group = json<EnrollmentJson>(created.stdout);
    expect(group).toMatchObject({
      enrollmentGroupId: 'thermostats',
      provisioningStatus: 'enabled',
      attestation: { type: 'symmetricKey' },
    });
    const groupKey = group.attestation.symmetricKey?.primaryKey ?? '';
    expect(Buffer.from(groupKey, 'base64').length).toBeGreaterThanOrEqual(32);

    // Derivation from the hub's copy of the key and from the key given on the command line agree with §5.5.
    const expected = deriveDeviceKey(groupKey, 'thermo-1');
    const fromHub = await dps('derive-key', '--group', 'thermostats', '--registration-id', 'thermo-1');
    expect(fromHub.code, fromHub.stderr).toBe(0);
    expect(fromHub.stdout).toBe(`${expected}\n`);
    const local = await run(['dps', 'derive-key', '--group-key', groupKey, '--registration-id', 'thermo-1']);
    expect(local.code, local.stderr).toBe(0);
    expect(local.stdout).toBe(`${expected}\n`);
    const asJson = json(
      (await dps('derive-key', '--group', 'thermostats', '--registration-id', 'thermo-1', '--json')).stdout,
    );
    expect(asJson).toEqual({ registrationId: 'thermo-1', derivedKey: expected, enrollmentGroupId: 'thermostats' });
    const secondary = await dps('derive-key', '--group', 'thermostats', '--registration-id', 'thermo-1', '--secondary');
    expect(secondary.stdout.trim()).toBe(
      deriveDeviceKey(group.attestation.symmetricKey?.secondaryKey ?? '', 'thermo-1'),
    );

    expect(await register('thermo-1', expected)).toEqual({ status: 'assigned', deviceId: 'thermo-1' });
    await expect(register('thermo-2', expected)).rejects.toMatchObject({ status: 401 });

    const records = await dps('registration', 'list', '--group', 'thermostats');
    expect(records.code, records.stderr).toBe(0);
    expect(records.stdout).toMatch(/^REGISTRATION ID\s+STATUS\s+DEVICE ID\s+ASSIGNED HUB/);
    expect(records.stdout).toMatch(/thermo-1\s+assigned\s+thermo-1\s+localhost/);
    const record = await dps('registration', 'show', 'thermo-1', '--json');
    expect(json(record.stdout)).toMatchObject({ registrationId: 'thermo-1', status: 'assigned', deviceId: 'thermo-1' });
  });

  it('prints a human summary without --json, and takes the keys it is given', async () => {
    const primaryKey = Buffer.alloc(32, 7).toString('base64');
    const created = await dps('enrollment', 'create', '--group', 'given-key', '--primary-key', primaryKey);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain("Created enrollment group 'given-key' (symmetric key, enabled).");
    expect(created.stdout).toContain(`ID scope ${idScope}`);
    expect(created.stdout).toContain('fieldhub dps derive-key --group given-key');
    expect(created.stdout).not.toContain(primaryKey);
    const shown = json<EnrollmentJson>((await dps('enrollment', 'show', '--group', 'given-key', '--json')).stdout);
    expect(shown.attestation.symmetricKey?.primaryKey).toBe(primaryKey);
  });

  it('creates an individual symmetric-key enrollment with a device id, initial twin, reprovision policy, disabled', async () => {
    const created = await dps(
      'enrollment',
      'create',
      '--registration-id',
      'meter-1',
      '--device-id',
      'meter-one',
      '--initial-twin',
      '{"tags":{"site":"north"},"properties":{"desired":{"interval":30}}}',
      '--tags',
      '{"floor":2}',
      '--desired',
      '{"unit":"kWh"}',
      '--reprovision',
      'reset',
      '--edge',
      '--disabled',
      '--json',
    );
    expect(created.code, created.stderr).toBe(0);
    const enrollment = json<EnrollmentJson>(created.stdout);
    expect(enrollment).toMatchObject({
      registrationId: 'meter-1',
      deviceId: 'meter-one',
      provisioningStatus: 'disabled',
      initialTwin: { tags: { site: 'north', floor: 2 }, properties: { desired: { interval: 30, unit: 'kWh' } } },
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
      capabilities: { iotEdge: true },
    });
    const key = enrollment.attestation.symmetricKey?.primaryKey ?? '';
    expect(key).not.toBe('');
    // Disabled: the device is refused (the status the service answers, not an assignment).
    const refused = await register('meter-1', key).then(
      (result) => result.status,
      (error: { status?: number }) => error.status,
    );
    expect(refused).not.toBe('assigned');

    const text = await dps('enrollment', 'show', '--registration-id', 'meter-1');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/registration id\s+meter-1/);
    expect(text.stdout).toMatch(/status\s+disabled/);
    expect(text.stdout).toMatch(/device id\s+meter-one/);
    expect(text.stdout).toMatch(/reprovision\s+reset/);
    expect(text.stdout).not.toContain(key);

    // Replacing needs --replace; then the enrollment is enabled and the device registers with the same key.
    const again = await dps('enrollment', 'create', '--registration-id', 'meter-1', '--primary-key', key);
    expectFailure(again, "individual enrollment 'meter-1' already exists");
    const replaced = await dps(
      'enrollment',
      'create',
      '--registration-id',
      'meter-1',
      '--device-id',
      'meter-one',
      '--primary-key',
      key,
      '--replace',
    );
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stdout).toContain("Replaced individual enrollment 'meter-1' (symmetric key, enabled).");
    expect(await register('meter-1', key)).toEqual({ status: 'assigned', deviceId: 'meter-one' });
    const registered = await dps('enrollment', 'show', '--registration-id', 'meter-1');
    expect(registered.stdout).toMatch(/registration\s+assigned \(initialAssignment\)/);
    expect(registered.stdout).toMatch(/assigned hub\s+localhost/);
  });

  it('creates an individual X.509 enrollment from a PEM file, and refuses a certificate whose CN is not the registration id', async () => {
    const device = await createSelfSignedCertificate({ commonName: 'camera-9' });
    const pem = file('camera-9.pem', device.certificate);
    const created = await dps('enrollment', 'create', '--registration-id', 'camera-9', '--certificate', pem, '--json');
    expect(created.code, created.stderr).toBe(0);
    const enrollment = json<EnrollmentJson>(created.stdout);
    expect(enrollment.attestation.type).toBe('x509');
    expect(enrollment.attestation.x509?.clientCertificates?.primary.info.subjectName).toContain('CN=camera-9');

    const shown = await dps('enrollment', 'show', '--registration-id', 'camera-9');
    expect(shown.stdout).toMatch(/attestation\s+X\.509 certificate/);
    expect(shown.stdout).toMatch(/certificate subject\s+CN=camera-9/);

    expectFailure(
      await dps('enrollment', 'create', '--registration-id', 'camera-10', '--certificate', pem),
      "the certificate's CN is 'camera-9'",
    );
  });

  it('creates X.509 groups on a verified CA of the hub and on a signing certificate', async () => {
    await hub.hub.core.certificateAuthorities.add('fleet', fleet.certificate, { verified: true });
    const byName = await dps('enrollment', 'create', '--group', 'fleet-cameras', '--ca-name', 'fleet', '--json');
    expect(byName.code, byName.stderr).toBe(0);
    expect(json<EnrollmentJson>(byName.stdout).attestation).toEqual({
      type: 'x509',
      x509: { caReferences: { primary: 'fleet' } },
    });

    const signing = await dps(
      'enrollment',
      'create',
      '--group',
      'fleet-signed',
      '--signing-certificate',
      file('fleet.pem', fleet.certificate),
    );
    expect(signing.code, signing.stderr).toBe(0);
    expect(signing.stdout).toContain("Created enrollment group 'fleet-signed' (X.509 signing certificate, enabled).");

    // An unverified CA is taken, with a note: devices it issued are refused until it is verified.
    const unproven = await createRootCa({ commonName: 'Unproven Root' });
    await hub.hub.core.certificateAuthorities.add('unproven', unproven.certificate);
    const pending = await dps('enrollment', 'create', '--group', 'unproven-cameras', '--ca-name', 'unproven');
    expect(pending.code, pending.stderr).toBe(0);
    expect(pending.stderr).toContain("note: CA 'unproven' is not verified");
    const stranger = await issueDeviceCertificate({ issuer: unproven, deviceId: 'cam-78' });
    await expect(
      hub.hub.core.dps.authenticate(idScope, 'cam-78', { kind: 'x509', chain: [stranger.certificate] }),
    ).rejects.toMatchObject({ status: 401 });

    // A device certificate the CA issued authenticates through the group.
    const device = await issueDeviceCertificate({ issuer: fleet, deviceId: 'cam-77' });
    const principal = await hub.hub.core.dps.authenticate(idScope, 'cam-77', {
      kind: 'x509',
      chain: [device.certificate],
    });
    expect(principal.registrationId).toBe('cam-77');
  });

  it('lists both kinds, as a table and as JSON, and filters them', async () => {
    const list = await dps('enrollment', 'list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^KIND\s+ID\s+ATTESTATION\s+STATUS\s+DEVICE ID\n/);
    expect(list.stdout).toMatch(/group\s+thermostats\s+symmetric key\s+enabled/);
    expect(list.stdout).toMatch(/group\s+fleet-cameras\s+X\.509 CA 'fleet'\s+enabled/);
    expect(list.stdout).toMatch(/individual\s+meter-1\s+symmetric key\s+enabled\s+meter-one\n/);
    expect(list.stdout).toMatch(/individual\s+camera-9\s+X\.509 certificate/);

    const all = json<{ enrollments: EnrollmentJson[]; enrollmentGroups: EnrollmentJson[] }>(
      (await dps('enrollment', 'list', '--json')).stdout,
    );
    expect(all.enrollments.map((e) => e.registrationId).sort()).toEqual(['camera-9', 'meter-1']);
    expect(all.enrollmentGroups.map((g) => g.enrollmentGroupId).sort()).toEqual([
      'fleet-cameras',
      'fleet-signed',
      'given-key',
      'thermostats',
      'unproven-cameras',
    ]);
    const groupsOnly = json<Record<string, unknown>>((await dps('enrollment', 'list', '--groups', '--json')).stdout);
    expect(Object.keys(groupsOnly)).toEqual(['enrollmentGroups']);
    const individualOnly = await dps('enrollment', 'list', '--individual');
    expect(individualOnly.stdout).not.toContain('thermostats');
    expect(individualOnly.stdout).toContain('camera-9');
  });

  it('works with --connection-string and --ca instead of hub.json', async () => {
    const { sharedAccessKeyName, sharedAccessKey } = parseConnectionString(hub.info.dps?.serviceConnectionString ?? '');
    const connectionString = `HostName=localhost:${hub.info.ports.https};SharedAccessKeyName=${sharedAccessKeyName};SharedAccessKey=${sharedAccessKey}`;
    const shown = await run([
      'dps',
      'enrollment',
      'show',
      '--group',
      'thermostats',
      '--connection-string',
      connectionString,
      '--ca',
      file('hub-ca.pem', hub.ca),
      '--data-dir',
      join(files, 'no-hub-here'),
    ]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/enrollment group\s+thermostats/);
  });

  it('deletes enrollments and registration records', async () => {
    const record = await dps('registration', 'delete', 'thermo-1');
    expect(record.code, record.stderr).toBe(0);
    expect(record.stdout).toContain("Deleted the registration record of 'thermo-1'.");
    expectFailure(await dps('registration', 'show', 'thermo-1'), '404');

    const deleted = await dps('enrollment', 'delete', '--group', 'given-key');
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain("Deleted enrollment group 'given-key'.");
    expectFailure(await dps('enrollment', 'show', '--group', 'given-key'), '404');
    const individual = await dps('enrollment', 'delete', '--registration-id', 'camera-9');
    expect(individual.stdout).toContain("Deleted individual enrollment 'camera-9'.");
    expectFailure(await dps('enrollment', 'delete', '--registration-id', 'camera-9'), '404');
  });

  it('fails with exit 1 and a one-line reason', async () => {
    expectFailure(await dps('enrollment', 'create'), 'give --registration-id <id> (individual enrollment) or --group');
    expectFailure(await dps('enrollment', 'create', '--group', 'g', '--registration-id', 'r'), 'one of them');
    expectFailure(
      await dps('enrollment', 'create', '--group', 'g', '--device-id', 'd'),
      '--device-id is for individual',
    );
    expectFailure(await dps('enrollment', 'create', '--registration-id', 'bad id!'), 'registrationId must be');
    expectFailure(await dps('enrollment', 'create', '--group', 'g', '--tags', '{oops'), '--tags is not valid JSON');
    expectFailure(
      await dps('enrollment', 'create', '--group', 'g', '--initial-twin', '{"reported":{}}'),
      'not reported',
    );
    expectFailure(
      await dps('enrollment', 'create', '--group', 'g', '--primary-key', 'not base64!'),
      '--primary-key must be',
    );
    expectFailure(
      await dps(
        'enrollment',
        'create',
        '--group',
        'g',
        '--ca-name',
        'fleet',
        '--primary-key',
        'AAAAAAAAAAAAAAAAAAAAAA==',
      ),
      'not both',
    );
    expectFailure(
      await dps('enrollment', 'create', '--registration-id', 'r', '--certificate', join(files, 'absent.pem')),
      'no such file',
    );
    expectFailure(
      await dps('enrollment', 'create', '--registration-id', 'r', '--certificate', file('junk.pem', 'junk')),
      'holds no PEM certificate',
    );
    expectFailure(
      await dps('enrollment', 'create', '--group', 'g', '--ca-name', 'nowhere'),
      "the hub holds no CA named 'nowhere'",
    );
    // The service's refusal comes through as its code and message.
    expectFailure(await dps('enrollment', 'create', '--group', 'g', '--primary-key', 'A'.repeat(16)), '400004');
    expectFailure(await dps('derive-key', '--registration-id', 'r'), 'give --group-key <key> or --group <name>');
    expectFailure(
      await run(['dps', 'derive-key', '--registration-id', 'r', '--group-key', 'AAAA', '--secondary']),
      '--secondary needs --group',
    );
    expectFailure(
      await run(['dps', 'derive-key', '--registration-id', 'r', '--group-key', '!!!']),
      'groupKey must be base64',
    );
    expectFailure(await dps('derive-key', '--group', 'meter-1', '--registration-id', 'r'), '404');
    expectFailure(
      await dps('derive-key', '--group', 'fleet-cameras', '--registration-id', 'r'),
      'does not use symmetric keys',
    );
    expectFailure(await run(['dps', 'enrollment', 'list', '--data-dir', join(files, 'nowhere')]), 'no hub.json');

    // A hub.json without a dps section: the hub runs no provisioning service.
    const noDps = join(files, 'no-dps');
    mkdirSync(noDps, { recursive: true });
    const { dps: _dps, ...rest } = hub.info;
    writeFileSync(join(noDps, 'hub.json'), JSON.stringify({ ...rest, dps: null }));
    expectFailure(await run(['dps', 'enrollment', 'list', '--data-dir', noDps]), 'runs no provisioning service');
    expectFailure(await run(['dps', 'info', '--data-dir', noDps]), 'runs no provisioning service');

    // A wrong provisioning service key is refused by the service.
    const wrong = `HostName=localhost:${hub.info.ports.https};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`;
    expectFailure(
      await run(['dps', 'enrollment', 'list', '--connection-string', wrong, '--ca', file('ca.pem', hub.ca)]),
      '401',
    );
  });

  it('answers --help for every command, and usage errors exit 2', async () => {
    for (const command of [
      [],
      ['info'],
      ['enrollment'],
      ['enrollment', 'create'],
      ['enrollment', 'list'],
      ['enrollment', 'show'],
      ['enrollment', 'delete'],
      ['registration', 'list'],
      ['registration', 'show'],
      ['registration', 'delete'],
      ['derive-key'],
    ]) {
      const result = await run(['dps', ...command, '--help']);
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain('Usage: fieldhub dps');
    }
    const missing = await run(['dps', 'derive-key', '--group-key', 'AAAA']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--registration-id');
    const badChoice = await run(['dps', 'enrollment', 'create', '--group', 'g', '--reprovision', 'sometimes']);
    expect(badChoice.code).toBe(2);
    expect(badChoice.stderr).toContain('migrate, reset, never');
  });
});
