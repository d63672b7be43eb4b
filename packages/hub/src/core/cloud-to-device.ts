import { randomUUID } from 'node:crypto';
import { ArgumentError, HubError } from '@fieldhub/protocol';
import { type DocumentWrite, RevisionConflict, type StoredDocument } from '../store/store';
import type { CoreContext } from './context';
import { KeyedSerial } from './keyed-serial';
import { scanDocuments } from './scan-documents';

/**
 * Cloud-to-device messages (protocol-service.md §3.2-3.3, protocol-device.md §2.8, §4.2, §7): one durable queue
 * per device in the documents store, delivery with locks and delivery counts, dead-lettering, and feedback
 * records for the sender. Every head (MQTT, AMQP, HTTPS polling) calls these operations; none keeps its own
 * queue.
 *
 * Storage (all scoped by hub name):
 * - `c2d-queues/<device>`: the device's next queue sequence number (compare-and-set, so that two hub
 *   processes never enqueue with the same number).
 * - `c2d-messages/<device>/<sequence, 16 digits>`: the queued messages in enqueue order, with their lock.
 * - `c2d-feedback/<time, 15 digits>-<counter>-<uuid>`: feedback records waiting for the service, oldest first.
 * - `c2d-feedback-locks/<lockToken>`: which feedback records one received batch holds.
 * `<device>` is the `encodeURIComponent` form of the device id, which never contains `/`.
 *
 * Decisions where the reference is silent:
 * - The delivery count counts deliveries: the first delivery has count 1; an abandon, a lapsed lock or a
 *   reconnect (`pending`) delivers again with count + 1. A message that was delivered `maxDeliveryCount` times
 *   is dead-lettered (DeliveryCountExceeded) when abandoned again or before it would be delivered again, so a
 *   message a device crashes on cannot circulate forever.
 * - A completion/rejection/abandon whose lock has lapsed is still accepted while no other delivery took the
 *   message (the token still matches); a token that matches nothing is 412002 DeviceMessageLockLost.
 * - `purge` and device deletion produce no feedback (Azure documents a `Purged` code but not when it is sent).
 * - `description` in feedback records repeats the status code (the reference shows `"Success"`/`"Success"`).
 * - A message without a message id gets a random UUID.
 */

/** `iothub-ack`: which outcomes produce feedback (§3.3). */
export const CloudToDeviceAcks = { none: 'none', positive: 'positive', negative: 'negative', full: 'full' } as const;
/** A value of `iothub-ack`. */
export type CloudToDeviceAck = (typeof CloudToDeviceAcks)[keyof typeof CloudToDeviceAcks];

/** Feedback `statusCode` values (§3.3). */
export const FeedbackStatusCodes = {
  Success: 'Success',
  Expired: 'Expired',
  DeliveryCountExceeded: 'DeliveryCountExceeded',
  Rejected: 'Rejected',
  Purged: 'Purged',
} as const;
/** A feedback `statusCode`. */
export type FeedbackStatusCode = (typeof FeedbackStatusCodes)[keyof typeof FeedbackStatusCodes];

/** What the registry must provide (`Registry` does): the device's generation id. */
export interface CloudToDeviceDeviceLookup {
  /** @throws HubError DeviceNotFound (404001) when the device does not exist. */
  getDevice(deviceId: string): Promise<{ readonly generationId: string }>;
}

/** A message a service sends. */
export interface CloudToDeviceMessageInput {
  readonly body: Uint8Array;
  /** A random UUID when absent. At most 128 characters. */
  readonly messageId?: string | undefined;
  readonly correlationId?: string | undefined;
  readonly userId?: string | undefined;
  readonly contentType?: string | undefined;
  readonly contentEncoding?: string | undefined;
  /** Application properties. */
  readonly properties?: Readonly<Record<string, string>> | undefined;
  /** Absolute expiry (ms since epoch or a Date); now + `cloudToDevice.defaultTtlMs` when absent. */
  readonly expiryTimeUtc?: number | Date | undefined;
  /** `none` when absent. */
  readonly ack?: CloudToDeviceAck | undefined;
}

