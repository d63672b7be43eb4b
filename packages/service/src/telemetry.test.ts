import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { dataSection, messageIdValue } from './amqp-message';
import { entityOf, selectorFilter, toEvent } from './telemetry';

describe('selectorFilter', () => {
  it('writes the Event Hubs selector expressions for every start position', () => {
    expect(selectorFilter('earliest')).toBe("amqp.annotation.x-opt-offset > '-1'");
    expect(selectorFilter('latest')).toBe("amqp.annotation.x-opt-offset > '@latest'");
    expect(selectorFilter({ sequenceNumber: 41 })).toBe("amqp.annotation.x-opt-sequence-number > '41'");
    expect(selectorFilter({ enqueuedTime: new Date(1654109018051) })).toBe(
      "amqp.annotation.x-opt-enqueued-time > '1654109018051'",
    );
    expect(() => selectorFilter({ enqueuedTime: 'nonsense' })).toThrow(ArgumentError);
    expect(() => selectorFilter({ sequenceNumber: 1.5 })).toThrow(ArgumentError);
    expect(() => selectorFilter('oldest' as 'earliest')).toThrow(ArgumentError);
  });
});

describe('entityOf', () => {
  it('takes the event hub name out of a redirect address', () => {
    expect(entityOf('amqps://ns.servicebus.windows.net:5671/iothub-ehub-x-1/$management')).toBe('iothub-ehub-x-1');
    expect(entityOf('hub/$management')).toBe('hub');
    expect(entityOf(undefined)).toBeUndefined();
  });
});

describe('toEvent', () => {
  const enqueued = new Date('2026-11-27T10:00:00.000Z');
  const annotations = {
    'iothub-connection-device-id': 'd1',
    'iothub-enqueuedtime': enqueued,
    'iothub-message-source': 'Telemetry',
    'x-opt-sequence-number': 3,
    'x-opt-offset': '3',
    'x-opt-enqueued-time': enqueued,
  };

  it('maps the annotations, properties and a UTF-8 body', () => {
    const event = toEvent(
      {
        body: dataSection(new TextEncoder().encode('{"t":21}')),
        message_id: messageIdValue('0f8fad5b-d9cb-469f-a165-70867728950e'),
        correlation_id: 'c-1',
        content_type: 'application/json',
        content_encoding: 'utf-8',
        application_properties: { temp: '21', count: 2 },
        message_annotations: annotations,
      },
      1,
    );
    expect(event).toMatchObject({
      deviceId: 'd1',
      moduleId: undefined,
      messageId: '0f8fad5b-d9cb-469f-a165-70867728950e',
      correlationId: 'c-1',
      contentType: 'application/json',
      bodyText: '{"t":21}',
      properties: { temp: '21', count: '2' },
      sequenceNumber: 3,
      offset: '3',
      partition: 1,
    });
    expect(event.enqueuedTime.toISOString()).toBe('2026-11-27T10:00:00.000Z');
    expect(event.systemProperties['iothub-message-source']).toBe('Telemetry');
  });

  it('leaves bodyText undefined for bytes and for text that does not decode', () => {
    const binary = toEvent({ body: dataSection(new Uint8Array([0, 255, 16])), message_annotations: annotations }, 0);
    expect([...binary.body]).toEqual([0, 255, 16]);
    expect(binary.bodyText).toBeUndefined();
    const broken = toEvent(
      { body: dataSection(new Uint8Array([0xff])), content_type: 'text/plain', message_annotations: annotations },
      0,
    );
    expect(broken.bodyText).toBeUndefined();
  });

  it('refuses a message without a sequence number', () => {
    expect(() => toEvent({ body: 'x' }, 0)).toThrow(/x-opt-sequence-number/);
  });
});
