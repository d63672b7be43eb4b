/**
 * Reading the built-in endpoint (`service.telemetry.read`) over the hub's server-sent-events extension
 * `GET /fieldhub/events` (docs/rest-extensions.md), until the AMQP head serves Event Hubs clients.
 */
import { AbortError, ArgumentError, ConnectionError, HubError } from '@fieldhub/protocol';
import { type HttpClient, sleep } from './http-client';
import { SseParser } from './sse-parser';

/**
 * Where reading starts: the oldest retained event, only events enqueued from now on, after a sequence number
 * (exclusive, as Event Hubs; per partition), or after an enqueued time.
 */
export type EventPosition =
  | 'earliest'
  | 'latest'
  | { sequenceNumber: number }
  | { enqueuedTime: Date | string | number };

/** Options of `telemetry.read`. */
export interface ReadTelemetryOptions {
  /** Default `$Default`. */
  consumerGroup?: string;
  /** Default `latest`. */
  from?: EventPosition;
  /** One partition; all partitions, merged by enqueued time, when absent. */
  partition?: number;
  /** `true` (default): follow new events until aborted; `false`: end once caught up. */
  live?: boolean;
  /** Reconnect (with backoff) from the last event seen when the stream drops. Default true. */
  reconnect?: boolean;
  /** Ends the iteration with an AbortError. */
  signal?: AbortSignal;
}

/** One event of the built-in endpoint: telemetry, or a hub event (lifecycle, twin change, connection state). */
export interface TelemetryEvent {
  readonly deviceId: string | undefined;
  readonly moduleId: string | undefined;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly userId: string | undefined;
  readonly contentType: string | undefined;
  readonly contentEncoding: string | undefined;
  /** Application properties. */
  readonly properties: Readonly<Record<string, string>>;
  /** System properties and annotations (`iothub-connection-device-id`, `iothub-message-source`, ...). */
  readonly systemProperties: Readonly<Record<string, unknown>>;
  /** The body bytes. */
  readonly body: Uint8Array;
  /** The body as text when the hub sent it as UTF-8 (JSON, `text/*`, or `contentEncoding` UTF-8); else undefined. */
  readonly bodyText: string | undefined;
  readonly enqueuedTime: Date;
  readonly sequenceNumber: number;
  /** Event Hubs offset (Fieldhub: the decimal sequence number). */
  readonly offset: string;
  readonly partition: number;
}

// Reconnect backoff: doubling from 100 ms to 5 s; give up after this many failed attempts in a row.
const minBackoffMs = 100;
const maxBackoffMs = 5000;
const maxFailedAttempts = 8;
// The hub sends a keep-alive comment every 15 s: four missed ones mean the connection is dead.
const idleTimeoutMs = 60_000;

/** The built-in endpoint. */
export class Telemetry {
  /** @internal */
  constructor(private readonly http: HttpClient) {}

  /**
   * Reads events. The iterator is pull-based: the next chunk is read from the socket only when the consumer asks for
   * more, so a slow consumer holds at most one socket buffer (plus one chunk's events), and the hub in turn reads
   * no further ahead (backpressure end to end).
   *
   * When the stream drops, it reconnects after a backoff from the last event seen: `seq:<n>` for one partition;
   * across partitions, from the last enqueued time, dropping events already seen per partition (best effort for
   * events with the very same enqueued time in different partitions).
   * @throws ArgumentError for a bad option; HubError from the hub (e.g. ResourceNotFound for an unknown consumer
   * group, AuthenticationError); ConnectionError once reconnecting failed 8 times in a row; AbortError when the
   * signal aborts. Closing the client ends the iteration quietly.
   */
  async *read(options: ReadTelemetryOptions = {}): AsyncGenerator<TelemetryEvent, void, undefined> {
    const consumerGroup = options.consumerGroup ?? '$Default';
    const live = options.live ?? true;
    const reconnect = options.reconnect ?? true;
    const { partition, signal } = options;
    if (partition !== undefined && (!Number.isInteger(partition) || partition < 0)) {
      throw new ArgumentError('partition must be a non-negative integer', { field: 'partition' });
    }
    let from = formatPosition(options.from ?? 'latest');
    const lastSequence = new Map<number, number>();
    let lastTime: number | undefined;
    let failures = 0;
    let backoff = minBackoffMs;
    const waitSignal = signal ? AbortSignal.any([signal, this.http.closedSignal]) : this.http.closedSignal;

    for (;;) {
      let body: AsyncIterable<Uint8Array> & { destroy(error?: Error): unknown };
      const openedAt = Date.now();
      try {
        const response = await this.http.request({
          method: 'GET',
          path: '/fieldhub/events',
          azure: false,
          query: { consumerGroup, from, partition, live: String(live) },
          headers: { accept: 'text/event-stream' },
          signal,
          bodyTimeoutMs: idleTimeoutMs,
        });
        body = response.body;
      } catch (error) {
        if (this.http.closed && !signal?.aborted) return;
        const hubError = this.http.mapFailure(error, signal);
        // Only a lost connection is worth another try; the hub's refusals (4xx) are final.
        if (!reconnect || !hubError.isRetryable || hubError instanceof AbortError || ++failures >= maxFailedAttempts) {
          throw hubError;
        }
        await this.backoff(backoff, waitSignal, signal);
        backoff = Math.min(backoff * 2, maxBackoffMs);
        continue;
      }

      const parser = new SseParser();
      let ended = false;
      try {
        for await (const chunk of body) {
          for (const message of parser.push(chunk)) {
            const event = toEvent(message.data);
            // After a reconnect across partitions, skip what this reader already yielded.
            const seen = lastSequence.get(event.partition);
            if (seen !== undefined && event.sequenceNumber <= seen) continue;
            lastSequence.set(event.partition, event.sequenceNumber);
            lastTime = event.enqueuedTime.getTime();
            failures = 0;
            backoff = minBackoffMs;
            yield event;
          }
        }
        ended = true;
      } catch (error) {
        if (this.http.closed && !signal?.aborted) return;
        const hubError = this.http.mapFailure(error, signal);
        if (!reconnect || hubError instanceof AbortError || !hubError.isRetryable || ++failures >= maxFailedAttempts) {
          throw hubError;
        }
      } finally {
        // Break, throw or abort by the consumer: release the socket now.
        body.destroy();
      }
      if (ended && !live) return;
      if (this.http.closed) return;
      if (!reconnect) {
        throw new HubError('ServiceUnavailable', 'The event stream ended');
      }
      // Resume from where this reader got to.
      if (partition !== undefined && lastSequence.has(partition)) {
        from = `seq:${lastSequence.get(partition)}`;
      } else if (lastTime !== undefined) {
        from = `time:${new Date(lastTime - 1).toISOString()}`;
      } else if (from === 'latest') {
        from = `time:${new Date(openedAt - 1).toISOString()}`;
      }
      if (!ended || Date.now() - openedAt < 1000) {
        // A stream that ends right after opening counts as a failed attempt, so that it cannot spin forever.
        if (ended && ++failures >= maxFailedAttempts) {
          throw new ConnectionError('The event stream keeps ending right after it opens');
        }
        await this.backoff(backoff, waitSignal, signal);
        backoff = Math.min(backoff * 2, maxBackoffMs);
      }
    }
  }

