import type { TelemetryEvent } from '@fieldhub/service';
import { describe, expect, it } from 'vitest';
import { painter } from '../output';
import { bodyText, renderEvent } from './monitor';

const encoder = new TextEncoder();

function event(overrides: Partial<TelemetryEvent> = {}): TelemetryEvent {
  return {
    deviceId: 'd1',
    moduleId: undefined,
    messageId: 'm1',
    correlationId: undefined,
    userId: undefined,
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    properties: {},
    systemProperties: { 'iothub-message-source': 'Telemetry' },
    body: encoder.encode('{ "t": 21 }'),
    bodyText: '{ "t": 21 }',
    enqueuedTime: new Date('2026-11-27T10:00:00.000Z'),
    sequenceNumber: 1,
    offset: '1',
    partition: 0,
    ...overrides,
  };
}

const plain = painter(false);

describe('renderEvent', () => {
  it('shows time, device, the JSON body on one line and the properties', () => {
    expect(renderEvent(event({ properties: { unit: 'C', site: 'n' } }), plain)).toBe(
      '2026-11-27T10:00:00.000Z d1 {"t":21} unit=C site=n',
    );
  });

  it('names the module and shows non-UTF-8 bodies as base64', () => {
    const bytes = new Uint8Array([0xff, 0xfe]);
    expect(renderEvent(event({ moduleId: 'filter', body: bytes, bodyText: undefined }), plain)).toBe(
      '2026-11-27T10:00:00.000Z d1/filter base64://4=',
    );
  });

  it('labels hub events with their operation and cuts long bodies', () => {
    const long = JSON.stringify({ twin: 'x'.repeat(400) });
    const line = renderEvent(
      event({
        systemProperties: { 'iothub-message-source': 'deviceLifecycleEvents' },
        properties: { opType: 'createDeviceIdentity' },
        body: encoder.encode(long),
        bodyText: long,
      }),
      plain,
    );
    expect(line).toMatch(/^2026-11-27T10:00:00.000Z d1 \[lifecycle: createDeviceIdentity\] \{"twin":"x+…$/);
    expect(line.length).toBeLessThan(240);
    expect(
      renderEvent(event({ systemProperties: { 'iothub-message-source': 'deviceConnectionStateEvents' } }), plain),
    ).toContain('[connection]');
  });

  it('colours only with a colour painter', () => {
    expect(renderEvent(event(), painter(true))).toContain('\u001b[');
    expect(renderEvent(event(), plain)).not.toContain('\u001b[');
  });
});

describe('bodyText', () => {
  it('decodes valid UTF-8 the hub did not mark as text, and base64s the rest', () => {
    expect(bodyText(event({ body: encoder.encode('héllo'), bodyText: undefined }))).toEqual({
      text: 'héllo',
      encoding: 'utf-8',
    });
    expect(bodyText(event({ body: new Uint8Array([0xc3]), bodyText: undefined }))).toEqual({
      text: 'ww==',
      encoding: 'base64',
    });
  });
});
