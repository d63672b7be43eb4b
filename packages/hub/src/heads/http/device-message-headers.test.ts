import { ArgumentError } from '@fieldhub/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CloudToDeviceDelivery } from '../../core/cloud-to-device';
import { cloudToDeviceHeaders, telemetryFromBatch, telemetryFromHeaders } from './device-message-headers';

const tokenCharacters = "abcXYZ019!#$%&'*+-.^_`|~".split('');
const token = (minLength: number) =>
  fc.array(fc.constantFrom(...tokenCharacters), { minLength, maxLength: 12 }).map((chars) => chars.join(''));

describe('telemetryFromHeaders', () => {
  it('reads the Node SDK request of captures/http.txt (case-insensitive names, property case kept)', () => {
    const message = telemetryFromHeaders(
      [
        'iothub-to',
        '/devices/demo-dev1/messages/events',
        'Authorization',
        'SharedAccessSignature sr=x&sig=y&se=1',
        'iothub-app-alert',
        'high-temp',
        'iothub-app-N',
        '1',
        'IoTHub-MessageId',
        'mid-1',
        'IoTHub-CorrelationId',
        'cid-1',
        'iothub-contenttype',
        'application/json',
        'iothub-contentencoding',
        'utf-8',
        'IoTHub-Ack',
        'full',
        'dt-subject',
        'thermostat1',
      ],
      Buffer.from('{"temperature":21.5}'),
    );
    expect(message.properties).toEqual({ alert: 'high-temp', N: '1' });
    expect(message.system).toEqual({
      to: '/devices/demo-dev1/messages/events',
      messageId: 'mid-1',
      correlationId: 'cid-1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      componentName: 'thermostat1',
    });
  });

  it('turns iothub-creation-time-utc into the system property and normalises the expiry to ISO 8601', () => {
    const message = telemetryFromHeaders(
      ['iothub-app-iothub-creation-time-utc', '2026-01-01T00:00:00Z', 'iothub-expiry', 'Thu, 01 Jan 2030 00:00:00 GMT'],
      Buffer.alloc(0),
    );
    expect(message.properties).toEqual({});
    expect(message.system).toEqual({
      creationTimeUtc: '2026-01-01T00:00:00Z',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
    });
  });

  it('refuses a property given twice, also in two cases', () => {
    expect(() => telemetryFromHeaders(['iothub-app-k', 'a', 'IOTHUB-APP-K', 'b'], Buffer.alloc(0))).toThrowError(
      ArgumentError,
    );
    expect(() =>
      telemetryFromHeaders(['iothub-messageid', 'a', 'iothub-messageid', 'b'], Buffer.alloc(0)),
    ).toThrowError(ArgumentError);
  });

  it('keeps every property whose name and value are token characters', () => {
    fc.assert(
      fc.property(fc.dictionary(token(1), token(0), { maxKeys: 8 }), (properties) => {
        const lowerNames = new Set(Object.keys(properties).map((name) => name.toLowerCase()));
        fc.pre(lowerNames.size === Object.keys(properties).length);
        fc.pre(!lowerNames.has('iothub-creation-time-utc'));
        fc.pre(!lowerNames.has('iothub-outputname') && !lowerNames.has('iothub-message-schema'));
        const raw = Object.entries(properties).flatMap(([name, value]) => [`iothub-app-${name}`, value]);
        expect(telemetryFromHeaders(raw, Buffer.alloc(0)).properties).toEqual(properties);
      }),
    );
  });

  it('refuses any application property value with a character outside §4.1', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }).filter((value) => /[^A-Za-z0-9!#$%&'*+\-.^_`|~]/.test(value)),
        (value) => {
          expect(() => telemetryFromHeaders(['iothub-app-k', value], Buffer.alloc(0))).toThrowError(ArgumentError);
        },
      ),
    );
  });
});

describe('telemetryFromBatch', () => {
  it('reads the Node SDK batch of captures/http.txt', () => {
    const messages = telemetryFromBatch(Buffer.from('[{"body": "YQ=="},{"body": "Yg=="}]'));
    expect(messages.map((message) => message.body.toString())).toEqual(['a', 'b']);
  });

  it('either reads a batch or refuses it with ArgumentError, whatever the bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
          fc.json().map((text) => Buffer.from(text)),
          fc
            .array(
              fc.record(
                {
                  body: fc.oneof(fc.base64String(), fc.string(), fc.integer()),
                  properties: fc.oneof(
                    fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer())),
                    fc.constant(null),
                  ),
                  base64Encoded: fc.oneof(fc.boolean(), fc.string()),
                },
                { requiredKeys: [] },
              ),
              { maxLength: 4 },
            )
            .map((items) => Buffer.from(JSON.stringify(items))),
        ),
        (raw) => {
          try {
            const messages = telemetryFromBatch(raw);
            expect(messages.length).toBeGreaterThan(0);
          } catch (error) {
            expect(error).toBeInstanceOf(ArgumentError);
          }
        },
      ),
    );
  });

  it('round-trips bodies of any bytes through base64', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 5 }), (bodies) => {
        const raw = JSON.stringify(bodies.map((body) => ({ body: Buffer.from(body).toString('base64') })));
        const messages = telemetryFromBatch(Buffer.from(raw));
        expect(messages.map((message) => [...message.body])).toEqual(bodies.map((body) => [...body]));
      }),
    );
  });
});

describe('cloudToDeviceHeaders', () => {
  const delivery = (properties: Record<string, string>): CloudToDeviceDelivery => ({
    lockToken: '6c1c7a1e-0000-4000-8000-000000000001',
    deliveryCount: 3,
    lockedUntil: 0,
    message: {
      deviceId: 'd1',
      messageId: 'm1',
      sequenceNumber: 7,
      correlationId: undefined,
      userId: undefined,
      contentType: 'text/plain',
      contentEncoding: undefined,
      to: '/devices/d1/messages/devicebound',
      body: new Uint8Array(),
      properties,
      ack: 'none',
      enqueuedTimeUtc: Date.UTC(2026, 0, 1),
      expiryTimeUtc: Date.UTC(2026, 0, 2),
    },
  });

  it('puts the lock token in a quoted ETag and the system properties in iothub-* headers', () => {
    expect(cloudToDeviceHeaders(delivery({ color: 'blue' }))).toEqual({
      etag: '"6c1c7a1e-0000-4000-8000-000000000001"',
      'iothub-messageid': 'm1',
      'iothub-to': '/devices/d1/messages/devicebound',
      'iothub-expiry': '2026-01-02T00:00:00.000Z',
      'iothub-ack': 'none',
      'iothub-sequencenumber': '7',
      'iothub-enqueuedtime': '2026-01-01T00:00:00.000Z',
      'iothub-deliverycount': '3',
      'iothub-contenttype': 'text/plain',
      'iothub-app-color': 'blue',
    });
  });

  it('makes every property a valid header, whatever its characters', () => {
    const headerName = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
    const headerValue = /^[\t\x20-\x7e]*$/;
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1 }), fc.string()), (properties) => {
        for (const [name, value] of Object.entries(cloudToDeviceHeaders(delivery(properties)))) {
          expect(name).toMatch(headerName);
          expect(value).toMatch(headerValue);
        }
      }),
    );
  });
});
