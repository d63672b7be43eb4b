import { ArgumentError, HubError } from '@fieldhub/protocol';
import type { Unsubscribe } from '../bus/bus';
import type { LogEvent, LogEventInput, LogPosition, PartitionInfo } from '../store/store';
import type { CoreContext } from './context';

/**
 * The built-in endpoint (`messages/events`, protocol-service.md §4): the durable, partitioned log that device
 * telemetry and hub-generated events are appended to, and that services read with consumer groups.
 *
 * - Partitioning: FNV-1a 32-bit over the UTF-8 bytes of the device id, modulo `ctx.options.partitionCount`.
 *   Azure's own hash is undocumented (§4.4 "UNCONFIRMED"); what matters is that one device always lands on one
 *   partition, so per-device order is kept, and that the choice survives restarts (FNV is fixed, unlike
 *   anything seeded per process).
 * - Durability: `append` resolves only once the store's group commit made the event durable (ARCHITECTURE.md
 *   invariant: telemetry is acknowledged only after the durable append).
 * - Reading is pull-based from the store: a reader holds at most `bufferSize` events in memory and fetches the
 *   next batch only when its consumer asks for more, so a slow reader never makes hub memory grow. Overflow
 *   policy: a reader that falls behind by more than the retention period silently skips the events that
 *   retention trimmed (as Event Hubs does); it never blocks appends.
 * - Live tail: readers wait for an in-process notifier, which is also fed by the bus subject
 *   `telemetry.appended` (payload `{ partition, sequenceNumber }`) so that appends in other hub processes wake
 *   them too; a slow safety poll covers a lost notification.
 */

/** Values of `iothub-message-source` (protocol-service.md §4.3, §5.6). */
export const MessageSources = {
  Telemetry: 'Telemetry',
  TwinChangeEvents: 'twinChangeEvents',
  DeviceLifecycleEvents: 'deviceLifecycleEvents',
  DeviceConnectionStateEvents: 'deviceConnectionStateEvents',
  DigitalTwinChangeEvents: 'digitalTwinChangeEvents',
} as const;
/** A value of `iothub-message-source`. */
export type MessageSource = (typeof MessageSources)[keyof typeof MessageSources];

/** System property (annotation) names as stored and as read from the endpoint (Event Hubs spelling, §4.3). */
export const SystemPropertyNames = {
  messageId: 'message-id',
  correlationId: 'correlation-id',
  userId: 'user-id',
  contentType: 'content-type',
  contentEncoding: 'content-encoding',
  deviceId: 'iothub-connection-device-id',
  moduleId: 'iothub-connection-module-id',
  authMethod: 'iothub-connection-auth-method',
  authGenerationId: 'iothub-connection-auth-generation-id',
  enqueuedTime: 'iothub-enqueuedtime',
  messageSource: 'iothub-message-source',
  sequenceNumber: 'x-opt-sequence-number',
  offset: 'x-opt-offset',
  eventHubsEnqueuedTime: 'x-opt-enqueued-time',
} as const;

/** How the sender authenticated, stamped as `iothub-connection-auth-method` (§4.3). */
export interface ConnectionAuthMethod {
  readonly scope: 'hub' | 'device' | 'module';
  readonly type: 'sas' | 'symkey' | 'x509';
  readonly issuer: string;
}

/** A message to append: device telemetry or a hub-generated event. */
export interface EndpointMessageInput {
  /** The originating device (also the partition key). */
  readonly deviceId: string;
  readonly moduleId?: string | undefined;
  readonly body: Uint8Array;
  /** Application properties. */
  readonly properties?: Readonly<Record<string, string>> | undefined;
  readonly messageId?: string | undefined;
  readonly correlationId?: string | undefined;
  readonly userId?: string | undefined;
  readonly contentType?: string | undefined;
  readonly contentEncoding?: string | undefined;
  /** `iothub-message-source`; `Telemetry` when absent. */
  readonly source?: MessageSource | undefined;
  /** Stamped as `iothub-connection-auth-method` (anti-spoofing, protocol-device.md §7). */
  readonly authMethod?: ConnectionAuthMethod | undefined;
  /** The device's (or module's) generationId, stamped as `iothub-connection-auth-generation-id`. */
  readonly authGenerationId?: string | undefined;
  /** Further annotations the head passes through (e.g. `dt-dataschema`, `dt-subject`). */
  readonly annotations?: Readonly<Record<string, string | number | boolean>> | undefined;
}

/** An event as read from the built-in endpoint. */
export interface EndpointEvent {
  readonly partition: number;
  readonly sequenceNumber: number;
  /** Event Hubs offset; Fieldhub uses the decimal sequence number. */
  readonly offset: string;
  /** ms since epoch. */
  readonly enqueuedTime: number;
  readonly deviceId: string | undefined;
  readonly moduleId: string | undefined;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly userId: string | undefined;
  readonly contentType: string | undefined;
  readonly contentEncoding: string | undefined;
  readonly source: string | undefined;
  readonly body: Uint8Array;
  readonly properties: Readonly<Record<string, string>>;
  /** Every system property, including the read-time `x-opt-sequence-number`, `x-opt-offset`, `x-opt-enqueued-time`. */
  readonly systemProperties: Readonly<Record<string, string | number | boolean>>;
}

