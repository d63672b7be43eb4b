import { describe, expect, it } from 'vitest';
import { cbsStatusError, conditionError, twinStatusError } from './amqp-error';

describe('conditionError', () => {
  it.each([
    ['amqp:unauthorized-access', 'AuthenticationError', 'IotHubUnauthorizedAccess', false],
    ['amqp:not-found', 'HubError', 'DeviceNotFound', false],
    ['amqp:link:message-size-exceeded', 'ArgumentError', 'MessageTooLarge', false],
    ['com.microsoft:argument-error', 'ArgumentError', 'ArgumentInvalid', false],
    ['com.microsoft:device-container-throttled', 'ThrottledError', 'ThrottlingException', true],
    ['com.microsoft:quota-exceeded', 'HubError', 'IotHubQuotaExceeded', false],
    ['com.microsoft:timeout', 'TimeoutError', 'GatewayTimeout', true],
    ['com.microsoft:message-lock-lost', 'HubError', 'DeviceMessageLockLost', false],
    ['amqp:not-implemented', 'UnsupportedFeatureError', 'InvalidOperation', false],
    ['amqp:link:stolen', 'ConnectionError', 'ServiceUnavailable', true],
    ['amqp:link:detach-forced', 'ConnectionError', 'ServiceUnavailable', true],
    ['amqp:internal-error', 'HubError', 'ServerError', true],
    ['vendor:something-new', 'HubError', 'ServerError', true],
  ])('maps %s to %s (%s)', (condition, name, code, retryable) => {
    const error = conditionError({ condition, description: 'why' }, 'sending telemetry');
    expect(error).toMatchObject({ name, code, isRetryable: retryable });
    expect(error.message).toContain(condition);
  });

  it('keeps the description and the tracking id in the message', () => {
    const error = conditionError(
      { condition: 'amqp:not-allowed', description: 'nope', info: { 'com.microsoft:tracking-id': 'abc' } },
      'attaching twin',
    );
    expect(error.message).toBe('attaching twin failed (amqp:not-allowed): nope [tracking id abc]');
  });
});

describe('cbsStatusError', () => {
  it('treats a refused token as Unauthorized, as the Node SDK does, but 429 and 5xx as retryable', () => {
    for (const status of [400, 401, 403, 404, undefined]) {
      expect(cbsStatusError(status, undefined)).toMatchObject({ name: 'AuthenticationError', isRetryable: false });
    }
    expect(cbsStatusError(429, 'slow down').name).toBe('ThrottledError');
    expect(cbsStatusError(500, undefined)).toMatchObject({ name: 'ConnectionError', isRetryable: true });
    expect(cbsStatusError(504, undefined).name).toBe('TimeoutError');
  });
});

describe('twinStatusError', () => {
  const body = (text: string) => new TextEncoder().encode(text);
  it('prefers the errorCode of the body, numeric or named', () => {
    expect(twinStatusError(400, body('{"errorCode":400004,"message":"bad"}'))).toMatchObject({
      name: 'ArgumentError',
      code: 'ArgumentInvalid',
      message: 'bad',
    });
    expect(twinStatusError(400, body('{"errorCode":"MessageTooLarge"}')).code).toBe('MessageTooLarge');
  });

  it('falls back to the status', () => {
    expect(twinStatusError(404, undefined).code).toBe('DeviceNotFound');
    expect(twinStatusError(429, body('not json')).name).toBe('ThrottledError');
    expect(twinStatusError(500, undefined)).toMatchObject({ code: 'ServerError', isRetryable: true });
  });
});
