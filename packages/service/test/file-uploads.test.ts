import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { AbortError, ArgumentError, AuthenticationError, HubError } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { createServiceClient, type FileUploadNotification, type ServiceClient } from '../src/index';
import { DeviceUploader } from './helpers/device-upload';

// service.fileUploads.notifications() against a real hub; the device side of each upload is done by hand with
// fetch (helpers/device-upload.ts), as protocol-device.md §4.3 describes it.

/** Rejects with what `promise` throws, or fails when it resolves. */
async function failure(promise: Promise<unknown>): Promise<HubError> {
  try {
    await promise;
  } catch (error) {
    expect(HubError.is(error), String(error)).toBe(true);
    return error as HubError;
  }
  throw new Error('expected a rejection');
}

let testHub: TestHub;
let service: ServiceClient;
let connectionString: string;
let uploader: DeviceUploader;

const withPort = (cs: string) => cs.replace(/HostName=([^;]+)/, `HostName=$1:${testHub.info.ports.https}`);
const clientOptions = () => ({ connectionString, ca: testHub.ca, amqpPort: testHub.info.ports.amqp ?? undefined });
const upload = (deviceId: string, name: string, content: string) => uploader.upload(deviceId, name, content);

/** The next notification of an iterator. */
async function next(iterator: AsyncGenerator<FileUploadNotification>): Promise<FileUploadNotification> {
  const result = await iterator.next();
  if (result.done) throw new Error('the reader ended');
  return result.value;
}

/** A port that was free a moment ago, so that a restarted hub listens where the client dials. */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });

/** How many notifications the hub holds (delivered or not, not yet completed). */
const pending = () => testHub.hub.core.fileUploads.pendingNotifications();

beforeAll(async () => {
  testHub = await startTestHub();
  connectionString = withPort(testHub.info.serviceConnectionString);
  service = createServiceClient(clientOptions());
  const keys = new Map<string, string>();
  for (const deviceId of ['cam-1', 'cam#2?']) {
    const device = await service.devices.create(deviceId);
    keys.set(deviceId, device.authentication?.symmetricKey?.primaryKey ?? '');
  }
  uploader = new DeviceUploader(testHub, keys);
}, 60_000);

afterAll(async () => {
  await service?.close();
  await uploader?.[Symbol.asyncDispose]();
  await testHub?.stop();
});

