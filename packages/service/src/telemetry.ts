/**
 * Reading the built-in endpoint (`service.telemetry.read`) as Event Hubs clients do (protocol-service.md §4.1, §4.2):
 * `$management` (`READ` `com.microsoft:eventhub` for the partitions, `com.microsoft:partition` for where each one
 * ends), then one receiver per partition on `{entityPath}/ConsumerGroups/{group}/Partitions/{n}` with a selector
 * filter on `x-opt-offset`, `x-opt-sequence-number` or `x-opt-enqueued-time`, and events mapped from the message
 * annotations (§4.3).
 *
 * Decisions where the reference is silent: discovery attaches `/messages/events/$management` first (Azure's entry,
 * which Azure answers with `amqp:link:redirect` to its Event Hubs namespace, followed here; Fieldhub serves it on its
 * own host), falling back to `{hubName}/$management`; the entity path is the `name` the management answer gives.
 */
import { AbortError, ArgumentError, ConnectionError, HubError } from '@fieldhub/protocol';
import { type EventContext, type Message, types as rheaTypes } from 'rhea-promise';
import { type AmqpClient, type AmqpEndpoint, type ReceiverQueue, RedirectError, withSignal } from './amqp-client';
import { bodyBytes, idKey, timeValue } from './amqp-message';
import { sleep } from './http-client';

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
  /**
   * One partition; every partition when absent (one link each; of the events waiting, the oldest enqueued goes first).
   */
  partition?: number;
  /**
   * `true` (default): follow new events until aborted; `false`: end once caught up with the last event each partition
   * held when reading began (`$management` tells).
   */
  live?: boolean;
  /** Reattach (with backoff) from the last event seen per partition when a link or the connection drops. Default true. */
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
  /**
   * The message annotations (`iothub-connection-device-id`, `iothub-message-source`, `x-opt-sequence-number`, ...):
   * timestamps as Date, the rest as the hub sent them.
   */
  readonly systemProperties: Readonly<Record<string, unknown>>;
  /** The body bytes. */
  readonly body: Uint8Array;
  /**
   * The body as text when the message says it is text (`contentEncoding` UTF-8, a JSON or `text/*` content type)
   * and it decodes as UTF-8; else undefined.
   */
  readonly bodyText: string | undefined;
  readonly enqueuedTime: Date;
  readonly sequenceNumber: number;
  /** Event Hubs offset (`x-opt-offset`; Fieldhub: the decimal sequence number). */
  readonly offset: string;
  readonly partition: number;
}

// Reattach backoff: doubling from 100 ms to 5 s; give up after this many failed attempts in a row.
const minBackoffMs = 100;
const maxBackoffMs = 5000;
const maxFailedAttempts = 8;
// Credit per partition link: at most this many events wait in memory per partition (the overflow policy: the hub
// holds the rest until the consumer pulls).
const prefetch = 64;

/** Where the built-in endpoint is served, as discovery found it. */
interface ResolvedEndpoint {
  readonly endpoint: AmqpEndpoint;
  readonly entityPath: string;
  readonly managementAddress: string;
  readonly partitionIds: readonly string[];
}

/** What `$management` says about one partition. */
interface PartitionInfo {
  readonly lastSequenceNumber: number;
  readonly lastEnqueuedTime: number;
  readonly empty: boolean;
}

/** One partition being read. */
interface PartitionReader {
  readonly partition: number;
  queue: ReceiverQueue | undefined;
  /** The sequence number of the last event yielded from it. */
  lastSequence: number | undefined;
  /** For `live: false`: the partition's last sequence number when reading began (undefined: nothing to read). */
  endSequence: number | undefined;
  done: boolean;
}

/** The built-in endpoint. */
export class Telemetry {
  private resolving: Promise<ResolvedEndpoint> | undefined;

  /** @internal */
  constructor(private readonly amqp: AmqpClient) {}

