import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import {
  type DocumentStore,
  type DocumentWrite,
  type EventLog,
  type ExpectedRevision,
  type ListOptions,
  type LogEvent,
  type LogEventInput,
  type LogPosition,
  type PartitionInfo,
  RevisionConflict,
  type Store,
  type StoredDocument,
} from '../store';
import { startWalCheckpointer, type WalCheckpointer } from './wal-checkpointer';

/**
 * How hard a commit is pushed to disk. With WAL, `normal` writes each commit to the WAL file (the OS page cache)
 * before it returns, so acknowledged data survives a crash or SIGKILL of the process, but not an OS crash or
 * power loss; `full` also fsyncs the WAL on every commit (group commit shares that fsync between all appends of
 * one batch), which survives an OS crash at the price of a blocking fsync on the event loop per commit.
 */
export type SqliteSynchronous = 'normal' | 'full';

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** Database file (its folder is created when missing), or `':memory:'` for a throwaway store. */
  readonly path: string;
  readonly logger?: Logger | undefined;
  /** Default `normal`: durable against a process crash (the hub's invariant), not against an OS crash. */
  readonly synchronous?: SqliteSynchronous | undefined;
  /** How long a statement waits for another connection's write lock. Default 5000 ms. */
  readonly busyTimeoutMs?: number | undefined;
  /** At most this many events are committed in one group-commit transaction. Default 4096. */
  readonly maxBatchEvents?: number | undefined;
  /**
   * Who copies the WAL into the database file. `background` (default for files): a worker thread on its own
   * connection, so the copy and its fsyncs stay off the event loop. `inline`: SQLite's autocheckpoint, at commit
   * time on the caller's thread.
   */
  readonly checkpoint?: 'background' | 'inline' | undefined;
  /** With `background`: WAL frames at which the main connection forces a RESTART checkpoint. Default 16384. */
  readonly walRestartFrames?: number | undefined;
}

/** SQLite's default autocheckpoint threshold, in pages. */
const inlineCheckpointPages = 1000;
/**
 * Default WAL size (in frames) at which the main connection forces a RESTART checkpoint. Under sustained load a
 * writer commits during every background checkpoint, so the WAL is never fully copied at an idle moment and
 * SQLite never rewinds it; this bounds it (~64 MB at 4 KB pages) at the cost of one short blocking checkpoint.
 */
const defaultWalRestartFrames = 16_384;

/** Thrown by every operation of a store that was closed. */
export class StoreClosedError extends Error {
  constructor() {
    super('the store is closed');
    this.name = 'StoreClosedError';
  }
}

/**
 * Schema migrations, applied in order, each in its own transaction; `schema_migrations` records the applied ones.
 * Never edit a released entry: append a new one.
 */
const migrations: readonly string[] = [
  `
  CREATE TABLE documents (
    hub TEXT NOT NULL,
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    revision INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (hub, collection, key)
  ) WITHOUT ROWID;

  -- One row per partition ever appended to: the next sequence number survives trimming every event, so
  -- sequence numbers never repeat.
  CREATE TABLE log_partitions (
    hub TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_sequence INTEGER NOT NULL,
    last_enqueued_time INTEGER,
    PRIMARY KEY (hub, partition)
  ) WITHOUT ROWID;

  -- A rowid table (not WITHOUT ROWID): bodies may be hundreds of KB, which WITHOUT ROWID tables handle badly.
  CREATE TABLE log_events (
    hub TEXT NOT NULL,
    partition INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    enqueued_time INTEGER NOT NULL,
    body BLOB NOT NULL,
    properties TEXT NOT NULL,
    system_properties TEXT NOT NULL,
    PRIMARY KEY (hub, partition, sequence)
  );
  -- No index on enqueued_time: it made every append ~1.6x slower. Reads by time and retention binary-search
  -- the sequence numbers instead, which works because a partition stays contiguous (trim removes a prefix).
  `,
];

interface RevisionRow {
  readonly revision: number;
}
interface DocumentRow {
  readonly key: string;
  readonly revision: number;
  readonly value: string;
}
interface DocumentValueRow {
  readonly revision: number;
  readonly value: string;
}
interface CountRow {
  readonly n: number;
}
interface CounterRow {
  readonly next_sequence: number;
  readonly last_enqueued_time: number | null;
}
interface SequenceRow {
  readonly s: number | null;
}
interface TimeRow {
  readonly t: number;
}
interface EventRow {
  readonly sequence: number;
  readonly enqueued_time: number;
  readonly body: Buffer;
  readonly properties: string;
  readonly system_properties: string;
}

