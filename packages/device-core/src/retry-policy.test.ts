import { describe, expect, it } from 'vitest';
import { ArgumentError, AuthenticationError, ConnectionError, ThrottledError } from './errors';
import { exponentialBackoffWithJitter, noRetry } from './retry-policy';

describe('exponentialBackoffWithJitter', () => {
  it('draws each delay uniformly below an exponentially growing, capped ceiling (full jitter)', () => {
    const top = exponentialBackoffWithJitter({ random: () => 0.999999, initialDelayMs: 100, maxDelayMs: 1000 });
    expect([1, 2, 3, 4, 5, 6].map((n) => top.nextDelayMs(n, undefined))).toEqual([99, 199, 399, 799, 999, 999]);
    const bottom = exponentialBackoffWithJitter({ random: () => 0 });
    expect(bottom.nextDelayMs(10, undefined)).toBe(0);
  });

  it('defaults to 1 s initial cap, 60 s max, and never gives up, even on refused credentials', () => {
    const policy = exponentialBackoffWithJitter({ random: () => 0.5 });
    expect(policy.nextDelayMs(1, new ConnectionError('x'))).toBe(500);
    expect(policy.nextDelayMs(1000, new AuthenticationError('x'))).toBe(30_000);
  });

  it('starts higher after ThrottledError', () => {
    const policy = exponentialBackoffWithJitter({ random: () => 0.5 });
    expect(policy.nextDelayMs(1, new ThrottledError('slow down'))).toBe(5000);
  });

  it('gives up after maxAttempts or when shouldRetry says so', () => {
    const policy = exponentialBackoffWithJitter({
      maxAttempts: 2,
      shouldRetry: (error) => !(error instanceof AuthenticationError),
    });
    expect(policy.nextDelayMs(2, undefined)).toBeTypeOf('number');
    expect(policy.nextDelayMs(3, undefined)).toBeUndefined();
    expect(policy.nextDelayMs(1, new AuthenticationError('x'))).toBeUndefined();
    expect(noRetry().nextDelayMs(1, undefined)).toBeUndefined();
  });

  it('refuses nonsense options', () => {
    expect(() => exponentialBackoffWithJitter({ initialDelayMs: -1 })).toThrow(ArgumentError);
    expect(() => exponentialBackoffWithJitter({ factor: 0.5 })).toThrow(ArgumentError);
  });
});
