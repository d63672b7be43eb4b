/**
 * One operation that settles exactly once: resolved, rejected with a HubError, or aborted. Internal.
 * @internal
 */
import { AbortError, HubError } from './errors';

/**
 * Wraps any thrown value as a HubError: transports must throw HubErrors, but a bug or a runtime error should not
 * leak an untyped error through the public API.
 * @internal
 */
export function toHubError(error: unknown): HubError {
  if (HubError.is(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new HubError('ServerError', message, { cause: error, retryable: false });
}

/**
 * A promise plus the means to settle it once. The caller's `signal` rejects it with AbortError (and runs the
 * `onAbort` hooks, e.g. to take it out of a queue); `signal` (the property) aborts when it settles, so that work
 * started on its behalf (a transport send) can stop.
 * @internal
 */
export class PendingOperation<T> {
  readonly promise: Promise<T>;
  #resolve!: (value: T) => void;
  #reject!: (error: unknown) => void;
  #settled = false;
  readonly #controller = new AbortController();
  readonly #callerSignal: AbortSignal | undefined;
  readonly #onAbort = (): void => {
    this.reject(new AbortError());
  };
  readonly #abortHooks: (() => void)[] = [];

  constructor(callerSignal?: AbortSignal) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#callerSignal = callerSignal;
    if (callerSignal?.aborted) {
      this.reject(new AbortError());
    } else {
      callerSignal?.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Whether it has resolved or rejected. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Aborts once the operation settled, whichever way: pass it to the work done for it. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Runs `hook` if the caller aborts (now, if it already did). */
  onAbort(hook: () => void): void {
    if (this.#settled) return;
    this.#abortHooks.push(hook);
  }

  /** Resolves unless settled already; returns whether it did. */
  resolve(value: T): boolean {
    if (this.#settled) return false;
    this.#finish();
    this.#resolve(value);
    return true;
  }

  /** Rejects (with a HubError) unless settled already; returns whether it did. */
  reject(error: unknown): boolean {
    if (this.#settled) return false;
    const hubError = toHubError(error);
    this.#finish();
    if (hubError instanceof AbortError || hubError.code === 'OperationAborted') {
      for (const hook of this.#abortHooks) hook();
    }
    this.#reject(hubError);
    return true;
  }

  #finish(): void {
    this.#settled = true;
    this.#callerSignal?.removeEventListener('abort', this.#onAbort);
    this.#controller.abort(new AbortError('The operation already settled'));
  }
}
