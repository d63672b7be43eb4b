import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectLinearTime, fuzzParser, identifier } from './__fixtures__/fuzz';
import { connectPasswords } from './__fixtures__/mqtt-captures';
import { deviceSas } from './__fixtures__/sas';
import { base64Decode, base64Encode, utf8Encode } from './encoding';
import { ArgumentError } from './errors';
import { hmacSha256 } from './hmac';
import {
  deviceResourceUri,
  dpsResourceUri,
  encodeSasComponent,
  formatSasToken,
  hubResourceUri,
  moduleResourceUri,
  parseResourceUri,
  parseSasToken,
  sasStringToSign,
  sasStringToVerify,
} from './sas';

describe('resource URIs', () => {
  it('builds device, module, hub and DPS resource URIs', () => {
    expect(deviceResourceUri('myhub.azure-devices.net', 'dev1')).toBe('myhub.azure-devices.net/devices/dev1');
    expect(moduleResourceUri('myhub.azure-devices.net', 'dev1', 'modA')).toBe(
      'myhub.azure-devices.net/devices/dev1/modules/modA',
    );
    expect(hubResourceUri('localhost:41671')).toBe('localhost:41671');
    expect(dpsResourceUri('0ne00000001', 'demo-dps-dev1')).toBe('0ne00000001/registrations/demo-dps-dev1');
  });

  it('refuses empty parts and parts containing a slash', () => {
    expect(() => deviceResourceUri('h', '')).toThrowError(ArgumentError);
    expect(() => deviceResourceUri('h', 'a/b')).toThrowError(ArgumentError);
    expect(() => moduleResourceUri('h', 'd', '')).toThrowError(ArgumentError);
    expect(() => dpsResourceUri('', 'r')).toThrowError(ArgumentError);
  });
});

describe('sasStringToSign', () => {
  it('encodes the resource URI like Node (upper-case hex) and appends a line feed and the expiry', () => {
    expect(sasStringToSign(deviceResourceUri(deviceSas.hostName, deviceSas.deviceId), deviceSas.expiry)).toBe(
      deviceSas.stringToSign,
    );
  });

  it("escapes ! ' ( ) * as Node's encodeUriComponentStrict does", () => {
    expect(encodeSasComponent("h/devices/a!'()*b")).toBe('h%2Fdevices%2Fa%21%27%28%29%2Ab');
  });

  it('refuses a fractional or negative expiry', () => {
    expect(() => sasStringToSign('h', 1.5)).toThrowError(ArgumentError);
    expect(() => sasStringToSign('h', -1)).toThrowError(ArgumentError);
  });

  it('equals the string to verify of the token formatted for the same URI and expiry', () => {
    fc.assert(
      fc.property(identifier, identifier, fc.nat(), (host, device, expiry) => {
        const resourceUri = deviceResourceUri(host, device);
        const token = formatSasToken({ resourceUri, signature: 'c2ln', expiry });
        expect(sasStringToVerify(parseSasToken(token))).toBe(sasStringToSign(resourceUri, expiry));
      }),
    );
  });
});

describe('formatSasToken', () => {
  it('writes a device token in the shape the Node SDK sends', () => {
    expect(
      formatSasToken({
        resourceUri: deviceResourceUri(deviceSas.hostName, deviceSas.deviceId),
        signature: deviceSas.signature,
        expiry: deviceSas.expiry,
      }),
    ).toBe(deviceSas.token);
  });

  it('writes skn before se, in Node order', () => {
    expect(formatSasToken({ resourceUri: 'localhost', signature: 'abc=', expiry: 1, keyName: 'iothubowner' })).toBe(
      'SharedAccessSignature sr=localhost&sig=abc%3D&skn=iothubowner&se=1',
    );
  });

  it('refuses an empty signature or key name', () => {
    expect(() => formatSasToken({ resourceUri: 'h', signature: '', expiry: 1 })).toThrowError(ArgumentError);
    expect(() => formatSasToken({ resourceUri: 'h', signature: 's', expiry: 1, keyName: '' })).toThrowError(
      ArgumentError,
    );
  });
});

