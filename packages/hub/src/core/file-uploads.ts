import { randomBytes, randomUUID } from 'node:crypto';
import { ArgumentError, HubError } from '@fieldhub/protocol';
import { type DocumentWrite, RevisionConflict, type StoredDocument } from '../store/store';
import type { CoreContext } from './context';
import { KeyedSerial } from './keyed-serial';
import { scanDocuments } from './scan-documents';

/**
 * File upload (protocol-device.md §4.3, protocol-service.md §8): a device asks for a SAS URI of a blob
 * (`POST /devices/{id}/files`), uploads to storage itself, then reports the outcome
 * (`POST /devices/{id}/files/notifications`); a successful upload becomes a file-upload notification the service
 * receives on `/messages/serviceBound/filenotifications`.
 *
 * Storage (all scoped by hub name):
 * - `file-uploads/<device>/<correlationId>`: the device's active uploads (at most 10, Azure's limit), until the
 *   device reports or the SAS expires (swept).
 * - `file-notifications/<time, 15 digits>-<counter>-<uuid>`: notifications waiting for the service, oldest first,
 *   each with its expiry (the notification TTL), delivery count and lock.
 * - `file-notification-locks/<lockToken>`: which notification one receive holds.
 * `<device>` is the `encodeURIComponent` form of the device id, which never contains `/`.
 *
 * Decisions where the reference is silent:
 * - Only a successful upload is notified (Azure sends none for `isSuccess: false`, azure-iot-sdk-c#1443).
 * - A success report for a blob that is not in storage is refused (400 InvalidFileUploadCompletionStatus) and the
 *   upload stays active, so the device can upload and report again; Azure checks the blob too
 *   (InvalidStorageEndpointOrBlob).
 * - An unknown correlation id, or one of another device, is 400 InvalidFileUploadCorrelationId; one whose SAS has
 *   expired is 400 ExpiredFileUploadCorrelationId (and is forgotten).
 * - A notification abandoned `maxDeliveryCount` times is dropped, as an expired one is.
 */

/** Where devices upload: the account and how devices and services address its blobs. */
export interface FileUploadStorage {
  readonly accountName: string;
  /** base64 */
  readonly accountKey: string;
  /** The `hostName` devices receive; they upload to `https://{hostName}/{container}/{blob}{sasToken}`. */
  hostName(): string;
  /** Size and last write of a blob, or `undefined` when it does not exist. @throws when storage cannot be asked. */
  blobProperties(containerName: string, blobName: string): Promise<{ size: number; lastModified: Date } | undefined>;
  /** Signs the SAS a device receives (`?` not included). */
  sas(containerName: string, blobName: string, permissions: string, expiresOn: Date): string;
}

/** Tunables of file upload (config `fileUpload`). */
export interface FileUploadOptions {
  readonly containerName: string;
  readonly sasTtlMs: number;
  readonly notifications: boolean;
  readonly notificationTtlMs: number;
  readonly notificationLockDurationMs: number;
  readonly notificationMaxDeliveryCount: number;
  /** How often expired uploads and notifications are swept (default 30 s). */
  readonly sweepIntervalMs?: number;
}

/** What `POST /devices/{id}/files` answers. */
export interface FileUploadSasUri {
  readonly correlationId: string;
  readonly hostName: string;
  readonly containerName: string;
  /** `{deviceId}/{blobName}` */
  readonly blobName: string;
  /** Starts with `?`. */
  readonly sasToken: string;
}

/** What the device reports. */
export interface FileUploadCompletion {
  readonly isSuccess: boolean;
  readonly statusCode?: number | undefined;
  readonly statusDescription?: string | undefined;
}

/** Azure's file-upload notification (protocol-service.md §8). */
export interface FileNotification {
  readonly deviceId: string;
  readonly blobUri: string;
  readonly blobName: string;
  /** ISO 8601. */
  readonly lastUpdatedTime: string;
  readonly blobSizeInBytes: number;
  /** ISO 8601. */
  readonly enqueuedTimeUtc: string;
}

