/**
 * The Store seam: everything the hub keeps durably. Core code talks only to this interface; `sqlite/` is the
 * embedded default and a PostgreSQL store comes with scale-out. Both must pass the conformance suite in
 * `test/store-conformance.ts`.
 *
 * Every record is scoped by hub name (ARCHITECTURE.md: one install may later serve several hubs).
 * Two shapes cover the hub's needs:
 * - documents: JSON records in named collections with a revision for compare-and-set (registry, twins,
 *   policies, cloud-to-device messages, feedback, CAs, ...). Keys sort as byte strings, so a collection can be
 *   paged in key order and scanned by prefix.
 * - the event log: the built-in endpoint's partitions, append-only with sequence numbers, read by position,
 *   trimmed by retention.
 */

/** A stored JSON document with its revision (starts at 1, +1 on every write). */
export interface StoredDocument<T = unknown> {
  readonly key: string;
  readonly revision: number;
  readonly value: T;
}

/** Condition for a write: `undefined` = unconditional; `0` = must not exist; `n` = must be at revision n. */
export type ExpectedRevision = number | undefined;

/** One write in a batch (applied atomically by `DocumentStore.batch`). */
export type DocumentWrite =
  | {
      readonly op: 'put';
      readonly collection: string;
      readonly key: string;
      readonly value: unknown;
      readonly expectedRevision?: ExpectedRevision;
    }
  | {
      readonly op: 'delete';
      readonly collection: string;
      readonly key: string;
      readonly expectedRevision?: ExpectedRevision;
    };

/** Options for listing a collection in key order. */
export interface ListOptions {
  /** Only keys starting with this prefix. */
  readonly prefix?: string;
  /** Only keys strictly greater than this one (the continuation of a page). */
  readonly after?: string;
  /** At most this many documents. */
  readonly limit?: number;
}

/** Thrown (as the `code` of a HubError PreconditionFailed) when a revision condition does not hold. */
export class RevisionConflict extends Error {
  constructor(
    readonly collection: string,
    readonly key: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${collection}/${key}: expected revision ${expected}, found ${actual}`);
    this.name = 'RevisionConflict';
  }
}

/** JSON documents by (hub, collection, key). */
export interface DocumentStore {
  get<T>(hub: string, collection: string, key: string): Promise<StoredDocument<T> | undefined>;
  /** Writes a document and returns its new revision. @throws RevisionConflict when `expectedRevision` does not hold. */
  put(
    hub: string,
    collection: string,
    key: string,
    value: unknown,
    expectedRevision?: ExpectedRevision,
  ): Promise<number>;
  /** Deletes a document; returns whether it existed. @throws RevisionConflict when `expectedRevision` does not hold. */
  delete(hub: string, collection: string, key: string, expectedRevision?: ExpectedRevision): Promise<boolean>;
  /** Applies every write or none. Returns the new revision of each write (0 for deletes). @throws RevisionConflict */
  batch(hub: string, writes: readonly DocumentWrite[]): Promise<number[]>;
  /** Documents in ascending key order. */
  list<T>(hub: string, collection: string, options?: ListOptions): Promise<StoredDocument<T>[]>;
  /** How many documents a collection (or a key prefix of it) holds. */
  count(hub: string, collection: string, prefix?: string): Promise<number>;
  /** Deletes every document of a collection whose key starts with `prefix`; returns how many. */
  deletePrefix(hub: string, collection: string, prefix: string): Promise<number>;
}

/** An event to append to the log. Bodies are bytes; properties are small JSON maps. */
export interface LogEventInput {
  readonly body: Uint8Array;
  /** Application properties (string values, as on the wire). */
  readonly properties: Readonly<Record<string, string>>;
  /** System properties and annotations (message-id, iothub-connection-device-id, iothub-message-source, ...). */
  readonly systemProperties: Readonly<Record<string, string | number | boolean>>;
  /** Enqueued time, ms since epoch. */
  readonly enqueuedTime: number;
}

/** An event as stored: sequence numbers start at 0 per partition and never repeat, also across restarts. */
export interface LogEvent extends LogEventInput {
  readonly partition: number;
  readonly sequenceNumber: number;
}

/**
 * Where a log read starts. A sequence number is exclusive unless `inclusive` (Event Hubs' default); an enqueued
 * time starts at the first event enqueued strictly after it; `'latest'` returns nothing now (the caller goes on
 * from `info().lastSequenceNumber`).
 */
export type LogPosition =
  | { readonly sequenceNumber: number; readonly inclusive?: boolean }
  | { readonly enqueuedTime: number }
  | 'earliest'
  | 'latest';

/** Per-partition facts, as the Event Hubs management READ returns them. */
export interface PartitionInfo {
  readonly partition: number;
  /** First sequence number still stored (after retention), or the next one when the partition is empty. */
  readonly beginSequenceNumber: number;
  /** Last sequence number appended, or -1 when nothing was ever appended. */
  readonly lastSequenceNumber: number;
  readonly lastEnqueuedTime: number | undefined;
  readonly isEmpty: boolean;
}

/** The built-in endpoint's durable log. */
export interface EventLog {
  /**
   * Appends events to one partition. The promise resolves only once the events are durable (group commit:
   * appends arriving together may share one fsync).
   */
  append(hub: string, partition: number, events: readonly LogEventInput[]): Promise<LogEvent[]>;
  /** Events from a position in sequence order, at most `limit`. */
  read(hub: string, partition: number, from: LogPosition, limit: number): Promise<LogEvent[]>;
  info(hub: string, partition: number): Promise<PartitionInfo>;
  /**
   * Deletes events enqueued before `olderThan` (ms since epoch); returns how many. Only a prefix is removed (up
   * to the first event to keep), so a partition never has holes between begin and last sequence number.
   */
  trim(hub: string, partition: number, olderThan: number): Promise<number>;
}

/** The whole store. `close()` flushes and releases it; it is idempotent. */
export interface Store {
  readonly documents: DocumentStore;
  readonly log: EventLog;
  close(): Promise<void>;
}