/**
 * Where a read starts, as Event Hubs' positions: `latest` = only events appended after the reader opened; a
 * sequence number is exclusive unless `inclusive: true` (so a client resumes after the last event it saw); an enqueued time means events enqueued strictly after.
 */
export type StartPosition =
  | 'earliest'
  | 'latest'
  | { readonly sequenceNumber: number; readonly inclusive?: boolean }
  | { readonly enqueuedTime: number | Date };

/** Options of {@link BuiltInEndpoint.read}. */
export interface ReadOptions {
  /** Consumer group (case-insensitive); `$Default` when absent. */
  readonly consumerGroup?: string | undefined;
  /** One partition; all partitions merged (by enqueued time, each partition in order) when absent. */
  readonly partition?: number | undefined;
  /** `earliest` when absent. */
  readonly from?: StartPosition | undefined;
  /** Wait for new appends once caught up (default true); false ends the iteration when caught up. */
  readonly live?: boolean | undefined;
  /** Most events held in memory per partition (default 100, at most 1000). */
  readonly bufferSize?: number | undefined;
  /** Ends the iteration. */
  readonly signal?: AbortSignal | undefined;
}

/** A consumer group of the built-in endpoint. */
export interface ConsumerGroup {
  readonly name: string;
  /** ISO time of creation; absent for the built-in `$Default`. */
  readonly createdTime?: string;
}

/** Options of {@link BuiltInEndpoint}. */
export interface BuiltInEndpointOptions {
  /** How often retention runs (default 60 s). */
  readonly trimIntervalMs?: number;
  /** Safety poll of idle live readers, in case a bus notification was lost (default 1 s). */
  readonly livePollMs?: number;
  /**
   * Memory for the most recent events, served to live readers without a store read (default 32 MB, split
   * between the partitions; 0 turns it off). Used only while a reader is open. Sized for 4 KB telemetry: 10
   * devices with 200 QoS 1 messages in flight each get ~2,000 events ahead of a reader that waits for its socket;
   * at 8 MB (~470 such events per partition) the reader fell out of the window and into store reads (W2).
   */
  readonly recentEventBytes?: number;
}

/** The bus subject announcing appends: payload {@link TelemetryAppended}. */
export const telemetryAppendedSubject = 'telemetry.appended';
/** Payload of {@link telemetryAppendedSubject}. */
export interface TelemetryAppended {
  readonly partition: number;
  readonly sequenceNumber: number;
}

/** The name of the consumer group that always exists. */
export const defaultConsumerGroup = '$Default';
const consumerGroupCollection = 'consumer-groups';
// Facts about the endpoint itself (its creation time), one document each.
const endpointCollection = 'built-in-endpoint';
const createdKey = 'created';
// Event Hubs: 1-50 chars, letters, digits, '.', '-', '_', starting and ending with a letter or digit.
const consumerGroupPattern = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?$/;
// §4.4 "max 20 per hub (UNCONFIRMED)": $Default included.
const maxConsumerGroups = 20;
// protocol-device.md §7: D2C message ≤ 256 KB, body + system property values + application property names/values.
const maxMessageBytes = 256 * 1024;
const textEncoder = new TextEncoder();

/**
 * FNV-1a (32-bit) over the UTF-8 bytes of `deviceId`, modulo `partitionCount`: the partition of a device.
 * Stable across processes and restarts.
 */
export function partitionOf(deviceId: string, partitionCount: number): number {
  let hash = 0x811c9dc5;
  for (const byte of textEncoder.encode(deviceId)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitionCount;
}

/** Wakes live readers; one version counter per partition so readers only re-query partitions that grew. */
class AppendNotifier {
  private readonly versions: number[];
  private readonly waiters = new Set<() => void>();

  constructor(partitionCount: number) {
    this.versions = new Array<number>(partitionCount).fill(0);
  }

  version(partition: number): number {
    return this.versions[partition] ?? 0;
  }

  bump(partition: number): void {
    if (partition < 0 || partition >= this.versions.length) return;
    this.versions[partition] = (this.versions[partition] ?? 0) + 1;
    // Bumped once per committed batch and partition: usually nobody waits, so copy nothing then.
    if (this.waiters.size === 0) return;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiters) wake();
  }

  /** Resolves true on the next bump, false after `timeoutMs` (calling `onTimeout` first) or on abort. */
  wait(timeoutMs: number, signal: AbortSignal, onTimeout?: () => void): Promise<boolean> {
    return new Promise((resolve) => {
      let woken = true;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', aborted);
        this.waiters.delete(done);
        resolve(woken);
      };
      const timer = setTimeout(() => {
        woken = false;
        onTimeout?.();
        done();
      }, timeoutMs);
      timer.unref?.();
      const aborted = () => {
        woken = false;
        done();
      };
      if (signal.aborted) return aborted();
      signal.addEventListener('abort', aborted, { once: true });
      this.waiters.add(done);
    });
  }
}

/** Rough per-event memory beyond the body (objects, property maps), for the budget of {@link RecentEvents}. */
const eventOverheadBytes = 256;