/** A received notification: its lock token settles it. */
export interface FileNotificationDelivery {
  readonly lockToken: string;
  readonly notification: FileNotification;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  readonly lockedUntil: number;
}

/** What the registry must provide (`Registry` does). */
export interface FileUploadDeviceLookup {
  /** @throws HubError DeviceNotFound (404001). */
  getDevice(deviceId: string): Promise<unknown>;
}

/** The bus subject notification readers (the AMQP link) listen on (payload `{}`). */
export const fileNotificationsSubject = 'file-notifications';

/** Azure's limit of concurrent uploads per device (protocol-device.md §4.3). */
export const maxActiveUploadsPerDevice = 10;

const uploadsCollection = 'file-uploads';
const notificationsCollection = 'file-notifications';
const locksCollection = 'file-notification-locks';
const conflictRetries = 8;
// Blob names: Azure allows 1024 characters; `{deviceId}/` takes up to 129 of them.
const maxBlobNameLength = 1024;

interface StoredUpload {
  readonly deviceId: string;
  readonly correlationId: string;
  readonly containerName: string;
  readonly blobName: string;
  readonly createdTime: number;
  readonly expiryTime: number;
}

interface StoredNotification {
  readonly notification: FileNotification;
  readonly expiryTime: number;
  readonly deliveryCount: number;
  readonly lockToken: string | null;
  readonly lockedUntil: number;
}

interface StoredLock {
  readonly key: string;
  readonly lockedUntil: number;
}

const encodeId = (deviceId: string) => encodeURIComponent(deviceId);
const uploadKey = (deviceId: string, correlationId: string) => `${encodeId(deviceId)}/${correlationId}`;

/** File uploads and their notifications. Starts its sweep timer on construction; `stop()` ends it. */
export class FileUploads {
  private readonly sweepTimer: ReturnType<typeof setInterval>;
  private readonly turns = new KeyedSerial();
  private counter = 0;

