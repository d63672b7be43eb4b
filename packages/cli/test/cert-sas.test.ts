import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCertificate, verifySasToken } from '@fieldhub/auth';
import { createDeviceClient, mqtt } from '@fieldhub/device';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { buildIfMissing, expectFailure, run } from './helpers/run-cli';

// `fieldhub cert ...` and `fieldhub sas ...` as the built CLI; the certificates are used by real devices.

let hub: TestHub;
let out: string;
const at = (): string[] => ['--data-dir', hub.dataDir];

beforeAll(async () => {
  await buildIfMissing();
  out = mkdtempSync(join(tmpdir(), 'fieldhub-cert-cli-'));
  hub = await startTestHub();
}, 120_000);

afterAll(async () => {
  await hub?.stop();
  if (out) rmSync(out, { recursive: true, force: true });
});

async function connects(deviceId: string, certificate: string, key: string): Promise<void> {
  const port = hub.info.ports.mqtt ?? 0;
  const client = await createDeviceClient({
    connectionString: `HostName=localhost;DeviceId=${deviceId};x509=true`,
    transport: mqtt({ port }),
    ca: hub.ca,
    x509: { cert: readFileSync(certificate), key: readFileSync(key) },
  });
  await client.sendTelemetry({ body: { hello: deviceId } });
  await client.close();
}

