/**
 * Cloud-to-device messages (`service.cloudToDevice`) as Azure's service clients do them (protocol-service.md §3.2,
 * §3.3): send on one AMQP sender link to `/messages/devicebound` (the device in the `to` address), read delivery
 * feedback from a receiver on `/messages/serviceBound/feedback` (one message = one batch of records; accept =
 * complete, release = abandon, reject = dead-letter), and purge a device's queue over REST
 * (`DELETE /devices/{id}/commands`).
 */
import { randomUUID } from 'node:crypto';
import { AbortError, ArgumentError, HubError } from '@fieldhub/protocol';
import type { Message } from 'rhea-promise';
import { type AmqpClient, type ReceiverQueue, sendWithCredit } from './amqp-client';
import { bodyBytes, dataSection, messageIdValue } from './amqp-message';
import { type HttpClient, segment, sleep } from './http-client';
import type { CallOptions } from './options';

/** Which delivery outcomes produce a feedback record. */
export type CloudToDeviceAck = 'none' | 'positive' | 'negative' | 'full';

/** A message to send to a device. */
export interface CloudToDeviceMessage {
  /**
   * The body: bytes as is, a string as UTF-8, anything else as JSON (then `contentType` defaults to
   * `application/json` and `contentEncoding` to `utf-8`).
   */
  body: Uint8Array | string | object | number | boolean | null;
  /**
   * The message id (feedback records name it as `originalMessageId`). A UUID is made when absent. UUID-shaped ids
   * travel as AMQP `uuid`, others as strings, as azure-iothub sends them.
   */
  messageId?: string;
  /** Same encoding rule as `messageId`. */
  correlationId?: string;
  contentType?: string;
  contentEncoding?: string;
  /** Application properties (AMQP application properties: names arrive as written, case kept). */
  properties?: Record<string, string>;
  /** Absolute expiry; the hub's default (one hour) when absent. */
  expiryTimeUtc?: Date | string | number;
  /** The AMQP `user_id` (UTF-8). */
  userId?: string;
}

/** Options of `send`. */
export interface SendOptions extends CallOptions {
  /** Feedback wanted: `none` (default), `positive`, `negative` or `full`. */
  ack?: CloudToDeviceAck;
}

/**
 * What a send tells: the hub accepted (queued) the message. An AMQP `accepted` outcome carries nothing else, so
 * there is no queue sequence number (the HTTPS extension the SDK used before 0.2 returned one).
 */
export interface SendResult {
  /** The message id: the caller's, or the UUID the SDK made. */
  messageId: string;
  /** When the hub accepted the message, by this machine's clock. */
  enqueuedTimeUtc: Date;
  /** The expiry sent with the message; undefined when the hub's default TTL applies. */
  expiryTimeUtc: Date | undefined;
}

/** Azure's feedback record: what happened to a message sent with `ack`. */
export interface FeedbackRecord {
  originalMessageId: string;
  deviceId: string;
  deviceGenerationId: string;
  /** When the outcome happened (ISO 8601). */
  enqueuedTimeUtc: string;
  statusCode: 'Success' | 'Expired' | 'DeliveryCountExceeded' | 'Rejected' | 'Purged';
  description: string;
}

/** Options of `feedback`. */
export interface FeedbackOptions extends CallOptions {
  /**
   * @deprecated Ignored since 0.2: feedback arrives on an AMQP link as the hub produces it, nothing is polled.
   */
  pollIntervalMs?: number;
  /** @deprecated Ignored since 0.2 (see `pollIntervalMs`). */
  maxPollIntervalMs?: number;
}

/** The answer of `purge`. */
export interface PurgeResult {
  totalMessagesPurged: number;
  deviceId: string;
  moduleId: string | null;
}

