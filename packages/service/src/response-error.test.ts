import {
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  HubError,
  ThrottledError,
  TimeoutError,
} from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { errorFromResponse } from './response-error';

const envelope = (message: string) => JSON.stringify({ Message: message, ExceptionMessage: 'Tracking ID:x' });

describe('errorFromResponse', () => {
  it('reads the iothub-errorcode header and the envelope text', () => {
    const error = errorFromResponse({
      status: 404,
      headers: { 'iothub-errorcode': 'DeviceNotFound' },
      body: envelope('ErrorCode:DeviceNotFound;Device d1 not registered'),
    });
    expect(error).toBeInstanceOf(HubError);
    expect(error).toMatchObject({ code: 'DeviceNotFound', hubCode: 404001, status: 404 });
    expect(error.message).toBe('Device d1 not registered');
  });

  it('reads the code from the legacy envelope when the header is missing', () => {
    const error = errorFromResponse({
      status: 404,
      headers: {},
      body: envelope('ErrorCode:DeviceNotOnline;Timed out waiting for device to connect.'),
    });
    expect(error).toMatchObject({ code: 'DeviceNotOnline', hubCode: 404103, isRetryable: true });
  });

  it('reads a numeric errorCode from the newer envelope', () => {
    const inner = JSON.stringify({ errorCode: 504101, message: 'Timed out waiting for the response from device.' });
    const error = errorFromResponse({ status: 504, headers: {}, body: envelope(inner) });
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.hubCode).toBe(504101);
    expect(error.message).toBe('Timed out waiting for the response from device.');
  });

  it('picks the subclass callers branch on', () => {
    const of = (code: string, status: number) =>
      errorFromResponse({ status, headers: { 'iothub-errorcode': code }, body: '' });
    expect(of('IotHubUnauthorizedAccess', 401)).toBeInstanceOf(AuthenticationError);
    expect(of('ArgumentInvalid', 400)).toBeInstanceOf(ArgumentError);
    expect(of('ThrottlingException', 429)).toBeInstanceOf(ThrottledError);
    expect(of('ServiceUnavailable', 503)).toBeInstanceOf(ConnectionError);
    expect(of('PreconditionFailed', 412).hubCode).toBe(412001);
  });

  it('never classifies by message text: without a code the status decides', () => {
    const error = errorFromResponse({ status: 401, headers: {}, body: 'DeviceNotFound somewhere in the text' });
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.message).toBe('DeviceNotFound somewhere in the text');
    expect(errorFromResponse({ status: 502, headers: {}, body: '' })).toMatchObject({ code: 'ServerError' });
    expect(errorFromResponse({ status: 418, headers: {}, body: '' })).toMatchObject({ code: 'InvalidOperation' });
  });

  it('falls back to the status for an unknown code name, keeping the name', () => {
    const error = errorFromResponse({ status: 404, headers: { 'iothub-errorcode': 'SomethingNew' }, body: '' });
    expect(error.code).toBe('ResourceNotFound');
    expect(error.message).toContain('SomethingNew');
  });
});
