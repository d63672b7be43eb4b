import { message as rheaMessage, string_to_uuid } from 'rhea';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloudToDevice, cloudToDeviceFeedbackSubject } from '../../../core/cloud-to-device';
import { createTestCore, FakeRegistry, type TestCore } from '../../../core/telemetry-test-support';
import { bodyBytes, messageIdString, propertyString } from './amqp-message-fields';
import { deviceIdFromTo, toCloudToDeviceInput } from './cloud-to-device-send';
import { toAmqpError } from './service-errors';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

describe('deviceIdFromTo', () => {
  it('reads the URL-decoded device id, matching the fixed segments case-insensitively', () => {
    expect(deviceIdFromTo('/devices/dev1/messages/devicebound')).toBe('dev1');
    expect(deviceIdFromTo('/devices/dev%2F1/messages/devicebound')).toBe('dev/1');
    expect(deviceIdFromTo('/DEVICES/Dev1/Messages/DeviceBound')).toBe('Dev1');
  });

  it.each([
    undefined,
    '',
    42,
    '/devices//messages/devicebound',
    '/devices/dev1/messages/events',
    'devices/dev1/messages/devicebound',
    '/devices/dev1/modules/m1/messages/devicebound',
    '/devices/%E0%A4%A/messages/devicebound',
  ])('refuses %s with amqp:not-allowed (InvalidOperation)', (to) => {
    expect(() => deviceIdFromTo(to)).toThrow(/Amqp Message.Properties.To must contain the device identifier/);
    try {
      deviceIdFromTo(to);
    } catch (error) {
      expect((error as { error: { condition: string } }).error.condition).toBe('amqp:not-allowed');
    }
  });
});

describe('toCloudToDeviceInput', () => {
  it('maps the properties the azure-iothub SDK sends', () => {
    const messageId = '0f8fad5b-d9cb-469f-a165-70867728950e';
    const expiry = new Date('2030-01-01T00:00:00.000Z');
    const input = toCloudToDeviceInput(
      {
        to: '/devices/d/messages/devicebound',
        message_id: string_to_uuid(messageId),
        correlation_id: 'corr-9',
        user_id: Buffer.from('someone') as unknown as string,
        content_type: 'application/json',
        content_encoding: 'utf-8',
        absolute_expiry_time: expiry,
        application_properties: { 'IoTHub-Ack': 'full', color: 'blue', n: 3, ok: false, gone: null },
        body: rheaMessage.data_section(Buffer.from('hello')),
      },
      0,
    );
    expect(input).toMatchObject({
      messageId,
      correlationId: 'corr-9',
      userId: 'someone',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      expiryTimeUtc: expiry.getTime(),
      ack: 'full',
      properties: { color: 'blue', n: '3', ok: 'false' },
    });
    expect(text(input.body)).toBe('hello');
  });

  it('takes the expiry from the header ttl when there is no absolute expiry, else leaves the default', () => {
    expect(toCloudToDeviceInput({ ttl: 5000, body: 'x' }, 1000).expiryTimeUtc).toBe(6000);
    expect(toCloudToDeviceInput({ body: 'x' }, 1000).expiryTimeUtc).toBeUndefined();
  });
});