const devicebound = '/messages/devicebound';
const feedbackAddress = '/messages/serviceBound/feedback';
const acks: readonly string[] = ['none', 'positive', 'negative', 'full'];
// Reattaching the feedback link after it dropped: doubling from 100 ms to 5 s; give up after 8 failures in a row.
const minBackoffMs = 100;
const maxBackoffMs = 5000;
const maxFailedAttempts = 8;

/** Cloud-to-device messaging. */
export class CloudToDevice {
  /** @internal */
  constructor(
    private readonly http: HttpClient,
    private readonly amqp: AmqpClient,
  ) {}

  /**
   * Queues a message for a device: resolves once the hub accepted it.
   * @throws HubError DeviceNotFound (404001); DeviceMaximumQueueDepthExceeded (403004) with 50 queued;
   * MessageTooLarge (413001) over 64 KB; ThrottledError; AuthenticationError (a policy without ServiceConnect);
   * ArgumentError for a bad id, property, ack or expiry; ConnectionError when the hub cannot be reached over AMQP;
   * AbortError.
   */
  async send(deviceId: string, message: CloudToDeviceMessage, options: SendOptions = {}): Promise<SendResult> {
    const to = `/devices/${segment(deviceId)}/messages/devicebound`;
    if (typeof message !== 'object' || message === null || !('body' in message)) {
      throw new ArgumentError('message must be an object with a body', { field: 'message' });
    }
    const { body, json } = encodeBody(message.body);
    const applicationProperties: Record<string, string> = {};
    for (const [name, value] of Object.entries(message.properties ?? {})) {
      if (name === '') throw new ArgumentError('a property name must not be empty', { field: 'properties' });
      if (typeof value !== 'string') {
        throw new ArgumentError(`property '${name}' must be a string`, { field: `properties.${name}` });
      }
      applicationProperties[name] = value;
    }
    if (options.ack !== undefined) {
      if (!acks.includes(options.ack)) {
        throw new ArgumentError(`ack must be none, positive, negative or full, not '${options.ack}'`, { field: 'ack' });
      }
      applicationProperties['iothub-ack'] = options.ack;
    }
    let expiry: Date | undefined;
    if (message.expiryTimeUtc !== undefined) {
      expiry = new Date(message.expiryTimeUtc);
      if (Number.isNaN(expiry.getTime())) {
        throw new ArgumentError('expiryTimeUtc is not a valid time', { field: 'expiryTimeUtc' });
      }
    }
    const messageId = message.messageId ?? randomUUID();
    if (typeof messageId !== 'string' || messageId === '') {
      throw new ArgumentError('messageId must be a non-empty string', { field: 'messageId' });
    }
    const contentType = message.contentType ?? (json ? 'application/json' : undefined);
    const contentEncoding = message.contentEncoding ?? (json ? 'utf-8' : undefined);
    const amqpMessage: Message = {
      to,
      message_id: messageIdValue(messageId),
      body: dataSection(body),
      application_properties: applicationProperties,
    };
    if (message.correlationId !== undefined) amqpMessage.correlation_id = messageIdValue(message.correlationId);
    if (contentType !== undefined) amqpMessage.content_type = contentType;
    if (contentEncoding !== undefined) amqpMessage.content_encoding = contentEncoding;
    if (expiry !== undefined) amqpMessage.absolute_expiry_time = expiry;
    if (message.userId !== undefined) amqpMessage.user_id = Buffer.from(message.userId, 'utf8') as unknown as string;

    const sender = await this.amqp.hub.sender(devicebound, options.signal);
    const limit = sender.maxMessageSize;
    if (limit > 0 && body.byteLength > limit) {
      throw HubError.fromCode('MessageTooLarge', `The message body exceeds the link's limit of ${limit} bytes`);
    }
    await sendWithCredit(sender, amqpMessage, options.signal, this.amqp.settings, {
      notFound: 'DeviceNotFound',
      resourceLimit: 'DeviceMaximumQueueDepthExceeded',
    });
    return { messageId, enqueuedTimeUtc: new Date(), expiryTimeUtc: expiry };
  }