describe('parseSasToken', () => {
  it('parses the MQTT password of the capture, keeping sr as sent and decoding the resource URI', () => {
    expect(parseSasToken(connectPasswords.mqttWithPort)).toEqual({
      sr: 'localhost%3A41883%2Fdevices%2Fdemo-dev1',
      resourceUri: 'localhost:41883/devices/demo-dev1',
      sig: 'DBdNlwPm0SMK08+9gCow34zg7K6wsN/Usywkv4E+Upg=',
      se: 1795778670,
    });
  });

  it('parses the DPS token whose sr Node leaves unencoded, with skn before se', () => {
    const token = parseSasToken(connectPasswords.dps);
    expect(token).toEqual({
      sr: '0ne00000001/registrations/demo-dps-dev1',
      resourceUri: '0ne00000001/registrations/demo-dps-dev1',
      sig: 'TzzVNIg8fYmV76x2q5Ei2xhKicmSM1jIUPXUFnTFlio=',
      se: 1795778661,
      skn: 'registration',
    });
    expect(sasStringToVerify(token)).toBe('0ne00000001/registrations/demo-dps-dev1\n1795778661');
  });

  it('parses service tokens, with and without a port in sr', () => {
    expect(parseSasToken(connectPasswords.service)).toMatchObject({ resourceUri: 'localhost', skn: 'iothubowner' });
    expect(parseSasToken(connectPasswords.serviceAmqpWithPort)).toMatchObject({
      sr: 'localhost:41671',
      resourceUri: 'localhost:41671',
    });
  });

  it('accepts the documented lower-case encoding and field order and verifies over the literal sr', () => {
    const token = parseSasToken(
      'SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdevice1&sig=13y8%3D&se=1456971697&skn=device',
    );
    expect(token.resourceUri).toBe('myhub.azure-devices.net/devices/device1');
    expect(sasStringToVerify(token)).toBe('myhub.azure-devices.net%2fdevices%2fdevice1\n1456971697');
  });

  it('keeps a raw + in sig rather than reading it as a space', () => {
    expect(parseSasToken('SharedAccessSignature sr=h&sig=a+b=&se=1').sig).toBe('a+b=');
  });

  it('tolerates surrounding whitespace and ignores unknown fields', () => {
    expect(parseSasToken('  SharedAccessSignature sr=h&sig=s&se=1&foo=bar \n').se).toBe(1);
  });

  it.each([
    ['', 'sasToken'],
    ['sr=h&sig=s&se=1', 'sasToken'],
    ['Bearer sr=h&sig=s&se=1', 'sasToken'],
    ['SharedAccessSignature sr=h&sig=s', 'se'],
    ['SharedAccessSignature sig=s&se=1', 'sr'],
    ['SharedAccessSignature sr=h&se=1', 'sig'],
    ['SharedAccessSignature sr=&sig=s&se=1', 'sr'],
    ['SharedAccessSignature sr=h&sig=s&se=soon', 'se'],
    ['SharedAccessSignature sr=h&sig=s&se=1.5', 'se'],
    ['SharedAccessSignature sr=h&sr=i&sig=s&se=1', 'sr'],
    ['SharedAccessSignature sr=h%ZZ&sig=s&se=1', 'sr'],
    ['SharedAccessSignature sr=h&sig=s&se=1&skn=', 'skn'],
    ['SharedAccessSignature sr=h&sig=s&se=1 extra', 'sasToken'],
    ['SharedAccessSignature sr=h&sig&se=1', 'sasToken'],
  ])('rejects %j with an ArgumentError naming %s', (token, field) => {
    let caught: unknown;
    try {
      parseSasToken(token);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ArgumentError);
    expect((caught as ArgumentError).field).toBe(field);
  });

  it('round-trips formatted tokens with random ids, signatures, expiries and key names', () => {
    fc.assert(
      fc.property(
        identifier,
        identifier,
        fc.base64String({ minLength: 4 }),
        fc.nat(),
        fc.option(identifier, { nil: undefined }),
        (host, device, signature, expiry, keyName) => {
          const resourceUri = deviceResourceUri(host, device);
          const parts =
            keyName === undefined ? { resourceUri, signature, expiry } : { resourceUri, signature, expiry, keyName };
          const token = parseSasToken(formatSasToken(parts));
          expect(token.resourceUri).toBe(resourceUri);
          expect(token.sig).toBe(signature);
          expect(token.se).toBe(expiry);
          expect(token.skn).toBe(keyName);
        },
      ),
    );
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseSasToken);
    fuzzParser((text) => parseSasToken(`SharedAccessSignature ${text}`));
  });

  it('parses large input in linear time', () => {
    expectLinearTime(parseSasToken);
  });
});

