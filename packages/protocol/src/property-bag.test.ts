import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectLinearTime, fuzzParser } from './__fixtures__/fuzz';
import { hubTopics } from './__fixtures__/mqtt-captures';
import { ArgumentError } from './errors';
import {
  decodePropertyBag,
  encodePropertyBag,
  isSystemPropertyKey,
  type MessageSystemProperties,
  percentDecode,
  percentEncode,
  SystemPropertyKeys,
} from './property-bag';

const capturedTelemetryBag = '%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&n=1';
const capturedCloudToDeviceBag = hubTopics.cloudToDevice.slice('devices/demo-dev1/messages/devicebound/'.length);

describe('decodePropertyBag', () => {
  it('decodes the telemetry bag the Node SDK sends into system and application properties', () => {
    expect(decodePropertyBag(capturedTelemetryBag)).toEqual({
      system: { messageId: 'mid-1', correlationId: 'cid-1', contentType: 'application/json', contentEncoding: 'utf-8' },
      application: { alert: 'high temp', n: '1' },
    });
  });

  it('decodes a cloud-to-device bag with $.to and iothub-ack as system properties', () => {
    expect(decodePropertyBag(capturedCloudToDeviceBag)).toEqual({
      system: {
        messageId: 'c2d-1',
        correlationId: 'corr-9',
        to: '/devices/demo-dev1/messages/devicebound',
        contentType: 'text/plain',
        contentEncoding: 'utf-8',
        ack: 'full',
      },
      application: { color: 'blue' },
    });
  });

  it('returns empty properties for an empty bag', () => {
    expect(decodePropertyBag('')).toEqual({ system: {}, application: {} });
  });

  it('reads a key without = as the empty string and key= as the empty string', () => {
    expect(decodePropertyBag('/?prop1&prop2=&prop3=a%20string'.slice(1))).toEqual({
      system: {},
      application: { prop1: '', prop2: '', prop3: 'a string' },
    });
  });

  it('accepts an unescaped $ in system keys, as the routing-header example shows', () => {
    expect(decodePropertyBag('$.ct=application%2Fjson%3Bcharset%3Dutf-8').system).toEqual({
      contentType: 'application/json;charset=utf-8',
    });
  });

  it('decodes + and %20 both as a space', () => {
    expect(decodePropertyBag('a=x+y&b=x%20y&c=x%2By').application).toEqual({ a: 'x y', b: 'x y', c: 'x+y' });
  });

  it('keeps = inside values', () => {
    expect(decodePropertyBag('k=a=b==').application).toEqual({ k: 'a=b==' });
  });

  it('skips empty segments and segments with an empty key', () => {
    expect(decodePropertyBag('&a=1&&=orphan&b=2&').application).toEqual({ a: '1', b: '2' });
  });

  it('lets the last value win when a key repeats', () => {
    expect(decodePropertyBag('a=1&a=2').application).toEqual({ a: '2' });
  });

  it('treats unknown $.-keys as application properties', () => {
    expect(decodePropertyBag('%24.future=1').application).toEqual({ '$.future': '1' });
  });

  it('decodes multi-byte UTF-8 escapes', () => {
    expect(decodePropertyBag('t=%C3%A9%E2%82%AC%F0%9F%98%80').application).toEqual({ t: 'é€😀' });
  });

  it('stores a __proto__ key as an own property without touching the prototype', () => {
    const bag = decodePropertyBag('__proto__=x');
    expect(Object.getPrototypeOf(bag.application)).toBe(Object.prototype);
    expect(Object.keys(bag.application)).toEqual(['__proto__']);
  });

  it.each([
    ['a=%', 'a'],
    ['a=%2', 'a'],
    ['a=%ZZ', 'a'],
    ['a=%C3%28', 'a'],
    ['a=%ED%A0%80', 'a'],
    ['a=%C0%AF', 'a'],
    ['a=%F4%90%80%80', 'a'],
    ['%E2%82=1', 'propertyBag'],
  ])('rejects the malformed escape in %s with an ArgumentError naming %s', (bag, field) => {
    expect(() => decodePropertyBag(bag)).toThrowError(ArgumentError);
    try {
      decodePropertyBag(bag);
    } catch (error) {
      expect((error as ArgumentError).field).toBe(field);
    }
  });

  it('rejects an unknown iothub-ack value', () => {
    expect(() => decodePropertyBag('iothub-ack=sometimes')).toThrowError(/iothub-ack/);
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(decodePropertyBag);
  });

  it('decodes large input in linear time', () => {
    expectLinearTime(decodePropertyBag);
  });
});

