import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CertificateWithKey, createRootCa, issueDeviceCertificate } from '@fieldhub/auth';
import { parseConnectionString } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';

// `fieldhub ca ...` run as the built CLI (packages/cli/dist, as `npm test` builds it) against a real hub.

const root = new URL('../../..', import.meta.url).pathname;
const cli = join(root, 'packages/cli/bin/fieldhub.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

// Asynchronous on purpose: the hub answering the CLI runs in this process's event loop.
function run(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: root, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function build(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('npx', ['tsup'], { cwd: join(root, dir) }, (error) => (error ? reject(error) : resolve()));
  });
}

let hub: TestHub;
let fleet: CertificateWithKey;
let other: CertificateWithKey;
let files: string;
const file = (name: string, text: string): string => {
  const path = join(files, name);
  writeFileSync(path, text);
  return path;
};

beforeAll(async () => {
  // `npm test` builds first; build here only when run alone on a fresh checkout (never rebuild: tsup cleans dist,
  // which would break a concurrent run).
  if (!existsSync(join(root, 'packages/hub/dist/index.js'))) await build('packages/hub');
  if (!existsSync(join(root, 'packages/cli/dist/bin.js'))) await build('packages/cli');
  files = mkdtempSync(join(tmpdir(), 'fieldhub-ca-cli-'));
  [hub, fleet, other] = await Promise.all([
    startTestHub(),
    createRootCa({ commonName: 'Fleet Root' }),
    createRootCa({ commonName: 'Other Root' }),
  ]);
}, 120_000);

afterAll(async () => {
  await hub?.stop();
  if (files) rmSync(files, { recursive: true, force: true });
});

