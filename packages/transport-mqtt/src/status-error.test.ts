import { describe, expect, it } from 'vitest';
import { statusError } from './status-error';

describe('statusError', () => {
  it('uses the errorCode of the body, by number or by name', () => {
    expect(statusError(400, '{"errorCode":400004,"message":"bad patch"}')).toMatchObject({
      name: 'ArgumentError',
      code: 'ArgumentInvalid',
      message: 'bad patch',
    });
    expect(statusError(400, '{"errorCode":"MessageTooLarge"}')).toMatchObject({ code: 'MessageTooLarge' });
    expect(statusError(429, '{"errorCode":"429001"}')).toMatchObject({ name: 'ThrottledError', isRetryable: true });
  });

  it('falls back on the status when the body says nothing', () => {
    expect(statusError(400, '')).toMatchObject({ name: 'ArgumentError' });
    expect(statusError(401, 'not json')).toMatchObject({ name: 'AuthenticationError' });
    expect(statusError(404, new Uint8Array())).toMatchObject({ code: 'DeviceNotFound' });
    expect(statusError(412, '{}')).toMatchObject({ code: 'PreconditionFailed' });
    expect(statusError(429, '')).toMatchObject({ name: 'ThrottledError' });
    expect(statusError(503, '')).toMatchObject({ name: 'ConnectionError', isRetryable: true });
    expect(statusError(504, '')).toMatchObject({ name: 'TimeoutError' });
    expect(statusError(500, '')).toMatchObject({ code: 'ServerError', isRetryable: true });
  });
});
