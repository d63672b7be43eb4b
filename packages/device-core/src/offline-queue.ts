/**
 * The bounded queue telemetry waits in while the client is offline (or while the in-flight window is full), and
 * the seam for a durable one. Every send goes through it, so order is kept: messages leave in the order they
 * were accepted.
 */
import type { OutgoingMessage } from './transport/transport';

/**
 * What happens when the queue is full and another message arrives:
 * - `'reject-new'` (default): the new send rejects at once with ThrottledError (code
 *   `ThrottleBacklogLimitExceeded`); what is queued stays.
 * - `'drop-oldest'`: the oldest queued send rejects with that error and leaves the queue; the new one is queued.
 */
export type OfflineQueueOverflow = 'reject-new' | 'drop-oldest';

/** The overflow policies, as values. */
export const OfflineQueueOverflow = {
  rejectNew: 'reject-new',
  dropOldest: 'drop-oldest',
} as const satisfies Record<string, OfflineQueueOverflow>;

/** Options of the offline queue (`createDeviceClient({ offlineQueue })`). */
export interface OfflineQueueOptions {
  /** How many messages may wait (a batch counts each message). Default 1000. 0 disables queueing while offline. */
  readonly maxMessages?: number;
  /** Default `'reject-new'`. */
  readonly overflow?: OfflineQueueOverflow;
  /** How many sends may await the hub's acknowledgement at once. Default 32. */
  readonly maxInFlight?: number;
  /** Keeps queued messages across restarts; see {@link DurableQueue}. */
  readonly durable?: DurableQueue;
}

/** The defaults of {@link OfflineQueueOptions}. */
export const defaultOfflineQueue = { maxMessages: 1000, overflow: 'reject-new', maxInFlight: 32 } as const;

/** A message a durable queue holds, with the key it was stored under. */
export interface DurableQueueEntry {
  readonly key: string;
  readonly message: OutgoingMessage;
}

/**
 * A store that keeps telemetry until the hub accepted it, across process restarts (a file on Node, flash on a
 * gateway). The client `append`s a message when it accepts a send, `remove`s it once the hub acknowledged it, the
 * caller aborted, or the overflow policy dropped it, and sends what `load` returns (oldest first) when it starts,
 * before new messages. Messages still queued when the client is closed stay stored: their promises reject
 * (`client closed`) but a later run sends them. Delivery is therefore at least once.
 *
 * device-core ships no implementation (no file system here); `@fieldhub/device` provides a file-backed one.
 */
export interface DurableQueue {
  /** Stores a message; resolves with the key to remove it by. */
  append(message: OutgoingMessage): Promise<string>;
  /** Forgets a message. Removing an unknown key is not an error. */
  remove(key: string): Promise<void>;
  /** What earlier runs stored and nobody removed, oldest first. */
  load(): Promise<readonly DurableQueueEntry[]>;
}

/** Something that can wait in an {@link OfflineQueue}. */
export interface QueueItem {
  /** Order of acceptance; a re-queued item goes back to its place. */
  readonly sequence: number;
  /** How much of the bound it uses (messages). */
  readonly weight: number;
}

/** What {@link OfflineQueue.push} did. */
export type OfflineQueuePushResult<T> =
  | { readonly accepted: true; readonly dropped: readonly T[] }
  | { readonly accepted: false };

/**
 * A bounded FIFO ordered by `sequence`, with an overflow policy. It only orders and bounds; settling the dropped
 * or refused operations is the caller's job.
 */
export class OfflineQueue<T extends QueueItem> {
  readonly #items: T[] = [];
  #weight = 0;
  readonly maxMessages: number;
  readonly overflow: OfflineQueueOverflow;

  constructor(options: { maxMessages: number; overflow: OfflineQueueOverflow }) {
    this.maxMessages = options.maxMessages;
    this.overflow = options.overflow;
  }

  /** Items waiting. */
  get length(): number {
    return this.#items.length;
  }

  /** Messages waiting (the bounded quantity). */
  get weight(): number {
    return this.#weight;
  }

  /**
   * Adds a new item at the end, applying the overflow policy when it does not fit. An item heavier than the
   * whole bound is refused whatever the policy.
   */
  push(item: T): OfflineQueuePushResult<T> {
    if (item.weight > this.maxMessages) return { accepted: false };
    const dropped: T[] = [];
    if (this.#weight + item.weight > this.maxMessages) {
      if (this.overflow === 'reject-new') return { accepted: false };
      while (this.#weight + item.weight > this.maxMessages) {
        const oldest = this.#items.shift() as T;
        this.#weight -= oldest.weight;
        dropped.push(oldest);
      }
    }
    this.#items.push(item);
    this.#weight += item.weight;
    return { accepted: true, dropped };
  }

  /** Puts an item that was taken out (its send failed with the connection) back in its place; never refused. */
  requeue(item: T): void {
    let index = this.#items.length;
    while (index > 0 && (this.#items[index - 1] as T).sequence > item.sequence) index--;
    this.#items.splice(index, 0, item);
    this.#weight += item.weight;
  }

  /** Takes the first item out. */
  shift(): T | undefined {
    const item = this.#items.shift();
    if (item) this.#weight -= item.weight;
    return item;
  }

  /** Takes `item` out wherever it is; returns whether it was there. */
  remove(item: T): boolean {
    const index = this.#items.indexOf(item);
    if (index < 0) return false;
    this.#items.splice(index, 1);
    this.#weight -= item.weight;
    return true;
  }

  /** Takes everything out, in order. */
  drain(): T[] {
    const items = this.#items.splice(0);
    this.#weight = 0;
    return items;
  }
}