  /**
   * Reads events. The iterator is pull-based: each partition link holds at most 64 events of credit, replenished
   * as the consumer takes them, so a slow consumer makes the hub wait rather than the client buffer. Across
   * partitions (no `partition` option) events are yielded as they arrive; when several partitions have events
   * waiting, the oldest enqueued goes first.
   *
   * When a link or the connection drops, every partition is reattached after a backoff from the last event seen
   * in it (`x-opt-sequence-number > n`); a partition that yielded nothing resumes from where it started.
   * @throws ArgumentError for a bad option; HubError from the hub (e.g. ResourceNotFound for an unknown consumer
   * group or partition, AuthenticationError); ConnectionError once reattaching failed 8 times in a row; AbortError
   * when the signal aborts. Closing the client ends the iteration quietly.
   */
  async *read(options: ReadTelemetryOptions = {}): AsyncGenerator<TelemetryEvent, void, undefined> {
    const consumerGroup = options.consumerGroup ?? '$Default';
    const live = options.live ?? true;
    const reconnect = options.reconnect ?? true;
    const { partition, signal } = options;
    if (partition !== undefined && (!Number.isInteger(partition) || partition < 0)) {
      throw new ArgumentError('partition must be a non-negative integer', { field: 'partition' });
    }
    if (typeof consumerGroup !== 'string' || consumerGroup === '' || consumerGroup.includes('/')) {
      throw new ArgumentError('consumerGroup must be a name without /', { field: 'consumerGroup' });
    }
    const start = options.from ?? 'latest';
    const startFilter = selectorFilter(start);
    const closed = this.amqp.settings.closedSignal;
    const stop = signal ? AbortSignal.any([signal, closed]) : closed;
    let readers: PartitionReader[] | undefined;
    let failures = 0;
    let backoff = minBackoffMs;
    // `latest` means "from when reading began": a reattach before the first event resumes from that time.
    const startedAt = Date.now();

    const closeAll = async () => {
      await Promise.all((readers ?? []).map((reader) => reader.queue?.close()));
      for (const reader of readers ?? []) reader.queue = undefined;
    };

    try {
      for (;;) {
        try {
          const resolved = await this.resolve(signal);
          if (!readers) {
            const ids = partition === undefined ? resolved.partitionIds : [String(partition)];
            readers = ids.map((id) => ({
              partition: Number(id),
              queue: undefined,
              lastSequence: undefined,
              endSequence: undefined,
              done: false,
            }));
            if (!live) {
              await Promise.all(
                readers.map(async (reader) => {
                  const info = await this.partitionInfo(resolved, reader.partition, signal);
                  reader.endSequence = info.empty ? undefined : info.lastSequenceNumber;
                  reader.done = caughtUp(info, start);
                }),
              );
            }
          }
          for (const reader of readers) {
            if (reader.done || reader.queue) continue;
            const filter =
              reader.lastSequence !== undefined
                ? `amqp.annotation.x-opt-sequence-number > '${reader.lastSequence}'`
                : failures > 0 && start === 'latest'
                  ? `amqp.annotation.x-opt-enqueued-time > '${startedAt - 1}'`
                  : startFilter;
            const address = `${resolved.entityPath}/ConsumerGroups/${consumerGroup}/Partitions/${reader.partition}`;
            reader.queue = await resolved.endpoint.receiver(
              {
                source: { address, filter: { 'apache.org:selector-filter:string': selector(filter) } },
                // The hub sends events settled; nothing to acknowledge.
                snd_settle_mode: 1,
              },
              { notFound: 'ResourceNotFound' },
              signal,
            );
            reader.queue.receiver.addCredit(prefetch);
          }
        } catch (error) {
          if (closed.aborted && !signal?.aborted) return;
          if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
          if (error instanceof RedirectError) throw redirectFailure(error);
          if (!reconnect || !retryable(error) || ++failures >= maxFailedAttempts) throw error;
          await closeAll();
          this.resolving = undefined;
          await this.backoff(backoff, stop, signal);
          backoff = Math.min(backoff * 2, maxBackoffMs);
          continue;
        }

        // Pull events until a link fails.
        let failure: unknown;
        for (;;) {
          if (!live && readers.every((reader) => reader.done)) return;
          const next = oldest(readers);
          if (next) {
            const { reader, context } = next;
            const event = toEvent(context.message ?? ({ body: undefined } as Message), reader.partition);
            replenish(reader.queue);
            if (reader.lastSequence !== undefined && event.sequenceNumber <= reader.lastSequence) continue;
            reader.lastSequence = event.sequenceNumber;
            if (!live && reader.endSequence !== undefined && event.sequenceNumber >= reader.endSequence) {
              reader.done = true;
            }
            failures = 0;
            backoff = minBackoffMs;
            if (!live && event.sequenceNumber > (reader.endSequence ?? Number.POSITIVE_INFINITY)) continue;
            yield event;
            continue;
          }
          const failed = readers.find((reader) => !reader.done && reader.queue?.failed);
          if (failed) {
            failure = failed.queue?.failed;
            break;
          }
          if (stop.aborted) break;
          await anyChanged(readers, stop);
        }
        if (closed.aborted && !signal?.aborted) return;
        if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
        if (!reconnect || !retryable(failure) || ++failures >= maxFailedAttempts) {
          throw HubError.is(failure) ? failure : new ConnectionError('The event link failed', { cause: failure });
        }
        await closeAll();
        this.resolving = undefined;
        await this.backoff(backoff, stop, signal);
        backoff = Math.min(backoff * 2, maxBackoffMs);
      }
    } finally {
      // Break, throw, abort or close: detach every partition link now.
      await closeAll();
    }
  }