  constructor(
    private readonly ctx: CoreContext,
    private readonly devices: FileUploadDeviceLookup,
    private readonly storage: FileUploadStorage,
    readonly options: FileUploadOptions,
    private readonly onSweep?: (now: number) => Promise<void>,
  ) {
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((error: unknown) => ctx.logger.warn({ err: error }, 'file upload sweep failed'));
    }, options.sweepIntervalMs ?? 30_000);
    this.sweepTimer.unref?.();
  }

  /**
   * Starts an upload: records it and signs a SAS (read, write) for `{deviceId}/{blobName}` until now + SAS TTL.
   * @throws ArgumentError (400004) for a missing or bad blob name, HubError DeviceNotFound (404001),
   * DeviceMaximumActiveFileUploadLimitExceeded (403006) when the device has 10 active uploads.
   */
  async createUpload(deviceId: string, requestedBlobName: unknown): Promise<FileUploadSasUri> {
    const blobName = checkRequestedBlobName(deviceId, requestedBlobName);
    await this.devices.getDevice(deviceId);
    const { containerName } = this.options;
    return this.turns.run(deviceId, () =>
      retryOnConflict(async () => {
        const { hubName, store } = this.ctx;
        const now = this.ctx.now();
        let active = await store.documents.list<StoredUpload>(hubName, uploadsCollection, {
          prefix: `${encodeId(deviceId)}/`,
        });
        if (active.length >= maxActiveUploadsPerDevice) {
          // Expired uploads do not count.
          for (const document of active) {
            if (document.value.expiryTime > now) continue;
            await store.documents
              .delete(hubName, uploadsCollection, document.key, document.revision)
              .catch(ignoreConflict);
          }
          active = active.filter((document) => document.value.expiryTime > now);
        }
        if (active.length >= maxActiveUploadsPerDevice) {
          throw new HubError(
            'DeviceMaximumActiveFileUploadLimitExceeded',
            `Number of active file upload requests cannot exceed ${maxActiveUploadsPerDevice}`,
          );
        }
        const correlationId = randomBytes(24).toString('base64url');
        const expiryTime = now + this.options.sasTtlMs;
        const upload: StoredUpload = { deviceId, correlationId, containerName, blobName, createdTime: now, expiryTime };
        await store.documents.put(hubName, uploadsCollection, uploadKey(deviceId, correlationId), upload, 0);
        const sasToken = `?${this.storage.sas(containerName, blobName, 'rw', new Date(expiryTime))}`;
        this.ctx.logger.debug({ deviceId, blobName, correlationId }, 'file upload started');
        return { correlationId, hostName: this.storage.hostName(), containerName, blobName, sasToken };
      }),
    );
  }

  /**
   * Records the outcome the device reports and, for a success with notifications on, queues the notification.
   * @throws HubError InvalidFileUploadCorrelationId (400015) for an unknown id (or another device's),
   * ExpiredFileUploadCorrelationId (400016) when its SAS has expired, InvalidFileUploadCompletionStatus (400019)
   * when `isSuccess` is missing or the blob reported as uploaded is not in storage.
   */
  async completeUpload(deviceId: string, correlationId: unknown, completion: unknown): Promise<void> {
    if (typeof correlationId !== 'string' || correlationId === '') {
      throw new HubError('InvalidFileUploadCorrelationId', 'The correlationId is missing');
    }
    const report = checkCompletion(completion);
    await this.turns.run(deviceId, async () => {
      const { hubName, store } = this.ctx;
      const key = uploadKey(deviceId, correlationId);
      const document = await store.documents.get<StoredUpload>(hubName, uploadsCollection, key);
      if (!document) {
        throw new HubError(
          'InvalidFileUploadCorrelationId',
          `No active file upload of device ${deviceId} has correlation id ${correlationId}`,
        );
      }
      const upload = document.value;
      const now = this.ctx.now();
      if (upload.expiryTime <= now) {
        await store.documents.delete(hubName, uploadsCollection, key, document.revision).catch(ignoreConflict);
        throw new HubError('ExpiredFileUploadCorrelationId', `The file upload ${correlationId} has expired`);
      }
      const writes: DocumentWrite[] = [
        { op: 'delete', collection: uploadsCollection, key, expectedRevision: document.revision },
      ];
      if (report.isSuccess && this.options.notifications) {
        const properties = await this.storage.blobProperties(upload.containerName, upload.blobName);
        if (!properties) {
          throw new HubError(
            'InvalidFileUploadCompletionStatus',
            `The upload is reported successful but blob ${upload.blobName} is not in storage`,
          );
        }
        const notification: FileNotification = {
          deviceId,
          blobUri: `https://${this.storage.hostName()}/${upload.containerName}/${encodeBlobPath(upload.blobName)}`,
          blobName: upload.blobName,
          lastUpdatedTime: properties.lastModified.toISOString(),
          blobSizeInBytes: properties.size,
          enqueuedTimeUtc: new Date(now).toISOString(),
        };
        writes.push({
          op: 'put',
          collection: notificationsCollection,
          // Time, then a per-process counter (order within one ms), then a UUID (unique across processes).
          key: `${String(now).padStart(15, '0')}-${String(this.counter++).padStart(12, '0')}-${randomUUID()}`,
          value: {
            notification,
            expiryTime: now + this.options.notificationTtlMs,
            deliveryCount: 0,
            lockToken: null,
            lockedUntil: 0,
          } satisfies StoredNotification,
          expectedRevision: 0,
        });
      }
      await store.documents.batch(hubName, writes);
      this.ctx.logger.debug(
        { deviceId, correlationId, isSuccess: report.isSuccess, statusCode: report.statusCode },
        'file upload completed',
      );
      if (writes.length > 1) this.ctx.bus.publish(hubName, fileNotificationsSubject, {});
    });
  }

  /** How many uploads of the device are active (not reported, not expired). */
  async activeUploads(deviceId: string): Promise<number> {
    const now = this.ctx.now();
    const active = await this.ctx.store.documents.list<StoredUpload>(this.ctx.hubName, uploadsCollection, {
      prefix: `${encodeId(deviceId)}/`,
    });
    return active.filter((document) => document.value.expiryTime > now).length;
  }

  /** How many notifications wait (delivered or not). */
  pendingNotifications(): Promise<number> {
    return this.ctx.store.documents.count(this.ctx.hubName, notificationsCollection);
  }

  /**
   * Locks the oldest deliverable notification for `notificationLockDurationMs`, or `undefined` when none waits.
   * Expired notifications met on the way are dropped.
   */
  receiveNotification(): Promise<FileNotificationDelivery | undefined> {
    return this.turns.run('#notifications', () =>
      retryOnConflict(async () => {
        const { hubName, store } = this.ctx;
        const now = this.ctx.now();
        for await (const document of scanDocuments<StoredNotification>(this.ctx, notificationsCollection)) {
          const stored = document.value;
          if (stored.expiryTime <= now || stored.deliveryCount >= this.options.notificationMaxDeliveryCount) {
            await store.documents
              .delete(hubName, notificationsCollection, document.key, document.revision)
              .catch(ignoreConflict);
            continue;
          }
          if (stored.lockToken !== null && stored.lockedUntil > now) continue;
          const lockToken = randomUUID();
          const lockedUntil = now + this.options.notificationLockDurationMs;
          const deliveryCount = stored.deliveryCount + 1;
          await store.documents.batch(hubName, [
            {
              op: 'put',
              collection: notificationsCollection,
              key: document.key,
              value: { ...stored, deliveryCount, lockToken, lockedUntil } satisfies StoredNotification,
              expectedRevision: document.revision,
            },
            {
              op: 'put',
              collection: locksCollection,
              key: lockToken,
              value: { key: document.key, lockedUntil } satisfies StoredLock,
              expectedRevision: 0,
            },
          ]);
          return { lockToken, notification: stored.notification, deliveryCount, lockedUntil };
        }
        return undefined;
      }),
    );
  }

  /**
   * Deletes a received notification.
   * @throws HubError DeviceMessageLockLost (412002) for an unknown or lapsed-and-retaken lock token.
   */
  completeNotification(lockToken: string): Promise<void> {
    return this.settle(lockToken, (document) => ({
      op: 'delete',
      collection: notificationsCollection,
      key: document.key,
      expectedRevision: document.revision,
    }));
  }

  /**
   * Returns a received notification to the queue; one delivered `notificationMaxDeliveryCount` times is dropped.
   * @throws HubError DeviceMessageLockLost (412002) for an unknown lock token.
   */
  async abandonNotification(lockToken: string): Promise<void> {
    await this.settle(lockToken, (document) =>
      document.value.deliveryCount >= this.options.notificationMaxDeliveryCount
        ? { op: 'delete', collection: notificationsCollection, key: document.key, expectedRevision: document.revision }
        : {
            op: 'put',
            collection: notificationsCollection,
            key: document.key,
            value: { ...document.value, lockToken: null, lockedUntil: 0 } satisfies StoredNotification,
            expectedRevision: document.revision,
          },
    );
    this.ctx.bus.publish(this.ctx.hubName, fileNotificationsSubject, {});
  }

  /** Forgets a deleted device's active uploads (its notifications stay: the blobs exist). */
  async forgetDevice(deviceId: string): Promise<void> {
    await this.ctx.store.documents.deletePrefix(this.ctx.hubName, uploadsCollection, `${encodeId(deviceId)}/`);
  }

  /** Drops expired uploads, expired notifications and stale locks. Runs periodically; callable directly. */
  async sweep(): Promise<void> {
    const { hubName, store } = this.ctx;
    const now = this.ctx.now();
    for await (const document of scanDocuments<StoredUpload>(this.ctx, uploadsCollection)) {
      if (document.value.expiryTime > now) continue;
      await store.documents.delete(hubName, uploadsCollection, document.key, document.revision).catch(ignoreConflict);
    }
    await this.turns.run('#notifications', async () => {
      for await (const document of scanDocuments<StoredNotification>(this.ctx, notificationsCollection)) {
        if (document.value.expiryTime > now) continue;
        await store.documents
          .delete(hubName, notificationsCollection, document.key, document.revision)
          .catch(ignoreConflict);
      }
      for await (const document of scanDocuments<StoredLock>(this.ctx, locksCollection)) {
        if (document.value.lockedUntil > now - this.options.notificationTtlMs) continue;
        await store.documents.delete(hubName, locksCollection, document.key, document.revision).catch(ignoreConflict);
      }
    });
    await this.onSweep?.(now);
  }

  /** Stops the sweep timer. Idempotent. */
  stop(): void {
    clearInterval(this.sweepTimer);
  }

  private settle(
    lockToken: string,
    write: (document: StoredDocument<StoredNotification>) => DocumentWrite,
  ): Promise<void> {
    return this.turns.run('#notifications', () =>
      retryOnConflict(async () => {
        const { hubName, store } = this.ctx;
        const lock = await store.documents.get<StoredLock>(hubName, locksCollection, lockToken);
        const lost = () =>
          new HubError('DeviceMessageLockLost', `No file-upload notification is locked with token ${lockToken}`);
        if (!lock) throw lost();
        const writes: DocumentWrite[] = [
          { op: 'delete', collection: locksCollection, key: lockToken, expectedRevision: lock.revision },
        ];
        const document = await store.documents.get<StoredNotification>(
          hubName,
          notificationsCollection,
          lock.value.key,
        );
        // A notification whose lock lapsed and that another receive took belongs to that receiver now.
        const ours = document !== undefined && document.value.lockToken === lockToken;
        if (ours) writes.push(write(document));
        await store.documents.batch(hubName, writes);
        if (!ours) throw lost();
      }),
    );
  }
}

