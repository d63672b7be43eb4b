import { parseDeviceTopic } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import captures from './__fixtures__/captures.json';
import { telemetryPublish, telemetrySize } from './telemetry-publish';

const encoder = new TextEncoder();

describe('telemetryPublish', () => {
  it('writes the topic the official SDK writes for the same message (captures/mqtt-mqtt.txt)', () => {
    const publish = telemetryPublish(
      { deviceId: 'demo-dev1' },
      {
        body: encoder.encode('{"temperature":21.5}'),
        messageId: 'mid-1',
        correlationId: 'cid-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        properties: { alert: 'high temp', n: '1' },
      },
    );
    expect(publish.topic).toBe(captures.telemetryTopic);
  });

  it('keeps the trailing slash with no properties, and puts modules under their device', () => {
    expect(telemetryPublish({ deviceId: 'd1' }, { body: new Uint8Array() }).topic).toBe('devices/d1/messages/events/');
    expect(telemetryPublish({ deviceId: 'd1', moduleId: 'm1' }, { body: new Uint8Array() }).topic).toBe(
      'devices/d1/modules/m1/messages/events/',
    );
  });

  it('carries user id and expiry, and property names and values that need encoding, intact', () => {
    const publish = telemetryPublish(
      { deviceId: 'd1' },
      {
        body: new Uint8Array(),
        userId: 'u/1',
        expiryTimeUtc: '2030-01-01T00:00:00.000Z',
        properties: { 'a/b&c=d': 'x/y&z=%#+' },
      },
    );
    expect(publish.topic).not.toMatch(/[#+]/);
    const parsed = parseDeviceTopic(publish.topic);
    expect(parsed).toMatchObject({
      kind: 'telemetry',
      properties: { 'a/b&c=d': 'x/y&z=%#+' },
      systemProperties: { userId: 'u/1', expiryTimeUtc: '2030-01-01T00:00:00.000Z' },
    });
  });

  it('refuses more than 256 KB, properties counted, with an ArgumentError coded MessageTooLarge', () => {
    expect(() => telemetryPublish({ deviceId: 'd1' }, { body: new Uint8Array(256 * 1024) })).not.toThrow();
    const message = { body: new Uint8Array(256 * 1024 - 2), properties: { ab: 'c' } };
    expect(telemetrySize(message)).toBe(256 * 1024 + 1);
    expect(() => telemetryPublish({ deviceId: 'd1' }, message)).toThrow(
      expect.objectContaining({ name: 'ArgumentError', code: 'MessageTooLarge', hubCode: 413001 }),
    );
  });
});