describe('fieldhub ca', () => {
  it('lists nothing on a new hub', async () => {
    const result = await run('ca', 'list', '--data-dir', hub.dataDir);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('No CA certificates');
    const json = await run('ca', 'list', '--json', '--data-dir', hub.dataDir);
    expect(JSON.parse(json.stdout)).toEqual([]);
  });

  it('adds a CA through hub.json, verifies it by proof of possession, then devices it issued authenticate', async () => {
    const caPem = file('fleet.pem', fleet.certificate);
    const caKey = file('fleet-key.pem', fleet.privateKey);
    const added = await run('ca', 'add', 'fleet', caPem, '--data-dir', hub.dataDir);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain("Added CA certificate 'fleet'");
    expect(added.stdout).toContain('fieldhub ca verify fleet');
    expect((await hub.hub.core.certificateAuthorities.get('fleet')).isVerified).toBe(false);

    const verified = await run('ca', 'verify', 'fleet', '--key', caKey, '--cert', caPem, '--data-dir', hub.dataDir);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toContain("CA certificate 'fleet' is verified");
    expect((await hub.hub.core.certificateAuthorities.get('fleet')).isVerified).toBe(true);

    const device = await issueDeviceCertificate({ issuer: fleet, deviceId: 'pump-7' });
    expect(await hub.hub.core.certificateAuthorities.authenticateDevice('pump-7', [device.certificate])).toMatchObject({
      ok: true,
      certificateAuthority: 'fleet',
    });

    const again = await run('ca', 'verify', 'fleet', '--key', caKey, '--cert', caPem, '--data-dir', hub.dataDir);
    expect(again.stdout).toContain('already verified');
  });

  it('shows and lists, as text and as JSON', async () => {
    const list = await run('ca', 'list', '--data-dir', hub.dataDir);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+VERIFIED\s+EXPIRY/);
    expect(list.stdout).toMatch(/fleet\s+yes\s+/);
    const listed = JSON.parse((await run('ca', 'list', '--json', '--data-dir', hub.dataDir)).stdout) as {
      name: string;
      isVerified: boolean;
    }[];
    expect(listed.map((c) => [c.name, c.isVerified])).toContainEqual(['fleet', true]);

    const show = await run('ca', 'show', 'fleet', '--data-dir', hub.dataDir);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/subject\s+Fleet Root/);
    expect(show.stdout).toMatch(/verified\s+yes/);
    const shown = JSON.parse((await run('ca', 'show', 'fleet', '--json', '--data-dir', hub.dataDir)).stdout);
    expect(shown).toMatchObject({ name: 'fleet', subject: 'Fleet Root', isVerified: true });
    expect(shown.certificate).toContain('BEGIN CERTIFICATE');
  });

  it('works with --connection-string and --ca instead of hub.json, and adds --verified', async () => {
    const { sharedAccessKeyName, sharedAccessKey } = parseConnectionString(hub.info.serviceConnectionString);
    const connectionString = `HostName=localhost:${hub.info.ports.https};SharedAccessKeyName=${sharedAccessKeyName};SharedAccessKey=${sharedAccessKey}`;
    const ca = file('hub-ca.pem', hub.ca);
    const added = await run(
      'ca',
      'add',
      'other',
      file('other.pem', other.certificate),
      '--verified',
      '--connection-string',
      connectionString,
      '--ca',
      ca,
      '--data-dir',
      join(files, 'no-hub-here'),
    );
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain('It is verified');
    expect((await hub.hub.core.certificateAuthorities.get('other')).isVerified).toBe(true);
  });

  it('fails with a non-zero exit and a one-line reason', async () => {
    const caPem = file('fleet.pem', fleet.certificate);
    const expectFailure = (result: Run, text: string) => {
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toContain(text);
    };
    expectFailure(await run('ca', 'add', 'fleet', caPem, '--data-dir', hub.dataDir), 'PreconditionFailed');
    expectFailure(await run('ca', 'show', 'missing', '--data-dir', hub.dataDir), 'ResourceNotFound');
    expectFailure(
      await run('ca', 'add', 'junk', file('junk.pem', 'not a certificate'), '--data-dir', hub.dataDir),
      'ArgumentInvalid',
    );
    expectFailure(
      await run('ca', 'add', 'nofile', join(files, 'absent.pem'), '--data-dir', hub.dataDir),
      'no such file',
    );
    expectFailure(
      await run(
        'ca',
        'verify',
        'fleet',
        '--key',
        file('other-key.pem', other.privateKey),
        '--cert',
        file('other.pem', other.certificate),
        '--data-dir',
        hub.dataDir,
      ),
      'is not the certificate uploaded',
    );
    expectFailure(await run('ca', 'list', '--data-dir', join(files, 'nowhere')), 'no hub.json');
    expectFailure(await run('ca', 'list', '--connection-string', 'HostName=x'), 'SharedAccessKeyName');
    // Registry readers may list but not upload.
    const reader = parseConnectionString(await hub.hub.core.policies.connectionString('registryRead'));
    const readerCs = `HostName=localhost:${hub.info.ports.https};SharedAccessKeyName=registryRead;SharedAccessKey=${reader.sharedAccessKey}`;
    const ca = file('hub-ca.pem', hub.ca);
    expect((await run('ca', 'list', '--connection-string', readerCs, '--ca', ca)).code).toBe(0);
    expectFailure(
      await run('ca', 'delete', 'fleet', '--connection-string', readerCs, '--ca', ca),
      'IotHubUnauthorizedAccess',
    );
  });

  it('deletes', async () => {
    const deleted = await run('ca', 'delete', 'other', '--data-dir', hub.dataDir);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain("Deleted CA certificate 'other'");
    expect((await run('ca', 'show', 'other', '--data-dir', hub.dataDir)).code).toBe(1);
  });

  it('answers --help for every command', async () => {
    for (const command of [[], ['add'], ['verify'], ['list'], ['show'], ['delete']]) {
      const result = await run('ca', ...command, '--help');
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain('Usage: fieldhub ca');
    }
    const missing = await run('ca', 'verify', 'fleet');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--key');
  });
});