/** A queued message as the device heads deliver it. */
export interface CloudToDeviceMessage {
  readonly deviceId: string;
  readonly messageId: string;
  /** Position in the device's queue (`iothub-sequencenumber`), increasing in enqueue order. */
  readonly sequenceNumber: number;
  readonly correlationId: string | undefined;
  readonly userId: string | undefined;
  readonly contentType: string | undefined;
  readonly contentEncoding: string | undefined;
  /** `/devices/<encoded id>/messages/devicebound` (§3.2). */
  readonly to: string;
  readonly body: Uint8Array;
  readonly properties: Readonly<Record<string, string>>;
  readonly ack: CloudToDeviceAck;
  /** ms since epoch. */
  readonly enqueuedTimeUtc: number;
  /** ms since epoch. */
  readonly expiryTimeUtc: number;
}

/** One delivery of a message: the lock token settles it. */
export interface CloudToDeviceDelivery {
  readonly message: CloudToDeviceMessage;
  readonly lockToken: string;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** ms since epoch; after it the message may be delivered again. */
  readonly lockedUntil: number;
}

/** The answer to a send. */
export interface CloudToDeviceSendResult {
  readonly messageId: string;
  readonly sequenceNumber: number;
  readonly enqueuedTimeUtc: number;
  readonly expiryTimeUtc: number;
}

/** Azure's purge answer for `DELETE /devices/{id}/commands`. */
export interface PurgeResult {
  readonly totalMessagesPurged: number;
  readonly deviceId: string;
  readonly moduleId: null;
}

/** Azure's feedback record (§3.3). */
export interface FeedbackRecord {
  readonly originalMessageId: string;
  readonly deviceGenerationId: string;
  readonly deviceId: string;
  /** When the outcome happened (ISO). */
  readonly enqueuedTimeUtc: string;
  readonly statusCode: FeedbackStatusCode;
  readonly description: string;
}

/** Feedback records received under one lock. */
export interface FeedbackBatch {
  readonly lockToken: string;
  readonly records: readonly FeedbackRecord[];
  readonly lockedUntil: number;
}

/** Options of {@link CloudToDevice}. */
export interface CloudToDeviceOptions {
  /** How often expired messages and feedback are swept (default 30 s). */
  readonly sweepIntervalMs?: number;
  /** Lock (visibility) timeout of a delivery; Azure's is fixed at 1 minute (protocol-device.md §7). */
  readonly lockDurationMs?: number;
}

/** The bus subject a device session listens on to learn that its queue has a message (payload `{}`). */
export function cloudToDeviceSubject(deviceId: string): string {
  return `c2d.${deviceId}`;
}

/**
 * The bus subject feedback readers (the AMQP feedback link) listen on to learn that feedback records wait
 * (payload `{}`): published after a settlement, expiry or abandon wrote or returned records. Not under `c2d.`,
 * where a device named `feedback` would collide.
 */
export const cloudToDeviceFeedbackSubject = 'c2d-feedback';

// protocol-device.md §7.
const maxMessageBytes = 64 * 1024;
const maxMessageIdLength = 128;
const maxFeedbackBatch = 64;
const messagesCollection = 'c2d-messages';
const queuesCollection = 'c2d-queues';
const feedbackCollection = 'c2d-feedback';
const feedbackLocksCollection = 'c2d-feedback-locks';
const conflictRetries = 8;

interface StoredMessage {
  readonly deviceId: string;
  readonly deviceGenerationId: string;
  readonly sequenceNumber: number;
  readonly messageId: string;
  readonly correlationId: string | null;
  readonly userId: string | null;
  readonly contentType: string | null;
  readonly contentEncoding: string | null;
  /** base64 */
  readonly body: string;
  readonly properties: Record<string, string>;
  readonly ack: CloudToDeviceAck;
  readonly enqueuedTime: number;
  readonly expiryTime: number;
  readonly deliveryCount: number;
  readonly lockToken: string | null;
  readonly lockedUntil: number;
}

interface StoredQueue {
  readonly nextSequenceNumber: number;
}

interface StoredFeedback {
  readonly record: FeedbackRecord;
  readonly expiryTime: number;
  readonly deliveryCount: number;
  readonly lockToken: string | null;
  readonly lockedUntil: number;
}

interface StoredFeedbackLock {
  readonly keys: string[];
  readonly lockedUntil: number;
}

const encodeId = (deviceId: string) => encodeURIComponent(deviceId);
const queuePrefix = (deviceId: string) => `${encodeId(deviceId)}/`;
const messageKey = (deviceId: string, sequenceNumber: number) =>
  `${queuePrefix(deviceId)}${String(sequenceNumber).padStart(16, '0')}`;

