import { describe, expect, it } from 'vitest';
import { connackError } from './connack-error';

describe('connackError', () => {
  it.each([2, 4, 5])('maps CONNACK %i to a non-retryable AuthenticationError', (code) => {
    const error = connackError(code);
    expect(error.name).toBe('AuthenticationError');
    expect(error.isRetryable).toBe(false);
  });

  it('maps CONNACK 3 (server unavailable) to a retryable ConnectionError', () => {
    const error = connackError(3);
    expect(error.name).toBe('ConnectionError');
    expect(error.isRetryable).toBe(true);
  });

  it('maps CONNACK 1 (protocol version) to a ConnectionError that retrying does not cure', () => {
    const error = connackError(1);
    expect(error).toMatchObject({ name: 'ConnectionError', code: 'InvalidProtocolVersion', isRetryable: false });
  });

  it('keeps the cause', () => {
    const cause = new Error('Connection refused: Not authorized');
    expect(connackError(5, cause).cause).toBe(cause);
  });
});
