import { message } from 'rhea-promise';
import { describe, expect, it } from 'vitest';
import { bodyBytes, dataSection, idKey, messageIdValue, timeValue } from './amqp-message';

describe('messageIdValue', () => {
  it('sends UUID-shaped ids as 16-byte AMQP uuids and others as strings, as azure-iothub does', () => {
    const uuid = '0f8fad5b-d9cb-469f-a165-70867728950e';
    const encoded = messageIdValue(uuid);
    expect(Buffer.isBuffer(encoded) && encoded.length).toBe(16);
    expect(idKey(encoded)).toBe(uuid);
    expect(messageIdValue('c2d-1')).toBe('c2d-1');
    // Upper case and version 0 do not match azure-iot-amqp-base's pattern.
    expect(messageIdValue(uuid.toUpperCase())).toBe(uuid.toUpperCase());
  });
});

describe('bodyBytes', () => {
  it('reads data sections, values and nothing', () => {
    expect([...bodyBytes(dataSection(new Uint8Array([1, 2, 3])))]).toEqual([1, 2, 3]);
    expect([...bodyBytes(message.data_sections([Buffer.from([1]), Buffer.from([2])]))]).toEqual([1, 2]);
    expect(new TextDecoder().decode(bodyBytes('text'))).toBe('text');
    expect(new TextDecoder().decode(bodyBytes([{ a: 1 }]))).toBe('[{"a":1}]');
    expect(bodyBytes(undefined)).toHaveLength(0);
  });

  it('round-trips a data section through the AMQP encoding', () => {
    const encoded = message.encode({ body: dataSection(new TextEncoder().encode('[{"x":1}]')) });
    const decoded = message.decode(encoded);
    expect(new TextDecoder().decode(bodyBytes(decoded.body))).toBe('[{"x":1}]');
  });
});

describe('timeValue', () => {
  it('accepts dates and milliseconds', () => {
    expect(timeValue(new Date(5))?.getTime()).toBe(5);
    expect(timeValue(7)?.getTime()).toBe(7);
    expect(timeValue('x')).toBeUndefined();
  });
});
