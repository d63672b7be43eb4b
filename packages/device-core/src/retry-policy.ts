/**
 * Reconnection policy: exponential backoff with FULL jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"): the delay before attempt n is uniform in [0, min(maxDelayMs, initialDelayMs * factor^(n-1))). Small, as
 * azure-iot-sdk-node's policy is, but with full jitter so that a fleet that lost its hub at once does not come back
 * in waves.
 */
import { ArgumentError, type HubError, ThrottledError } from './errors';

/** Decides whether and when the connection manager tries to reconnect. */
export interface RetryPolicy {
  /**
   * The delay in ms before attempt `attempt` (1 = the first attempt after the connection was lost), given the
   * error that ended the connection or the previous attempt; `undefined` to give up.
   */
  nextDelayMs(attempt: number, error: HubError | undefined): number | undefined;
}

/** Options of {@link exponentialBackoffWithJitter}. */
export interface ExponentialBackoffOptions {
  /** The cap of the first delay. Default 1000 ms. */
  readonly initialDelayMs?: number;
  /** No delay exceeds this. Default 60 000 ms. */
  readonly maxDelayMs?: number;
  /** Growth per attempt. Default 2. */
  readonly factor?: number;
  /** The cap of the first delay after a ThrottledError (the hub asked us to slow down). Default 10 000 ms. */
  readonly throttledInitialDelayMs?: number;
  /** Give up after this many attempts. Default `Infinity`: a device never gives up unless told to. */
  readonly maxAttempts?: number;
  /**
   * Whether to try again after `error`. Default: always (even after AuthenticationError: a device whose key was
   * rotated may get it back; the client reports each refusal through its `error` event).
   */
  readonly shouldRetry?: (error: HubError | undefined) => boolean;
  /** Uniform random in [0, 1). Default `Math.random`; inject for deterministic tests. */
  readonly random?: () => number;
}

/** The defaults of {@link exponentialBackoffWithJitter}. */
export const defaultBackoff = {
  initialDelayMs: 1_000,
  maxDelayMs: 60_000,
  factor: 2,
  throttledInitialDelayMs: 10_000,
  maxAttempts: Number.POSITIVE_INFINITY,
} as const;

/**
 * Exponential backoff with full jitter; the default policy of every client.
 *
 * @throws ArgumentError when a delay is negative, `factor` < 1, or `maxAttempts` < 0.
 * @example
 * ```ts
 * const retryPolicy = exponentialBackoffWithJitter({ initialDelayMs: 500, maxDelayMs: 30_000 });
 * ```
 */
export function exponentialBackoffWithJitter(options: ExponentialBackoffOptions = {}): RetryPolicy {
  const initialDelayMs = options.initialDelayMs ?? defaultBackoff.initialDelayMs;
  const maxDelayMs = options.maxDelayMs ?? defaultBackoff.maxDelayMs;
  const factor = options.factor ?? defaultBackoff.factor;
  const throttledInitialDelayMs = options.throttledInitialDelayMs ?? defaultBackoff.throttledInitialDelayMs;
  const maxAttempts = options.maxAttempts ?? defaultBackoff.maxAttempts;
  const random = options.random ?? Math.random;
  const shouldRetry = options.shouldRetry ?? (() => true);
  for (const [field, value] of Object.entries({ initialDelayMs, maxDelayMs, throttledInitialDelayMs, maxAttempts })) {
    if (!(value >= 0)) throw new ArgumentError(`${field} must be >= 0`, { field });
  }
  if (!(factor >= 1)) throw new ArgumentError('factor must be >= 1', { field: 'factor' });
  return {
    nextDelayMs(attempt, error) {
      if (attempt > maxAttempts || !shouldRetry(error)) return undefined;
      const base = error instanceof ThrottledError ? throttledInitialDelayMs : initialDelayMs;
      const cap = Math.min(maxDelayMs, base * factor ** Math.max(0, attempt - 1));
      return Math.floor(random() * cap);
    },
  };
}

/** A policy that never reconnects: a lost connection stays lost until the next operation connects on demand. */
export function noRetry(): RetryPolicy {
  return { nextDelayMs: () => undefined };
}