/** The cloud-to-device queues and their feedback. Starts its sweep timer on construction; `stop()` ends it. */
export class CloudToDevice {
  private readonly locks = new KeyedSerial();
  private readonly sweepTimer: ReturnType<typeof setInterval>;
  private readonly lockDurationMs: number;
  private feedbackCounter = 0;

  constructor(
    private readonly ctx: CoreContext,
    private readonly devices: CloudToDeviceDeviceLookup,
    options: CloudToDeviceOptions = {},
  ) {
    this.lockDurationMs = options.lockDurationMs ?? 60_000;
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((error: unknown) => ctx.logger.warn({ err: error }, 'cloud-to-device sweep failed'));
    }, options.sweepIntervalMs ?? 30_000);
    this.sweepTimer.unref?.();
  }

  /**
   * Queues a message for a device and notifies its session on the bus subject `c2d.<deviceId>`.
   * @throws HubError DeviceNotFound (404001), DeviceMaximumQueueDepthExceeded (403004) when the queue holds
   * `cloudToDevice.maxQueueDepth` messages, MessageTooLarge (413001) over 64 KB, ArgumentError for a bad
   * message id, ack or expiry.
   */
  async send(deviceId: string, input: CloudToDeviceMessageInput): Promise<CloudToDeviceSendResult> {
    const ack = input.ack ?? 'none';
    if (!Object.hasOwn(CloudToDeviceAcks, ack)) {
      throw new ArgumentError(`Invalid ack '${ack}': none, positive, negative or full`, { field: 'ack' });
    }
    const messageId = input.messageId ?? randomUUID();
    if (messageId.length === 0 || messageId.length > maxMessageIdLength) {
      throw new ArgumentError(`The message id must have 1 to ${maxMessageIdLength} characters`, {
        field: 'messageId',
      });
    }
    const properties = { ...input.properties };
    let size = input.body.byteLength;
    for (const [name, value] of Object.entries(properties)) size += name.length + value.length;
    if (size > maxMessageBytes) {
      throw new HubError('MessageTooLarge', `The message is ${size} bytes; the limit is ${maxMessageBytes}`);
    }
    const now = this.ctx.now();
    const expiry =
      input.expiryTimeUtc === undefined
        ? now + this.ctx.options.cloudToDevice.defaultTtlMs
        : input.expiryTimeUtc instanceof Date
          ? input.expiryTimeUtc.getTime()
          : input.expiryTimeUtc;
    if (!Number.isFinite(expiry)) throw new ArgumentError('Invalid expiry time', { field: 'expiryTimeUtc' });
    const device = await this.devices.getDevice(deviceId);

    const result = await this.locks.run(deviceId, () =>
      retryOnConflict(async () => {
        const { hubName, store } = this.ctx;
        const queue = await store.documents.get<StoredQueue>(hubName, queuesCollection, encodeId(deviceId));
        let depth = await this.count(deviceId);
        if (depth >= this.ctx.options.cloudToDevice.maxQueueDepth) {
          // Expired messages do not count: sweep this queue before refusing.
          await this.expireQueueNow(deviceId);
          depth = await this.count(deviceId);
        }
        if (depth >= this.ctx.options.cloudToDevice.maxQueueDepth) {
          throw new HubError(
            'DeviceMaximumQueueDepthExceeded',
            `The cloud-to-device queue of device ${deviceId} holds ${depth} messages, the maximum`,
          );
        }
        const sequenceNumber = queue?.value.nextSequenceNumber ?? 1;
        const message: StoredMessage = {
          deviceId,
          deviceGenerationId: device.generationId,
          sequenceNumber,
          messageId,
          correlationId: input.correlationId ?? null,
          userId: input.userId ?? null,
          contentType: input.contentType ?? null,
          contentEncoding: input.contentEncoding ?? null,
          body: Buffer.from(input.body).toString('base64'),
          properties,
          ack,
          enqueuedTime: now,
          expiryTime: expiry,
          deliveryCount: 0,
          lockToken: null,
          lockedUntil: 0,
        };
        await store.documents.batch(hubName, [
          {
            op: 'put',
            collection: queuesCollection,
            key: encodeId(deviceId),
            value: { nextSequenceNumber: sequenceNumber + 1 } satisfies StoredQueue,
            expectedRevision: queue?.revision ?? 0,
          },
          {
            op: 'put',
            collection: messagesCollection,
            key: messageKey(deviceId, sequenceNumber),
            value: message,
            expectedRevision: 0,
          },
        ]);
        return { messageId, sequenceNumber, enqueuedTimeUtc: now, expiryTimeUtc: expiry };
      }),
    );
    this.notify(deviceId);
    return result;
  }

  /** How many messages wait in the device's queue (the identity's `cloudToDeviceMessageCount`). */
  count(deviceId: string): Promise<number> {
    return this.ctx.store.documents.count(this.ctx.hubName, messagesCollection, queuePrefix(deviceId));
  }

  /** Messages waiting in every device's queue, and feedback records not yet received (for metrics). */
  async depths(): Promise<{ messages: number; feedback: number }> {
    const [messages, feedback] = await Promise.all([
      this.ctx.store.documents.count(this.ctx.hubName, messagesCollection),
      this.ctx.store.documents.count(this.ctx.hubName, feedbackCollection),
    ]);
    return { messages, feedback };
  }

  /**
   * Locks the oldest deliverable message and returns it with a fresh lock token and `deliveryCount` + 1, or
   * `undefined` when none is deliverable. Expired messages and messages over the delivery count met on the way
   * are dead-lettered (with feedback as their ack asks).
   */
  receive(deviceId: string): Promise<CloudToDeviceDelivery | undefined> {
    return this.locks.run(deviceId, () =>
      retryOnConflict(async () => {
        const now = this.ctx.now();
        for (const document of await this.queue(deviceId)) {
          const message = document.value;
          if (message.lockToken !== null && message.lockedUntil > now) continue;
          const delivery = await this.deliver(document, now);
          if (delivery) return delivery;
        }
        return undefined;
      }),
    );
  }

  /** Same as {@link receive}: the name the MQTT and AMQP heads use. */
  nextForDelivery(deviceId: string): Promise<CloudToDeviceDelivery | undefined> {
    return this.receive(deviceId);
  }

  /**
   * Redelivers what a previous session of the device received but never settled (a reconnect, MQTT §2.8):
   * every currently locked message is locked again with a new token and `deliveryCount` + 1, in queue order.
   */
  pending(deviceId: string): Promise<CloudToDeviceDelivery[]> {
    return this.locks.run(deviceId, () =>
      retryOnConflict(async () => {
        const now = this.ctx.now();
        const deliveries: CloudToDeviceDelivery[] = [];
        for (const document of await this.queue(deviceId)) {
          if (document.value.lockToken === null || document.value.lockedUntil <= now) continue;
          const delivery = await this.deliver(document, now);
          if (delivery) deliveries.push(delivery);
        }
        return deliveries;
      }),
    );
  }

  /**
   * The device accepted the message: it leaves the queue; `Success` feedback when its ack is positive/full.
   * @throws HubError DeviceMessageLockLost (412002) when the lock token matches no message.
   */
  complete(deviceId: string, lockToken: string): Promise<void> {
    return this.settle(deviceId, lockToken, async (document) => {
      await this.remove(document, FeedbackStatusCodes.Success);
    });
  }

  /**
   * The device refused the message: it is dead-lettered, never redelivered; `Rejected` feedback when its ack is
   * negative/full.
   * @throws HubError DeviceMessageLockLost (412002) when the lock token matches no message.
   */
  reject(deviceId: string, lockToken: string): Promise<void> {
    return this.settle(deviceId, lockToken, async (document) => {
      await this.remove(document, FeedbackStatusCodes.Rejected);
    });
  }

  /**
   * The device gives the message back: it is delivered again (with `deliveryCount` + 1), or dead-lettered with
   * `DeliveryCountExceeded` when it was already delivered `maxDeliveryCount` times.
   * @throws HubError DeviceMessageLockLost (412002) when the lock token matches no message.
   */
  async abandon(deviceId: string, lockToken: string): Promise<void> {
    await this.settle(deviceId, lockToken, async (document) => {
      if (document.value.deliveryCount >= this.ctx.options.cloudToDevice.maxDeliveryCount) {
        await this.remove(document, FeedbackStatusCodes.DeliveryCountExceeded);
        return;
      }
      const released: StoredMessage = { ...document.value, lockToken: null, lockedUntil: 0 };
      await this.ctx.store.documents.put(
        this.ctx.hubName,
        messagesCollection,
        document.key,
        released,
        document.revision,
      );
    });
    this.notify(deviceId);
  }

  /**
   * Deletes every queued message of a device, without feedback (`DELETE /devices/{id}/commands`).
   * @throws HubError DeviceNotFound (404001).
   */
  async purge(deviceId: string): Promise<PurgeResult> {
    await this.devices.getDevice(deviceId);
    const totalMessagesPurged = await this.purgeQueue(deviceId);
    return { totalMessagesPurged, deviceId, moduleId: null };
  }

  private purgeQueue(deviceId: string): Promise<number> {
    return this.locks.run(deviceId, () =>
      this.ctx.store.documents.deletePrefix(this.ctx.hubName, messagesCollection, queuePrefix(deviceId)),
    );
  }

  /**
   * Forgets a deleted device: its queue, its sequence counter and its pending feedback (§3.3: "Pending feedback
   * dropped when the device is deleted"). The registry calls this after deleting the identity.
   */
  async forgetDevice(deviceId: string): Promise<void> {
    await this.purgeQueue(deviceId);
    await this.ctx.store.documents.delete(this.ctx.hubName, queuesCollection, encodeId(deviceId));
    await this.locks.run('#feedback', async () => {
      for await (const document of scanDocuments<StoredFeedback>(this.ctx, feedbackCollection)) {
        if (document.value.record.deviceId !== deviceId) continue;
        await this.ctx.store.documents.delete(this.ctx.hubName, feedbackCollection, document.key).catch(ignoreConflict);
      }
    });
  }

  /**
   * Locks up to 64 waiting feedback records under one lock token (Azure's HTTP feedback receive and the AMQP
   * feedback link, §3.3), or `undefined` when none waits.
   */
  receiveFeedback(options: { maxRecords?: number; lockDurationMs?: number } = {}): Promise<FeedbackBatch | undefined> {
    const maxRecords = Math.min(Math.max(Math.trunc(options.maxRecords ?? maxFeedbackBatch), 1), maxFeedbackBatch);
    const lockDuration = options.lockDurationMs ?? this.lockDurationMs;
    return this.locks.run('#feedback', () =>
      retryOnConflict(async () => {
        const now = this.ctx.now();
        const chosen: StoredDocument<StoredFeedback>[] = [];
        for await (const document of scanDocuments<StoredFeedback>(this.ctx, feedbackCollection)) {
          const feedback = document.value;
          if (feedback.expiryTime <= now) {
            await this.ctx.store.documents
              .delete(this.ctx.hubName, feedbackCollection, document.key, document.revision)
              .catch(ignoreConflict);
            continue;
          }
          if (feedback.lockToken !== null && feedback.lockedUntil > now) continue;
          chosen.push(document);
          if (chosen.length >= maxRecords) break;
        }
        if (chosen.length === 0) return undefined;
        const lockToken = randomUUID();
        const lockedUntil = now + lockDuration;
        const writes: DocumentWrite[] = chosen.map((document) => ({
          op: 'put',
          collection: feedbackCollection,
          key: document.key,
          value: { ...document.value, lockToken, lockedUntil } satisfies StoredFeedback,
          expectedRevision: document.revision,
        }));
        writes.push({
          op: 'put',
          collection: feedbackLocksCollection,
          key: lockToken,
          value: { keys: chosen.map((document) => document.key), lockedUntil } satisfies StoredFeedbackLock,
          expectedRevision: 0,
        });
        await this.ctx.store.documents.batch(this.ctx.hubName, writes);
        return { lockToken, lockedUntil, records: chosen.map((document) => document.value.record) };
      }),
    );
  }

  /**
   * Deletes the feedback records of a received batch.
   * @throws HubError DeviceMessageLockLost (412002) for an unknown lock token.
   */
  completeFeedback(lockToken: string): Promise<void> {
    return this.settleFeedback(lockToken, (document) => ({
      op: 'delete',
      collection: feedbackCollection,
      key: document.key,
      expectedRevision: document.revision,
    }));
  }

  /**
   * Returns the records of a received batch to the queue; a record abandoned `maxDeliveryCount` times is dropped.
   * @throws HubError DeviceMessageLockLost (412002) for an unknown lock token.
   */
  async abandonFeedback(lockToken: string): Promise<void> {
    await this.settleFeedback(lockToken, (document) => {
      const deliveryCount = document.value.deliveryCount + 1;
      if (deliveryCount >= this.ctx.options.cloudToDevice.maxDeliveryCount) {
        return { op: 'delete', collection: feedbackCollection, key: document.key, expectedRevision: document.revision };
      }
      return {
        op: 'put',
        collection: feedbackCollection,
        key: document.key,
        value: { ...document.value, deliveryCount, lockToken: null, lockedUntil: 0 } satisfies StoredFeedback,
        expectedRevision: document.revision,
      };
    });
    this.notifyFeedback();
  }

  /**
   * Dead-letters expired messages of every queue (with `Expired` feedback) and drops expired feedback and stale
   * feedback locks. Runs periodically; callable directly (tests, shutdown).
   */
  async sweep(): Promise<void> {
    const now = this.ctx.now();
    const expiredDevices = new Set<string>();
    for await (const document of scanDocuments<StoredMessage>(this.ctx, messagesCollection)) {
      const message = document.value;
      if (message.expiryTime <= now && !(message.lockToken !== null && message.lockedUntil > now)) {
        expiredDevices.add(message.deviceId);
      }
    }
    for (const deviceId of expiredDevices) await this.expireQueue(deviceId);
    await this.locks.run('#feedback', async () => {
      for await (const document of scanDocuments<StoredFeedback>(this.ctx, feedbackCollection)) {
        if (document.value.expiryTime > now) continue;
        await this.ctx.store.documents
          .delete(this.ctx.hubName, feedbackCollection, document.key, document.revision)
          .catch(ignoreConflict);
      }
      const staleBefore = now - this.ctx.options.cloudToDevice.feedbackTtlMs;
      for await (const document of scanDocuments<StoredFeedbackLock>(this.ctx, feedbackLocksCollection)) {
        if (document.value.lockedUntil > staleBefore) continue;
        await this.ctx.store.documents
          .delete(this.ctx.hubName, feedbackLocksCollection, document.key, document.revision)
          .catch(ignoreConflict);
      }
    });
  }

  /** Stops the sweep timer. Idempotent. */
  stop(): void {
    clearInterval(this.sweepTimer);
  }

  private notify(deviceId: string): void {
    this.ctx.bus.publish(this.ctx.hubName, cloudToDeviceSubject(deviceId), {});
  }

  private notifyFeedback(): void {
    this.ctx.bus.publish(this.ctx.hubName, cloudToDeviceFeedbackSubject, {});
  }

  private async queue(deviceId: string): Promise<StoredDocument<StoredMessage>[]> {
    return this.ctx.store.documents.list<StoredMessage>(this.ctx.hubName, messagesCollection, {
      prefix: queuePrefix(deviceId),
    });
  }

  /** Locks one message for delivery, or dead-letters it when expired or delivered too often. */
  private async deliver(
    document: StoredDocument<StoredMessage>,
    now: number,
  ): Promise<CloudToDeviceDelivery | undefined> {
    const message = document.value;
    if (message.expiryTime <= now) {
      await this.remove(document, FeedbackStatusCodes.Expired);
      return undefined;
    }
    if (message.deliveryCount >= this.ctx.options.cloudToDevice.maxDeliveryCount) {
      await this.remove(document, FeedbackStatusCodes.DeliveryCountExceeded);
      return undefined;
    }
    const locked: StoredMessage = {
      ...message,
      deliveryCount: message.deliveryCount + 1,
      lockToken: randomUUID(),
      lockedUntil: now + this.lockDurationMs,
    };
    await this.ctx.store.documents.put(this.ctx.hubName, messagesCollection, document.key, locked, document.revision);
    return {
      message: toMessage(locked),
      lockToken: locked.lockToken!,
      deliveryCount: locked.deliveryCount,
      lockedUntil: locked.lockedUntil,
    };
  }

  private async settle(
    deviceId: string,
    lockToken: string,
    action: (document: StoredDocument<StoredMessage>) => Promise<void>,
  ): Promise<void> {
    await this.locks.run(deviceId, () =>
      retryOnConflict(async () => {
        const document = (await this.queue(deviceId)).find((candidate) => candidate.value.lockToken === lockToken);
        if (!document) {
          throw new HubError(
            'DeviceMessageLockLost',
            `No cloud-to-device message of device ${deviceId} is locked with token ${lockToken}`,
          );
        }
        await action(document);
      }),
    );
  }

  /** Removes a message from its queue and, atomically, writes the feedback its ack asks for. */
  private async remove(document: StoredDocument<StoredMessage>, statusCode: FeedbackStatusCode): Promise<void> {
    const writes: DocumentWrite[] = [
      { op: 'delete', collection: messagesCollection, key: document.key, expectedRevision: document.revision },
    ];
    if (wantsFeedback(document.value.ack, statusCode)) {
      const now = this.ctx.now();
      const message = document.value;
      const feedback: StoredFeedback = {
        record: {
          originalMessageId: message.messageId,
          deviceGenerationId: message.deviceGenerationId,
          deviceId: message.deviceId,
          enqueuedTimeUtc: new Date(now).toISOString(),
          statusCode,
          description: statusCode,
        },
        expiryTime: now + this.ctx.options.cloudToDevice.feedbackTtlMs,
        deliveryCount: 0,
        lockToken: null,
        lockedUntil: 0,
      };
      writes.push({
        op: 'put',
        collection: feedbackCollection,
        // Time, then a per-process counter (order within one ms), then a UUID (unique across processes).
        key: `${String(now).padStart(15, '0')}-${String(this.feedbackCounter++).padStart(12, '0')}-${randomUUID()}`,
        value: feedback,
        expectedRevision: 0,
      });
    }
    await this.ctx.store.documents.batch(this.ctx.hubName, writes);
    if (writes.length > 1) this.notifyFeedback();
  }

  private expireQueue(deviceId: string): Promise<void> {
    return this.locks.run(deviceId, () => this.expireQueueNow(deviceId));
  }

  /** Dead-letters the expired messages of one queue; the caller holds the queue's turn (`locks.run`). */
  private async expireQueueNow(deviceId: string): Promise<void> {
    const now = this.ctx.now();
    for (const document of await this.queue(deviceId)) {
      const message = document.value;
      if (message.expiryTime > now || (message.lockToken !== null && message.lockedUntil > now)) continue;
      await this.remove(document, FeedbackStatusCodes.Expired).catch(ignoreConflict);
    }
  }

  private settleFeedback(
    lockToken: string,
    write: (document: StoredDocument<StoredFeedback>) => DocumentWrite,
  ): Promise<void> {
    return this.locks.run('#feedback', () =>
      retryOnConflict(async () => {
        const { hubName, store } = this.ctx;
        const lock = await store.documents.get<StoredFeedbackLock>(hubName, feedbackLocksCollection, lockToken);
        if (!lock) throw new HubError('DeviceMessageLockLost', `No feedback is locked with token ${lockToken}`);
        const writes: DocumentWrite[] = [];
        for (const key of lock.value.keys) {
          const document = await store.documents.get<StoredFeedback>(hubName, feedbackCollection, key);
          // Records whose lock lapsed and that another receive took belong to that receiver now.
          if (document && document.value.lockToken === lockToken) writes.push(write(document));
        }
        writes.push({
          op: 'delete',
          collection: feedbackLocksCollection,
          key: lockToken,
          expectedRevision: lock.revision,
        });
        await store.documents.batch(hubName, writes);
      }),
    );
  }
}