  /**
   * Reads feedback records as the hub produces them, until the signal aborts (the iterator then throws AbortError)
   * or the client closes (it then ends).
   *
   * At-least-once: each AMQP message is one batch of records; it is accepted (completed) only when the consumer
   * asks for the record after the batch's last one, i.e. after it processed them all. If iteration stops midway
   * (break, throw, abort), the batch is released (abandoned) and the hub delivers it again, so a record may be seen
   * twice: make handling idempotent (by `originalMessageId` + `statusCode`). A batch that is not a JSON array of
   * records is rejected (dead-lettered) and skipped. When the link drops, it is reattached with a backoff.
   * @throws HubError from the hub (e.g. AuthenticationError); ConnectionError after 8 failed reattaches in a row;
   * AbortError when the signal aborts.
   */
  async *feedback(options: FeedbackOptions = {}): AsyncGenerator<FeedbackRecord, void, undefined> {
    const { signal } = options;
    const closed = this.amqp.settings.closedSignal;
    const stop = signal ? AbortSignal.any([signal, closed]) : closed;
    let failures = 0;
    let backoff = minBackoffMs;
    while (!closed.aborted) {
      let queue: ReceiverQueue;
      try {
        queue = await this.amqp.hub.receiver({ source: { address: feedbackAddress } }, {}, signal);
      } catch (error) {
        if (closed.aborted && !signal?.aborted) return;
        if (!retryable(error) || ++failures >= maxFailedAttempts) throw error;
        await this.backoff(backoff, stop, signal);
        backoff = Math.min(backoff * 2, maxBackoffMs);
        continue;
      }
      try {
        for (;;) {
          // One batch at a time: the next is granted only once this one is settled.
          if (queue.receiver.credit === 0 && queue.buffered === 0) queue.receiver.addCredit(1);
          let context: Awaited<ReturnType<ReceiverQueue['next']>>;
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
          const records = parseFeedback(context.message?.body);
          if (records === undefined) {
            context.delivery?.reject({
              condition: 'amqp:decode-error',
              description: 'A feedback message must be a JSON array of records',
            });
            continue;
          }
          let settled = false;
          try {
            yield* records;
            // The consumer asked for more after the last record: it handled the whole batch.
            context.delivery?.accept();
            settled = true;
          } finally {
            // Stopped midway: hand the batch back for redelivery.
            if (!settled) context.delivery?.release();
          }
        }
      } finally {
        await queue.close();
      }
      await this.backoff(backoff, stop, signal);
      backoff = Math.min(backoff * 2, maxBackoffMs);
    }
  }

  /**
   * Removes every message queued for a device.
   * @throws HubError DeviceNotFound (404001).
   */
  async purge(deviceId: string, options: CallOptions = {}): Promise<PurgeResult> {
    const { value } = await this.http.json<PurgeResult>({
      method: 'DELETE',
      path: `/devices/${segment(deviceId)}/commands`,
      signal: options.signal,
    });
    return value;
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

function retryable(error: unknown): boolean {
  return HubError.is(error) && error.isRetryable && !(error instanceof AbortError);
}

const decoder = new TextDecoder('utf-8');

/** The records of one feedback message (a JSON array), or undefined when it is not one. */
export function parseFeedback(body: unknown): FeedbackRecord[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bodyBytes(body)));
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  return value.filter((record): record is FeedbackRecord => typeof record === 'object' && record !== null);
}

const encoder = new TextEncoder();

function encodeBody(body: CloudToDeviceMessage['body']): { body: Uint8Array; json: boolean } {
  if (body instanceof Uint8Array) return { body, json: false };
  if (typeof body === 'string') return { body: encoder.encode(body), json: false };
  if (body instanceof ArrayBuffer) return { body: new Uint8Array(body), json: false };
  const text = JSON.stringify(body);
  if (text === undefined) throw new ArgumentError('the body cannot be serialised as JSON', { field: 'body' });
  return { body: encoder.encode(text), json: true };
}