describe('encodePropertyBag', () => {
  it('reproduces the telemetry bag of the Node SDK byte for byte', () => {
    expect(
      encodePropertyBag({
        system: {
          messageId: 'mid-1',
          correlationId: 'cid-1',
          contentType: 'application/json',
          contentEncoding: 'utf-8',
        },
        application: { alert: 'high temp', n: '1' },
      }),
    ).toBe(capturedTelemetryBag);
  });

  it('reproduces the cloud-to-device bag of the capture byte for byte', () => {
    expect(encodePropertyBag(decodePropertyBag(capturedCloudToDeviceBag))).toBe(capturedCloudToDeviceBag);
  });

  it('writes system properties first whatever order they were given in', () => {
    const system: MessageSystemProperties = { ack: 'none', contentType: 'a', messageId: 'm' };
    expect(encodePropertyBag({ application: { z: '1' }, system })).toBe('%24.mid=m&%24.ct=a&iothub-ack=none&z=1');
  });

  it('returns the empty string when there are no properties', () => {
    expect(encodePropertyBag({})).toBe('');
  });

  it('escapes & = / % and non-ASCII so that values survive', () => {
    expect(encodePropertyBag({ application: { 'a&b': 'c=d/e%f é' } })).toBe('a%26b=c%3Dd%2Fe%25f%20%C3%A9');
  });

  it('refuses an application property named like a system property', () => {
    expect(() => encodePropertyBag({ application: { '$.mid': 'x' } })).toThrowError(ArgumentError);
    expect(() => encodePropertyBag({ application: { 'iothub-ack': 'full' } })).toThrowError(ArgumentError);
  });

  it('refuses an empty application property name', () => {
    expect(() => encodePropertyBag({ application: { '': 'x' } })).toThrowError(ArgumentError);
  });

  it('refuses an unknown ack value', () => {
    const system = { ack: 'maybe' } as unknown as MessageSystemProperties;
    expect(() => encodePropertyBag({ system })).toThrowError(ArgumentError);
  });

  it('refuses a lone surrogate with an ArgumentError rather than a URIError', () => {
    expect(() => encodePropertyBag({ application: { k: '\ud800' } })).toThrowError(ArgumentError);
  });
});

const systemProperties: fc.Arbitrary<MessageSystemProperties> = fc.record(
  {
    messageId: fc.string({ unit: 'binary' }),
    correlationId: fc.string({ unit: 'binary' }),
    userId: fc.string(),
    to: fc.string(),
    expiryTimeUtc: fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
    contentType: fc.string(),
    contentEncoding: fc.string(),
    outputName: fc.string(),
    interfaceId: fc.string(),
    componentName: fc.string(),
    creationTimeUtc: fc.string(),
    messageSchema: fc.string(),
    connectionDeviceId: fc.string(),
    connectionModuleId: fc.string(),
    diagnosticId: fc.string(),
    diagnosticCorrelationContext: fc.string(),
    ack: fc.constantFrom('none' as const, 'positive' as const, 'negative' as const, 'full' as const),
  },
  { requiredKeys: [] },
);

const applicationProperties = fc.dictionary(
  fc.string({ unit: 'binary', minLength: 1 }).filter((key) => !isSystemPropertyKey(key)),
  fc.string({ unit: 'binary' }),
);

describe('property bag round trip', () => {
  it('decodes what it encodes, for random system and application properties', () => {
    fc.assert(
      fc.property(systemProperties, applicationProperties, (system, application) => {
        expect(decodePropertyBag(encodePropertyBag({ system, application }))).toEqual({ system, application });
      }),
      { numRuns: 500 },
    );
  });

  it('maps every system property to a distinct wire key', () => {
    const keys = Object.values(SystemPropertyKeys);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('percentEncode and percentDecode', () => {
  it('decode what encodeURIComponent encodes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect(percentEncode(text, 'f')).toBe(encodeURIComponent(text));
        expect(percentDecode(percentEncode(text, 'f'), 'f')).toBe(text);
      }),
    );
  });

  it('agree with decodeURIComponent wherever it succeeds, and throw ArgumentError where it fails', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.constantFrom('%', '%2', '%41', '%C3', '%A9', '%E2', '%82', '%AC', '%ED', '%A0', '%F0', '%9F', 'x', '+'),
          {
            maxLength: 8,
          },
        ),
        (parts) => {
          const text = parts.join('');
          let expected: string | undefined;
          try {
            expected = decodeURIComponent(text);
          } catch {
            expected = undefined;
          }
          if (expected === undefined) expect(() => percentDecode(text, 'f')).toThrowError(ArgumentError);
          else expect(percentDecode(text, 'f')).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('keeps + unless asked to read it as a space', () => {
    expect(percentDecode('a+b', 'f')).toBe('a+b');
    expect(percentDecode('a+b', 'f', { plusAsSpace: true })).toBe('a b');
  });
});
