/**
 * Cloud-to-device messages (`service.cloudToDevice`): send through the hub's extension
 * `POST /fieldhub/devices/{id}/messages/devicebound` (docs/rest-extensions.md), read delivery feedback with Azure's
 * `GET /messages/serviceBound/feedback` (protocol-service.md §2.3), purge a device's queue.
 */
import { ArgumentError } from '@fieldhub/protocol';
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
  /** A UUID is made by the hub when absent. */
  messageId?: string;
  correlationId?: string;
  contentType?: string;
  contentEncoding?: string;
  /**
   * Application properties. They travel as HTTP headers (`iothub-app-<name>`), so names must be HTTP tokens and
   * arrive lower-cased; values are percent-encoded on the way.
   */
  properties?: Record<string, string>;
  /** Absolute expiry; the hub's default is one hour from now. */
  expiryTimeUtc?: Date | string | number;
  userId?: string;
}

/** Options of `send`. */
export interface SendOptions extends CallOptions {
  /** Feedback wanted: `none` (default), `positive`, `negative` or `full`. */
  ack?: CloudToDeviceAck;
}

/** The hub's answer to a send. */
export interface SendResult {
  messageId: string;
  /** Position in the device's queue. */
  sequenceNumber: number;
  enqueuedTimeUtc: Date;
  expiryTimeUtc: Date;
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
  /** First wait after an empty poll, doubling up to `maxPollIntervalMs`. Default 250. */
  pollIntervalMs?: number;
  /** Longest wait between polls while none waits. Default 5000. */
  maxPollIntervalMs?: number;
}

/** The answer of `purge`. */
export interface PurgeResult {
  totalMessagesPurged: number;
  deviceId: string;
  moduleId: string | null;
}

const tokenPattern = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Cloud-to-device messaging. */
export class CloudToDevice {
  /** @internal */
  constructor(private readonly http: HttpClient) {}

  /**
   * Queues a message for a device.
   * @throws HubError DeviceNotFound (404001); DeviceMaximumQueueDepthExceeded (403004) with 50 queued;
   * MessageTooLarge (413001) over 64 KB; ArgumentError for a bad property name, ack or expiry.
   */
  async send(deviceId: string, message: CloudToDeviceMessage, options: SendOptions = {}): Promise<SendResult> {
    if (typeof message !== 'object' || message === null || !('body' in message)) {
      throw new ArgumentError('message must be an object with a body', { field: 'message' });
    }
    const { body, json } = encodeBody(message.body);
    const headers: Record<string, string> = {};
    const set = (name: string, value: string | undefined) => {
      if (value !== undefined) headers[name] = value;
    };
    set('iothub-messageid', message.messageId);
    set('iothub-correlationid', message.correlationId);
    set('iothub-userid', message.userId);
    set('iothub-contenttype', message.contentType ?? (json ? 'application/json' : undefined));
    set('iothub-contentencoding', message.contentEncoding ?? (json ? 'utf-8' : undefined));
    if (options.ack !== undefined) {
      if (!['none', 'positive', 'negative', 'full'].includes(options.ack)) {
        throw new ArgumentError(`ack must be none, positive, negative or full, not '${options.ack}'`, { field: 'ack' });
      }
      headers['iothub-ack'] = options.ack;
    }
    if (message.expiryTimeUtc !== undefined) {
      const expiry = new Date(message.expiryTimeUtc);
      if (Number.isNaN(expiry.getTime())) {
        throw new ArgumentError('expiryTimeUtc is not a valid time', { field: 'expiryTimeUtc' });
      }
      headers['iothub-expiry'] = expiry.toISOString();
    }
    for (const [name, value] of Object.entries(message.properties ?? {})) {
      if (!tokenPattern.test(name)) {
        throw new ArgumentError(`property name '${name}' is not an HTTP token`, { field: `properties.${name}` });
      }
      if (typeof value !== 'string') {
        throw new ArgumentError(`property '${name}' must be a string`, { field: `properties.${name}` });
      }
      headers[`iothub-app-${name.toLowerCase()}`] = encodeURIComponent(value);
    }
    const { value } = await this.http.json<{
      messageId: string;
      sequenceNumber: number;
      enqueuedTimeUtc: string;
      expiryTimeUtc: string;
    }>({
      method: 'POST',
      path: `/fieldhub/devices/${segment(deviceId)}/messages/devicebound`,
      azure: false,
      headers,
      body,
      signal: options.signal,
    });
    return {
      messageId: value.messageId,
      sequenceNumber: value.sequenceNumber,
      enqueuedTimeUtc: new Date(value.enqueuedTimeUtc),
      expiryTimeUtc: new Date(value.expiryTimeUtc),
    };
  }

  /**
   * Reads feedback records as they come, until the signal aborts (the iterator then throws AbortError) or the
   * client closes (it then ends).
   *
   * At-least-once: records arrive in batches under a lock; a batch is completed (removed from the hub) only when
   * the consumer asks for the record after the batch's last one, i.e. after it processed them all. If iteration
   * stops midway (break, throw, abort), the batch is abandoned and the hub delivers it again, so a record may be
   * seen twice: make handling idempotent (by `originalMessageId` + `statusCode`). While none waits, the hub is polled
   * with a backoff from `pollIntervalMs` to `maxPollIntervalMs`.
   * @throws HubError from the hub (e.g. AuthenticationError); AbortError when the signal aborts.
   */
  async *feedback(options: FeedbackOptions = {}): AsyncGenerator<FeedbackRecord, void, undefined> {
    const minWait = options.pollIntervalMs ?? 250;
    const maxWait = Math.max(options.maxPollIntervalMs ?? 5000, minWait);
    const signal = options.signal;
    const waitSignal = signal ? AbortSignal.any([signal, this.http.closedSignal]) : this.http.closedSignal;
    let wait = minWait;
    while (!this.http.closed) {
      let response: Awaited<ReturnType<HttpClient['json']>>;
      try {
        response = await this.http.json<FeedbackRecord[] | undefined>({
          method: 'GET',
          path: '/messages/serviceBound/feedback',
          signal,
        });
      } catch (error) {
        if (this.http.closed && !signal?.aborted) return;
        throw error;
      }
      const records = response.value as FeedbackRecord[] | undefined;
      const lockToken = etagOf(response.headers.etag);
      if (response.status === 204 || !Array.isArray(records) || records.length === 0 || lockToken === undefined) {
        try {
          await sleep(wait, waitSignal);
        } catch (error) {
          if (this.http.closed && !signal?.aborted) return;
          throw error;
        }
        wait = Math.min(wait * 2, maxWait);
        continue;
      }
      wait = minWait;
      let settled = false;
      try {
        yield* records;
        // The consumer asked for more after the last record: it handled the whole batch.
        await this.http.request({
          method: 'DELETE',
          path: `/messages/serviceBound/feedback/${encodeURIComponent(lockToken)}`,
          signal,
        });
        settled = true;
      } finally {
        if (!settled) {
          // Stopped midway (or the completion failed): hand the batch back for redelivery; best effort.
          await this.http
            .request({
              method: 'POST',
              path: `/messages/serviceBound/feedback/${encodeURIComponent(lockToken)}/abandon`,
            })
            .catch(() => undefined);
        }
      }
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
}

function etagOf(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text === '') return undefined;
  return text.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
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
