import { describe, expect, it } from 'vitest';
import {
  cloudToDeviceMessage,
  encodeSegment,
  identityPath,
  lockTokenOf,
  telemetryBatchBody,
  telemetryHeaders,
} from './messages';

const encoder = new TextEncoder();

describe('telemetryHeaders', () => {
  it('writes properties and system properties as the official SDK does (captures/http.txt)', () => {
    expect(
      telemetryHeaders({
        body: encoder.encode('{"temperature":21.5}'),
        properties: { alert: 'high-temp', n: '1' },
        messageId: 'mid-1',
        correlationId: 'cid-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
      }),
    ).toEqual({
      'iothub-app-alert': 'high-temp',
      'iothub-app-n': '1',
      'iothub-messageid': 'mid-1',
      'iothub-correlationid': 'cid-1',
      'iothub-contenttype': 'application/json',
      'iothub-contentencoding': 'utf-8',
    });
  });

  it('keeps the case of property names, sends dt-subject unprefixed and the expiry as ISO 8601', () => {
    expect(
      telemetryHeaders({
        body: new Uint8Array(0),
        properties: { Alert: 'x', 'dt-subject': 'thermostat1' },
        expiryTimeUtc: '2030-01-01T00:00:00Z',
        userId: 'u',
      }),
    ).toEqual({
      'iothub-app-Alert': 'x',
      'dt-subject': 'thermostat1',
      'iothub-expiry': '2030-01-01T00:00:00.000Z',
      'iothub-userid': 'u',
    });
  });

  it('refuses property names outside the HTTP token alphabet, names equal but for case, and non-ASCII values', () => {
    const body = new Uint8Array(0);
    for (const properties of [
      { 'a/b': 'x' },
      { 'a b': 'x' },
      { a: 'x', A: 'y' },
      { a: 'café' },
      { a: 'x\r\ny' },
      { a: 'high temp' },
      { a: 'x/y=z' },
    ]) {
      expect(() => telemetryHeaders({ body, properties })).toThrowError(
        expect.objectContaining({ name: 'ArgumentError' }),
      );
    }
    expect(() => telemetryHeaders({ body, expiryTimeUtc: 'tomorrow' })).toThrowError(
      expect.objectContaining({ field: 'expiryTimeUtc' }),
    );
    expect(telemetryHeaders({ body, properties: { "odd!#$%&'*+-.^_`|~": "x%y&z!#'", e: '' } })).toEqual({
      "iothub-app-odd!#$%&'*+-.^_`|~": "x%y&z!#'",
      'iothub-app-e': '',
    });
    expect(telemetryHeaders({ body, messageId: 'id with spaces/and=more' })).toEqual({
      'iothub-messageid': 'id with spaces/and=more',
    });
  });

  it('refuses a message over 256 KB, counting its properties, with MessageTooLarge', () => {
    expect(() => telemetryHeaders({ body: new Uint8Array(256 * 1024 - 2), properties: { ab: 'c' } })).toThrowError(
      expect.objectContaining({ name: 'ArgumentError', code: 'MessageTooLarge' }),
    );
    expect(() => telemetryHeaders({ body: new Uint8Array(256 * 1024 - 3), properties: { ab: 'c' } })).not.toThrow();
  });
});

describe('telemetryBatchBody', () => {
  it('is a JSON array of base64 bodies with their iothub-* properties', () => {
    const body = telemetryBatchBody([
      { body: encoder.encode('a') },
      { body: encoder.encode('b'), properties: { k: 'v' }, messageId: 'm2' },
    ]);
    expect(JSON.parse(new TextDecoder().decode(body))).toEqual([
      { body: 'YQ==' },
      { body: 'Yg==', properties: { 'iothub-app-k': 'v', 'iothub-messageid': 'm2' } },
    ]);
  });

  it('refuses a batch over 256 KB in total', () => {
    const half = { body: new Uint8Array(128 * 1024 + 1) };
    expect(() => telemetryBatchBody([half, half])).toThrowError(expect.objectContaining({ code: 'MessageTooLarge' }));
  });
});

describe('cloudToDeviceMessage', () => {
  it('reads the lock token from the ETag, properties from iothub-app-* and the system headers', () => {
    const message = cloudToDeviceMessage(
      {
        etag: '"lock-1"',
        'iothub-messageid': 'c2d-1',
        'iothub-correlationid': 'corr-9',
        'iothub-userid': 'svc',
        'iothub-contenttype': 'text/plain',
        'iothub-contentencoding': 'utf-8',
        'iothub-expiry': '2030-01-01T00:00:00.000Z',
        'iothub-deliverycount': '2',
        'iothub-app-color': 'blue',
        'iothub-to': '/devices/d/messages/devicebound',
        'content-type': 'application/octet-stream',
      },
      encoder.encode('hello device'),
    );
    expect(message).toEqual({
      body: encoder.encode('hello device'),
      lockToken: 'lock-1',
      properties: { color: 'blue' },
      messageId: 'c2d-1',
      correlationId: 'corr-9',
      userId: 'svc',
      contentType: 'text/plain',
      contentEncoding: 'utf-8',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
      deliveryCount: 2,
    });
  });

  it('refuses an answer without an ETag', () => {
    expect(() => cloudToDeviceMessage({}, new Uint8Array(0))).toThrowError(
      expect.objectContaining({ code: 'ServerError' }),
    );
  });

  it('strips quotes and a weak prefix from lock tokens', () => {
    expect(lockTokenOf('"abc"')).toBe('abc');
    expect(lockTokenOf('W/"abc"')).toBe('abc');
    expect(lockTokenOf('abc')).toBe('abc');
  });
});

describe('paths', () => {
  it('percent-encodes ids strictly, as the Node SDK does', () => {
    expect(encodeSegment("a b/c!'()*")).toBe('a%20b%2Fc%21%27%28%29%2A');
    expect(identityPath({ deviceId: 'd 1' })).toBe('/devices/d%201');
    expect(identityPath({ deviceId: 'd', moduleId: 'm/1' })).toBe('/devices/d/modules/m%2F1');
  });
});
