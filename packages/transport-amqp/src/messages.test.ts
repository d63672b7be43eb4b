import { describe, expect, it } from 'vitest';
import {
  bodyBytes,
  cloudToDeviceMessage,
  dataBody,
  idString,
  lockTokenOf,
  telemetryMessage,
  uuidString,
} from './messages';

const decoder = new TextDecoder();

describe('telemetryMessage', () => {
  it('refuses more than 256 KB locally with MessageTooLarge, counting properties', () => {
    expect(() =>
      telemetryMessage('/devices/d/messages/events', {
        body: new Uint8Array(256 * 1024 - 3),
        properties: { ab: 'cd' },
      }),
    ).toThrow(expect.objectContaining({ name: 'ArgumentError', code: 'MessageTooLarge' }));
    expect(() =>
      telemetryMessage('/devices/d/messages/events', {
        body: new Uint8Array(256 * 1024 - 4),
        properties: { ab: 'cd' },
      }),
    ).not.toThrow();
  });

  it('refuses an expiry that is no date', () => {
    expect(() =>
      telemetryMessage('/devices/d/messages/events', { body: new Uint8Array(0), expiryTimeUtc: 'soon' }),
    ).toThrow(expect.objectContaining({ field: 'expiryTimeUtc' }));
  });

  it('keeps application property names such as __proto__ as own properties', () => {
    const message = telemetryMessage('/devices/d/messages/events', {
      body: new Uint8Array(0),
      properties: JSON.parse('{"__proto__":"x"}') as Record<string, string>,
    });
    expect(Object.keys(message.application_properties ?? {})).toEqual(['__proto__']);
  });
});

describe('received values', () => {
  it('reads data sections, several data sections, AMQP strings and no body', () => {
    expect(decoder.decode(bodyBytes(dataBody('abc')))).toBe('abc');
    expect(
      decoder.decode(bodyBytes({ typecode: 0x75, multiple: true, content: [Buffer.from('ab'), Buffer.from('c')] })),
    ).toBe('abc');
    expect(decoder.decode(bodyBytes('text'))).toBe('text');
    expect(bodyBytes(undefined)).toHaveLength(0);
  });

  it('turns uuids, ulongs and strings into id strings', () => {
    const uuid = Buffer.from('6793cc31d04f467bbdfd18f92a1c2473', 'hex');
    expect(uuidString(uuid)).toBe('6793cc31-d04f-467b-bdfd-18f92a1c2473');
    expect(idString(uuid)).toBe('6793cc31-d04f-467b-bdfd-18f92a1c2473');
    expect(idString(42)).toBe('42');
    expect(idString('abc')).toBe('abc');
    expect(idString(undefined)).toBeUndefined();
  });

  it('maps a cloud-to-device message: ids, user id, expiry, properties as strings, delivery count', () => {
    const message = cloudToDeviceMessage(
      {
        message_id: 'm1',
        correlation_id: Buffer.from('00112233445566778899aabbccddeeff', 'hex'),
        user_id: Buffer.from('me') as unknown as string,
        absolute_expiry_time: new Date('2030-01-01T00:00:00Z'),
        content_type: 'text/plain',
        application_properties: { color: 'blue', count: 3, 'iothub-ack': 'full' },
        delivery_count: 1,
        body: dataBody('hi'),
      },
      'lock',
    );
    expect(message).toEqual({
      body: expect.any(Uint8Array),
      properties: { color: 'blue', count: '3', 'iothub-ack': 'full' },
      lockToken: 'lock',
      messageId: 'm1',
      correlationId: '00112233-4455-6677-8899-aabbccddeeff',
      contentType: 'text/plain',
      userId: 'me',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
      deliveryCount: 2,
    });
    expect(decoder.decode(message.body)).toBe('hi');
  });
});

describe('lockTokenOf', () => {
  it('reads the 16-byte tag as a GUID, other tags as hex', () => {
    expect(lockTokenOf(Buffer.alloc(16, 0x11), 0)).toBe('11111111-1111-1111-1111-111111111111');
    expect(lockTokenOf(Buffer.from([1, 2]), 0)).toBe('0102');
    expect(lockTokenOf(Buffer.alloc(0), 5)).toBe('delivery-5');
  });
});
