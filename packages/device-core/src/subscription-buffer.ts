/**
 * A bounded buffer behind an async iterator: producers `push`, one consumer at a time awaits `next`. Internal.
 * @internal
 */
import { AbortError } from './errors';

/** What a full buffer does with one more item. @internal */
export type BufferOverflow = 'drop-newest' | 'drop-oldest' | 'coalesce';

/** @internal */
export interface SubscriptionBufferOptions<T> {
  readonly capacity: number;
  readonly overflow: BufferOverflow;
  /** For `coalesce`: merges the newest item into the last buffered one. */
  readonly coalesce?: (older: T, newer: T) => T;
  /** Told about every item the policy drops. */
  readonly onDrop?: (item: T) => void;
}

/** @internal */
export class SubscriptionBuffer<T> {
  readonly #items: T[] = [];
  readonly #waiters: { resolve(result: IteratorResult<T>): void; reject(error: unknown): void }[] = [];
  readonly #options: SubscriptionBufferOptions<T>;
  #ended = false;

  constructor(options: SubscriptionBufferOptions<T>) {
    this.#options = options;
  }

  get length(): number {
    return this.#items.length;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Hands `item` to a waiting consumer or buffers it, applying the overflow policy. */
  push(item: T): void {
    if (this.#ended) {
      this.#options.onDrop?.(item);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve({ value: item, done: false });
      return;
    }
    if (this.#items.length < this.#options.capacity) {
      this.#items.push(item);
      return;
    }
    const { overflow, coalesce, onDrop } = this.#options;
    if (overflow === 'coalesce' && coalesce && this.#items.length > 0) {
      const last = this.#items.length - 1;
      this.#items[last] = coalesce(this.#items[last] as T, item);
    } else if (overflow === 'drop-oldest' && this.#items.length > 0) {
      onDrop?.(this.#items.shift() as T);
      this.#items.push(item);
    } else {
      onDrop?.(item);
    }
  }

  /** The next item; `done` once ended and empty; AbortError when `signal` aborts while waiting. */
  next(signal?: AbortSignal): Promise<IteratorResult<T>> {
    const item = this.#items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    if (signal?.aborted) return Promise.reject(new AbortError());
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(new AbortError());
      };
      const waiter = {
        resolve: (result: IteratorResult<T>) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(result);
        },
        reject,
      };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Ends the stream: waiting consumers get `done`; what is buffered is returned (and no longer delivered). */
  end(): T[] {
    this.#ended = true;
    for (const waiter of this.#waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
    return this.#items.splice(0);
  }
}
