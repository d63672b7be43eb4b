import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { formatPosition, toEvent } from './telemetry';

describe('formatPosition', () => {
  it('formats the extension from values', () => {
    expect(formatPosition('earliest')).toBe('earliest');
    expect(formatPosition({ sequenceNumber: 41 })).toBe('seq:41');
    expect(formatPosition({ enqueuedTime: new Date(0) })).toBe('time:1970-01-01T00:00:00.000Z');
    expect(() => formatPosition({ enqueuedTime: 'nonsense' })).toThrow(ArgumentError);
    expect(() => formatPosition('oldest' as 'earliest')).toThrow(ArgumentError);
  });
});

describe('toEvent', () => {
  it('decodes UTF-8 and base64 bodies', () => {
    const base = { sequenceNumber: 3, partition: 1, enqueuedTime: '2026-11-27T10:00:00.000Z', deviceId: 'd1' };
    const text = toEvent(JSON.stringify({ ...base, body: '{"t":21}', bodyEncoding: 'utf-8', moduleId: null }));
    expect(text).toMatchObject({ bodyText: '{"t":21}', moduleId: undefined, offset: '3', properties: {} });
    expect(new TextDecoder().decode(text.body)).toBe('{"t":21}');
    const binary = toEvent(JSON.stringify({ ...base, body: 'AP8Q', bodyEncoding: 'base64' }));
    expect([...binary.body]).toEqual([0, 255, 16]);
    expect(binary.bodyText).toBeUndefined();
    expect(binary.enqueuedTime.toISOString()).toBe('2026-11-27T10:00:00.000Z');
  });

  it('refuses data that is not an event', () => {
    expect(() => toEvent('not json')).toThrow(/not JSON/);
    expect(() => toEvent('{"body":"x"}')).toThrow(/sequenceNumber/);
  });
});
