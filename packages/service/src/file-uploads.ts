/**
 * File-upload notifications (`service.fileUploads.notifications()`) as Azure's service clients read them
 * (protocol-service.md §3.4, §8): a receiver on `/messages/serviceBound/filenotifications`, one JSON record per AMQP
 * message (`deviceId`, `blobUri`, `blobName`, `lastUpdatedTime`, `blobSizeInBytes`, `enqueuedTimeUtc`), settled one
 * by one as azure-iothub's `ServiceReceiver` does: `accepted` = complete, `released` = abandon (the hub delivers it
 * again), `rejected` = dead-letter.
 *
 * Decisions where the reference is silent:
 * - Times are `Date`s (as `TelemetryEvent.enqueuedTime` and `SendResult.enqueuedTimeUtc`); Azure writes them with
 *   seven fractional digits (`...43.7996883Z`), which `Date` reads to the millisecond.
 * - A message that is not such a record is rejected (`amqp:decode-error`, dead-lettered) and skipped, as feedback
 *   batches are: it cannot become valid by being delivered again.
 * - Flow control counts what the consumer has not settled: the reader grants credit so that notifications buffered
 *   plus notifications handed out and not yet settled never exceed `maxUnsettled`. The hub holds the rest.
 */
import { AbortError, ArgumentError, HubError } from '@fieldhub/protocol';
import type { EventContext } from 'rhea-promise';
import type { AmqpClient, ReceiverQueue } from './amqp-client';
import { bodyBytes } from './amqp-message';
import { sleep } from './http-client';
import type { CallOptions } from './options';

/**
 * One file a device uploaded, as the hub reported it. Settle it once with {@link complete} (done with it),
 * {@link abandon} (deliver it again) or {@link reject} (dead-letter it). `JSON.stringify` gives the record with the
 * times in ISO 8601.
 */
export interface FileUploadNotification {
  /** The device that uploaded the file. */
  readonly deviceId: string;
  /** The blob's URL, without a SAS (`https://{account}.blob.core.windows.net/{container}/{deviceId}/{name}`). */
  readonly blobUri: string;
  /** The blob's name in its container: `{deviceId}/{name the device chose}`. */
  readonly blobName: string;
  /** When the blob was last written, as the store says; undefined when the hub did not say. */
  readonly lastUpdatedTime: Date | undefined;
  /** The blob's size in bytes. */
  readonly blobSizeInBytes: number;
  /** When the hub queued the notification. */
  readonly enqueuedTimeUtc: Date;
  /**
   * Done with it: the hub removes it. Resolves once the outcome is sent (AMQP `accepted`; unconfirmed by the hub, as
   * with every AMQP disposition: if the connection drops first, the hub delivers it again).
   * @throws HubError DeviceMessageLockLost (412002) when the link that delivered it is gone (the reader ended, or
   * the connection dropped): the hub delivers it again; ArgumentError when it was already settled otherwise;
   * AbortError when the signal aborted first.
   */
  complete(options?: CallOptions): Promise<void>;
  /**
   * Hands it back: the hub delivers it again (AMQP `released`; the hub counts the delivery).
   * @throws as {@link complete}.
   */
  abandon(options?: CallOptions): Promise<void>;
  /**
   * Dead-letters it: the hub will not deliver it again (AMQP `rejected`).
   * @throws as {@link complete}.
   */
  reject(options?: CallOptions): Promise<void>;
}

/** Options of `fileUploads.notifications`. */
export interface FileUploadNotificationOptions extends CallOptions {
  /**
   * At most this many notifications are received and not yet settled: buffered in the reader plus handed out to
   * you unsettled. When that many are out, the hub keeps the next ones until you settle one. 1 to 1000, default 16.
   */
  maxUnsettled?: number;
}

/** How a notification was settled. */
type Outcome = 'complete' | 'abandon' | 'reject';

/** One attached link: what it handed out and whether it can still settle. */
interface LinkState {
  readonly queue: ReceiverQueue;
  /** Handed out to the consumer, not yet settled, with the delivery each settles. */
  readonly unsettled: Map<Notification, EventContext>;
  ended: boolean;
}

const address = '/messages/serviceBound/filenotifications';
const defaultMaxUnsettled = 16;
// Reattaching after the link dropped: doubling from 100 ms to 5 s; give up after 8 failures in a row.
const minBackoffMs = 100;
const maxBackoffMs = 5000;
const maxFailedAttempts = 8;