interface PendingAppend {
  readonly hub: string;
  readonly partition: number;
  readonly events: readonly LogEventInput[];
  readonly resolve: (events: LogEvent[]) => void;
  readonly reject: (error: unknown) => void;
}

interface PartitionCounter {
  readonly hub: string;
  readonly partition: number;
  next: number;
  lastEnqueuedTime: number | null;
}

/**
 * Opens (creating and migrating when needed) the embedded SQLite store: WAL journal, `synchronous=NORMAL` by
 * default (see {@link SqliteSynchronous}), every record keyed by hub name.
 *
 * Log appends are group-committed: appends that arrive in the same event-loop turn (up to `maxBatchEvents`)
 * share one transaction, and each caller's promise resolves only after that transaction committed.
 *
 * @example
 * ```ts
 * const store = await openSqliteStore({ path: '/var/lib/fieldhub/hub.db' });
 * await store.documents.put('myhub', 'devices', 'dev1', { status: 'enabled' }, 0);
 * const [event] = await store.log.append('myhub', 0, [{ body, properties: {}, systemProperties: {}, enqueuedTime: Date.now() }]);
 * await store.close();
 * ```
 * @throws when the file cannot be opened or was written by a newer schema version.
 */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  const { path, logger } = options;
  const synchronous = options.synchronous ?? 'normal';
  const maxBatchEvents = Math.max(1, options.maxBatchEvents ?? 4096);
  const inMemory = path === ':memory:' || path === '';
  if (!inMemory) await mkdir(dirname(path), { recursive: true });

  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  const db = new Database(path, { timeout: busyTimeoutMs });
  try {
    // In-memory databases cannot use WAL (SQLite answers 'memory'); nothing to make durable there anyway.
    if (!inMemory) db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    migrate(db, logger);
  } catch (error) {
    db.close();
    throw error;
  }

  let closed = false;
  let closing: Promise<void> | undefined;

  let checkpointer: WalCheckpointer | undefined;
  let restartScheduled = false;
  const restartWal = (): void => {
    restartScheduled = false;
    if (closed) return;
    try {
      db.pragma('wal_checkpoint(RESTART)');
    } catch (error) {
      logger?.warn({ err: error }, 'sqlite WAL restart checkpoint failed');
    }
  };
  const walRestartFrames = Math.max(1, options.walRestartFrames ?? defaultWalRestartFrames);
  if (!inMemory && (options.checkpoint ?? 'background') === 'background') {
    db.pragma('wal_autocheckpoint = 0');
    // After a rewind, shrink a WAL that grew under a burst back to this size.
    db.pragma(`journal_size_limit = ${walRestartFrames * 4096}`);
    checkpointer = startWalCheckpointer({
      path,
      synchronous: synchronous === 'full' ? 'FULL' : 'NORMAL',
      busyTimeoutMs,
      intervalMs: 100,
      onCheckpoint: (result) => {
        if (result.log >= walRestartFrames && !restartScheduled && !closed) {
          restartScheduled = true;
          setImmediate(restartWal);
        }
      },
      onError: (error) => {
        logger?.warn({ err: error }, 'sqlite background checkpointer failed; checkpointing inline');
        checkpointer = undefined;
        if (!closed) db.pragma(`wal_autocheckpoint = ${inlineCheckpointPages}`);
      },
    });
    if (checkpointer === undefined) db.pragma(`wal_autocheckpoint = ${inlineCheckpointPages}`);
  }
  logger?.debug({ path, synchronous, backgroundCheckpoint: checkpointer !== undefined }, 'sqlite store opened');

  const ensureOpen = (): void => {
    if (closed) throw new StoreClosedError();
  };

  // ---- documents ----------------------------------------------------------------------------------------------

  const getRevision = db.prepare<[string, string, string], RevisionRow>(
    'SELECT revision FROM documents WHERE hub = ? AND collection = ? AND key = ?',
  );
  const getDocument = db.prepare<[string, string, string], DocumentValueRow>(
    'SELECT revision, value FROM documents WHERE hub = ? AND collection = ? AND key = ?',
  );
  const upsertDocument = db.prepare<[string, string, string, number, string]>(
    `INSERT INTO documents (hub, collection, key, revision, value) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (hub, collection, key) DO UPDATE SET revision = excluded.revision, value = excluded.value`,
  );
  const deleteDocument = db.prepare<[string, string, string]>(
    'DELETE FROM documents WHERE hub = ? AND collection = ? AND key = ?',
  );
  // Prefix scans are key ranges [prefix, upperBound) rather than LIKE, so `%` and `_` in keys mean nothing and
  // the primary key index serves the scan. `>=` vs `>` is the difference between a prefix and an `after` cursor.
  const selectList = (lower: '>=' | '>', bounded: boolean) =>
    db.prepare<unknown[], DocumentRow>(
      `SELECT key, revision, value FROM documents WHERE hub = ? AND collection = ? AND key ${lower} ?${
        bounded ? ' AND key < ?' : ''
      } ORDER BY key LIMIT ?`,
    );
  const listStatements = {
    from: selectList('>=', false),
    fromBounded: selectList('>=', true),
    after: selectList('>', false),
    afterBounded: selectList('>', true),
  };
  const countAll = db.prepare<[string, string, string], CountRow>(
    'SELECT count(*) AS n FROM documents WHERE hub = ? AND collection = ? AND key >= ?',
  );
  const countBounded = db.prepare<[string, string, string, string], CountRow>(
    'SELECT count(*) AS n FROM documents WHERE hub = ? AND collection = ? AND key >= ? AND key < ?',
  );
  const deleteAll = db.prepare<[string, string, string]>(
    'DELETE FROM documents WHERE hub = ? AND collection = ? AND key >= ?',
  );
  const deleteBounded = db.prepare<[string, string, string, string]>(
    'DELETE FROM documents WHERE hub = ? AND collection = ? AND key >= ? AND key < ?',
  );

  /** Checks a condition against the current revision (0 = absent). */
  const checkRevision = (collection: string, key: string, expected: ExpectedRevision, actual: number): void => {
    if (expected === undefined) return;
    if (!Number.isSafeInteger(expected) || expected < 0) {
      throw new RangeError(`expectedRevision must be a non-negative integer, got ${String(expected)}`);
    }
    if (expected !== actual) throw new RevisionConflict(collection, key, expected, actual);
  };

  const applyPut = (
    hub: string,
    collection: string,
    key: string,
    value: unknown,
    expected: ExpectedRevision,
  ): number => {
    const actual = getRevision.get(hub, collection, key)?.revision ?? 0;
    checkRevision(collection, key, expected, actual);
    const revision = actual + 1;
    // JSON.stringify(undefined) is undefined: store it as null rather than fail the NOT NULL constraint.
    upsertDocument.run(hub, collection, key, revision, JSON.stringify(value) ?? 'null');
    return revision;
  };

  const applyDelete = (hub: string, collection: string, key: string, expected: ExpectedRevision): boolean => {
    const actual = getRevision.get(hub, collection, key)?.revision ?? 0;
    checkRevision(collection, key, expected, actual);
    if (actual === 0) return false;
    deleteDocument.run(hub, collection, key);
    return true;
  };

  // IMMEDIATE transactions take the write lock up front: a read-then-write under a deferred transaction could
  // fail with SQLITE_BUSY when another connection (a CLI on the same file) writes in between.
  const putTransaction = db.transaction(applyPut);
  const deleteTransaction = db.transaction(applyDelete);
  const batchTransaction = db.transaction((hub: string, writes: readonly DocumentWrite[]): number[] =>
    writes.map((write) => {
      if (write.op === 'put') return applyPut(hub, write.collection, write.key, write.value, write.expectedRevision);
      applyDelete(hub, write.collection, write.key, write.expectedRevision);
      return 0;
    }),
  );

  const documents: DocumentStore = {
    async get<T>(hub: string, collection: string, key: string): Promise<StoredDocument<T> | undefined> {
      ensureOpen();
      const row = getDocument.get(hub, collection, key);
      return row ? { key, revision: row.revision, value: JSON.parse(row.value) as T } : undefined;
    },
    async put(hub, collection, key, value, expectedRevision) {
      ensureOpen();
      return putTransaction.immediate(hub, collection, key, value, expectedRevision);
    },
    async delete(hub, collection, key, expectedRevision) {
      ensureOpen();
      return deleteTransaction.immediate(hub, collection, key, expectedRevision);
    },
    async batch(hub, writes) {
      ensureOpen();
      if (writes.length === 0) return [];
      return batchTransaction.immediate(hub, writes);
    },
    async list<T>(hub: string, collection: string, options: ListOptions = {}): Promise<StoredDocument<T>[]> {
      ensureOpen();
      const prefix = options.prefix ?? '';
      const upper = prefixUpperBound(prefix);
      const limit = options.limit === undefined ? -1 : Math.max(0, Math.floor(options.limit));
      if (limit === 0) return [];
      // The `after` cursor only matters when it lies at or beyond the prefix (byte order, as SQLite compares).
      const useAfter = options.after !== undefined && compareBytes(options.after, prefix) >= 0;
      const lower = useAfter && options.after !== undefined ? options.after : prefix;
      const statement =
        upper === undefined
          ? useAfter
            ? listStatements.after
            : listStatements.from
          : useAfter
            ? listStatements.afterBounded
            : listStatements.fromBounded;
      const parameters: unknown[] =
        upper === undefined ? [hub, collection, lower, limit] : [hub, collection, lower, upper, limit];
      return statement.all(...parameters).map((row) => ({
        key: row.key,
        revision: row.revision,
        value: JSON.parse(row.value) as T,
      }));
    },
    async count(hub, collection, prefix = '') {
      ensureOpen();
      const upper = prefixUpperBound(prefix);
      const row =
        upper === undefined ? countAll.get(hub, collection, prefix) : countBounded.get(hub, collection, prefix, upper);
      return row?.n ?? 0;
    },
    async deletePrefix(hub, collection, prefix) {
      ensureOpen();
      const upper = prefixUpperBound(prefix);
      const result =
        upper === undefined
          ? deleteAll.run(hub, collection, prefix)
          : deleteBounded.run(hub, collection, prefix, upper);
      return result.changes;
    },
  };

  // ---- event log ----------------------------------------------------------------------------------------------

  const getCounter = db.prepare<[string, number], CounterRow>(
    'SELECT next_sequence, last_enqueued_time FROM log_partitions WHERE hub = ? AND partition = ?',
  );
  const upsertCounter = db.prepare<[string, number, number, number | null]>(
    `INSERT INTO log_partitions (hub, partition, next_sequence, last_enqueued_time) VALUES (?, ?, ?, ?)
     ON CONFLICT (hub, partition) DO UPDATE
       SET next_sequence = excluded.next_sequence, last_enqueued_time = excluded.last_enqueued_time`,
  );
  const insertEvent = db.prepare<[string, number, number, number, Buffer, string, string]>(
    `INSERT INTO log_events (hub, partition, sequence, enqueued_time, body, properties, system_properties)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  const readFrom = db.prepare<[string, number, number, number], EventRow>(
    `SELECT sequence, enqueued_time, body, properties, system_properties FROM log_events
     WHERE hub = ? AND partition = ? AND sequence >= ? ORDER BY sequence LIMIT ?`,
  );
  const firstSequence = db.prepare<[string, number], SequenceRow>(
    'SELECT min(sequence) AS s FROM log_events WHERE hub = ? AND partition = ?',
  );
  const timeAt = db.prepare<[string, number, number], TimeRow>(
    'SELECT enqueued_time AS t FROM log_events WHERE hub = ? AND partition = ? AND sequence = ?',
  );
  // Walks the partition in sequence order from its oldest event and stops at the first one to keep: it reads
  // only the rows that trimming deletes anyway, and keeps the partition contiguous even if times went backwards.
  const firstToKeep = db.prepare<[string, number, number], SequenceRow>(
    'SELECT sequence AS s FROM log_events WHERE hub = ? AND partition = ? AND enqueued_time >= ? ORDER BY sequence LIMIT 1',
  );
  const trimBefore = db.prepare<[string, number, number]>(
    'DELETE FROM log_events WHERE hub = ? AND partition = ? AND sequence < ?',
  );

  /**
   * The first stored sequence number whose enqueued time satisfies `isLate`, by binary search over the
   * partition's contiguous range (O(log n) point reads); undefined when none does. Enqueued times are stamped by
   * the hub at append and so do not decrease along a partition; were they out of order, the answer is still an
   * event satisfying `isLate` whose predecessor does not.
   */
  const firstSequenceWhere = (
    hub: string,
    partition: number,
    isLate: (time: number) => boolean,
  ): number | undefined => {
    const begin = firstSequence.get(hub, partition)?.s ?? null;
    if (begin === null) return undefined;
    const end = getCounter.get(hub, partition)?.next_sequence ?? begin + 1;
    let low = begin;
    let high = end;
    while (low < high) {
      const middle = Math.floor((low + high) / 2);
      const time = timeAt.get(hub, partition, middle)?.t;
      if (time === undefined || isLate(time)) high = middle;
      else low = middle + 1;
    }
    return low < end ? low : undefined;
  };

  const trimTransaction = db.transaction((hub: string, partition: number, olderThan: number): number => {
    // Retention removes a prefix (the events before the first one enqueued at or after `olderThan`), so the
    // partition never has holes and beginSequenceNumber..lastSequenceNumber are all readable.
    const keepFrom = firstToKeep.get(hub, partition, olderThan)?.s ?? Number.MAX_SAFE_INTEGER;
    return trimBefore.run(hub, partition, keepFrom).changes;
  });

  /** Writes a group of appends; runs inside one transaction, so a failure writes none of them. */
  const writeAppends = db.transaction((group: readonly PendingAppend[]): LogEvent[][] => {
    const counters = new Map<string, PartitionCounter>();
    const results = group.map((request) => {
      const id = `${request.partition}:${request.hub}`;
      let counter = counters.get(id);
      if (counter === undefined) {
        const row = getCounter.get(request.hub, request.partition);
        counter = {
          hub: request.hub,
          partition: request.partition,
          next: row?.next_sequence ?? 0,
          lastEnqueuedTime: row?.last_enqueued_time ?? null,
        };
        counters.set(id, counter);
      }
      const appended: LogEvent[] = [];
      for (const event of request.events) {
        const sequenceNumber = counter.next++;
        insertEvent.run(
          request.hub,
          request.partition,
          sequenceNumber,
          event.enqueuedTime,
          toBuffer(event.body),
          jsonOf(event.properties),
          JSON.stringify(event.systemProperties),
        );
        counter.lastEnqueuedTime = event.enqueuedTime;
        // An object literal of one shape rather than a spread: this runs once per telemetry message.
        appended.push({
          body: event.body,
          properties: event.properties,
          systemProperties: event.systemProperties,
          enqueuedTime: event.enqueuedTime,
          partition: request.partition,
          sequenceNumber,
        });
      }
      return appended;
    });
    for (const counter of counters.values()) {
      upsertCounter.run(counter.hub, counter.partition, counter.next, counter.lastEnqueuedTime);
    }
    return results;
  });

  let queue: PendingAppend[] = [];
  let scheduled: NodeJS.Immediate | undefined;

  /** Commits the oldest group of queued appends (at least one request, about `maxBatchEvents` events). */
  const flushGroup = (): void => {
    let size = 0;
    let take = 0;
    while (take < queue.length && (take === 0 || size + (queue[take]?.events.length ?? 0) <= maxBatchEvents)) {
      size += queue[take]?.events.length ?? 0;
      take++;
    }
    const group = queue.slice(0, take);
    queue = queue.slice(take);
    try {
      const results = writeAppends.immediate(group);
      for (const [index, request] of group.entries()) request.resolve(results[index] ?? []);
    } catch (error) {
      if (group.length === 1) {
        group[0]?.reject(error);
        return;
      }
      // Isolate the failure: one bad request must not fail the appends that merely shared its transaction.
      logger?.warn({ err: error, requests: group.length }, 'group commit failed; retrying appends one by one');
      for (const request of group) {
        try {
          request.resolve(writeAppends.immediate([request])[0] ?? []);
        } catch (single) {
          request.reject(single);
        }
      }
    }
  };

  const onImmediate = (): void => {
    scheduled = undefined;
    flushGroup();
    if (queue.length > 0 && !closed) scheduled = setImmediate(onImmediate);
  };

  const log: EventLog = {
    append(hub, partition, events) {
      try {
        ensureOpen();
        checkPartition(partition);
        for (const event of events) checkEvent(event);
      } catch (error) {
        return Promise.reject(error);
      }
      if (events.length === 0) return Promise.resolve([]);
      return new Promise<LogEvent[]>((resolve, reject) => {
        queue.push({ hub, partition, events, resolve, reject });
        // setImmediate runs after the I/O callbacks of this loop turn: every append that arrives with them
        // (e.g. all PUBLISH packets parsed from one socket read) joins the same transaction.
        scheduled ??= setImmediate(onImmediate);
      });
    },
    async read(hub, partition, from, limit) {
      ensureOpen();
      checkPartition(partition);
      const count = Math.floor(limit);
      if (!(count > 0)) return [];
      const start = startSequence(hub, partition, from);
      if (start === undefined) return [];
      return readFrom.all(hub, partition, start, count).map((row) => ({
        partition,
        sequenceNumber: row.sequence,
        enqueuedTime: row.enqueued_time,
        body: row.body,
        properties: JSON.parse(row.properties) as Record<string, string>,
        systemProperties: JSON.parse(row.system_properties) as Record<string, string | number | boolean>,
      }));
    },
    async info(hub, partition): Promise<PartitionInfo> {
      ensureOpen();
      checkPartition(partition);
      const counter = getCounter.get(hub, partition);
      const next = counter?.next_sequence ?? 0;
      const first = firstSequence.get(hub, partition)?.s ?? null;
      return {
        partition,
        beginSequenceNumber: first ?? next,
        lastSequenceNumber: next - 1,
        lastEnqueuedTime: counter?.last_enqueued_time ?? undefined,
        isEmpty: first === null,
      };
    },
    async trim(hub, partition, olderThan) {
      ensureOpen();
      checkPartition(partition);
      return trimTransaction.immediate(hub, partition, olderThan);
    },
  };

  /** The first sequence number a read from `from` may return, or undefined when it returns nothing now. */
  const startSequence = (hub: string, partition: number, from: LogPosition): number | undefined => {
    if (from === 'earliest') return 0;
    if (from === 'latest') return undefined;
    if ('sequenceNumber' in from) {
      // Event Hubs' default: a sequence-number position is exclusive unless asked otherwise.
      return from.inclusive === true ? from.sequenceNumber : from.sequenceNumber + 1;
    }
    const time = from.enqueuedTime;
    return firstSequenceWhere(hub, partition, (enqueued) => enqueued > time);
  };

  return {
    documents,
    log,
    close() {
      closing ??= (async () => {
        // Acknowledge what was accepted before close: flush every queued append, then release the file.
        if (scheduled !== undefined) clearImmediate(scheduled);
        scheduled = undefined;
        while (queue.length > 0) flushGroup();
        closed = true;
        await checkpointer?.close();
        // The last connection to close checkpoints what is left and removes the WAL.
        db.close();
        logger?.debug({ path }, 'sqlite store closed');
      })();
      return closing;
    },
  };
}

/** Applies pending migrations; refuses a database written by a newer version of this code. */
function migrate(db: Database.Database, logger: Logger | undefined): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const currentVersion = db.prepare<[], { v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
  const record = db.prepare<[number, number]>('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)');
  const apply = db.transaction((version: number, sql: string) => {
    // Re-read inside the write lock: another process may have migrated in between.
    if ((currentVersion.get()?.v ?? 0) >= version) return;
    db.exec(sql);
    record.run(version, Date.now());
  });
  const found = currentVersion.get()?.v ?? 0;
  if (found > migrations.length) {
    throw new Error(`database schema version ${found} is newer than this hub's (${migrations.length})`);
  }
  migrations.forEach((sql, index) => {
    const version = index + 1;
    if (version > found) {
      apply.immediate(version, sql);
      logger?.info({ version }, 'sqlite store migrated');
    }
  });
}

