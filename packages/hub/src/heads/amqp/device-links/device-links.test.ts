import { HubError } from '@fieldhub/protocol';
import rhea from 'rhea';
import { describe, expect, it } from 'vitest';
import type { SessionIdentity } from '../../mqtt/session';
import { parseDeviceAddress } from './addresses';
import { amqpErrorOf, bodyBytes, lockTokenTag, messageIdText, propertyText, uuidText } from './amqp-values';
import { cloudToDeviceMessage } from './cloud-to-device-link';
import { telemetryInput } from './telemetry-link';

const identity: SessionIdentity = {
  deviceId: 'dev1',
  moduleId: 'mod1',
  key: 'dev1/mod1',
  authMethod: { scope: 'module', type: 'sas', issuer: 'iothub' },
  generationId: '638000000000000000',
};

describe('parseDeviceAddress', () => {
  it('reads the device and module link addresses of §3.3 case-insensitively, with URL-encoded ids', () => {
    expect(parseDeviceAddress('/devices/dev1/messages/events')).toEqual({
      kind: 'events',
      deviceId: 'dev1',
      moduleId: undefined,
    });
    expect(parseDeviceAddress('/DEVICES/dev%2F1/Messages/DeviceBound')).toEqual({
      kind: 'devicebound',
      deviceId: 'dev/1',
      moduleId: undefined,
    });
    expect(parseDeviceAddress('amqps://hub.example:5671/devices/d/modules/m%20x/twin/')).toEqual({
      kind: 'twin',
      deviceId: 'd',
      moduleId: 'm x',
    });
    expect(parseDeviceAddress('devices/d/methods/devicebound?api-version=2021-04-12')).toEqual({
      kind: 'methods',
      deviceId: 'd',
      moduleId: undefined,
    });
  });

  it('names no device link for other addresses, empty ids or ids that do not decode', () => {
    for (const address of [
      '$cbs',
      '/messages/devicebound',
      '/devices//messages/events',
      '/devices/d/modules//twin',
      '/devices/%E0%A4%A/twin',
      '/devices/d/messages/events/extra',
      '/devices/d/twin/x',
      '/devices/d',
    ]) {
      expect(parseDeviceAddress(address), address).toBeUndefined();
    }
  });
});

describe('AMQP values', () => {
  it('turns AMQP uuid ids into their canonical text and keeps strings', () => {
    const id = '6793cc31-d04f-467b-bdfd-18f92a1c2473';
    expect(messageIdText(rhea.string_to_uuid(id))).toBe(id);
    expect(messageIdText('mid-1')).toBe('mid-1');
    expect(messageIdText(42)).toBe('42');
    expect(messageIdText(Buffer.from([1, 2]))).toBe('0102');
    expect(messageIdText(undefined)).toBeUndefined();
  });

  it('makes the 16-byte delivery tag .NET reads back as the lock token (Guid.ToByteArray order)', () => {
    const lockToken = '00112233-4455-6677-8899-aabbccddeeff';
    expect(lockTokenTag(lockToken).toString('hex')).toBe('33221100554477668899aabbccddeeff');
    expect(uuidText(Buffer.from('00112233445566778899aabbccddeeff', 'hex'))).toBe(lockToken);
  });

  it('reads data sections, several of them, and string or binary values as the body; refuses others', () => {
    expect(bodyBytes({ body: rhea.message.data_section(Buffer.from('ab')) })).toEqual(Buffer.from('ab'));
    expect(
      bodyBytes({ body: rhea.message.data_sections([Buffer.from('a'), Buffer.from('b')]) } as rhea.Message),
    ).toEqual(Buffer.from('ab'));
    expect(bodyBytes({ body: 'text' })).toEqual(Buffer.from('text'));
    expect(bodyBytes({ body: undefined })).toEqual(Buffer.alloc(0));
    expect(bodyBytes({ body: { a: 1 } })).toMatchObject({ condition: 'com.microsoft:argument-error' });
    expect(bodyBytes({ body: rhea.message.sequence_section([1]) })).toMatchObject({
      condition: 'com.microsoft:argument-error',
    });
  });

  it('writes application property values as strings and refuses lists and maps', () => {
    expect(propertyText('x')).toBe('x');
    expect(propertyText(1.5)).toBe('1.5');
    expect(propertyText(true)).toBe('true');
    expect(propertyText(new Date(0))).toBe('1970-01-01T00:00:00.000Z');
    expect(propertyText(null)).toBeNull();
    expect(propertyText([1])).toBeUndefined();
    expect(propertyText({ a: 1 })).toBeUndefined();
  });

  it('maps core errors to the AMQP conditions the SDKs know (§3.4)', () => {
    expect(amqpErrorOf(new HubError('MessageTooLarge', 'big')).condition).toBe('amqp:link:message-size-exceeded');
    expect(amqpErrorOf(new HubError('DeviceNotFound', 'x')).condition).toBe('amqp:not-found');
    expect(amqpErrorOf(new HubError('ThrottlingException', 'x')).condition).toBe(
      'com.microsoft:device-container-throttled',
    );
    expect(amqpErrorOf(new HubError('IotHubQuotaExceeded', 'x')).condition).toBe('com.microsoft:quota-exceeded');
    expect(amqpErrorOf(new HubError('DeviceMessageLockLost', 'x')).condition).toBe('com.microsoft:message-lock-lost');
    expect(amqpErrorOf(new Error('boom'))).toEqual({
      condition: 'amqp:internal-error',
      description: 'An internal error occurred.',
    });
  });
});