  /** Discovers the endpoint once per client (again after a failure). */
  private resolve(signal: AbortSignal | undefined): Promise<ResolvedEndpoint> {
    // Shared by concurrent readers: not bound to one reader's signal (each races its own).
    this.resolving ??= this.discover(undefined);
    const resolving = this.resolving;
    resolving.catch(() => {
      if (this.resolving === resolving) this.resolving = undefined;
    });
    return withSignal(resolving, signal, this.amqp.settings);
  }

  private async discover(signal: AbortSignal | undefined): Promise<ResolvedEndpoint> {
    const { hub, hubName } = this.amqp;
    try {
      return await this.describe(hub, hubName, '/messages/events/$management', signal);
    } catch (error) {
      if (error instanceof RedirectError) {
        const { host, port, address } = error.redirect;
        const entityPath = entityOf(address) ?? hubName;
        return this.describe(this.amqp.redirect(host, port), entityPath, `${entityPath}/$management`, signal);
      }
      // A hub that serves the endpoint only under its entity path.
      if (HubError.is(error) && error.code === 'ResourceNotFound') {
        return this.describe(hub, hubName, `${hubName}/$management`, signal);
      }
      throw error;
    }
  }

  private async describe(
    endpoint: AmqpEndpoint,
    entityPath: string,
    managementAddress: string,
    signal: AbortSignal | undefined,
  ): Promise<ResolvedEndpoint> {
    const answer = await this.management(
      endpoint,
      managementAddress,
      { type: 'com.microsoft:eventhub', name: entityPath },
      signal,
    );
    const body = (answer.body ?? {}) as Record<string, unknown>;
    const ids = body.partition_ids;
    if (!Array.isArray(ids) || ids.length === 0) {
      throw new HubError('ServerError', 'The hub described the built-in endpoint without partition_ids');
    }
    const name = typeof body.name === 'string' && body.name !== '' ? body.name : entityPath;
    return {
      endpoint,
      entityPath: name,
      managementAddress: managementAddress.startsWith('/messages/') ? managementAddress : `${name}/$management`,
      partitionIds: ids.map(String),
    };
  }

  private async partitionInfo(
    resolved: ResolvedEndpoint,
    partition: number,
    signal: AbortSignal | undefined,
  ): Promise<PartitionInfo> {
    const answer = await this.management(
      resolved.endpoint,
      resolved.managementAddress,
      { type: 'com.microsoft:partition', name: resolved.entityPath, partition: String(partition) },
      signal,
    );
    const body = (answer.body ?? {}) as Record<string, unknown>;
    const last = longValue(body.last_enqueued_sequence_number);
    const begin = longValue(body.begin_sequence_number);
    return {
      lastSequenceNumber: last ?? -1,
      lastEnqueuedTime: timeValue(body.last_enqueued_time_utc)?.getTime() ?? 0,
      empty: body.is_partition_empty === true || last === undefined || (begin !== undefined && begin > last),
    };
  }

