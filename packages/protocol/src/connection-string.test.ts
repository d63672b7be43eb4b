import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fieldOfError } from './__fixtures__/argument-error';
import { expectLinearTime, fuzzParser } from './__fixtures__/fuzz';
import { connectionStrings } from './__fixtures__/mqtt-captures';
import {
  type ConnectionString,
  formatConnectionString,
  parseConnectionString,
  parseDeviceConnectionString,
  parseServiceConnectionString,
} from './connection-string';

const token = 'SharedAccessSignature sr=h%2Fdevices%2Fd&sig=abc%3D&se=1795778670';

describe('parseConnectionString', () => {
  it('parses the device connection strings of the captures, keeping base64 padding', () => {
    expect(parseConnectionString(connectionStrings.deviceWithPort)).toEqual({
      hostName: 'localhost:41883',
      deviceId: 'demo-dev1',
      sharedAccessKey: 'yFUCl9KaR2iv+Bkb8A8hW0vuI0zZzVqFJGbPMG4x6m0=',
    });
    expect(parseConnectionString(connectionStrings.x509)).toEqual({
      hostName: 'localhost:41883',
      deviceId: 'demo-x509-dev',
      x509: true,
    });
  });

  it('parses module, gateway and token forms', () => {
    expect(
      parseConnectionString(
        `HostName=h.example;DeviceId=d;ModuleId=m;SharedAccessSignature=${token};GatewayHostName=edge`,
      ),
    ).toEqual({
      hostName: 'h.example',
      deviceId: 'd',
      moduleId: 'm',
      sharedAccessSignature: token,
      gatewayHostName: 'edge',
    });
  });

  it('tolerates whitespace, empty pairs and a trailing semicolon', () => {
    expect(parseConnectionString(' HostName = h ;; DeviceId=d ; SharedAccessKey=AAAA;  ')).toEqual({
      hostName: 'h',
      deviceId: 'd',
      sharedAccessKey: 'AAAA',
    });
  });

  it('ignores unknown keys and empty values', () => {
    expect(parseConnectionString('HostName=h;Foo=bar;DeviceId=')).toEqual({ hostName: 'h' });
  });

  it('treats keys case-sensitively, as Azure does', () => {
    expect(fieldOfError(() => parseConnectionString('hostname=h;DeviceId=d'))).toBe('HostName');
  });

  it('reads x509 in any case, true or false', () => {
    expect(parseConnectionString('HostName=h;x509=TRUE').x509).toBe(true);
    expect(parseConnectionString('HostName=h;x509=false').x509).toBe(false);
    expect(fieldOfError(() => parseConnectionString('HostName=h;x509=yes'))).toBe('x509');
  });

  it.each([
    ['', 'HostName'],
    ['DeviceId=d', 'HostName'],
    ['HostName', 'connectionString'],
    ['HostName=h;=x', 'connectionString'],
    ['HostName=h;HostName=i', 'HostName'],
    ['HostName=h/x', 'HostName'],
    ['HostName=h;DeviceId=a/b', 'DeviceId'],
    ['HostName=h;SharedAccessKey=not base64!', 'SharedAccessKey'],
    ['HostName=h;SharedAccessKey=AAA', 'SharedAccessKey'],
    ['HostName=h;SharedAccessSignature=sr=x', 'SharedAccessSignature'],
  ])('rejects %j with an ArgumentError naming %s', (text, field) => {
    expect(fieldOfError(() => parseConnectionString(text))).toBe(field);
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseConnectionString);
    fuzzParser((text) => parseConnectionString(`HostName=h;${text}`));
  });

  it('parses large input in linear time', () => {
    expectLinearTime(parseDeviceConnectionString);
    expectLinearTime(parseServiceConnectionString);
  });
});