describe('signing with the package HMAC', () => {
  it('produces the signature of the independently computed fixture', () => {
    const stringToSign = sasStringToSign(deviceResourceUri(deviceSas.hostName, deviceSas.deviceId), deviceSas.expiry);
    const signature = base64Encode(hmacSha256(base64Decode(deviceSas.key), utf8Encode(stringToSign)));
    expect(signature).toBe(deviceSas.signature);
  });

  it('verifies a parsed token over its literal sr', () => {
    const token = parseSasToken(deviceSas.token);
    const expected = base64Encode(hmacSha256(base64Decode(deviceSas.key), utf8Encode(sasStringToVerify(token))));
    expect(token.sig).toBe(expected);
  });
});

describe('parseResourceUri', () => {
  it('reads hub, gateway prefix, device, module and DPS registration URIs', () => {
    expect(parseResourceUri('localhost:41671')).toEqual({ kind: 'hub', hostName: 'localhost:41671' });
    expect(parseResourceUri('h/devices')).toEqual({ kind: 'devices', hostName: 'h' });
    expect(parseResourceUri('localhost:41883/devices/demo-dev1')).toEqual({
      kind: 'device',
      hostName: 'localhost:41883',
      deviceId: 'demo-dev1',
    });
    expect(parseResourceUri('h/devices/d/modules/m')).toEqual({
      kind: 'module',
      hostName: 'h',
      deviceId: 'd',
      moduleId: 'm',
    });
    expect(parseResourceUri('0ne00000001/registrations/demo-dps-dev1')).toEqual({
      kind: 'registration',
      idScope: '0ne00000001',
      registrationId: 'demo-dps-dev1',
    });
  });

  it('ignores an amqps:// prefix, a trailing slash and the case of fixed words, as Edge Hub does', () => {
    expect(parseResourceUri('amqps://h/Devices/d/')).toEqual({ kind: 'device', hostName: 'h', deviceId: 'd' });
  });

  it.each(['', '/', 'h//d', 'h/things/d', 'h/devices/d/modules', 'h/devices/d/twin/x', 'h/devices/d/modules/m/x'])(
    'rejects %j',
    (uri) => {
      let caught: unknown;
      try {
        parseResourceUri(uri);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ArgumentError);
      expect((caught as ArgumentError).field).toBe('resourceUri');
    },
  );

  it('inverts the resource URI builders for random ids', () => {
    fc.assert(
      fc.property(identifier, identifier, identifier, (host, device, module) => {
        fc.pre(!/^(amqps|https|wss):$/i.test(host));
        expect(parseResourceUri(deviceResourceUri(host, device))).toEqual({
          kind: 'device',
          hostName: host,
          deviceId: device,
        });
        expect(parseResourceUri(moduleResourceUri(host, device, module))).toEqual({
          kind: 'module',
          hostName: host,
          deviceId: device,
          moduleId: module,
        });
        expect(parseResourceUri(dpsResourceUri(host, device))).toEqual({
          kind: 'registration',
          idScope: host,
          registrationId: device,
        });
      }),
    );
  });

  it('throws nothing but ArgumentError on random input, in linear time', () => {
    fuzzParser(parseResourceUri);
    expectLinearTime(parseResourceUri);
  });
});
