import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BuiltInEndpoint,
  type EndpointEvent,
  partitionOf,
  type TelemetryReader,
  telemetryAppendedSubject,
} from './telemetry';
import { createTestCore, type TestCore } from './telemetry-test-support';

const text = (value: string) => new TextEncoder().encode(value);
const decode = (event: EndpointEvent) => new TextDecoder().decode(event.body);

async function take(reader: TelemetryReader, count: number): Promise<EndpointEvent[]> {
  const events: EndpointEvent[] = [];
  while (events.length < count) {
    const result = await reader.next();
    if (result.done) break;
    events.push(result.value);
  }
  return events;
}

async function drain(reader: TelemetryReader): Promise<EndpointEvent[]> {
  const events: EndpointEvent[] = [];
  for await (const event of reader) events.push(event);
  return events;
}

describe('BuiltInEndpoint', () => {
  let core: TestCore;
  let endpoint: BuiltInEndpoint;

  beforeEach(async () => {
    core = await createTestCore();
    endpoint = new BuiltInEndpoint(core.ctx, { livePollMs: 5000 });
  });
  afterEach(async () => {
    endpoint.stop();
    await core.close();
  });

  it('partitions by FNV-1a of the device id, stable and in range', () => {
    // FNV-1a 32 of "" is the offset basis 0x811c9dc5 = 2166136261; of "a" 0xe40c292c = 3826002220.
    expect(partitionOf('', 4)).toBe(2166136261 % 4);
    expect(partitionOf('a', 4)).toBe(3826002220 % 4);
    for (const id of ['dev1', 'dev2', 'sensor-42', 'é']) {
      const partition = partitionOf(id, 4);
      expect(partition).toBeGreaterThanOrEqual(0);
      expect(partition).toBeLessThan(4);
      expect(partitionOf(id, 4)).toBe(partition);
    }
  });

  it('stamps system properties and resolves with the durable event', async () => {
    const event = await endpoint.append({
      deviceId: 'dev1',
      moduleId: 'mod1',
      body: text('{"t":21}'),
      properties: { alert: 'no' },
      messageId: 'm1',
      correlationId: 'c1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      userId: 'u1',
      authMethod: { scope: 'module', type: 'sas', issuer: 'iothub' },
      authGenerationId: 'gen1',
    });
    expect(event.partition).toBe(partitionOf('dev1', 4));
    expect(event.sequenceNumber).toBe(0);
    expect(event.deviceId).toBe('dev1');
    expect(event.moduleId).toBe('mod1');
    expect(event.source).toBe('Telemetry');
    expect(event.systemProperties).toMatchObject({
      'iothub-connection-device-id': 'dev1',
      'iothub-connection-module-id': 'mod1',
      'iothub-connection-auth-method': '{"scope":"module","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
      'iothub-connection-auth-generation-id': 'gen1',
      'iothub-enqueuedtime': core.ctx.now(),
      'iothub-message-source': 'Telemetry',
      'message-id': 'm1',
      'correlation-id': 'c1',
      'content-type': 'application/json',
      'content-encoding': 'utf-8',
      'user-id': 'u1',
      'x-opt-sequence-number': 0,
      'x-opt-offset': '0',
      'x-opt-enqueued-time': core.ctx.now(),
    });
    const stored = await core.ctx.store.log.read('testhub', event.partition, 'earliest', 10);
    expect(stored).toHaveLength(1);
    // The Event Hubs annotations are derived at read time, not stored.
    expect(stored[0]?.systemProperties['x-opt-sequence-number']).toBeUndefined();
  });

  it('rejects a message over 256 KB with MessageTooLarge', async () => {
    await expect(endpoint.append({ deviceId: 'dev1', body: new Uint8Array(256 * 1024 + 1) })).rejects.toMatchObject({
      code: 'MessageTooLarge',
      hubCode: 413001,
    });
  });

  it('reads all partitions from earliest, each partition in order, merged by enqueued time', async () => {
    const devices = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (let round = 0; round < 3; round++) {
      for (const deviceId of devices) {
        await endpoint.append({ deviceId, body: text(`${deviceId}${round}`) });
        core.advance(1);
      }
    }
    const events = await drain(await endpoint.read({ live: false, bufferSize: 2 }));
    expect(events.map(decode)).toEqual([0, 1, 2].flatMap((round) => devices.map((deviceId) => `${deviceId}${round}`)));
  });

  it('reads one partition and starts at a sequence number or an enqueued time', async () => {
    const partition = partitionOf('dev1', 4);
    for (let index = 0; index < 5; index++) {
      await endpoint.append({ deviceId: 'dev1', body: text(String(index)) });
      core.advance(1000);
    }
    const inclusive = await drain(
      await endpoint.read({ partition, from: { sequenceNumber: 3, inclusive: true }, live: false }),
    );
    expect(inclusive.map(decode)).toEqual(['3', '4']);
    // Exclusive by default, as Event Hubs: resume after the last event seen.
    const exclusive = await drain(await endpoint.read({ partition, from: { sequenceNumber: 3 }, live: false }));
    expect(exclusive.map(decode)).toEqual(['4']);
    const start = Date.parse('2026-01-01T00:00:02.000Z');
    const fromTime = await drain(
      await endpoint.read({ partition, from: { enqueuedTime: new Date(start) }, live: false }),
    );
    // Event Hubs' enqueued-time position is exclusive: events enqueued strictly after it.
    expect(fromTime.map(decode)).toEqual(['3', '4']);
    await expect(endpoint.read({ partition: 4 })).rejects.toMatchObject({ code: 'ArgumentInvalid' });
  });

  it('from latest sees only events appended after the reader opened, waiting for them', async () => {
    await endpoint.append({ deviceId: 'dev1', body: text('old') });
    const reader = await endpoint.read({ from: 'latest' });
    const pending = take(reader, 2);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await endpoint.append({ deviceId: 'dev1', body: text('new1') });
    await endpoint.append({ deviceId: 'dev2', body: text('new2') });
    expect((await pending).map(decode)).toEqual(['new1', 'new2']);
    reader.close();
  });

  it('wakes live readers on the bus subject telemetry.appended (appends from another process)', async () => {
    const reader = await endpoint.read({ from: 'earliest' });
    const pending = take(reader, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Another hub process appends to the shared store and announces it on the bus.
    const [stored] = await core.ctx.store.log.append('testhub', 2, [
      { body: text('elsewhere'), properties: {}, systemProperties: {}, enqueuedTime: core.ctx.now() },
    ]);
    core.ctx.bus.publish('testhub', telemetryAppendedSubject, { partition: 2, sequenceNumber: stored?.sequenceNumber });
    expect((await pending).map(decode)).toEqual(['elsewhere']);
    reader.close();
  });

  it('ingests a batch in order, stamped as append does, with one bus notice per partition', async () => {
    const notices: unknown[] = [];
    const unsubscribe = core.ctx.bus.subscribe('testhub', telemetryAppendedSubject, (payload) => {
      notices.push(payload);
    });
    const authMethod = { scope: 'device', type: 'sas', issuer: 'iothub' } as const;
    await endpoint.ingest([
      { deviceId: 'dev1', body: text('a'), authMethod, authGenerationId: 'g1', messageId: 'm1' },
      { deviceId: 'dev1', body: text('b'), authMethod, properties: { k: 'v' } },
      { deviceId: 'dev2', body: text('c') },
    ]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    const events = await drain(await endpoint.read({ live: false }));
    expect(events.map(decode).sort()).toEqual(['a', 'b', 'c']);
    const dev1 = events.filter((event) => event.deviceId === 'dev1');
    expect(dev1.map(decode)).toEqual(['a', 'b']);
    expect(dev1[0]?.systemProperties).toMatchObject({
      'iothub-connection-auth-method': '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
      'iothub-connection-auth-generation-id': 'g1',
      'message-id': 'm1',
      'iothub-message-source': 'Telemetry',
      'iothub-enqueuedtime': core.ctx.now(),
    });
    expect(dev1[1]?.properties).toEqual({ k: 'v' });
    const partitions = new Set([partitionOf('dev1', 4), partitionOf('dev2', 4)]);
    expect(notices).toHaveLength(partitions.size);
    unsubscribe();
  });

  it('rejects a batch holding a message over 256 KB and appends none of it', async () => {
    await expect(
      endpoint.ingest([
        { deviceId: 'dev1', body: text('fine') },
        { deviceId: 'dev1', body: new Uint8Array(256 * 1024 + 1) },
      ]),
    ).rejects.toMatchObject({ code: 'MessageTooLarge' });
    expect(await drain(await endpoint.read({ live: false }))).toEqual([]);
  });

  it('serves batches in the order next() would, at most maxEvents each', async () => {
    const devices = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (let round = 0; round < 3; round++) {
      for (const deviceId of devices) {
        await endpoint.append({ deviceId, body: text(`${deviceId}${round}`) });
        core.advance(1);
      }
    }
    const reader = await endpoint.read({ live: false, bufferSize: 2 });
    const batches: string[][] = [];
    for (;;) {
      const batch = await reader.nextBatch(4);
      if (batch.done) break;
      expect(batch.value.length).toBeLessThanOrEqual(4);
      batches.push(batch.value.map(decode));
    }
    expect(batches.flat()).toEqual([0, 1, 2].flatMap((round) => devices.map((deviceId) => `${deviceId}${round}`)));
  });

  it('serves live readers from the recent window and from the store past it or around a gap, in order', async () => {
    // A window of about two events per partition: most reads below must fall back to the store.
    const small = new BuiltInEndpoint(core.ctx, { livePollMs: 5000, recentEventBytes: 4 * 300 });
    const partition = partitionOf('dev1', 4);
    const reader = await small.read({ partition, from: 'latest' });
    for (let index = 0; index < 5; index++) await small.append({ deviceId: 'dev1', body: text(`a${index}`) });
    // Another process appends to the shared store: the window has a gap now and must not hide this event.
    await core.ctx.store.log.append('testhub', partition, [
      { body: text('elsewhere'), properties: {}, systemProperties: {}, enqueuedTime: core.ctx.now() },
    ]);
    await small.ingest([{ deviceId: 'dev1', body: text('b0') }]);
    await small.ingest([{ deviceId: 'dev1', body: text('b1') }]);
    const events = await take(reader, 8);
    expect(events.map(decode)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'elsewhere', 'b0', 'b1']);
    expect(events.map((event) => event.sequenceNumber)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    reader.close();
    small.stop();
  });

  it('serves a caught-up live reader from the window without store reads, once per append', async () => {
    let storeReads = 0;
    const read = core.ctx.store.log.read;
    core.ctx.store.log.read = (...args) => {
      storeReads++;
      return read(...args);
    };
    // Not an empty partition: 'latest' is then a sequence number, which the window can answer.
    await endpoint.ingest([{ deviceId: 'dev1', body: text('old') }]);
    const reader = await endpoint.read({ partition: partitionOf('dev1', 4), from: 'latest' });
    const pending = take(reader, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const before = storeReads;
    for (let index = 0; index < 5; index++) {
      await endpoint.ingest([{ deviceId: 'dev1', body: text(`m${index}`) }]);
      // Let the bus deliver this process's own notice: it must not wake the reader for a second (store) read.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    expect((await pending).map(decode)).toEqual(['m0']);
    expect((await take(reader, 4)).map(decode)).toEqual(['m1', 'm2', 'm3', 'm4']);
    const next = reader.next();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(storeReads).toBe(before);
    await endpoint.ingest([{ deviceId: 'dev1', body: text('m5') }]);
    const last = await next;
    expect(last.done === false && decode(last.value)).toBe('m5');
    reader.close();
  });

  it('takes what the window holds without waiting, and leaves store reads to nextBatch', async () => {
    await endpoint.ingest([{ deviceId: 'dev1', body: text('old') }]);
    const partition = partitionOf('dev1', 4);
    const live = await endpoint.read({ partition, from: 'latest' });
    // The window starts with the first append after a reader opened: until then only the store can answer.
    expect(live.takeAvailable(10)).toBeUndefined();
    const woken = live.waitForAppend();
    await endpoint.ingest([{ deviceId: 'dev1', body: text('new') }]);
    expect(await woken).toBe(true);
    expect(live.takeAvailable(10)?.map(decode)).toEqual(['new']);
    expect(live.takeAvailable(10)).toEqual([]);
    // From earliest, 'old' is only in the store (it was appended before any reader opened the window).
    const behind = await endpoint.read({ partition, from: 'earliest' });
    expect(behind.takeAvailable(10)).toBeUndefined();
    expect((await behind.nextBatch(10)).value?.map(decode)).toEqual(['old', 'new']);
    live.close();
    behind.close();
    expect(live.takeAvailable(10)).toBeUndefined();
  });

  it('finds an append whose bus notice was lost on the safety poll, past a caught-up window', async () => {
    const polling = new BuiltInEndpoint(core.ctx, { livePollMs: 30 });
    const partition = partitionOf('dev1', 4);
    const reader = await polling.read({ partition, from: 'latest' });
    await polling.ingest([{ deviceId: 'dev1', body: text('here') }]);
    expect((await take(reader, 1)).map(decode)).toEqual(['here']);
    // Another process appends without a notice reaching this one.
    await core.ctx.store.log.append('testhub', partition, [
      { body: text('elsewhere'), properties: {}, systemProperties: {}, enqueuedTime: core.ctx.now() },
    ]);
    expect((await take(reader, 1)).map(decode)).toEqual(['elsewhere']);
    reader.close();
    polling.stop();
  });

  it('ends a waiting reader on close, on abort and on stop', async () => {
    const closed = await endpoint.read();
    const next = closed.next();
    closed.close();
    expect(await next).toEqual({ done: true, value: undefined });

    const controller = new AbortController();
    const aborted = await endpoint.read({ signal: controller.signal });
    const abortedNext = aborted.next();
    controller.abort();
    expect((await abortedNext).done).toBe(true);

    const stopped = await endpoint.read();
    const stoppedNext = stopped.next();
    endpoint.stop();
    expect((await stoppedNext).done).toBe(true);
  });

  it('holds at most bufferSize events per partition in memory', async () => {
    for (let index = 0; index < 7; index++) await endpoint.append({ deviceId: 'dev1', body: text(String(index)) });
    const reader = await endpoint.read({ partition: partitionOf('dev1', 4), bufferSize: 3, live: false });
    const first = await reader.next();
    expect(first.done).toBe(false);
    // One event served, two still buffered: the next position is sequence 1, not 3.
    expect(reader.positions.get(partitionOf('dev1', 4))).toEqual({ sequenceNumber: 1, inclusive: true });
    expect((await drain(reader)).length).toBe(6);
  });

  it('trims events older than the retention period', async () => {
    await endpoint.append({ deviceId: 'dev1', body: text('old') });
    core.advance(core.ctx.options.retentionMs + 1);
    await endpoint.append({ deviceId: 'dev1', body: text('fresh') });
    expect(await endpoint.trim()).toBe(1);
    const events = await drain(await endpoint.read({ live: false }));
    expect(events.map(decode)).toEqual(['fresh']);
    expect(events[0]?.sequenceNumber).toBe(1);
  });

  it('manages consumer groups case-insensitively and persists them', async () => {
    expect(await endpoint.listConsumerGroups()).toEqual([{ name: '$Default' }]);
    const created = await endpoint.createConsumerGroup('Analytics');
    expect(created.name).toBe('Analytics');
    expect(await endpoint.createConsumerGroup('analytics')).toEqual(created);
    expect(await endpoint.getConsumerGroup('ANALYTICS')).toEqual(created);
    expect((await endpoint.listConsumerGroups()).map((group) => group.name)).toEqual(['$Default', 'Analytics']);
    await endpoint.append({ deviceId: 'dev1', body: text('x') });
    expect(await drain(await endpoint.read({ consumerGroup: 'analytics', live: false }))).toHaveLength(1);
    expect(await drain(await endpoint.read({ consumerGroup: '$default', live: false }))).toHaveLength(1);

    // Persisted: a second endpoint over the same store sees it.
    const again = new BuiltInEndpoint(core.ctx);
    expect((await again.listConsumerGroups()).map((group) => group.name)).toContain('Analytics');
    again.stop();

    expect(await endpoint.deleteConsumerGroup('ANALYTICS')).toBe(true);
    expect(await endpoint.deleteConsumerGroup('analytics')).toBe(false);
    await expect(endpoint.read({ consumerGroup: 'analytics' })).rejects.toMatchObject({ code: 'ResourceNotFound' });
    await expect(endpoint.deleteConsumerGroup('$Default')).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    await expect(endpoint.createConsumerGroup('-bad')).rejects.toMatchObject({ code: 'ArgumentInvalid' });
    await expect(endpoint.createConsumerGroup('a'.repeat(51))).rejects.toMatchObject({ code: 'ArgumentInvalid' });
  });

  it('allows at most 20 consumer groups including $Default', async () => {
    for (let index = 0; index < 19; index++) await endpoint.createConsumerGroup(`g${index}`);
    await expect(endpoint.createConsumerGroup('one-more')).rejects.toMatchObject({ code: 'ArgumentInvalid' });
  });
});