  private async backoff(ms: number, waitSignal: AbortSignal, signal: AbortSignal | undefined): Promise<void> {
    try {
      await sleep(ms, waitSignal);
    } catch (error) {
      if (signal?.aborted) throw error;
      // The client closed: the loop sees it and ends.
    }
  }
}

/** The `from` query value of the extension. */
export function formatPosition(position: EventPosition): string {
  if (position === 'earliest' || position === 'latest') return position;
  if (typeof position === 'object' && position !== null) {
    if ('sequenceNumber' in position) {
      if (!Number.isSafeInteger(position.sequenceNumber)) {
        throw new ArgumentError('from.sequenceNumber must be an integer', { field: 'from' });
      }
      return `seq:${position.sequenceNumber}`;
    }
    if ('enqueuedTime' in position) {
      const time = new Date(position.enqueuedTime);
      if (Number.isNaN(time.getTime()))
        throw new ArgumentError('from.enqueuedTime is not a valid time', { field: 'from' });
      return `time:${time.toISOString()}`;
    }
  }
  throw new ArgumentError("from must be 'earliest', 'latest', { sequenceNumber } or { enqueuedTime }", {
    field: 'from',
  });
}

interface WireEvent {
  deviceId?: string | null;
  moduleId?: string | null;
  messageId?: string | null;
  correlationId?: string | null;
  userId?: string | null;
  contentType?: string | null;
  contentEncoding?: string | null;
  properties?: Record<string, string> | null;
  systemProperties?: Record<string, unknown> | null;
  body?: string | null;
  bodyEncoding?: 'utf-8' | 'base64';
  enqueuedTime?: string;
  sequenceNumber?: number;
  offset?: string;
  partition?: number;
}

const encoder = new TextEncoder();

/**
 * Converts one `data:` payload of the stream to an event.
 * @throws HubError ServerError when it is not an event.
 */
export function toEvent(data: string): TelemetryEvent {
  let wire: WireEvent;
  try {
    wire = JSON.parse(data) as WireEvent;
  } catch (error) {
    throw new HubError('ServerError', 'The event stream carried an event that is not JSON', { cause: error });
  }
  if (
    typeof wire !== 'object' ||
    wire === null ||
    typeof wire.sequenceNumber !== 'number' ||
    typeof wire.partition !== 'number'
  ) {
    throw new HubError('ServerError', 'The event stream carried an event without sequenceNumber and partition');
  }
  const text = wire.body ?? '';
  const base64 = wire.bodyEncoding === 'base64';
  const body = base64 ? new Uint8Array(Buffer.from(text, 'base64')) : encoder.encode(text);
  return {
    deviceId: wire.deviceId ?? undefined,
    moduleId: wire.moduleId ?? undefined,
    messageId: wire.messageId ?? undefined,
    correlationId: wire.correlationId ?? undefined,
    userId: wire.userId ?? undefined,
    contentType: wire.contentType ?? undefined,
    contentEncoding: wire.contentEncoding ?? undefined,
    properties: wire.properties ?? {},
    systemProperties: wire.systemProperties ?? {},
    body,
    bodyText: base64 ? undefined : text,
    enqueuedTime: new Date(wire.enqueuedTime ?? 0),
    sequenceNumber: wire.sequenceNumber,
    offset: wire.offset ?? String(wire.sequenceNumber),
    partition: wire.partition,
  };
}
