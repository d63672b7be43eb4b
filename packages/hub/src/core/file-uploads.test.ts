import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FileUploadStorage, FileUploads, fileNotificationsSubject } from './file-uploads';
import { createTestCore, FakeRegistry, type TestCore } from './telemetry-test-support';

/** Storage that holds blob sizes in memory (the core only asks for properties and signs). */
class MemoryStorage implements FileUploadStorage {
  readonly accountName = 'acct';
  readonly accountKey = Buffer.alloc(32, 1).toString('base64');
  readonly blobs = new Map<string, number>();
  hostName() {
    return 'hub.example:8443';
  }
  async blobProperties(containerName: string, blobName: string) {
    const size = this.blobs.get(`${containerName}/${blobName}`);
    return size === undefined ? undefined : { size, lastModified: new Date(0) };
  }
  sas(containerName: string, blobName: string, permissions: string, expiresOn: Date) {
    return `sr=b&sp=${permissions}&se=${expiresOn.toISOString()}&sig=${encodeURIComponent(`${containerName}/${blobName}`)}`;
  }
}

const options = {
  containerName: 'up',
  sasTtlMs: 3_600_000,
  notifications: true,
  notificationTtlMs: 3_600_000,
  notificationLockDurationMs: 60_000,
  notificationMaxDeliveryCount: 3,
};

describe('FileUploads', () => {
  let core: TestCore;
  let storage: MemoryStorage;
  let uploads: FileUploads;

  beforeEach(async () => {
    core = await createTestCore();
    storage = new MemoryStorage();
    uploads = new FileUploads(core.ctx, new FakeRegistry().add('dev1'), storage, options);
  });
  afterEach(async () => {
    uploads.stop();
    await core.close();
  });

  it('answers a SAS URI for {deviceId}/{blobName} and records the upload until the SAS expires', async () => {
    const sas = await uploads.createUpload('dev1', 'a/b.txt');
    expect(sas).toMatchObject({ hostName: 'hub.example:8443', containerName: 'up', blobName: 'dev1/a/b.txt' });
    expect(sas.sasToken).toBe(
      `?sr=b&sp=rw&se=${new Date(core.ctx.now() + 3_600_000).toISOString()}&sig=up%2Fdev1%2Fa%2Fb.txt`,
    );
    expect(await uploads.activeUploads('dev1')).toBe(1);
    core.advance(3_600_000);
    expect(await uploads.activeUploads('dev1')).toBe(0);
    await expect(uploads.completeUpload('dev1', sas.correlationId, { isSuccess: true })).rejects.toMatchObject({
      code: 'ExpiredFileUploadCorrelationId',
    });
  });

  it('refuses a missing or bad blob name, an unknown device and the 11th active upload', async () => {
    await expect(uploads.createUpload('dev1', undefined)).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    await expect(uploads.createUpload('dev1', 'a/../b')).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    await expect(uploads.createUpload('nobody', 'x')).rejects.toMatchObject({ code: 'DeviceNotFound' });
    for (let index = 0; index < 10; index++) await uploads.createUpload('dev1', `f${index}`);
    await expect(uploads.createUpload('dev1', 'f10')).rejects.toMatchObject({
      code: 'DeviceMaximumActiveFileUploadLimitExceeded',
      hubCode: 403006,
    });
    // Expired uploads do not count.
    core.advance(3_600_000);
    await expect(uploads.createUpload('dev1', 'f10')).resolves.toMatchObject({ blobName: 'dev1/f10' });
  });

  it('queues one notification per successful upload, with a bus notice, and none for a failure', async () => {
    const notices: unknown[] = [];
    core.ctx.bus.subscribe(core.ctx.hubName, fileNotificationsSubject, (payload) => notices.push(payload));
    const ok = await uploads.createUpload('dev1', 'ok.bin');
    const failed = await uploads.createUpload('dev1', 'failed.bin');
    storage.blobs.set('up/dev1/ok.bin', 42);
    await uploads.completeUpload('dev1', failed.correlationId, { isSuccess: false, statusCode: 500 });
    expect(await uploads.pendingNotifications()).toBe(0);
    await uploads.completeUpload('dev1', ok.correlationId, { isSuccess: true, statusCode: 201 });
    expect(notices).toHaveLength(1);
    const delivery = await uploads.receiveNotification();
    expect(delivery?.deliveryCount).toBe(1);
    expect(delivery?.notification).toEqual({
      deviceId: 'dev1',
      blobUri: 'https://hub.example:8443/up/dev1/ok.bin',
      blobName: 'dev1/ok.bin',
      lastUpdatedTime: '1970-01-01T00:00:00.000Z',
      blobSizeInBytes: 42,
      enqueuedTimeUtc: new Date(core.ctx.now()).toISOString(),
    });
    // Locked: not delivered twice.
    expect(await uploads.receiveNotification()).toBeUndefined();
    await uploads.completeNotification(delivery?.lockToken ?? '');
    expect(await uploads.pendingNotifications()).toBe(0);
    await expect(uploads.completeNotification(delivery?.lockToken ?? '')).rejects.toMatchObject({
      code: 'DeviceMessageLockLost',
    });
  });

  it('redelivers an abandoned or lapsed notification with the delivery count up, and drops it at the maximum', async () => {
    const sas = await uploads.createUpload('dev1', 'x');
    storage.blobs.set('up/dev1/x', 1);
    await uploads.completeUpload('dev1', sas.correlationId, { isSuccess: true });
    const first = await uploads.receiveNotification();
    await uploads.abandonNotification(first?.lockToken ?? '');
    const second = await uploads.receiveNotification();
    expect(second?.deliveryCount).toBe(2);
    core.advance(60_000);
    const third = await uploads.receiveNotification();
    expect(third?.deliveryCount).toBe(3);
    await uploads.abandonNotification(third?.lockToken ?? '');
    expect(await uploads.pendingNotifications()).toBe(0);
  });

  it('drops notifications after their TTL and refuses a success without a blob, keeping the upload', async () => {
    const sas = await uploads.createUpload('dev1', 'late');
    await expect(uploads.completeUpload('dev1', sas.correlationId, { isSuccess: true })).rejects.toMatchObject({
      code: 'InvalidFileUploadCompletionStatus',
    });
    expect(await uploads.activeUploads('dev1')).toBe(1);
    storage.blobs.set('up/dev1/late', 5);
    await uploads.completeUpload('dev1', sas.correlationId, { isSuccess: true });
    core.advance(3_600_000);
    await uploads.sweep();
    expect(await uploads.pendingNotifications()).toBe(0);
    await expect(uploads.completeUpload('dev1', sas.correlationId, {})).rejects.toMatchObject({
      code: 'InvalidFileUploadCompletionStatus',
    });
  });

  it('sends no notification when notifications are off', async () => {
    const quiet = new FileUploads(core.ctx, new FakeRegistry().add('dev1'), storage, {
      ...options,
      notifications: false,
    });
    try {
      const sas = await quiet.createUpload('dev1', 'q');
      await quiet.completeUpload('dev1', sas.correlationId, { isSuccess: true });
      expect(await quiet.pendingNotifications()).toBe(0);
      expect(await quiet.activeUploads('dev1')).toBe(0);
    } finally {
      quiet.stop();
    }
  });
});