function wantsFeedback(ack: CloudToDeviceAck, statusCode: FeedbackStatusCode): boolean {
  if (ack === 'full') return true;
  if (ack === 'positive') return statusCode === FeedbackStatusCodes.Success;
  if (ack === 'negative') return statusCode !== FeedbackStatusCodes.Success;
  return false;
}

function toMessage(stored: StoredMessage): CloudToDeviceMessage {
  return {
    deviceId: stored.deviceId,
    messageId: stored.messageId,
    sequenceNumber: stored.sequenceNumber,
    correlationId: stored.correlationId ?? undefined,
    userId: stored.userId ?? undefined,
    contentType: stored.contentType ?? undefined,
    contentEncoding: stored.contentEncoding ?? undefined,
    to: `/devices/${encodeURIComponent(stored.deviceId)}/messages/devicebound`,
    body: new Uint8Array(Buffer.from(stored.body, 'base64')),
    properties: stored.properties,
    ack: stored.ack,
    enqueuedTimeUtc: stored.enqueuedTime,
    expiryTimeUtc: stored.expiryTime,
  };
}

function ignoreConflict(error: unknown): void {
  if (!(error instanceof RevisionConflict)) throw error;
}

/** Re-runs an optimistic operation when another writer (another hub process) changed a document under it. */
async function retryOnConflict<T>(operation: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof RevisionConflict) || attempt >= conflictRetries) throw error;
    }
  }
}
