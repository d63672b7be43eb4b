import { randomBytes } from 'node:crypto';
import { base64Decode, base64Encode, decodePropertyBag, parseSasToken } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { decodeComponent, encodeBag } from './property-bag';
import { decodeBase64, encodeBase64, formatToken, pairValue, sasResource, tokenExpiry } from './sas';

// The slim client's small copies must agree with the protocol package they stand in for.
describe('slim credential and property-bag helpers', () => {
  it('encode and decode base64 as the protocol does, for every length up to 70 bytes', () => {
    for (let length = 0; length <= 70; length++) {
      const bytes = new Uint8Array(randomBytes(length));
      const text = base64Encode(bytes);
      expect(encodeBase64(bytes)).toBe(text);
      expect(decodeBase64(text)).toEqual(base64Decode(text));
      expect(decodeBase64(text.replace(/=+$/, ''))).toEqual(bytes);
    }
    expect(() => decodeBase64('ab$d')).toThrow(expect.objectContaining({ code: 'ArgumentInvalid' }));
  });

  it('formats a token the protocol parses back to the same resource, signature and expiry', () => {
    const token = formatToken(sasResource('hub.example', 'dev 1/ä'), 'ab+/cd==', 1_800_000_000);
    expect(parseSasToken(token)).toMatchObject({
      resourceUri: 'hub.example/devices/dev 1/ä',
      sig: 'ab+/cd==',
      se: 1_800_000_000,
    });
    expect(tokenExpiry(token)).toBe(1_800_000_000);
    expect(tokenExpiry('SharedAccessSignature sr=x&sig=y')).toBe(0);
  });

  it('reads values of connection strings and topic queries, the first = splitting', () => {
    const cs =
      ' HostName=h.example ; DeviceId=d1;SharedAccessKey=a2V5==;SharedAccessSignature=SharedAccessSignature sr=a&sig=b=&se=1';
    expect(pairValue(cs, ';', 'HostName')).toBe('h.example');
    expect(pairValue(cs, ';', 'DeviceId')).toBe('d1');
    expect(pairValue(cs, ';', 'SharedAccessKey')).toBe('a2V5==');
    expect(pairValue(cs, ';', 'SharedAccessSignature')).toBe('SharedAccessSignature sr=a&sig=b=&se=1');
    expect(pairValue(cs, ';', 'ModuleId')).toBeUndefined();
    expect(pairValue('$rid=7&$version=12', '&', '$version')).toBe('12');
  });

  it('encodes property bags the protocol decodes to the same properties', () => {
    const properties = { '$.mid': 'm 1', '$.ct': 'application/json', 'a&b': 'c=d/é', empty: '' };
    expect(encodeBag(null)).toBe('');
    expect(decodePropertyBag(encodeBag(properties))).toEqual({
      system: { messageId: 'm 1', contentType: 'application/json' },
      application: { 'a&b': 'c=d/é', empty: '' },
    });
    expect(decodeComponent('dark+red%21')).toBe('dark red!');
    expect(decodeComponent('100%')).toBe('100%');
  });
});