describe('AMQP field conversions', () => {
  it('turns message ids of every AMQP type into strings', () => {
    expect(messageIdString('abc', 'message_id')).toBe('abc');
    expect(messageIdString(string_to_uuid('0F8FAD5B-D9CB-469F-A165-70867728950E'), 'message_id')).toBe(
      '0f8fad5b-d9cb-469f-a165-70867728950e',
    );
    expect(messageIdString(42, 'message_id')).toBe('42');
    expect(messageIdString(Buffer.from([1, 2, 255]), 'message_id')).toBe('0102ff');
    expect(messageIdString(undefined, 'message_id')).toBeUndefined();
    expect(() => messageIdString({}, 'message_id')).toThrow(/Unsupported message_id/);
  });

  it('turns simple property values into strings and refuses structured ones', () => {
    expect(propertyString('t', new Date(0))).toBe('1970-01-01T00:00:00.000Z');
    expect(propertyString('b', true)).toBe('true');
    expect(propertyString('n', null)).toBeUndefined();
    expect(() => propertyString('m', { a: 1 })).toThrow(/must be a string/);
    expect(() => propertyString('bin', Buffer.from('abc'))).toThrow(/must be a string/);
  });

  it('reads data sections, binary and string values as the body and refuses the rest', () => {
    expect(text(bodyBytes(rheaMessage.data_sections([Buffer.from('a'), Buffer.from('b')])))).toBe('ab');
    expect(text(bodyBytes(Buffer.from('raw')))).toBe('raw');
    expect(text(bodyBytes('héllo'))).toBe('héllo');
    expect(bodyBytes(undefined)).toHaveLength(0);
    expect(() => bodyBytes(rheaMessage.sequence_section([1]))).toThrow(/data sections/);
    expect(() => bodyBytes({ a: 1 })).toThrow(/data sections/);
    expect(() => bodyBytes(7)).toThrow(/data sections/);
  });
});

describe('core errors as AMQP conditions', () => {
  let core: TestCore;
  let c2d: CloudToDevice;

  beforeEach(async () => {
    core = await createTestCore();
    c2d = new CloudToDevice(core.ctx, new FakeRegistry().add('dev1'));
  });
  afterEach(async () => {
    c2d.stop();
    await core.close();
  });

  it('maps what the core throws on send to the conditions azure-iothub turns into typed errors', async () => {
    const condition = async (deviceId: string, body: Uint8Array, ack?: string) => {
      try {
        await c2d.send(deviceId, { body, ...(ack === undefined ? {} : { ack: ack as 'full' }) });
        return 'accepted';
      } catch (error) {
        const amqpError = toAmqpError(error);
        expect(amqpError.internal).toBe(false);
        return amqpError.condition;
      }
    };
    expect(await condition('ghost', new Uint8Array())).toBe('amqp:not-found');
    expect(await condition('dev1', new Uint8Array(64 * 1024 + 1))).toBe('amqp:link:message-size-exceeded');
    expect(await condition('dev1', new Uint8Array(), 'maybe')).toBe('com.microsoft:argument-error');
    for (let index = 0; index < 50; index++) expect(await condition('dev1', new Uint8Array())).toBe('accepted');
    expect(await condition('dev1', new Uint8Array())).toBe('amqp:resource-limit-exceeded');
  });

  it('maps an unexpected error to amqp:internal-error without its message', () => {
    const amqpError = toAmqpError(new Error('disk on fire'));
    expect(amqpError).toMatchObject({ condition: 'amqp:internal-error', internal: true });
    expect(amqpError.description).not.toContain('disk');
  });

  it('announces feedback on the bus when a settlement writes records or an abandon returns them', async () => {
    const seen: unknown[] = [];
    core.ctx.bus.subscribe(core.ctx.hubName, cloudToDeviceFeedbackSubject, (payload) => seen.push(payload));
    await c2d.send('dev1', { body: new Uint8Array(), ack: 'none' });
    await c2d.complete('dev1', (await c2d.receive('dev1'))?.lockToken ?? '');
    await new Promise((resolve) => setImmediate(resolve)); // the local bus delivers in a microtask
    expect(seen).toHaveLength(0);
    await c2d.send('dev1', { body: new Uint8Array(), ack: 'full' });
    await c2d.complete('dev1', (await c2d.receive('dev1'))?.lockToken ?? '');
    await new Promise((resolve) => setImmediate(resolve)); // the local bus delivers in a microtask
    expect(seen).toEqual([{}]);
    const batch = await c2d.receiveFeedback();
    await c2d.abandonFeedback(batch?.lockToken ?? '');
    await new Promise((resolve) => setImmediate(resolve)); // the local bus delivers in a microtask
    expect(seen).toHaveLength(2);
  });
});
