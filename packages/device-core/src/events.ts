/**
 * A tiny typed event emitter for connection lifecycle events (STYLE.md: events only for the lifecycle; incoming
 * data arrives through async iterators and handlers).
 */
import type { HubError } from './errors';

/** What `reconnecting` reports about the attempt about to be made. */
export interface ReconnectingEvent {
  /** 1 for the first attempt after a loss. */
  readonly attempt: number;
  /** How long the client waits before this attempt (backoff with full jitter). */
  readonly delayMs: number;
  /** Why the previous attempt, or the connection, failed. */
  readonly error?: HubError;
}

/** The lifecycle events of a device client, by name: each value is the listener's parameter list. */
export interface DeviceClientEvents {
  /** The connection is up, features are re-enabled, the twin re-read and the offline queue is being flushed. */
  connected: [];
  /** The connection was lost (not emitted for a planned SAS renewal reconnect, nor for `close()`). */
  disconnected: [error?: HubError];
  /** A reconnection attempt is scheduled. */
  reconnecting: [event: ReconnectingEvent];
  /**
   * Something the application should know about but no operation can report: credentials refused while
   * reconnecting (the client keeps trying), the retry policy giving up, a renewal or feature re-enable failing.
   */
  error: [error: HubError];
}

/** A listener of event `K` of `Events`. */
export type Listener<Events extends { [K in keyof Events]: unknown[] }, K extends keyof Events> = (
  ...args: Events[K]
) => void;

type AnyListener = (...args: readonly unknown[]) => void;

/**
 * A minimal typed emitter: `on()` returns the unsubscribe function, listeners run synchronously in registration
 * order, and a listener that throws is reported to `onListenerError` and does not stop the others.
 */
export class TypedEmitter<Events extends { [K in keyof Events]: unknown[] }> {
  readonly #listeners = new Map<keyof Events, Set<AnyListener>>();
  readonly #onListenerError: ((error: unknown) => void) | undefined;

  /** @param onListenerError where errors thrown by listeners go (default: dropped). */
  constructor(onListenerError?: (error: unknown) => void) {
    this.#onListenerError = onListenerError;
  }

  /** Adds a listener; returns a function that removes it (idempotent). */
  on<K extends keyof Events>(name: K, listener: Listener<Events, K>): () => void {
    let set = this.#listeners.get(name);
    if (!set) {
      set = new Set();
      this.#listeners.set(name, set);
    }
    // A wrapper, so that adding the same function twice gives two independent subscriptions.
    const entry: AnyListener = (...args) => (listener as unknown as AnyListener)(...args);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  /** Calls every listener of `name` with `args`. */
  emit<K extends keyof Events>(name: K, ...args: Events[K]): void {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        this.#onListenerError?.(error);
      }
    }
  }

  /** How many listeners `name` has. */
  listenerCount(name: keyof Events): number {
    return this.#listeners.get(name)?.size ?? 0;
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear();
  }
}
