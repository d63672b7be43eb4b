import { ArgumentError, HubError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { AmqpErrorConditions } from '../contract';
import { rejectionOf } from './registration-channel';

const typedValue = (typed: unknown) => (typed as { value?: unknown }).value;

describe('rejectionOf', () => {
  it('carries the DPS error body as the description, without a retry interval for a client error', () => {
    const rejection = rejectionOf(new ArgumentError('bad body'));
    expect(rejection.condition).toBe(AmqpErrorConditions.argumentError);
    expect(JSON.parse(rejection.description)).toMatchObject({
      errorCode: 400004,
      message: 'bad body',
      trackingId: expect.any(String),
      timestampUtc: expect.any(String),
    });
    expect(rejection.info).toBeUndefined();
  });

  it('tells both official clients when to retry a throttled or failed request', () => {
    const throttled = rejectionOf(new HubError('ThrottlingException', 'slow down'));
    expect(throttled.condition).toBe(AmqpErrorConditions.throttled);
    expect(typedValue(throttled.info?.['retry-after'])).toBeGreaterThan(0);
    expect(typedValue(throttled.info?.['Retry-After'])).toBe(typedValue(throttled.info?.['retry-after']));

    const failed = rejectionOf(new Error('disk on fire'));
    expect(failed.condition).toBe(AmqpErrorConditions.internalError);
    expect(JSON.parse(failed.description)).toMatchObject({ errorCode: 500001, message: 'An internal error occurred' });
    expect(typedValue(failed.info?.['retry-after'])).toBeGreaterThan(0);
  });
});