function checkPartition(partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new RangeError(`partition must be a non-negative integer, got ${String(partition)}`);
  }
}

function checkEvent(event: LogEventInput): void {
  if (!(event.body instanceof Uint8Array)) throw new TypeError('event body must be a Uint8Array');
  if (!Number.isFinite(event.enqueuedTime)) throw new RangeError('event enqueuedTime must be a finite number');
}

/** JSON of a property map; most telemetry has no application properties, so skip the serialiser for those. */
function jsonOf(properties: Readonly<Record<string, string>>): string {
  for (const _ in properties) return JSON.stringify(properties);
  return '{}';
}

/** A Buffer view of the bytes (no copy): better-sqlite3 binds Buffers as BLOBs. */
function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Compares strings the way SQLite's BINARY collation does: by UTF-8 bytes, i.e. by code point. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The smallest string greater than every string starting with `prefix`, in UTF-8 byte order (= code point
 * order), or undefined when there is none (empty prefix, or only U+10FFFF).
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()?.codePointAt(0) ?? 0;
    if (last < 0x10ffff) {
      // Skip the surrogate range: those code points cannot appear in well-formed UTF-8.
      const next = last >= 0xd7ff && last < 0xe000 ? 0xe000 : last + 1;
      points.push(String.fromCodePoint(next));
      return points.join('');
    }
  }
  return undefined;
}