/** File upload, service side. */
export class FileUploads {
  /** @internal */
  constructor(private readonly amqp: AmqpClient) {}

  /**
   * Reads file-upload notifications as the hub produces them, until the signal aborts (the iterator then throws
   * AbortError) or the client closes (it then ends).
   *
   * At least once: settle every notification ({@link FileUploadNotification.complete}, `abandon`, `reject`),
   * before you leave the loop. Notifications the reader still holds when it ends (break, throw, abort, close), and
   * those you took but did not settle, are released: the hub delivers them again (so make handling idempotent, by
   * `blobName` + `lastUpdatedTime`). Settling after the reader ended rejects with DeviceMessageLockLost.
   *
   * Bounded: at most `maxUnsettled` notifications are received and unsettled at once (overflow stays in the hub; a
   * consumer that never settles stops receiving). When the link drops, it is reattached with a backoff;
   * notifications taken from the old link can no longer be settled and come again.
   * @throws ArgumentError for a bad `maxUnsettled`; HubError from the hub (AuthenticationError for refused
   * credentials or a policy without ServiceConnect); ConnectionError after 8 failed reattaches in a row; AbortError
   * when the signal aborts.
   */
  async *notifications(
    options: FileUploadNotificationOptions = {},
  ): AsyncGenerator<FileUploadNotification, void, undefined> {
    const { signal, maxUnsettled = defaultMaxUnsettled } = options;
    if (!Number.isInteger(maxUnsettled) || maxUnsettled < 1 || maxUnsettled > 1000) {
      throw new ArgumentError('maxUnsettled must be an integer from 1 to 1000', { field: 'maxUnsettled' });
    }
    const closed = this.amqp.settings.closedSignal;
    const stop = signal ? AbortSignal.any([signal, closed]) : closed;
    let failures = 0;
    let backoff = minBackoffMs;
    while (!closed.aborted) {
      let queue: ReceiverQueue;
      try {
        queue = await this.amqp.hub.receiver({ source: { address } }, {}, signal);
      } catch (error) {
        if (closed.aborted && !signal?.aborted) return;
        if (!retryable(error) || ++failures >= maxFailedAttempts) throw error;
        await this.backoff(backoff, stop, signal);
        backoff = Math.min(backoff * 2, maxBackoffMs);
        continue;
      }
      const link: LinkState = { queue, unsettled: new Map(), ended: false };
      const replenish = () => {
        if (link.ended || !queue.receiver.isOpen()) return;
        const outstanding = queue.receiver.credit + queue.buffered + link.unsettled.size;
        if (outstanding < maxUnsettled) queue.receiver.addCredit(maxUnsettled - outstanding);
      };
      try {
        for (;;) {
          replenish();
          let context: EventContext;
          try {
            context = await queue.next(stop);
          } catch (error) {
            if (closed.aborted && !signal?.aborted) return;
            if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
            if (!retryable(error) || ++failures >= maxFailedAttempts) throw error;
            break;
          }
          failures = 0;
          backoff = minBackoffMs;
          const record = parseFileNotification(context.message?.body);
          if (typeof record === 'string') {
            context.delivery?.reject({ condition: 'amqp:decode-error', description: record });
            continue;
          }
          const notification = new Notification(record, (settled, outcome, callOptions) => {
            if (callOptions?.signal?.aborted) throw new AbortError(undefined, { cause: callOptions.signal.reason });
            if (link.ended || !queue.receiver.isOpen() || !link.unsettled.has(settled)) {
              throw new HubError(
                'DeviceMessageLockLost',
                'The link that delivered this file-upload notification is gone; the hub delivers it again',
              );
            }
            link.unsettled.delete(settled);
            settle(context, outcome);
            replenish();
          });
          link.unsettled.set(notification, context);
          yield notification;
        }
      } finally {
        link.ended = true;
        // Hand back what the consumer did not settle and what is still buffered, then detach.
        const open = queue.receiver.isOpen();
        for (const context of link.unsettled.values()) if (open) context.delivery?.release();
        link.unsettled.clear();
        while (queue.buffered > 0) {
          const context = queue.take();
          if (open) context?.delivery?.release();
        }
        await queue.close();
      }
      await this.backoff(backoff, stop, signal);
      backoff = Math.min(backoff * 2, maxBackoffMs);
    }
  }

