import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HubEvents, isoWithTicks } from './events';
import { BuiltInEndpoint, type EndpointEvent } from './telemetry';
import { createTestCore, type TestCore } from './telemetry-test-support';

const json = (event: EndpointEvent): unknown => JSON.parse(new TextDecoder().decode(event.body));

describe('HubEvents', () => {
  let core: TestCore;
  let endpoint: BuiltInEndpoint;
  let events: HubEvents;

  beforeEach(async () => {
    core = await createTestCore();
    endpoint = new BuiltInEndpoint(core.ctx);
    events = new HubEvents(core.ctx, endpoint);
  });
  afterEach(async () => {
    endpoint.stop();
    await core.close();
  });

  it('writes operationTimestamp with 7 fractional digits', () => {
    expect(isoWithTicks(Date.parse('2022-06-01T22:27:50.261Z'))).toBe('2022-06-01T22:27:50.2610000Z');
  });

  it('appends a device lifecycle event in Azure shape (§5.5, §5.6)', async () => {
    const twin = { deviceId: 'dev1', etag: 'AAAAAAAAAAE=', version: 2, properties: { desired: {}, reported: {} } };
    const event = await events.deviceLifecycle('createDeviceIdentity', twin, { deviceId: 'dev1' });
    expect(json(event)).toEqual(twin);
    expect(event.properties).toEqual({
      hubName: 'testhub',
      deviceId: 'dev1',
      operationTimestamp: '2026-01-01T00:00:00.0000000Z',
      opType: 'createDeviceIdentity',
      'iothub-message-schema': 'deviceLifecycleNotification',
    });
    expect(event.systemProperties).toMatchObject({
      'content-type': 'application/json',
      'content-encoding': 'utf-8',
      'user-id': 'testhub',
      'iothub-connection-device-id': 'dev1',
      'iothub-message-source': 'deviceLifecycleEvents',
      'iothub-enqueuedtime': core.ctx.now(),
    });
    expect(event.correlationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(event.systemProperties['iothub-connection-module-id']).toBeUndefined();
  });

  it('carries the module id for module events', async () => {
    const event = await events.deviceLifecycle(
      'deleteDeviceIdentity',
      { deviceId: 'dev1', moduleId: 'm1' },
      {
        deviceId: 'dev1',
        moduleId: 'm1',
      },
    );
    expect(event.properties.moduleId).toBe('m1');
    expect(event.systemProperties['iothub-connection-module-id']).toBe('m1');
    expect(event.properties.opType).toBe('deleteDeviceIdentity');
  });

  it('appends twin change events with the given body', async () => {
    const body = { version: 7, properties: { desired: { a: 1, $version: 6 } } };
    const event = await events.twinChanged('updateTwin', { deviceId: 'dev1' }, body);
    expect(json(event)).toEqual(body);
    expect(event.source).toBe('twinChangeEvents');
    expect(event.properties['iothub-message-schema']).toBe('twinChangeNotification');
    expect(event.properties.opType).toBe('updateTwin');
  });

  it('numbers connection state events with strictly increasing 64-hex strings', async () => {
    const sequenceNumbers: string[] = [];
    for (let index = 0; index < 5; index++) {
      const op = index % 2 === 0 ? 'deviceConnected' : 'deviceDisconnected';
      const event = await events.connectionState(op, { deviceId: 'dev1' });
      expect(event.source).toBe('deviceConnectionStateEvents');
      expect(event.properties['iothub-message-schema']).toBe('deviceConnectionStateNotification');
      expect(event.properties.opType).toBe(op);
      const { sequenceNumber } = json(event) as { sequenceNumber: string };
      expect(sequenceNumber).toMatch(/^[0-9A-F]{64}$/);
      sequenceNumbers.push(sequenceNumber);
      // Same clock reading on purpose for some: still strictly increasing.
      if (index === 2) core.advance(5);
    }
    expect([...sequenceNumbers].sort()).toEqual(sequenceNumbers);
    expect(new Set(sequenceNumbers).size).toBe(5);
    // A later HubEvents (a restart) with a later clock continues above.
    core.advance(1);
    const restarted = new HubEvents(core.ctx, endpoint);
    const next = json(await restarted.connectionState('deviceConnected', { deviceId: 'dev1' })) as {
      sequenceNumber: string;
    };
    expect(next.sequenceNumber > sequenceNumbers.at(-1)!).toBe(true);
  });

  it('lands on the device partition so a reader sees the device order', async () => {
    await events.connectionState('deviceConnected', { deviceId: 'dev1' });
    await endpoint.append({ deviceId: 'dev1', body: new TextEncoder().encode('t') });
    await events.connectionState('deviceDisconnected', { deviceId: 'dev1' });
    const reader = await endpoint.read({ live: false });
    const sources: (string | undefined)[] = [];
    for await (const event of reader) sources.push(event.source);
    expect(sources).toEqual(['deviceConnectionStateEvents', 'Telemetry', 'deviceConnectionStateEvents']);
  });
});