describe('fieldhub cert', () => {
  it('makes a self-signed device certificate whose thumbprint registers a device that connects', async () => {
    const made = await run(['cert', 'self-signed', 'cam-1', '--out', out, '--json']);
    expect(made.code, made.stderr).toBe(0);
    const written = JSON.parse(made.stdout) as Record<string, string>;
    expect(written).toMatchObject({
      certificate: join(out, 'cam-1.pem'),
      privateKey: join(out, 'cam-1-key.pem'),
      subject: 'cam-1',
    });
    const info = parseCertificate(readFileSync(join(out, 'cam-1.pem'), 'utf8'));
    expect(written.thumbprintSha1).toBe(info.thumbprintSha1);
    expect(statSync(join(out, 'cam-1-key.pem')).mode & 0o777).toBe(0o600);

    const text = await run(['cert', 'self-signed', 'cam-2', '--out', out]);
    expect(text.stdout).toMatch(/thumbprint \(SHA-1\)\s+[0-9A-F]{40}/);
    expect(text.stdout).toContain('fieldhub device create cam-2 --x509-thumbprint');

    expect(
      (await run(['device', 'create', 'cam-1', '--x509-thumbprint', written.thumbprintSha1 ?? '', ...at()])).code,
    ).toBe(0);
    await connects('cam-1', join(out, 'cam-1.pem'), join(out, 'cam-1-key.pem'));
  });

  it('makes a CA, proves possession with a verification certificate, and issues device certificates that connect', async () => {
    const ca = await run(['cert', 'ca', '--out', out, '--name', 'Plant Root']);
    expect(ca.code, ca.stderr).toBe(0);
    expect(ca.stdout).toMatch(/subject CN\s+Plant Root/);
    const caCert = join(out, 'ca.pem');
    const caKey = join(out, 'ca-key.pem');
    expect(parseCertificate(readFileSync(caCert, 'utf8')).isCa).toBe(true);

    expect((await run(['ca', 'add', 'plant', caCert, ...at()])).code).toBe(0);
    const code = await hub.request('POST', '/fieldhub/certificates/plant/generateVerificationCode', {
      apiVersion: false,
    });
    const verificationCode = (code.json as { verificationCode: string }).verificationCode;
    const proof = join(out, 'proof', 'verification.pem');
    const made = await run([
      'cert',
      'verification',
      '--code',
      verificationCode,
      '--ca-cert',
      caCert,
      '--ca-key',
      caKey,
      '--out',
      proof,
    ]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(new RegExp(`subject CN\\s+${verificationCode}`));
    const verified = await hub.request('POST', '/fieldhub/certificates/plant/verify', {
      apiVersion: false,
      body: { certificate: readFileSync(proof, 'utf8') },
    });
    expect(verified.status, verified.text).toBe(200);

    const issued = await run(['cert', 'device', 'pump-9', '--ca-cert', caCert, '--ca-key', caKey, '--out', out]);
    expect(issued.code, issued.stderr).toBe(0);
    expect(issued.stdout).toContain('fieldhub device create pump-9 --ca-signed');
    expect((await run(['device', 'create', 'pump-9', '--ca-signed', ...at()])).code).toBe(0);
    await connects('pump-9', join(out, 'pump-9.pem'), join(out, 'pump-9-key.pem'));
  });

  it('never overwrites without --force, and reports unreadable inputs in one line', async () => {
    expectFailure(await run(['cert', 'self-signed', 'cam-1', '--out', out]), 'exists; pass --force');
    expect((await run(['cert', 'self-signed', 'cam-1', '--out', out, '--force'])).code).toBe(0);
    expectFailure(
      await run([
        'cert',
        'device',
        'd',
        '--ca-cert',
        join(out, 'absent.pem'),
        '--ca-key',
        join(out, 'ca-key.pem'),
        '--out',
        out,
      ]),
      'no such file',
    );
    expectFailure(
      await run([
        'cert',
        'device',
        'd',
        '--ca-cert',
        join(out, 'cam-1.pem'),
        '--ca-key',
        join(out, 'cam-1-key.pem'),
        '--out',
        out,
      ]),
      'not a CA',
    );
    const missing = await run(['cert', 'ca']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--out');
  });
});

describe('fieldhub sas', () => {
  it('signs a device token with the key from the registry', async () => {
    expect((await run(['device', 'create', 'meter-1', ...at()])).code).toBe(0);
    const key = (await hub.hub.core.registry.getDevice('meter-1')).authentication.symmetricKey?.primaryKey ?? '';
    const result = await run(['sas', 'device', 'meter-1', '--ttl', '120', ...at()]);
    expect(result.code, result.stderr).toBe(0);
    const token = result.stdout.trim();
    expect(token).toMatch(/^SharedAccessSignature sr=localhost%2Fdevices%2Fmeter-1&sig=/);
    const verified = await verifySasToken(token, { keys: [key], resourceUri: 'localhost/devices/meter-1' });
    expect(verified.expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(121_000);
    expectFailure(await run(['sas', 'device', 'cam-1', ...at()]), 'has no symmetric key');
    expectFailure(await run(['sas', 'device', 'missing', ...at()]), 'DeviceNotFound');
  });

  it('signs policy tokens the hub accepts', async () => {
    for (const name of [undefined, 'registryRead']) {
      const result = await run(['sas', 'policy', ...(name ? ['--name', name] : []), '--json', ...at()]);
      expect(result.code, result.stderr).toBe(0);
      const answer = JSON.parse(result.stdout) as { token: string; keyName: string; resourceUri: string };
      expect(answer).toMatchObject({ keyName: name ?? 'iothubowner', resourceUri: 'localhost' });
      const listed = await hub.request('GET', '/devices', { headers: { authorization: answer.token } });
      expect(listed.status).toBe(200);
    }
    expectFailure(await run(['sas', 'policy', '--name', 'nobody', ...at()]), 'fieldhub: ');
  });

  it('signs any resource with a given key, without a hub', async () => {
    const key = Buffer.from('a key of thirty-two bytes, or so').toString('base64');
    const result = await run([
      'sas',
      'key',
      '--key',
      key,
      '--resource',
      'hub.example/devices/d1',
      '--ttl',
      '60',
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const answer = JSON.parse(result.stdout) as { token: string; expiresAt: string };
    await expect(
      verifySasToken(answer.token, { keys: [key], resourceUri: 'hub.example/devices/d1' }),
    ).resolves.toBeDefined();
    expect(Date.parse(answer.expiresAt) - Date.now()).toBeLessThanOrEqual(61_000);
    const usage = await run(['sas', 'key', '--key', key]);
    expect(usage.code).toBe(2);
  });
});

describe('--help', () => {
  it('answers for every command', async () => {
    for (const command of [
      [],
      ['cert'],
      ['cert', 'ca'],
      ['cert', 'device'],
      ['cert', 'self-signed'],
      ['cert', 'verification'],
      ['sas'],
      ['sas', 'device'],
      ['sas', 'policy'],
      ['sas', 'key'],
      ['simulate'],
      ['hub'],
      ['hub', 'start'],
    ]) {
      const result = await run([...command, '--help']);
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`Usage: fieldhub ${command.join(' ')}`.trim());
    }
  });
});