/**
 * The most recently committed events of each partition, in memory, so that live readers (the common case: a
 * reader following `latest`) get them without a store read and a JSON parse per event. A bounded window: at most
 * `maxBytes` per partition (bodies plus an estimate of the rest), oldest dropped first; a reader that is behind
 * it reads from the store as before. Holds only durable events (added after the store resolved), each
 * partition as one contiguous run of sequence numbers: anything else (appends by another process, a failed
 * append) resets that partition's window, and a position it does not hold falls back to the store.
 */
class RecentEvents {
  private readonly partitions: { events: LogEvent[]; head: number; bytes: number }[];

  constructor(
    partitionCount: number,
    private readonly maxBytes: number,
  ) {
    this.partitions = Array.from({ length: partitionCount }, () => ({ events: [], head: 0, bytes: 0 }));
  }

  /** Adds committed events of one partition (in sequence order). */
  add(partition: number, events: readonly LogEvent[]): void {
    const window = this.partitions[partition];
    const first = events[0];
    if (!window || !first) return;
    const last = window.events[window.events.length - 1];
    if (last !== undefined && first.sequenceNumber !== last.sequenceNumber + 1) this.clear(partition);
    for (const event of events) {
      window.events.push(event);
      window.bytes += event.body.byteLength + eventOverheadBytes;
    }
    while (window.bytes > this.maxBytes && window.head < window.events.length) {
      const dropped = window.events[window.head++] as LogEvent;
      window.bytes -= dropped.body.byteLength + eventOverheadBytes;
    }
    // Compact now and then rather than shift() per event.
    if (window.head > 1024 && window.head * 2 > window.events.length) {
      window.events = window.events.slice(window.head);
      window.head = 0;
    }
  }

  /**
   * Up to `limit` events from `from`, or undefined when the window does not hold the event at `from`. A position
   * just past the window's newest event reads as empty (no store read) when that event is the newest one known to
   * exist (`lastKnown`, from this process's appends and the bus): a caught-up live reader asks exactly that after
   * every batch.
   */
  read(partition: number, from: LogPosition, limit: number, lastKnown: number): LogEvent[] | undefined {
    const window = this.partitions[partition];
    if (!window || typeof from !== 'object' || !('sequenceNumber' in from)) return undefined;
    const oldest = window.events[window.head];
    if (oldest === undefined) return undefined;
    const start = from.inclusive === true ? from.sequenceNumber : from.sequenceNumber + 1;
    const index = window.head + (start - oldest.sequenceNumber);
    if (index < window.head || index > window.events.length) return undefined;
    if (index === window.events.length) {
      const newest = window.events[index - 1] as LogEvent;
      return newest.sequenceNumber >= lastKnown ? [] : undefined;
    }
    return window.events.slice(index, index + limit);
  }

  /** Drops events enqueued before `olderThan` (retention). */
  trim(olderThan: number): void {
    for (const window of this.partitions) {
      while (window.head < window.events.length && (window.events[window.head] as LogEvent).enqueuedTime < olderThan) {
        const dropped = window.events[window.head++] as LogEvent;
        window.bytes -= dropped.body.byteLength + eventOverheadBytes;
      }
    }
  }

  clear(partition?: number): void {
    const windows = partition === undefined ? this.partitions : [this.partitions[partition]];
    for (const window of windows) {
      if (!window) continue;
      window.events = [];
      window.head = 0;
      window.bytes = 0;
    }
  }
}

/** The built-in endpoint. Starts its retention timer on construction; `stop()` ends it and every reader. */
export class BuiltInEndpoint {
  private readonly notifier: AppendNotifier;
  private readonly recent: RecentEvents | undefined;
  private readonly readers = new Set<TelemetryReader>();
  private readonly unsubscribe: Unsubscribe;
  private readonly trimTimer: ReturnType<typeof setInterval>;
  private readonly livePollMs: number;
  private stopped = false;
  /** Last sequence number per partition not yet announced on the bus (see `announce`). */
  private readonly pendingAnnouncements = new Map<number, number>();
  private announcing = false;
  /** Per partition, the newest sequence number known to be committed (appended here or announced on the bus). */
  private readonly lastKnown: number[];

  constructor(
    private readonly ctx: CoreContext,
    options: BuiltInEndpointOptions = {},
  ) {
    this.notifier = new AppendNotifier(ctx.options.partitionCount);
    const recentBytes = options.recentEventBytes ?? 32 * 1024 * 1024;
    if (recentBytes > 0) {
      this.recent = new RecentEvents(ctx.options.partitionCount, recentBytes / ctx.options.partitionCount);
    }
    this.livePollMs = options.livePollMs ?? 1000;
    this.lastKnown = new Array<number>(ctx.options.partitionCount).fill(-1);
    this.unsubscribe = ctx.bus.subscribe(ctx.hubName, telemetryAppendedSubject, (payload) => {
      const { partition, sequenceNumber } = (payload ?? {}) as Partial<TelemetryAppended>;
      if (typeof partition !== 'number') return;
      if (typeof sequenceNumber === 'number') {
        // This process's own notices (and stale ones) come back here too: the local bump already woke the readers.
        if (sequenceNumber <= (this.lastKnown[partition] ?? -1)) return;
        this.lastKnown[partition] = sequenceNumber;
      }
      this.notifier.bump(partition);
    });
    this.trimTimer = setInterval(() => {
      this.trim().catch((error: unknown) => ctx.logger.warn({ err: error }, 'built-in endpoint retention failed'));
    }, options.trimIntervalMs ?? 60_000);
    this.trimTimer.unref?.();
  }