describe('fileUploads.notifications()', () => {
  it('receives a notification with every field typed (times as Date), and complete() removes it', async () => {
    const before = Date.now();
    const { blobName, size } = await upload('cam-1', 'reports/day 1.csv', 'a,b\n1,2\n');
    expect(blobName).toBe('cam-1/reports/day 1.csv');
    const controller = new AbortController();
    const reader = service.fileUploads.notifications({ signal: controller.signal });
    const notification = await next(reader);
    expect(notification).toMatchObject({ deviceId: 'cam-1', blobName, blobSizeInBytes: size });
    expect(notification.enqueuedTimeUtc).toBeInstanceOf(Date);
    expect(notification.enqueuedTimeUtc.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(notification.lastUpdatedTime).toBeInstanceOf(Date);
    expect(notification.lastUpdatedTime?.getTime()).toBeGreaterThanOrEqual(before - 1000);
    // The blob's URL, without any SAS.
    const url = new URL(notification.blobUri);
    expect(url.protocol).toBe('https:');
    expect(decodeURIComponent(url.pathname)).toMatch(/\/cam-1\/reports\/day 1\.csv$/);
    expect(url.search).toBe('');
    // JSON shows Azure's record.
    expect(JSON.parse(JSON.stringify(notification))).toEqual({
      deviceId: 'cam-1',
      blobUri: notification.blobUri,
      blobName,
      lastUpdatedTime: notification.lastUpdatedTime?.toISOString(),
      blobSizeInBytes: size,
      enqueuedTimeUtc: notification.enqueuedTimeUtc.toISOString(),
    });

    await notification.complete();
    await expect.poll(pending).toBe(0);
    // Settling again the same way is harmless; another outcome is refused.
    await notification.complete();
    expect(await failure(notification.abandon())).toBeInstanceOf(ArgumentError);
    controller.abort();
    expect(await failure(reader.next())).toBeInstanceOf(AbortError);
  });

  it('redelivers an abandoned notification on the same reader', async () => {
    const { blobName } = await upload('cam#2?', 'abandoned.bin', 'x');
    const controller = new AbortController();
    const reader = service.fileUploads.notifications({ signal: controller.signal });
    const first = await next(reader);
    expect(first).toMatchObject({ deviceId: 'cam#2?', blobName });
    await first.abandon();
    const again = await next(reader);
    expect(again).toMatchObject({ deviceId: 'cam#2?', blobName, enqueuedTimeUtc: first.enqueuedTimeUtc });
    await again.complete();
    await expect.poll(pending).toBe(0);
    controller.abort();
    await expect(reader.next()).rejects.toBeInstanceOf(AbortError);
  });

  it('keeps a notification the reader took but did not settle: a later reader gets it', async () => {
    const { blobName } = await upload('cam-1', 'kept.txt', 'kept');
    for await (const notification of service.fileUploads.notifications()) {
      expect(notification.blobName).toBe(blobName);
      break;
    }
    // Left unsettled, also when the whole client closes with it in hand.
    const client = createServiceClient(clientOptions());
    const held = await next(client.fileUploads.notifications());
    expect(held.blobName).toBe(blobName);
    await client.close();

    const reader = service.fileUploads.notifications();
    const later = await next(reader);
    expect(later.blobName).toBe(blobName);
    await later.complete();
    await reader.return();
    await expect.poll(pending).toBe(0);
  });

  it('refuses to settle a notification whose reader ended with DeviceMessageLockLost', async () => {
    const { blobName } = await upload('cam-1', 'late.txt', 'late');
    const reader = service.fileUploads.notifications();
    const notification = await next(reader);
    await reader.return();
    const error = await failure(notification.complete());
    expect(error.code).toBe('DeviceMessageLockLost');
    expect(error.hubCode).toBe(412002);
    // It comes again, and can be completed then.
    const again = service.fileUploads.notifications();
    const redelivered = await next(again);
    expect(redelivered.blobName).toBe(blobName);
    await redelivered.complete({ signal: AbortSignal.timeout(10_000) });
    await again.return();
    await expect.poll(pending).toBe(0);
  });

  it('dead-letters a rejected notification: it does not come again', async () => {
    const rejected = await upload('cam-1', 'rejected.txt', 'no');
    const reader = service.fileUploads.notifications();
    const notification = await next(reader);
    expect(notification.blobName).toBe(rejected.blobName);
    await notification.reject();
    await expect.poll(pending).toBe(0);
    // The next one the reader sees is a new upload, not the rejected one.
    const fresh = await upload('cam-1', 'fresh.txt', 'yes');
    const following = await next(reader);
    expect(following.blobName).toBe(fresh.blobName);
    await following.complete();
    await reader.return();
  });

  it('holds at most maxUnsettled: what it does not take stays in the hub for another reader', async () => {
    const first = await upload('cam-1', 'one.txt', '1');
    const second = await upload('cam-1', 'two.txt', '2');
    const narrow = service.fileUploads.notifications({ maxUnsettled: 1 });
    const held = await next(narrow);
    expect(held.blobName).toBe(first.blobName);
    // With one unsettled, the narrow reader takes nothing more: another client receives the second upload.
    await using other = createServiceClient(clientOptions());
    const otherReader = other.fileUploads.notifications();
    const taken = await next(otherReader);
    expect(taken.blobName).toBe(second.blobName);
    await taken.complete();
    await held.complete();
    await expect.poll(pending).toBe(0);
    await narrow.return();
    await otherReader.return();
  });

  it('ends quietly when the client closes, and aborts with AbortError', async () => {
    const client = createServiceClient(clientOptions());
    const reading = (async () => {
      const seen: FileUploadNotification[] = [];
      for await (const notification of client.fileUploads.notifications()) seen.push(notification);
      return seen;
    })();
    await new Promise((resolve) => setTimeout(resolve, 150));
    await client.close();
    expect(await reading).toEqual([]);

    expect(await failure(next(service.fileUploads.notifications({ signal: AbortSignal.abort() })))).toBeInstanceOf(
      AbortError,
    );
    const controller = new AbortController();
    const waiting = next(service.fileUploads.notifications({ signal: controller.signal }));
    setTimeout(() => controller.abort(), 100);
    expect(await failure(waiting)).toBeInstanceOf(AbortError);
  });

  it('refuses bad credentials and a policy without ServiceConnect with AuthenticationError', async () => {
    const wrong = connectionString.replace(
      /SharedAccessKey=[^;]+/,
      `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`,
    );
    await using badKey = createServiceClient({ ...clientOptions(), connectionString: wrong });
    expect(await failure(next(badKey.fileUploads.notifications()))).toBeInstanceOf(AuthenticationError);

    const registryRead = withPort(await testHub.hub.core.policies.connectionString('registryRead'));
    await using readOnly = createServiceClient({ ...clientOptions(), connectionString: registryRead });
    expect(await failure(next(readOnly.fileUploads.notifications()))).toBeInstanceOf(AuthenticationError);
  });

  it('refuses a bad maxUnsettled with ArgumentError', async () => {
    for (const maxUnsettled of [0, 1.5, 1001]) {
      expect(await failure(next(service.fileUploads.notifications({ maxUnsettled })))).toBeInstanceOf(ArgumentError);
    }
  });

  it('lets a Node process exit once the client is closed (nothing left holding the event loop)', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    // The built package, as a tool such as the CLI loads it.
    if (!existsSync(dist)) throw new Error(`build @fieldhub/service first: ${dist} is missing`);
    const { blobName } = await upload('cam-1', 'child.txt', 'child');
    const script = `
      const { createServiceClient } = await import(${JSON.stringify(dist)});
      const service = createServiceClient(JSON.parse(process.env.OPTIONS));
      for await (const notification of service.fileUploads.notifications()) {
        await notification.complete();
        console.log(notification.blobName);
        break;
      }
      try {
        for await (const notification of service.fileUploads.notifications({ signal: AbortSignal.timeout(200) })) break;
      } catch (error) {
        if (error.name !== 'AbortError') throw error;
      }
      await service.close();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, OPTIONS: JSON.stringify(clientOptions()) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // A child that does not exit fails the test by its timeout; it must not outlive it.
    onTestFinished(() => {
      child.kill();
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(blobName);
    await expect.poll(pending).toBe(0);
  });

  it('reattaches after the hub restarts: a notification taken before comes again, one queued after arrives', async () => {
    const port = await freePort();
    const amqp = await freePort();
    const restartable = await startTestHub({ ports: { https: port, amqp } });
    try {
      await using client = createServiceClient({
        connectionString: restartable.info.serviceConnectionString,
        ca: restartable.ca,
        port,
        amqpPort: amqp,
      });
      const device = await client.devices.create('rc-cam');
      await using restartUploader = new DeviceUploader(
        restartable,
        new Map([['rc-cam', device.authentication?.symmetricKey?.primaryKey ?? '']]),
      );
      const before = await restartUploader.upload('rc-cam', 'before.txt', 'before');
      const reader = client.fileUploads.notifications();
      const taken = await next(reader);
      expect(taken.blobName).toBe(before.blobName);

      await restartable.restart();
      // Its link is gone: it cannot be settled, and the hub kept it.
      expect((await failure(taken.complete())).code).toBe('DeviceMessageLockLost');
      const after = await restartUploader.upload('rc-cam', 'after.txt', 'after');
      const seen: string[] = [];
      while (seen.length < 2) {
        const notification = await next(reader);
        seen.push(notification.blobName);
        await notification.complete();
      }
      expect(seen.sort()).toEqual([after.blobName, before.blobName].sort());
      await reader.return();
      await expect.poll(() => restartable.hub.core.fileUploads.pendingNotifications()).toBe(0);
    } finally {
      await restartable.stop();
    }
  });

  it('reads over AMQP over WebSockets', async () => {
    const { blobName } = await upload('cam-1', 'ws.txt', 'ws');
    await using client = createServiceClient({ ...clientOptions(), webSockets: true });
    const reader = client.fileUploads.notifications();
    const notification = await next(reader);
    expect(notification.blobName).toBe(blobName);
    await notification.complete();
    await reader.return();
    await expect.poll(pending).toBe(0);
  });
});