  private async backoff(ms: number, stop: AbortSignal, signal: AbortSignal | undefined): Promise<void> {
    try {
      await sleep(ms, stop);
    } catch (error) {
      if (signal?.aborted) throw error;
      // The client closed: the loop sees it and ends.
    }
  }
}

/** The fields of a notification, parsed. */
export type FileNotificationRecord = Pick<
  FileUploadNotification,
  'deviceId' | 'blobUri' | 'blobName' | 'lastUpdatedTime' | 'blobSizeInBytes' | 'enqueuedTimeUtc'
>;

type Settle = (notification: Notification, outcome: Outcome, options: CallOptions | undefined) => void;

/** A notification handed out; settles through the link that delivered it. */
class Notification implements FileUploadNotification {
  readonly deviceId: string;
  readonly blobUri: string;
  readonly blobName: string;
  readonly lastUpdatedTime: Date | undefined;
  readonly blobSizeInBytes: number;
  readonly enqueuedTimeUtc: Date;
  // Private fields stay out of JSON.stringify and of the consumer's way.
  readonly #settle: Settle;
  #outcome: Outcome | undefined;

  constructor(record: FileNotificationRecord, settle: Settle) {
    this.deviceId = record.deviceId;
    this.blobUri = record.blobUri;
    this.blobName = record.blobName;
    this.lastUpdatedTime = record.lastUpdatedTime;
    this.blobSizeInBytes = record.blobSizeInBytes;
    this.enqueuedTimeUtc = record.enqueuedTimeUtc;
    this.#settle = settle;
  }

  complete(options?: CallOptions): Promise<void> {
    return this.#finish('complete', options);
  }

  abandon(options?: CallOptions): Promise<void> {
    return this.#finish('abandon', options);
  }

  reject(options?: CallOptions): Promise<void> {
    return this.#finish('reject', options);
  }

  async #finish(outcome: Outcome, options: CallOptions | undefined): Promise<void> {
    if (this.#outcome !== undefined) {
      // Settling twice the same way is harmless (a retry); another outcome cannot take effect any more.
      if (this.#outcome === outcome) return;
      throw new ArgumentError(`The notification is already settled (${this.#outcome}); it cannot ${outcome} now`, {
        field: 'outcome',
      });
    }
    this.#settle(this, outcome, options);
    this.#outcome = outcome;
  }
}

function settle(context: EventContext, outcome: Outcome): void {
  const delivery = context.delivery;
  if (!delivery) return;
  if (outcome === 'complete') delivery.accept();
  else if (outcome === 'abandon') delivery.release();
  // Without an error, as azure-iot-amqp-base rejects.
  else delivery.reject();
}

function retryable(error: unknown): boolean {
  return HubError.is(error) && error.isRetryable && !(error instanceof AbortError);
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The record of one notification message (a JSON object, §8), or why it is not one. `lastUpdatedTime` may be
 * absent or null (Azure's .NET client types it nullable); every other field is required.
 */
export function parseFileNotification(body: unknown): FileNotificationRecord | string {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bodyBytes(body)));
  } catch {
    return 'A file-upload notification must be a JSON object';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'A file-upload notification must be a JSON object';
  }
  const record = value as Record<string, unknown>;
  for (const field of ['deviceId', 'blobUri', 'blobName'] as const) {
    if (typeof record[field] !== 'string' || record[field] === '') {
      return `A file-upload notification needs ${field} as a non-empty string`;
    }
  }
  const size = record.blobSizeInBytes;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    return 'A file-upload notification needs blobSizeInBytes as a non-negative integer';
  }
  const enqueuedTimeUtc = dateOf(record.enqueuedTimeUtc);
  if (!enqueuedTimeUtc) return 'A file-upload notification needs enqueuedTimeUtc as an ISO 8601 time';
  let lastUpdatedTime: Date | undefined;
  if (record.lastUpdatedTime !== undefined && record.lastUpdatedTime !== null) {
    lastUpdatedTime = dateOf(record.lastUpdatedTime);
    if (!lastUpdatedTime) return 'The lastUpdatedTime of a file-upload notification must be an ISO 8601 time';
  }
  return {
    deviceId: record.deviceId as string,
    blobUri: record.blobUri as string,
    blobName: record.blobName as string,
    lastUpdatedTime,
    blobSizeInBytes: size,
    enqueuedTimeUtc,
  };
}

function dateOf(value: unknown): Date | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
