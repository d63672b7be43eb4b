import { AuthenticationError, ConnectionError, ThrottledError, TimeoutError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { errorFromAmqp } from './amqp-error';

describe('errorFromAmqp', () => {
  it('maps the conditions azure-iothub maps on a cloud-to-device send', () => {
    const c2d = { notFound: 'DeviceNotFound', resourceLimit: 'DeviceMaximumQueueDepthExceeded' } as const;
    expect(errorFromAmqp({ condition: 'amqp:not-found', description: 'no device' }, c2d)).toMatchObject({
      code: 'DeviceNotFound',
      hubCode: 404001,
      message: 'no device',
    });
    expect(errorFromAmqp({ condition: 'amqp:resource-limit-exceeded' }, c2d).code).toBe(
      'DeviceMaximumQueueDepthExceeded',
    );
    expect(errorFromAmqp({ condition: 'amqp:link:message-size-exceeded' }).hubCode).toBe(413001);
    expect(errorFromAmqp({ condition: 'com.microsoft:device-container-throttled' })).toBeInstanceOf(ThrottledError);
    expect(errorFromAmqp({ condition: 'amqp:unauthorized-access' })).toBeInstanceOf(AuthenticationError);
    expect(errorFromAmqp({ condition: 'com.microsoft:precondition-failed' }).code).toBe('PreconditionFailed');
    expect(errorFromAmqp({ condition: 'com.microsoft:timeout' })).toBeInstanceOf(TimeoutError);
    expect(errorFromAmqp({ condition: 'com.microsoft:argument-error' }).code).toBe('ArgumentInvalid');
  });

  it('defaults amqp:not-found to ResourceNotFound and treats a forced detach as retryable', () => {
    expect(errorFromAmqp({ condition: 'amqp:not-found' }).code).toBe('ResourceNotFound');
    const detached = errorFromAmqp({ condition: 'amqp:link:detach-forced' });
    expect(detached).toBeInstanceOf(ConnectionError);
    expect(detached.isRetryable).toBe(true);
  });

  it('prefers an error code in the info map over the condition', () => {
    expect(errorFromAmqp({ condition: 'amqp:not-found', info: { 'iothub-errorcode': 'ModuleNotFound' } }).code).toBe(
      'ModuleNotFound',
    );
    expect(errorFromAmqp({ condition: 'amqp:not-found', info: { errorCode: 404001 } }).code).toBe('DeviceNotFound');
    // An unknown code in info does not hide the condition.
    expect(errorFromAmqp({ condition: 'amqp:not-found', info: { errorCode: 'Nope' } }).code).toBe('ResourceNotFound');
  });

  it('keeps an unknown condition in the message of a ServerError, never reading the description', () => {
    const error = errorFromAmqp({ condition: 'vendor:odd', description: 'DeviceNotFound' });
    expect(error.code).toBe('ServerError');
    expect(error.message).toContain('vendor:odd');
    expect(errorFromAmqp(undefined).code).toBe('ServerError');
  });
});