/**
 * The blob name a device asks for, prefixed with its id: 1 to 1024 characters in all, no empty, `.` or `..`
 * segment, no backslash or control character.
 * @throws ArgumentError (400004).
 */
export function checkRequestedBlobName(deviceId: string, blobName: unknown): string {
  if (typeof blobName !== 'string' || blobName === '') {
    throw new ArgumentError('The request must name the blob: {"blobName": "<name>"}', { field: 'blobName' });
  }
  const full = `${deviceId}/${blobName}`;
  const segments = full.split('/');
  if (
    full.length > maxBlobNameLength ||
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
    /[\\\u0000-\u001f\u007f]/.test(full) ||
    segments.some((segment) => segment === '' || segment === '.' || segment === '..')
  ) {
    throw new ArgumentError(
      `Invalid blob name '${blobName}': at most ${maxBlobNameLength - deviceId.length - 1} characters, no empty, '.' or '..' path segment, no backslash or control character`,
      { field: 'blobName' },
    );
  }
  return full;
}

/** Percent-encodes each segment of a blob path (as `@azure/storage-blob` builds blob URLs). */
export function encodeBlobPath(blobName: string): string {
  return blobName.split('/').map(encodeURIComponent).join('/');
}

function checkCompletion(completion: unknown): FileUploadCompletion {
  const body = (typeof completion === 'object' && completion !== null ? completion : {}) as Record<string, unknown>;
  if (typeof body.isSuccess !== 'boolean') {
    throw new HubError('InvalidFileUploadCompletionStatus', 'The notification must say isSuccess: true or false');
  }
  return {
    isSuccess: body.isSuccess,
    statusCode: typeof body.statusCode === 'number' ? body.statusCode : undefined,
    statusDescription: typeof body.statusDescription === 'string' ? body.statusDescription : undefined,
  };
}

function ignoreConflict(error: unknown): void {
  if (!(error instanceof RevisionConflict)) throw error;
}

async function retryOnConflict<T>(operation: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof RevisionConflict) || attempt >= conflictRetries) throw error;
    }
  }
}
