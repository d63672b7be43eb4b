import { describe, expect, it } from 'vitest';
import { dataSection } from './amqp-message';
import { parseFeedback } from './cloud-to-device';

describe('parseFeedback', () => {
  it('reads Azure feedback batches from a data section or a string value', () => {
    const record = {
      originalMessageId: 'c2d-1',
      description: 'Success',
      deviceGenerationId: '1',
      deviceId: 'demo-dev1',
      enqueuedTimeUtc: '2026-11-27T10:26:13.450Z',
      statusCode: 'Success',
    };
    const text = JSON.stringify([record]);
    expect(parseFeedback(dataSection(new TextEncoder().encode(text)))).toEqual([record]);
    expect(parseFeedback(text)).toEqual([record]);
  });

  it('refuses a body that is not a JSON array', () => {
    expect(parseFeedback('{"a":1}')).toBeUndefined();
    expect(parseFeedback('not json')).toBeUndefined();
  });
});
