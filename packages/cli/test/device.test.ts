import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConnectionString } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { buildIfMissing, expectFailure, run } from './helpers/run-cli';

// `fieldhub device ...` as the built CLI against a real hub, found through its hub.json or a connection string.

let hub: TestHub;
let files: string;
const at = (): string[] => ['--data-dir', hub.dataDir];

beforeAll(async () => {
  await buildIfMissing();
  files = mkdtempSync(join(tmpdir(), 'fieldhub-device-cli-'));
  hub = await startTestHub();
}, 120_000);

afterAll(async () => {
  await hub?.stop();
  if (files) rmSync(files, { recursive: true, force: true });
});

describe('fieldhub device', () => {
  it('lists nothing on a new hub', async () => {
    const result = await run(['device', 'list', ...at()]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('No devices');
    expect(JSON.parse((await run(['device', 'list', '--json', ...at()])).stdout)).toEqual([]);
  });

  it('creates a SAS device whose keys the hub made, and shows and lists it', async () => {
    const created = await run(['device', 'create', 'pump-1', ...at()]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain("Created device 'pump-1' (SAS, enabled)");
    const stored = await hub.hub.core.registry.getDevice('pump-1');
    expect(stored.authentication.symmetricKey?.primaryKey).toBeTruthy();

    const list = await run(['device', 'list', ...at()]);
    expect(list.stdout).toMatch(/^DEVICE ID\s+STATUS\s+CONNECTION\s+AUTHENTICATION/);
    expect(list.stdout).toMatch(/pump-1\s+enabled\s+Disconnected\s+sas/);
    const listed = JSON.parse((await run(['device', 'list', '--json', ...at()])).stdout) as { deviceId: string }[];
    expect(listed.map((d) => d.deviceId)).toEqual(['pump-1']);

    const show = await run(['device', 'show', 'pump-1', ...at()]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/device id\s+pump-1/);
    expect(show.stdout).toMatch(/authentication\s+SAS/);
    expect(show.stdout).not.toContain(stored.authentication.symmetricKey?.primaryKey ?? '-');
    const shown = JSON.parse((await run(['device', 'show', 'pump-1', '--json', ...at()])).stdout);
    expect(shown).toMatchObject({
      deviceId: 'pump-1',
      status: 'enabled',
      authentication: { symmetricKey: { primaryKey: stored.authentication.symmetricKey?.primaryKey } },
    });
  });

  it('creates X.509 devices (thumbprints, CA-signed) and disabled ones, with --json', async () => {
    const thumbprint = 'A'.repeat(40);
    const selfSigned = await run([
      'device',
      'create',
      'cam-1',
      '--x509-thumbprint',
      thumbprint,
      '--secondary-thumbprint',
      'B'.repeat(40),
      '--json',
      ...at(),
    ]);
    expect(selfSigned.code, selfSigned.stderr).toBe(0);
    expect(JSON.parse(selfSigned.stdout)).toMatchObject({
      deviceId: 'cam-1',
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: { primaryThumbprint: thumbprint, secondaryThumbprint: 'B'.repeat(40) },
      },
    });
    const caSigned = await run(['device', 'create', 'cam-2', '--ca-signed', '--disabled', ...at()]);
    expect(caSigned.code, caSigned.stderr).toBe(0);
    expect(caSigned.stdout).toContain("Created device 'cam-2' (X.509 CA-signed, disabled)");
    const stored = await hub.hub.core.registry.getDevice('cam-2');
    expect(stored.status).toBe('disabled');
    expect(stored.authentication.type).toBe('certificateAuthority');

    const show = await run(['device', 'show', 'cam-1', ...at()]);
    expect(show.stdout).toMatch(/primary thumbprint\s+A{40}/);
  });

  it('prints connection strings: plain with a port note on stderr, --with-port, x509=true, a module, --json', async () => {
    const key = (await hub.hub.core.registry.getDevice('pump-1')).authentication.symmetricKey?.primaryKey;
    const mqttPort = hub.info.ports.mqtt;
    const plain = await run(['device', 'connection-string', 'pump-1', ...at()]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toBe(`HostName=localhost;DeviceId=pump-1;SharedAccessKey=${key}\n`);
    expect(plain.stderr).toContain(`MQTT on port ${mqttPort}`);

    const withPort = await run(['device', 'connection-string', 'pump-1', '--with-port', ...at()]);
    expect(withPort.stdout.trim()).toBe(`HostName=localhost:${mqttPort};DeviceId=pump-1;SharedAccessKey=${key}`);
    expect(withPort.stderr).toBe('');

    const json = JSON.parse((await run(['device', 'connection-string', 'pump-1', '--json', ...at()])).stdout);
    expect(json).toEqual({
      connectionString: `HostName=localhost;DeviceId=pump-1;SharedAccessKey=${key}`,
      deviceId: 'pump-1',
      moduleId: null,
      hostName: 'localhost',
      mqttPort,
    });

    const x509 = await run(['device', 'connection-string', 'cam-1', ...at()]);
    expect(x509.stdout.trim()).toBe('HostName=localhost;DeviceId=cam-1;x509=true');

    const added = await hub.request('PUT', '/devices/pump-1/modules/filter', {
      body: { deviceId: 'pump-1', moduleId: 'filter' },
    });
    expect(added.status).toBe(200);
    const module = await run(['device', 'connection-string', 'pump-1', '--module', 'filter', ...at()]);
    expect(module.code, module.stderr).toBe(0);
    const parsed = parseConnectionString(module.stdout.trim());
    expect(parsed).toMatchObject({ hostName: 'localhost', deviceId: 'pump-1', moduleId: 'filter' });
    expect(parsed.sharedAccessKey).toBe(
      (added.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey
        .primaryKey,
    );
  });

  it('works with --connection-string and --ca instead of hub.json', async () => {
    const { sharedAccessKeyName, sharedAccessKey } = parseConnectionString(hub.info.serviceConnectionString);
    const connectionString = `HostName=localhost:${hub.info.ports.https};SharedAccessKeyName=${sharedAccessKeyName};SharedAccessKey=${sharedAccessKey}`;
    const ca = join(files, 'hub-ca.pem');
    writeFileSync(ca, hub.ca);
    const list = await run([
      'device',
      'list',
      '--json',
      '--connection-string',
      connectionString,
      '--ca',
      ca,
      '--data-dir',
      join(files, 'no-hub-here'),
    ]);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { deviceId: string }[]).map((d) => d.deviceId).sort()).toEqual([
      'cam-1',
      'cam-2',
      'pump-1',
    ]);
    // Without hub.json the MQTT port is unknown: the connection string is the plain one, no note.
    const cs = await run([
      'device',
      'connection-string',
      'pump-1',
      '--connection-string',
      connectionString,
      '--ca',
      ca,
    ]);
    expect(cs.stdout).toMatch(/^HostName=localhost;DeviceId=pump-1;SharedAccessKey=/);
    expect(cs.stderr).toBe('');
  });

  it('deletes', async () => {
    const deleted = await run(['device', 'delete', 'cam-2', ...at()]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain("Deleted device 'cam-2'");
    await expect(hub.hub.core.registry.getDeviceRecord('cam-2')).resolves.toBeFalsy();
  });

  it('fails with exit 1 and a one-line reason, without a stack trace', async () => {
    expectFailure(await run(['device', 'show', 'missing', ...at()]), 'DeviceNotFound');
    expectFailure(await run(['device', 'delete', 'missing', ...at()]), 'DeviceNotFound');
    expectFailure(await run(['device', 'connection-string', 'missing', ...at()]), 'DeviceNotFound');
    expectFailure(await run(['device', 'create', 'pump-1', ...at()]), 'DeviceAlreadyExists');
    expectFailure(await run(['device', 'create', 'x', '--ca-signed', '--x509-thumbprint', 'AB', ...at()]), 'not both');
    expectFailure(await run(['device', 'create', 'bad id/with slash', ...at()]), 'fieldhub: ');
    expectFailure(await run(['device', 'list', '--data-dir', join(files, 'nowhere')]), 'no hub.json');
  });

  it('answers --help for every command, and usage errors exit 2', async () => {
    for (const command of [[], ['create'], ['list'], ['show'], ['delete'], ['connection-string']]) {
      const result = await run(['device', ...command, '--help']);
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain('Usage: fieldhub device');
    }
    const missing = await run(['device', 'create']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'deviceId'");
  });
});