describe('telemetryInput', () => {
  it('maps properties, application properties and annotations to the endpoint message, stamped with the identity', () => {
    const input = telemetryInput(
      {
        message_id: rhea.string_to_uuid('6793cc31-d04f-467b-bdfd-18f92a1c2473') as unknown as string,
        correlation_id: 'cid',
        user_id: Buffer.from('user') as unknown as string,
        content_type: 'application/json',
        content_encoding: 'utf-8',
        absolute_expiry_time: new Date(0),
        application_properties: { 'iothub-outputname': 'out1', k: 'v', n: 2 },
        message_annotations: { 'iothub-interface-id': 'dtmi:x;1', 'dt-subject': 'c1', other: 'ignored' },
        body: rhea.message.data_section(Buffer.from('{}')),
      },
      identity,
    );
    expect(input).toMatchObject({
      deviceId: 'dev1',
      moduleId: 'mod1',
      messageId: '6793cc31-d04f-467b-bdfd-18f92a1c2473',
      correlationId: 'cid',
      userId: 'user',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      properties: { k: 'v', n: '2' },
      authMethod: identity.authMethod,
      authGenerationId: identity.generationId,
      annotations: {
        'iothub-outputname': 'out1',
        'iothub-interface-id': 'dtmi:x;1',
        'dt-subject': 'c1',
        'absolute-expiry-time': '1970-01-01T00:00:00.000Z',
      },
    });
  });

  it('refuses a body over 256 KB, and a message over 256 KB with its properties', () => {
    expect(telemetryInput({ body: rhea.message.data_section(Buffer.alloc(256 * 1024 + 1)) }, identity)).toMatchObject({
      condition: 'amqp:link:message-size-exceeded',
    });
    expect(
      telemetryInput(
        {
          application_properties: { big: 'x'.repeat(1024) },
          body: rhea.message.data_section(Buffer.alloc(256 * 1024)),
        },
        identity,
      ),
    ).toMatchObject({ condition: 'amqp:link:message-size-exceeded' });
  });
});

describe('cloudToDeviceMessage', () => {
  it('carries the properties, iothub-ack and the annotations of §3.4 with their AMQP types', () => {
    const message = cloudToDeviceMessage({
      lockToken: '00112233-4455-6677-8899-aabbccddeeff',
      deliveryCount: 2,
      lockedUntil: 0,
      message: {
        deviceId: 'dev1',
        messageId: 'm1',
        sequenceNumber: 7,
        correlationId: 'c1',
        userId: 'svc',
        contentType: 'text/plain',
        contentEncoding: 'utf-8',
        to: '/devices/dev1/messages/devicebound',
        body: Buffer.from('hi'),
        properties: { color: 'blue' },
        ack: 'negative',
        enqueuedTimeUtc: 1000,
        expiryTimeUtc: 2000,
      },
    });
    const decoded = rhea.message.decode(rhea.message.encode(message));
    expect(decoded).toMatchObject({
      message_id: 'm1',
      correlation_id: 'c1',
      to: '/devices/dev1/messages/devicebound',
      content_type: 'text/plain',
      content_encoding: 'utf-8',
      absolute_expiry_time: new Date(2000),
      application_properties: { color: 'blue', 'iothub-ack': 'negative' },
      message_annotations: {
        'iothub-enqueuedtime': new Date(1000),
        'iothub-deliverycount': 2,
        'x-opt-sequence-number': 7,
        'x-opt-lock-token': '00112233-4455-6677-8899-aabbccddeeff',
      },
    });
    expect(Buffer.from(decoded.user_id as unknown as Buffer).toString()).toBe('svc');
  });
});
