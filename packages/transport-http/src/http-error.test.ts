import { describe, expect, it } from 'vitest';
import { storageError } from './blob-upload';
import { uploadTarget } from './file-upload';
import { endsConnection, errorFromResponse, requestFailure } from './http-error';

const envelope = (code: string) => JSON.stringify({ Message: `ErrorCode:${code};something`, ExceptionMessage: '' });

describe('errorFromResponse', () => {
  it('maps by iothub-errorcode first, then the envelope, then the status', () => {
    const cases: [number, Record<string, string>, string, string, string][] = [
      [401, { 'iothub-errorcode': 'IotHubUnauthorizedAccess' }, '', 'AuthenticationError', 'IotHubUnauthorizedAccess'],
      [401, {}, '', 'AuthenticationError', 'IotHubUnauthorizedAccess'],
      [404, {}, envelope('DeviceNotFound'), 'HubError', 'DeviceNotFound'],
      [404, {}, '', 'HubError', 'DeviceNotFound'],
      [412, { 'iothub-errorcode': 'DeviceMessageLockLost' }, '', 'HubError', 'DeviceMessageLockLost'],
      [412, {}, '', 'HubError', 'DeviceMessageLockLost'],
      [413, { 'iothub-errorcode': 'MessageTooLarge' }, '', 'ArgumentError', 'MessageTooLarge'],
      [400, { 'iothub-errorcode': 'ArgumentInvalid' }, '', 'ArgumentError', 'ArgumentInvalid'],
      [
        400,
        { 'iothub-errorcode': 'InvalidFileUploadCorrelationId' },
        '',
        'ArgumentError',
        'InvalidFileUploadCorrelationId',
      ],
      [
        403,
        { 'iothub-errorcode': 'DeviceMaximumActiveFileUploadLimitExceeded' },
        '',
        'ThrottledError',
        'DeviceMaximumActiveFileUploadLimitExceeded',
      ],
      [429, {}, '', 'ThrottledError', 'ThrottlingException'],
      [503, {}, '', 'ConnectionError', 'ServiceUnavailable'],
      [500, {}, 'oops', 'HubError', 'ServerError'],
      [400, { 'iothub-errorcode': 'SomethingNew' }, '', 'ArgumentError', 'ArgumentInvalid'],
    ];
    for (const [status, headers, body, name, code] of cases) {
      const error = errorFromResponse({ status, headers, body });
      expect({ status, name: error.name, code: error.code }).toEqual({ status, name, code });
    }
  });

  it('keeps retryability: throttling and 503 retryable, refusals not', () => {
    expect(errorFromResponse({ status: 429, headers: {}, body: '' }).isRetryable).toBe(true);
    expect(errorFromResponse({ status: 503, headers: {}, body: '' }).isRetryable).toBe(true);
    expect(errorFromResponse({ status: 401, headers: {}, body: '' }).isRetryable).toBe(false);
    expect(errorFromResponse({ status: 400, headers: {}, body: '' }).isRetryable).toBe(false);
  });

  it('ends the connection for refused credentials and unreachable hubs only', () => {
    expect(endsConnection(errorFromResponse({ status: 401, headers: {}, body: '' }))).toBe(true);
    expect(endsConnection(errorFromResponse({ status: 503, headers: {}, body: '' }))).toBe(true);
    expect(endsConnection(errorFromResponse({ status: 429, headers: {}, body: '' }))).toBe(false);
    expect(endsConnection(errorFromResponse({ status: 412, headers: {}, body: '' }))).toBe(false);
  });
});

describe('requestFailure', () => {
  it('maps aborts, timeouts, socket errors and refused options by code', () => {
    const controller = new AbortController();
    controller.abort();
    expect(requestFailure(new Error('x'), 'hub', controller.signal).name).toBe('AbortError');
    const timeout = requestFailure(Object.assign(new Error('t'), { code: 'UND_ERR_HEADERS_TIMEOUT' }), 'hub');
    expect([timeout.name, timeout.isRetryable]).toEqual(['ConnectionError', true]);
    expect(requestFailure(Object.assign(new Error('r'), { code: 'ECONNREFUSED' }), 'hub').name).toBe('ConnectionError');
    expect(
      requestFailure(Object.assign(new Error('k'), { code: 'ERR_OSSL_X509_KEY_VALUES_MISMATCH' }), 'hub').name,
    ).toBe('ArgumentError');
  });
});

describe('storageError', () => {
  it('maps Azure Storage answers by status and error code', () => {
    const xml = '<?xml version="1.0"?><Error><Code>AuthenticationFailed</Code><Message>no</Message></Error>';
    expect(storageError(403, {}, xml)).toMatchObject({ name: 'AuthenticationError' });
    expect(storageError(403, {}, xml).message).toContain('AuthenticationFailed');
    expect(storageError(413, { 'x-ms-error-code': 'RequestBodyTooLarge' }, '')).toMatchObject({
      name: 'ArgumentError',
      code: 'MessageTooLarge',
    });
    expect(storageError(503, { 'x-ms-error-code': 'ServerBusy' }, '')).toMatchObject({ name: 'ThrottledError' });
    expect(storageError(404, { 'x-ms-error-code': 'ContainerNotFound' }, '')).toMatchObject({ name: 'ArgumentError' });
    expect(storageError(500, {}, '')).toMatchObject({ code: 'ServerError', isRetryable: true });
  });
});

describe('uploadTarget', () => {
  const target = {
    correlationId: 'c',
    hostName: 'h',
    containerName: 'k',
    blobName: 'd/f.txt',
    sasToken: '?sv=1&sig=x',
  };

  it('reads the hub answer', () => {
    expect(uploadTarget(JSON.stringify(target))).toEqual(target);
  });

  it('refuses a SAS token without the leading ? and missing fields', () => {
    expect(() => uploadTarget(JSON.stringify({ ...target, sasToken: 'sv=1' }))).toThrowError(/start with/);
    expect(() => uploadTarget(JSON.stringify({ ...target, hostName: undefined }))).toThrowError(/hostName/);
    expect(() => uploadTarget('nope')).toThrowError(expect.objectContaining({ code: 'ServerError' }));
  });
});