  private async management(
    endpoint: AmqpEndpoint,
    address: string,
    properties: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Message> {
    return endpoint.request(
      address,
      {
        body: [],
        application_properties: {
          operation: 'READ',
          ...properties,
          security_token: await endpoint.tokenFor(address),
        },
      },
      signal,
    );
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

/**
 * The Event Hubs selector filter for a start position (§4.2): earliest = offset `-1`, latest = `@latest`, after a
 * sequence number or an enqueued time (exclusive).
 * @throws ArgumentError for anything else.
 */
export function selectorFilter(position: EventPosition): string {
  if (position === 'earliest') return "amqp.annotation.x-opt-offset > '-1'";
  if (position === 'latest') return "amqp.annotation.x-opt-offset > '@latest'";
  if (typeof position === 'object' && position !== null) {
    if ('sequenceNumber' in position) {
      if (!Number.isSafeInteger(position.sequenceNumber)) {
        throw new ArgumentError('from.sequenceNumber must be an integer', { field: 'from' });
      }
      return `amqp.annotation.x-opt-sequence-number > '${position.sequenceNumber}'`;
    }
    if ('enqueuedTime' in position) {
      const time = new Date(position.enqueuedTime);
      if (Number.isNaN(time.getTime())) {
        throw new ArgumentError('from.enqueuedTime is not a valid time', { field: 'from' });
      }
      return `amqp.annotation.x-opt-enqueued-time > '${time.getTime()}'`;
    }
  }
  throw new ArgumentError("from must be 'earliest', 'latest', { sequenceNumber } or { enqueuedTime }", {
    field: 'from',
  });
}

// The filter as Event Hubs clients send it: described type `apache.org:selector-filter:string` (0x468C00000004).
function selector(expression: string): unknown {
  return rheaTypes.wrap_described(expression, 0x468c00000004);
}

/** Whether a partition has nothing to read from `start` on (for `live: false`). */
function caughtUp(info: PartitionInfo, start: EventPosition): boolean {
  if (info.empty || start === 'latest') return true;
  if (start === 'earliest') return false;
  if ('sequenceNumber' in start) return start.sequenceNumber >= info.lastSequenceNumber;
  return new Date(start.enqueuedTime).getTime() >= info.lastEnqueuedTime;
}

/** The reader whose next buffered event was enqueued first. */
function oldest(readers: readonly PartitionReader[]): { reader: PartitionReader; context: EventContext } | undefined {
  let best: { reader: PartitionReader; time: number } | undefined;
  for (const reader of readers) {
    const context = reader.queue?.peek();
    if (!context) continue;
    const annotations = context.message?.message_annotations ?? {};
    const time = timeValue(annotations['x-opt-enqueued-time'])?.getTime() ?? 0;
    if (!best || time < best.time) best = { reader, time };
  }
  if (!best) return undefined;
  const context = best.reader.queue?.take();
  return context ? { reader: best.reader, context } : undefined;
}

/** Grants credit back up to `prefetch` once half of it was used. */
function replenish(queue: ReceiverQueue | undefined): void {
  if (!queue) return;
  const outstanding = queue.receiver.credit + queue.buffered;
  if (outstanding <= prefetch / 2 && queue.receiver.isOpen()) queue.receiver.addCredit(prefetch - outstanding);
}

async function anyChanged(readers: readonly PartitionReader[], stop: AbortSignal): Promise<void> {
  const round = new AbortController();
  const signal = AbortSignal.any([stop, round.signal]);
  try {
    await Promise.race(readers.flatMap((reader) => (reader.queue ? [reader.queue.changed(signal)] : [])));
  } finally {
    round.abort();
  }
}

function retryable(error: unknown): boolean {
  return HubError.is(error) && error.isRetryable && !(error instanceof AbortError);
}

function redirectFailure(error: RedirectError): HubError {
  return new ConnectionError(`The hub redirected a link unexpectedly: ${error.message}`, { cause: error });
}

/** The entity name in a redirect address (`amqps://host:5671/{entity}/$management`). */
export function entityOf(address: string | undefined): string | undefined {
  if (address === undefined) return undefined;
  const match = /^(?:amqps?:\/\/[^/]+\/)?\/?(.+?)\/\$management$/i.exec(address);
  return match?.[1];
}

function longValue(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  if (Buffer.isBuffer(value) && value.length === 8) return Number(value.readBigInt64BE(0));
  return undefined;
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });

function isText(contentType: string | undefined, contentEncoding: string | undefined): boolean {
  if (contentEncoding !== undefined && /^utf-?8$/i.test(contentEncoding)) return true;
  if (contentType === undefined) return false;
  const type = contentType.toLowerCase();
  return type.startsWith('text/') || type.includes('json');
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/** Converts one message of a partition link to an event (annotations per §4.3). */
export function toEvent(message: Message, partition: number): TelemetryEvent {
  const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
  const sequenceNumber = longValue(annotations['x-opt-sequence-number']);
  if (sequenceNumber === undefined) {
    throw new HubError('ServerError', 'The hub sent an event without x-opt-sequence-number');
  }
  const body = bodyBytes(message.body);
  const contentType = text(message.content_type);
  const contentEncoding = text(message.content_encoding);
  let bodyText: string | undefined;
  if (isText(contentType, contentEncoding)) {
    try {
      bodyText = textDecoder.decode(body);
    } catch {
      bodyText = undefined;
    }
  }
  const properties: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.application_properties ?? {})) {
    if (value === undefined || value === null) continue;
    properties[name] = value instanceof Date ? value.toISOString() : String(value);
  }
  const systemProperties: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(annotations)) systemProperties[name] = value;
  const enqueuedTime =
    timeValue(annotations['x-opt-enqueued-time']) ?? timeValue(annotations['iothub-enqueuedtime']) ?? new Date(0);
  const offset = annotations['x-opt-offset'];
  return {
    deviceId: text(annotations['iothub-connection-device-id']),
    moduleId: text(annotations['iothub-connection-module-id']),
    messageId: idKey(message.message_id),
    correlationId: idKey(message.correlation_id),
    userId: text(message.user_id),
    contentType,
    contentEncoding,
    properties,
    systemProperties,
    body,
    bodyText,
    enqueuedTime,
    sequenceNumber,
    offset: offset === undefined || offset === null ? String(sequenceNumber) : String(offset),
    partition,
  };
}
