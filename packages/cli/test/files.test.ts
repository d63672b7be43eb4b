import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { DeviceUploader } from '../../service/test/helpers/device-upload';
import { buildIfMissing, expectFailure, run, start } from './helpers/run-cli';

// `fieldhub files notifications` as the built CLI against a real hub; the device side of each upload is done by
// hand with fetch (packages/service/test/helpers/device-upload.ts).

let hub: TestHub;
let uploader: DeviceUploader;
const at = (): string[] => ['--data-dir', hub.dataDir];
const pending = () => hub.hub.core.fileUploads.pendingNotifications();

beforeAll(async () => {
  await buildIfMissing();
  hub = await startTestHub();
  expect((await run(['device', 'create', 'cam-1', ...at()])).code).toBe(0);
  const shown = await run(['device', 'show', 'cam-1', '--json', ...at()]);
  expect(shown.code, shown.stderr).toBe(0);
  const device = JSON.parse(shown.stdout) as { authentication: { symmetricKey: { primaryKey: string } } };
  uploader = new DeviceUploader(hub, new Map([['cam-1', device.authentication.symmetricKey.primaryKey]]));
}, 120_000);

afterAll(async () => {
  await uploader?.[Symbol.asyncDispose]();
  await hub?.stop();
});

describe('fieldhub files notifications', () => {
  it('prints the waiting notifications as JSON lines, completes them and exits', async () => {
    const first = await uploader.upload('cam-1', 'a.txt', 'alpha');
    const second = await uploader.upload('cam-1', 'b.txt', 'bravo!');
    const result = await run(['files', 'notifications', '--json', '--wait', '1', ...at()]);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toEqual([
      {
        deviceId: 'cam-1',
        blobUri: expect.stringMatching(/^https:\/\/.+\/cam-1\/a\.txt$/),
        blobName: first.blobName,
        lastUpdatedTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/),
        blobSizeInBytes: 5,
        enqueuedTimeUtc: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/),
      },
      expect.objectContaining({ blobName: second.blobName, blobSizeInBytes: 6 }),
    ]);
    await expect.poll(pending).toBe(0);

    const again = await run(['files', 'notifications', '--wait', '1', ...at()]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe('');
    expect(again.stderr).toContain('No file-upload notifications waiting.');
  });

  it('leaves them in the hub with --keep, and stops after --count', async () => {
    const kept = await uploader.upload('cam-1', 'kept.txt', 'kept');
    const peek = await run(['files', 'notifications', '--keep', '--wait', '1', ...at()]);
    expect(peek.code, peek.stderr).toBe(0);
    expect(peek.stdout).toMatch(
      new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+Z cam-1 ${kept.blobName} 4 bytes https://\\S+/cam-1/kept\\.txt\\n$`),
    );
    expect(peek.stdout).not.toContain('\u001b[');
    expect(await pending()).toBe(1);

    const counted = await run(['files', 'notifications', '--follow', '--count', '1', '--json', ...at()]);
    expect(counted.code, counted.stderr).toBe(0);
    expect(JSON.parse(counted.stdout)).toMatchObject({ blobName: kept.blobName });
    await expect.poll(pending).toBe(0);
  });

  it('follows new uploads until Ctrl+C, exit 0 and no stack trace', async () => {
    const follower = start(['files', 'notifications', '--follow', ...at()]);
    await follower.until(({ stderr }) => stderr.includes('Waiting for file-upload notifications'), 'start notice');
    const uploaded = await uploader.upload('cam-1', 'live.bin', 'live');
    await follower.until(({ stdout }) => stdout.includes(uploaded.blobName), 'notification');
    follower.child.kill('SIGINT');
    expect(await follower.exited).toBe(0);
    expect(follower.stderr()).not.toContain('fieldhub:');
    await expect.poll(pending).toBe(0);
  });

  it('fails with one line for a wrong key, and refuses bad flags', async () => {
    // The hub's own hub.json with a wrong key (a connection string names no AMQP port; hub.json does).
    const dir = mkdtempSync(join(tmpdir(), 'fieldhub-cli-files-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const info = JSON.parse(readFileSync(join(hub.dataDir, 'hub.json'), 'utf8')) as Record<string, unknown>;
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    info.serviceConnectionString = String(info.serviceConnectionString).replace(
      /SharedAccessKey=[^;]+/,
      `SharedAccessKey=${wrongKey}`,
    );
    info.caCertificate = hub.info.caCertificate;
    writeFileSync(join(dir, 'hub.json'), JSON.stringify(info));
    const refused = await run(['files', 'notifications', '--data-dir', dir]);
    expectFailure(refused, 'IotHubUnauthorizedAccess');

    const bad = await run(['files', 'notifications', '--wait', '0', ...at()]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('must be a positive number');
  });

  it('answers --help', async () => {
    for (const command of [['files'], ['files', 'notifications']]) {
      const result = await run([...command, '--help']);
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`Usage: fieldhub ${command.join(' ')}`);
    }
  });
});