  /** How many readers are open now (metrics; tests that a vanished client released its reader). */
  get openReaders(): number {
    return this.readers.size;
  }

  /** Number of partitions. */
  get partitionCount(): number {
    return this.ctx.options.partitionCount;
  }

  /**
   * Appends a message and resolves once it is durable (group commit), with the event as a reader will see it.
   * Wakes live readers here and, through the bus subject `telemetry.appended`, in other processes.
   * @throws HubError MessageTooLarge over 256 KB (protocol-device.md §7).
   */
  async append(message: EndpointMessageInput): Promise<EndpointEvent> {
    const now = this.ctx.now();
    const input = this.toLogInput(message, now);
    const partition = partitionOf(message.deviceId, this.ctx.options.partitionCount);
    const [stored] = await this.ctx.store.log.append(this.ctx.hubName, partition, [input]);
    if (!stored) throw new HubError('ServerError', 'The store did not return the appended event');
    this.remember(partition, [stored]);
    this.announce(partition, stored.sequenceNumber);
    return toEndpointEvent(stored);
  }

  /**
   * Appends messages in order and resolves once all of them are durable: the protocol heads' path, where the
   * acknowledgement needs only "durable". Same stamping and limits as {@link append}, but the messages of one
   * partition go to the store as one request and no {@link EndpointEvent} is built: a head hands over all the
   * telemetry of one socket read at once, which made the per-message promises, event objects and wake-ups of
   * `append` the largest cost of the W1 path after SQLite itself.
   * @throws HubError MessageTooLarge over 256 KB (protocol-device.md §7); then nothing was appended.
   */
  ingest(messages: readonly EndpointMessageInput[]): Promise<void> {
    const now = this.ctx.now();
    const count = this.ctx.options.partitionCount;
    let inputs: LogEventInput[] | undefined;
    let partition = -1;
    // Usually one device (one partition); several partitions are split into one request each.
    let byPartition: Map<number, LogEventInput[]> | undefined;
    try {
      for (const message of messages) {
        const input = this.toLogInput(message, now);
        const target = partitionOf(message.deviceId, count);
        if (inputs === undefined) {
          inputs = [input];
          partition = target;
        } else if (target === partition && byPartition === undefined) {
          inputs.push(input);
        } else {
          byPartition ??= new Map([[partition, inputs]]);
          const list = byPartition.get(target);
          if (list) list.push(input);
          else byPartition.set(target, [input]);
        }
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (inputs === undefined) return Promise.resolve();
    if (byPartition === undefined) return this.appendInputs(partition, inputs);
    return Promise.all([...byPartition].map(([target, list]) => this.appendInputs(target, list))).then(() => {});
  }

  private appendInputs(partition: number, inputs: readonly LogEventInput[]): Promise<void> {
    return this.ctx.store.log.append(this.ctx.hubName, partition, inputs).then((stored) => {
      const last = stored[stored.length - 1];
      if (!last) throw new HubError('ServerError', 'The store did not return the appended events');
      this.remember(partition, stored);
      this.announce(partition, last.sequenceNumber);
    });
  }

  /** Keeps committed events for live readers, only while there are readers (no cost otherwise). */
  private remember(partition: number, stored: readonly LogEvent[]): void {
    if (this.recent === undefined || this.readers.size === 0) return;
    this.recent.add(partition, stored);
  }

  /**
   * Wakes local readers at once; tells other processes through the bus, coalesced to one notice per partition
   * per microtask turn (a group commit resolves many appends together; one notice with the last sequence number
   * says the same as one per append).
   */
  private announce(partition: number, sequenceNumber: number): void {
    if (sequenceNumber > (this.lastKnown[partition] ?? -1)) this.lastKnown[partition] = sequenceNumber;
    this.notifier.bump(partition);
    const pending = this.pendingAnnouncements;
    const known = pending.get(partition);
    if (known === undefined || sequenceNumber > known) pending.set(partition, sequenceNumber);
    if (this.announcing) return;
    this.announcing = true;
    queueMicrotask(() => {
      this.announcing = false;
      for (const [target, last] of pending) {
        this.ctx.bus.publish(this.ctx.hubName, telemetryAppendedSubject, {
          partition: target,
          sequenceNumber: last,
        } satisfies TelemetryAppended);
      }
      pending.clear();
    });
  }

  /**
   * Opens a reader. Iterate it with `for await`; `close()` (or the signal, or `stop()`) ends it.
   * @throws HubError ResourceNotFound for an unknown consumer group; ArgumentError for a partition out of range or
   * a bad position.
   */
  async read(options: ReadOptions = {}): Promise<TelemetryReader> {
    await this.getConsumerGroup(options.consumerGroup ?? defaultConsumerGroup);
    const count = this.ctx.options.partitionCount;
    let partitions: number[];
    if (options.partition === undefined) {
      partitions = Array.from({ length: count }, (_, index) => index);
    } else {
      if (!Number.isInteger(options.partition) || options.partition < 0 || options.partition >= count) {
        throw new ArgumentError(`Partition ${options.partition} does not exist (0..${count - 1})`, {
          field: 'partition',
        });
      }
      partitions = [options.partition];
    }
    const bufferSize = Math.min(Math.max(Math.trunc(options.bufferSize ?? 100), 1), 1000);
    const from = options.from ?? 'earliest';
    const cursors = new Map<number, LogPosition>();
    for (const partition of partitions) cursors.set(partition, await this.startCursor(partition, from));
    const reader = new TelemetryReader({
      ctx: this.ctx,
      source: this.readFrom,
      peek: (partition, from, limit) => this.recent?.read(partition, from, limit, this.lastKnown[partition] ?? -1),
      notifier: this.notifier,
      cursors,
      bufferSize,
      live: options.live ?? true,
      livePollMs: this.livePollMs,
      signal: options.signal,
      onClose: (closed) => {
        this.readers.delete(closed);
        // Nobody to serve: release the window (it restarts with the next reader's appends).
        if (this.readers.size === 0) this.recent?.clear();
      },
    });
    if (this.stopped) reader.close();
    else this.readers.add(reader);
    return reader;
  }

  /** Where readers get events: the window of recent events when it holds the position, else the store. */
  private readonly readFrom = (
    partition: number,
    from: LogPosition,
    limit: number,
    verify: boolean,
  ): LogEvent[] | Promise<LogEvent[]> =>
    this.recent?.read(partition, from, limit, verify ? Number.POSITIVE_INFINITY : (this.lastKnown[partition] ?? -1)) ??
    this.ctx.store.log.read(this.ctx.hubName, partition, from, limit);

  /** Facts about one partition (begin/last sequence number, last enqueued time). */
  async partitionInfo(partition: number): Promise<PartitionInfo> {
    return this.ctx.store.log.info(this.ctx.hubName, partition);
  }

  /**
   * When the endpoint was created (ms since epoch): the first call stores the current time, later calls (also after
   * a restart, also from other processes) return the stored one. Event Hubs' `created_at` (protocol-service.md §4.2).
   */
  async createdTime(): Promise<number> {
    const { store, hubName } = this.ctx;
    const stored = await store.documents.get<{ createdTime: number }>(hubName, endpointCollection, createdKey);
    if (stored) return stored.value.createdTime;
    const createdTime = this.ctx.now();
    try {
      await store.documents.put(hubName, endpointCollection, createdKey, { createdTime }, 0);
      return createdTime;
    } catch {
      // Another caller stored it first: theirs is the creation time.
      const raced = await store.documents.get<{ createdTime: number }>(hubName, endpointCollection, createdKey);
      if (raced) return raced.value.createdTime;
      throw new HubError('ServerError', 'Could not store the creation time of the built-in endpoint');
    }
  }

  /** Applies retention now: deletes events older than `ctx.options.retentionMs`. Returns how many. */
  async trim(): Promise<number> {
    const olderThan = this.ctx.now() - this.ctx.options.retentionMs;
    this.recent?.trim(olderThan);
    let removed = 0;
    for (let partition = 0; partition < this.ctx.options.partitionCount; partition++) {
      removed += await this.ctx.store.log.trim(this.ctx.hubName, partition, olderThan);
    }
    return removed;
  }

  /**
   * Creates a consumer group; creating an existing one returns it (ARM's PUT is idempotent). Names are
   * case-insensitive and keep the spelling of their creation.
   * @throws ArgumentError for a bad name or more than 20 groups.
   */
  async createConsumerGroup(name: string): Promise<ConsumerGroup> {
    validateConsumerGroupName(name);
    if (isDefaultGroup(name)) return { name: defaultConsumerGroup };
    const key = name.toLowerCase();
    const existing = await this.ctx.store.documents.get<ConsumerGroup>(this.ctx.hubName, consumerGroupCollection, key);
    if (existing) return existing.value;
    const count = await this.ctx.store.documents.count(this.ctx.hubName, consumerGroupCollection);
    if (count + 1 >= maxConsumerGroups) {
      throw new ArgumentError(`A hub has at most ${maxConsumerGroups} consumer groups`, { field: 'name' });
    }
    const group: ConsumerGroup = { name, createdTime: new Date(this.ctx.now()).toISOString() };
    try {
      await this.ctx.store.documents.put(this.ctx.hubName, consumerGroupCollection, key, group, 0);
      return group;
    } catch {
      // Lost a race with another creator: the group exists now, which is what the caller wanted.
      const raced = await this.ctx.store.documents.get<ConsumerGroup>(this.ctx.hubName, consumerGroupCollection, key);
      if (raced) return raced.value;
      throw new HubError('ServerError', `Could not create consumer group ${name}`);
    }
  }

  /** Every consumer group, `$Default` first. */
  async listConsumerGroups(): Promise<ConsumerGroup[]> {
    const stored = await this.ctx.store.documents.list<ConsumerGroup>(this.ctx.hubName, consumerGroupCollection);
    return [{ name: defaultConsumerGroup }, ...stored.map((document) => document.value)];
  }

  /**
   * One consumer group by name (case-insensitive).
   * @throws HubError ResourceNotFound (404000) when it does not exist.
   */
  async getConsumerGroup(name: string): Promise<ConsumerGroup> {
    if (isDefaultGroup(name)) return { name: defaultConsumerGroup };
    const found = await this.ctx.store.documents.get<ConsumerGroup>(
      this.ctx.hubName,
      consumerGroupCollection,
      name.toLowerCase(),
    );
    if (!found) throw new HubError('ResourceNotFound', `Consumer group '${name}' does not exist`);
    return found.value;
  }

  /**
   * Deletes a consumer group; returns whether it existed.
   * @throws ArgumentError for `$Default`, which always exists.
   */
  async deleteConsumerGroup(name: string): Promise<boolean> {
    if (isDefaultGroup(name)) {
      throw new ArgumentError('The $Default consumer group cannot be deleted', { field: 'name' });
    }
    return this.ctx.store.documents.delete(this.ctx.hubName, consumerGroupCollection, name.toLowerCase());
  }

  /** Stops retention and the bus subscription and ends every open reader. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.trimTimer);
    this.unsubscribe();
    for (const reader of [...this.readers]) reader.close();
  }

  private async startCursor(partition: number, from: StartPosition): Promise<LogPosition> {
    if (from === 'earliest') return 'earliest';
    if (from === 'latest') {
      // Resolved once, at open time: later reads continue from here instead of re-meaning "latest".
      const info = await this.ctx.store.log.info(this.ctx.hubName, partition);
      return info.lastSequenceNumber < 0 ? 'earliest' : { sequenceNumber: info.lastSequenceNumber, inclusive: false };
    }
    if ('sequenceNumber' in from) {
      if (!Number.isInteger(from.sequenceNumber)) {
        throw new ArgumentError('sequenceNumber must be an integer', { field: 'from' });
      }
      return { sequenceNumber: from.sequenceNumber, inclusive: from.inclusive ?? false };
    }
    const time = from.enqueuedTime instanceof Date ? from.enqueuedTime.getTime() : from.enqueuedTime;
    if (!Number.isFinite(time)) throw new ArgumentError('enqueuedTime must be a valid time', { field: 'from' });
    return { enqueuedTime: time };
  }

  private toLogInput(message: EndpointMessageInput, now: number): LogEventInput {
    // Runs once per message on the telemetry path: plain assignments, no closures, no entry arrays.
    const system: Record<string, string | number | boolean> = { ...message.annotations };
    if (message.messageId !== undefined) system[SystemPropertyNames.messageId] = message.messageId;
    if (message.correlationId !== undefined) system[SystemPropertyNames.correlationId] = message.correlationId;
    if (message.userId !== undefined) system[SystemPropertyNames.userId] = message.userId;
    if (message.contentType !== undefined) system[SystemPropertyNames.contentType] = message.contentType;
    if (message.contentEncoding !== undefined) system[SystemPropertyNames.contentEncoding] = message.contentEncoding;
    system[SystemPropertyNames.deviceId] = message.deviceId;
    if (message.moduleId !== undefined) system[SystemPropertyNames.moduleId] = message.moduleId;
    if (message.authMethod) system[SystemPropertyNames.authMethod] = authMethodText(message.authMethod);
    if (message.authGenerationId !== undefined) {
      system[SystemPropertyNames.authGenerationId] = message.authGenerationId;
    }
    system[SystemPropertyNames.enqueuedTime] = now;
    system[SystemPropertyNames.messageSource] = message.source ?? MessageSources.Telemetry;
    const properties: Record<string, string> = { ...message.properties };
    let size = message.body.byteLength;
    for (const name in properties) size += name.length + (properties[name] as string).length;
    for (const name in system) {
      const value = system[name];
      size += typeof value === 'string' ? value.length : String(value).length;
    }
    if (size > maxMessageBytes) {
      throw new HubError('MessageTooLarge', `The message is ${size} bytes; the limit is ${maxMessageBytes}`);
    }
    return { body: message.body, properties, systemProperties: system, enqueuedTime: now };
  }
}

// A session stamps every message with the same auth method object: serialise it once, not per message.
const authMethodTexts = new WeakMap<ConnectionAuthMethod, string>();

/** `iothub-connection-auth-method` in Azure's exact spelling, including the always-null ip filter rule (§4.3). */
function authMethodText(method: ConnectionAuthMethod): string {
  let text = authMethodTexts.get(method);
  if (text === undefined) {
    text = JSON.stringify({ ...method, acceptingIpFilterRule: null });
    authMethodTexts.set(method, text);
  }
  return text;
}

function isDefaultGroup(name: string): boolean {
  return name.toLowerCase() === defaultConsumerGroup.toLowerCase();
}

function validateConsumerGroupName(name: string): void {
  if (isDefaultGroup(name)) return;
  if (!consumerGroupPattern.test(name)) {
    throw new ArgumentError(
      `Invalid consumer group name '${name}': 1-50 letters, digits, '.', '-' or '_', starting and ending with a letter or digit`,
      { field: 'name' },
    );
  }
}

function optionalString(value: string | number | boolean | undefined): string | undefined {
  return value === undefined ? undefined : String(value);
}

/** Shapes a stored log event as read from the endpoint, adding Event Hubs' read-time annotations. */
export function toEndpointEvent(event: LogEvent): EndpointEvent {
  const system = event.systemProperties;
  return {
    partition: event.partition,
    sequenceNumber: event.sequenceNumber,
    offset: String(event.sequenceNumber),
    enqueuedTime: event.enqueuedTime,
    deviceId: optionalString(system[SystemPropertyNames.deviceId]),
    moduleId: optionalString(system[SystemPropertyNames.moduleId]),
    messageId: optionalString(system[SystemPropertyNames.messageId]),
    correlationId: optionalString(system[SystemPropertyNames.correlationId]),
    userId: optionalString(system[SystemPropertyNames.userId]),
    contentType: optionalString(system[SystemPropertyNames.contentType]),
    contentEncoding: optionalString(system[SystemPropertyNames.contentEncoding]),
    source: optionalString(system[SystemPropertyNames.messageSource]),
    body: event.body,
    properties: event.properties,
    systemProperties: withReadTimeAnnotations(system, event),
  };
}

/**
 * A copy of the stored system properties plus Event Hubs' read-time annotations. Copied key by key on purpose:
 * a spread with computed keys made an object that JSON.stringify serialised ~5x slower (measured, 1M events:
 * 4.8 s vs 1.1 s including the stringify), and every event on the SSE stream goes through both.
 */
function withReadTimeAnnotations(
  system: Readonly<Record<string, string | number | boolean>>,
  event: LogEvent,
): Record<string, string | number | boolean> {
  const result: Record<string, string | number | boolean> = {};
  for (const name in system) result[name] = system[name] as string | number | boolean;
  result[SystemPropertyNames.sequenceNumber] = event.sequenceNumber;
  result[SystemPropertyNames.offset] = String(event.sequenceNumber);
  result[SystemPropertyNames.eventHubsEnqueuedTime] = event.enqueuedTime;
  return result;
}

interface PartitionCursor {
  position: LogPosition;
  buffer: LogEvent[];
  /** The notifier version at the last read that found nothing; re-read only when it moved. */
  emptyAtVersion: number | undefined;
}

interface TelemetryReaderInit {
  readonly ctx: CoreContext;
  /**
   * Reads events of a partition from a position: at once from the recent window, else a promise of a store read.
   * `verify` (the safety poll) asks the store whenever the window would answer "nothing new".
   */
  readonly source: (
    partition: number,
    from: LogPosition,
    limit: number,
    verify: boolean,
  ) => LogEvent[] | Promise<LogEvent[]>;
  /** The window's answer alone (no store read): undefined when only the store can answer. */
  readonly peek: (partition: number, from: LogPosition, limit: number) => LogEvent[] | undefined;
  readonly notifier: AppendNotifier;
  readonly cursors: ReadonlyMap<number, LogPosition>;
  readonly bufferSize: number;
  readonly live: boolean;
  readonly livePollMs: number;
  readonly signal: AbortSignal | undefined;
  readonly onClose: (reader: TelemetryReader) => void;
}

/**
 * A pull-based reader of the built-in endpoint: each `next()` serves from a per-partition buffer of at most
 * `bufferSize` events and refills it from the store only when empty. With several partitions the events are
 * merged by enqueued time (each partition stays in sequence order). Not safe for concurrent `next()` calls.
 */
export class TelemetryReader implements AsyncIterableIterator<EndpointEvent> {
  private readonly partitions = new Map<number, PartitionCursor>();
  private readonly abort = new AbortController();
  private closed = false;
  /** A safety poll timed out in {@link waitForAppend}: the next read asks the store (see `take`). */
  private verifyNext = false;
  private readonly onExternalAbort = () => this.close();
  private readonly onPollTimeout = () => {
    this.verifyNext = true;
    for (const cursor of this.partitions.values()) cursor.emptyAtVersion = undefined;
  };

  /** @internal Created by {@link BuiltInEndpoint.read}. */
  constructor(private readonly init: TelemetryReaderInit) {
    for (const [partition, position] of init.cursors) {
      this.partitions.set(partition, { position, buffer: [], emptyAtVersion: undefined });
    }
    if (init.signal?.aborted) this.close();
    else init.signal?.addEventListener('abort', this.onExternalAbort, { once: true });
  }

  /** Where the reader stands: the next position per partition (for checkpoints). */
  get positions(): ReadonlyMap<number, LogPosition> {
    const result = new Map<number, LogPosition>();
    for (const [partition, cursor] of this.partitions) {
      const head = cursor.buffer[0];
      result.set(partition, head ? { sequenceNumber: head.sequenceNumber, inclusive: true } : cursor.position);
    }
    return result;
  }

  /** The next event; waits for new appends when live and caught up. */
  async next(): Promise<IteratorResult<EndpointEvent, undefined>> {
    const events = await this.take(1);
    const event = events[0];
    return event ? { done: false, value: toEndpointEvent(event) } : { done: true, value: undefined };
  }

  /**
   * The next events, at most `maxEvents` (at least 1), in the order {@link next} would return them; waits like
   * `next()` for the first one, then takes what the buffers and the store hold now without waiting again.
   * `done` once the reader ended. For writers that send many events per socket write (the SSE route): one
   * call per batch instead of an await per event.
   */
  async nextBatch(maxEvents: number): Promise<IteratorResult<EndpointEvent[], undefined>> {
    const events = await this.take(Math.max(1, Math.trunc(maxEvents)));
    if (events.length === 0) return { done: true, value: undefined };
    return { done: false, value: events.map(toEndpointEvent) };
  }

  /**
   * The events available now from the reader's buffers and the window of recent events, without waiting and
   * without a store read: at most `maxEvents`, in the order {@link nextBatch} would return them; empty when there
   * is nothing new. Undefined when the next events need a store read or the reader ended: then use `nextBatch`.
   * With {@link waitForAppend}, lets a writer send an append in the very microtask that wakes it, ahead of the
   * work the same commit queued after it (the devices' acknowledgements).
   */
  takeAvailable(maxEvents: number): EndpointEvent[] | undefined {
    if (this.closed || this.verifyNext || !this.init.live) return undefined;
    const { peek, notifier, bufferSize } = this.init;
    const max = Math.max(1, Math.trunc(maxEvents));
    const taken: LogEvent[] = [];
    for (;;) {
      for (const [partition, cursor] of this.partitions) {
        if (cursor.buffer.length > 0) continue;
        const version = notifier.version(partition);
        if (cursor.emptyAtVersion === version) continue;
        const events = peek(partition, cursor.position, bufferSize);
        if (events === undefined) return taken.length > 0 ? taken.map(toEndpointEvent) : undefined;
        if (events.length === 0) cursor.emptyAtVersion = version;
        else cursor.buffer = events;
      }
      const refill = this.merge(taken, max);
      if (taken.length >= max || !refill) return taken.map(toEndpointEvent);
    }
  }

  /**
   * Resolves true once an append may have made events available, false after the safety poll interval or when
   * the reader closes. The promise is the notifier's own, so a writer awaiting it runs first after the commit.
   */
  waitForAppend(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return this.init.notifier.wait(this.init.livePollMs, this.abort.signal, this.onPollTimeout);
  }

  /**
   * Moves merged heads into `taken` (up to `max`); true when a partition's buffer ran empty and must be refilled
   * before the merge may go on.
   */
  private merge(taken: LogEvent[], max: number): boolean {
    while (taken.length < max) {
      const chosen = this.pickOldestHead();
      if (!chosen) return false;
      const event = chosen.buffer.shift()!;
      chosen.position = { sequenceNumber: event.sequenceNumber, inclusive: false };
      chosen.emptyAtVersion = undefined;
      taken.push(event);
      if (chosen.buffer.length === 0) return true;
    }
    return false;
  }

  /** Up to `max` events in merged order; waits (when live) only while it has none. Empty when the reader ended. */
  private async take(max: number): Promise<LogEvent[]> {
    const { source, notifier, bufferSize } = this.init;
    const taken: LogEvent[] = [];
    // After a safety poll, caught-up partitions are re-read from the store: a lost bus notice must not hide an
    // append by another process behind the window's "nothing new".
    let verify = this.verifyNext;
    this.verifyNext = false;
    while (!this.closed) {
      for (const [partition, cursor] of this.partitions) {
        if (cursor.buffer.length > 0) continue;
        const version = notifier.version(partition);
        if (cursor.emptyAtVersion === version) continue;
        // No await for the window's answer: a live reader's refill after each wake-up stays in this microtask.
        const read = source(partition, cursor.position, bufferSize, verify);
        const events = Array.isArray(read) ? read : await read;
        if (this.closed) break;
        if (events.length === 0) cursor.emptyAtVersion = version;
        else cursor.buffer = events;
      }
      if (this.closed) break;
      verify = false;
      // Merge: a head may be taken only while every partition has a buffered head or is known empty; a buffer
      // emptied by a take sends the loop back to refill that partition first.
      const refill = this.merge(taken, max);
      if (taken.length >= max) return taken;
      if (refill) continue;
      if (taken.length > 0) return taken;
      if (!this.init.live) break;
      const woken = await notifier.wait(this.init.livePollMs, this.abort.signal);
      // A wake moved the version of the partitions that grew; the safety poll re-reads all of them.
      if (!woken) {
        verify = true;
        for (const cursor of this.partitions.values()) cursor.emptyAtVersion = undefined;
      }
    }
    // Events taken before a close are dropped with the reader, as a closed reader's buffers are.
    this.close();
    return [];
  }

  /** Ends the iteration (also from `break` in `for await`). */
  async return(): Promise<IteratorResult<EndpointEvent, undefined>> {
    this.close();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Closes the reader; a pending `next()` resolves done. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.init.signal?.removeEventListener('abort', this.onExternalAbort);
    for (const cursor of this.partitions.values()) cursor.buffer = [];
    this.init.onClose(this);
  }

  /** `await using reader = await endpoint.read()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  private pickOldestHead(): PartitionCursor | undefined {
    let best: PartitionCursor | undefined;
    for (const cursor of this.partitions.values()) {
      const head = cursor.buffer[0];
      if (!head) continue;
      const bestHead = best?.buffer[0];
      if (!bestHead || head.enqueuedTime < bestHead.enqueuedTime) best = cursor;
    }
    return best;
  }
}