describe('parseDeviceConnectionString', () => {
  it('accepts a key, a signature or x509 as the one credential', () => {
    expect(parseDeviceConnectionString(connectionStrings.device).deviceId).toBe('demo-dev1');
    expect(parseDeviceConnectionString(connectionStrings.x509).x509).toBe(true);
    expect(
      parseDeviceConnectionString(`HostName=h;DeviceId=d;SharedAccessSignature=${token}`).sharedAccessSignature,
    ).toBe(token);
  });

  it('accepts a policy key used on behalf of the device', () => {
    expect(
      parseDeviceConnectionString('HostName=h;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey=AAAA'),
    ).toMatchObject({ sharedAccessKeyName: 'device' });
  });

  it.each([
    ['HostName=h;SharedAccessKey=AAAA', 'DeviceId'],
    ['HostName=h;DeviceId=d', 'SharedAccessKey'],
    ['HostName=h;DeviceId=d;x509=false', 'SharedAccessKey'],
    ['HostName=h;DeviceId=d;SharedAccessKey=AAAA;x509=true', 'x509'],
    [`HostName=h;DeviceId=d;SharedAccessKey=AAAA;SharedAccessSignature=${token}`, 'SharedAccessSignature'],
    [`HostName=h;DeviceId=d;SharedAccessKeyName=p;SharedAccessSignature=${token}`, 'SharedAccessKeyName'],
  ])('rejects %j with an ArgumentError naming %s', (text, field) => {
    expect(fieldOfError(() => parseDeviceConnectionString(text))).toBe(field);
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseDeviceConnectionString);
  });
});

describe('parseServiceConnectionString', () => {
  it('parses the service connection string of the capture', () => {
    expect(parseServiceConnectionString(connectionStrings.service)).toEqual({
      hostName: 'localhost',
      sharedAccessKeyName: 'iothubowner',
      sharedAccessKey: '8kQyLFb9JaaJJWJAvxB6i33+XH0te/Y6VF1fI59gYcM=',
    });
  });

  it('accepts a complete token instead of a key', () => {
    expect(parseServiceConnectionString(`HostName=h;SharedAccessSignature=${token}`)).toEqual({
      hostName: 'h',
      sharedAccessSignature: token,
    });
  });

  it.each([
    ['HostName=h;SharedAccessKey=AAAA', 'SharedAccessKeyName'],
    ['HostName=h;SharedAccessKeyName=p', 'SharedAccessKey'],
    ['HostName=h;DeviceId=d;SharedAccessKeyName=p;SharedAccessKey=AAAA', 'DeviceId'],
    ['HostName=h;x509=true', 'x509'],
    [`HostName=h;SharedAccessKeyName=p;SharedAccessKey=AAAA;SharedAccessSignature=${token}`, 'SharedAccessSignature'],
  ])('rejects %j with an ArgumentError naming %s', (text, field) => {
    expect(fieldOfError(() => parseServiceConnectionString(text))).toBe(field);
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseServiceConnectionString);
  });
});

describe('formatConnectionString', () => {
  it('writes the capture strings back unchanged', () => {
    for (const text of Object.values(connectionStrings)) {
      expect(formatConnectionString(parseConnectionString(text))).toBe(text);
    }
  });

  it('writes x509 only when true', () => {
    expect(formatConnectionString({ hostName: 'h', deviceId: 'd', x509: false })).toBe('HostName=h;DeviceId=d');
  });

  it('refuses values that would not survive a round trip', () => {
    expect(fieldOfError(() => formatConnectionString({ hostName: 'h', deviceId: 'a;b' }))).toBe('DeviceId');
    expect(fieldOfError(() => formatConnectionString({ hostName: '' }))).toBe('HostName');
    expect(fieldOfError(() => formatConnectionString({ hostName: 'h', moduleId: ' m' }))).toBe('ModuleId');
  });

  it('round-trips random connection strings', () => {
    const value = fc
      .string({ unit: 'binary', minLength: 1, maxLength: 30 })
      .filter((s) => s.trim() === s && s !== '' && !/[;/]/.test(s));
    const host = fc.stringMatching(/^[a-z0-9.-]{1,20}(:[0-9]{1,5})?$/);
    const arbitrary: fc.Arbitrary<ConnectionString> = fc.record(
      {
        hostName: host,
        deviceId: value,
        moduleId: value,
        sharedAccessKey: fc.base64String({ minLength: 4, maxLength: 44 }),
        sharedAccessKeyName: value,
        x509: fc.constant(true),
        gatewayHostName: host,
      },
      { requiredKeys: ['hostName'] },
    );
    fc.assert(
      fc.property(arbitrary, (cs) => {
        expect(parseConnectionString(formatConnectionString(cs))).toEqual(cs);
      }),
      { numRuns: 500 },
    );
  });
});
