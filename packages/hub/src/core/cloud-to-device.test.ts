import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloudToDevice, type CloudToDeviceMessageInput, cloudToDeviceSubject } from './cloud-to-device';
import { createTestCore, FakeRegistry, type TestCore } from './telemetry-test-support';

const text = (value: string) => new TextEncoder().encode(value);
const message = (body: string, extra: Partial<CloudToDeviceMessageInput> = {}): CloudToDeviceMessageInput => ({
  body: text(body),
  ...extra,
});

describe('CloudToDevice', () => {
  let core: TestCore;
  let registry: FakeRegistry;
  let c2d: CloudToDevice;

  beforeEach(async () => {
    core = await createTestCore();
    registry = new FakeRegistry().add('dev1').add('dev2');
    c2d = new CloudToDevice(core.ctx, registry);
  });
  afterEach(async () => {
    c2d.stop();
    await core.close();
  });

  it('queues in order and delivers with a lock token and delivery count 1', async () => {
    const first = await c2d.send(
      'dev1',
      message('one', { messageId: 'm1', properties: { a: '1' }, correlationId: 'c1' }),
    );
    await c2d.send('dev1', message('two', { messageId: 'm2' }));
    expect(first).toMatchObject({ messageId: 'm1', sequenceNumber: 1, enqueuedTimeUtc: core.ctx.now() });
    expect(first.expiryTimeUtc).toBe(core.ctx.now() + 60 * 60 * 1000);
    expect(await c2d.count('dev1')).toBe(2);

    const delivery = await c2d.receive('dev1');
    expect(delivery?.deliveryCount).toBe(1);
    expect(delivery?.lockToken).toMatch(/^[0-9a-f-]{36}$/);
    expect(delivery?.message).toMatchObject({
      deviceId: 'dev1',
      messageId: 'm1',
      correlationId: 'c1',
      properties: { a: '1' },
      ack: 'none',
      to: '/devices/dev1/messages/devicebound',
      sequenceNumber: 1,
    });
    expect(new TextDecoder().decode(delivery?.message.body)).toBe('one');
    // The locked message is invisible; the next one is delivered.
    expect((await c2d.receive('dev1'))?.message.messageId).toBe('m2');
    expect(await c2d.receive('dev1')).toBeUndefined();
  });

  it('notifies the device session on the bus when a message is queued', async () => {
    const seen: unknown[] = [];
    core.ctx.bus.subscribe('testhub', cloudToDeviceSubject('dev1'), (payload) => seen.push(payload));
    await c2d.send('dev1', message('x'));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(seen).toEqual([{}]);
    expect(cloudToDeviceSubject('dev1')).toBe('c2d.dev1');
  });

  it('refuses unknown devices, the 51st message and messages over 64 KB', async () => {
    await expect(c2d.send('nope', message('x'))).rejects.toMatchObject({ code: 'DeviceNotFound', hubCode: 404001 });
    for (let index = 0; index < 50; index++) await c2d.send('dev1', message(String(index)));
    await expect(c2d.send('dev1', message('51'))).rejects.toMatchObject({
      code: 'DeviceMaximumQueueDepthExceeded',
      hubCode: 403004,
    });
    await expect(c2d.send('dev2', { body: new Uint8Array(64 * 1024 + 1) })).rejects.toMatchObject({
      code: 'MessageTooLarge',
      hubCode: 413001,
    });
    await expect(c2d.send('dev2', message('x', { ack: 'sometimes' as never }))).rejects.toMatchObject({
      code: 'ArgumentInvalid',
    });
    await expect(c2d.send('dev2', message('x', { messageId: 'm'.repeat(129) }))).rejects.toMatchObject({
      code: 'ArgumentInvalid',
    });
  });

  it('does not count expired messages against the queue depth', async () => {
    for (let index = 0; index < 50; index++) await c2d.send('dev1', message(String(index), { ack: 'negative' }));
    core.advance(60 * 60 * 1000);
    await expect(c2d.send('dev1', message('fresh'))).resolves.toMatchObject({ sequenceNumber: 51 });
    expect(await c2d.count('dev1')).toBe(1);
    const batch = await c2d.receiveFeedback();
    expect(batch?.records).toHaveLength(50);
    expect(batch?.records[0]?.statusCode).toBe('Expired');
  });

  it('serialises concurrent sends so the depth limit holds', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 60 }, (_, index) => c2d.send('dev1', message(String(index)))),
    );
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(50);
    expect(await c2d.count('dev1')).toBe(50);
  });

  it('completes a message with Success feedback for ack positive and full, none for negative', async () => {
    for (const ack of ['positive', 'full', 'negative', 'none'] as const) {
      await c2d.send('dev1', message(ack, { messageId: ack, ack }));
    }
    for (let index = 0; index < 4; index++) {
      const delivery = await c2d.receive('dev1');
      await c2d.complete('dev1', delivery!.lockToken);
    }
    expect(await c2d.count('dev1')).toBe(0);
    const batch = await c2d.receiveFeedback();
    expect(batch?.records).toEqual([
      {
        originalMessageId: 'positive',
        deviceGenerationId: 'gen-dev1',
        deviceId: 'dev1',
        enqueuedTimeUtc: '2026-01-01T00:00:00.000Z',
        statusCode: 'Success',
        description: 'Success',
      },
      expect.objectContaining({ originalMessageId: 'full', statusCode: 'Success' }),
    ]);
  });

  it('rejects: dead-letters without redelivery, Rejected feedback for negative', async () => {
    await c2d.send('dev1', message('x', { messageId: 'r1', ack: 'negative' }));
    const delivery = await c2d.receive('dev1');
    await c2d.reject('dev1', delivery!.lockToken);
    expect(await c2d.receive('dev1')).toBeUndefined();
    expect(await c2d.count('dev1')).toBe(0);
    expect((await c2d.receiveFeedback())?.records).toEqual([
      expect.objectContaining({ originalMessageId: 'r1', statusCode: 'Rejected' }),
    ]);
  });

  it('redelivers an abandoned message with deliveryCount 2', async () => {
    await c2d.send('dev1', message('x'));
    const first = await c2d.receive('dev1');
    await c2d.abandon('dev1', first!.lockToken);
    const second = await c2d.receive('dev1');
    expect(second?.deliveryCount).toBe(2);
    expect(second?.lockToken).not.toBe(first?.lockToken);
    // The old token no longer settles anything.
    await expect(c2d.complete('dev1', first!.lockToken)).rejects.toMatchObject({
      code: 'DeviceMessageLockLost',
      hubCode: 412002,
    });
  });

  it('dead-letters after maxDeliveryCount deliveries with DeliveryCountExceeded feedback', async () => {
    await c2d.send('dev1', message('poison', { messageId: 'p', ack: 'full' }));
    for (let count = 1; count <= 10; count++) {
      const delivery = await c2d.receive('dev1');
      expect(delivery?.deliveryCount).toBe(count);
      await c2d.abandon('dev1', delivery!.lockToken);
    }
    expect(await c2d.receive('dev1')).toBeUndefined();
    expect(await c2d.count('dev1')).toBe(0);
    expect((await c2d.receiveFeedback())?.records).toEqual([
      expect.objectContaining({ originalMessageId: 'p', statusCode: 'DeliveryCountExceeded' }),
    ]);
  });

  it('makes a message whose lock lapsed deliverable again with a higher delivery count', async () => {
    await c2d.send('dev1', message('x'));
    await c2d.receive('dev1');
    expect(await c2d.receive('dev1')).toBeUndefined();
    core.advance(60_001);
    expect((await c2d.receive('dev1'))?.deliveryCount).toBe(2);
  });

  it('pending() relocks unsettled deliveries for a reconnecting session, in order', async () => {
    await c2d.send('dev1', message('a', { messageId: 'a' }));
    await c2d.send('dev1', message('b', { messageId: 'b' }));
    await c2d.send('dev1', message('c', { messageId: 'c' }));
    const a = await c2d.receive('dev1');
    await c2d.receive('dev1');
    const redelivered = await c2d.pending('dev1');
    expect(redelivered.map((delivery) => [delivery.message.messageId, delivery.deliveryCount])).toEqual([
      ['a', 2],
      ['b', 2],
    ]);
    await expect(c2d.complete('dev1', a!.lockToken)).rejects.toMatchObject({ code: 'DeviceMessageLockLost' });
    await c2d.complete('dev1', redelivered[0]!.lockToken);
    expect((await c2d.receive('dev1'))?.message.messageId).toBe('c');
  });

  it('expires messages on sweep with Expired feedback for negative and full only', async () => {
    await c2d.send('dev1', message('x', { messageId: 'e-neg', ack: 'negative' }));
    await c2d.send('dev1', message('x', { messageId: 'e-pos', ack: 'positive' }));
    await c2d.send('dev2', message('x', { messageId: 'e-full', ack: 'full', expiryTimeUtc: core.ctx.now() + 1000 }));
    await c2d.send('dev2', message('x', { messageId: 'alive', ack: 'full', expiryTimeUtc: core.ctx.now() + 5000 }));
    core.advance(2000);
    await c2d.sweep();
    expect(await c2d.count('dev2')).toBe(1);
    expect(await c2d.count('dev1')).toBe(2);
    core.advance(60 * 60 * 1000 - 2000);
    await c2d.sweep();
    expect(await c2d.count('dev1')).toBe(0);
    const batch = await c2d.receiveFeedback();
    expect(batch?.records.map((record) => [record.originalMessageId, record.statusCode])).toEqual([
      ['e-full', 'Expired'],
      ['e-neg', 'Expired'],
      ['alive', 'Expired'],
    ]);
  });

  it('never delivers an expired message', async () => {
    await c2d.send('dev1', message('x', { expiryTimeUtc: new Date(core.ctx.now() + 10) }));
    core.advance(10);
    expect(await c2d.receive('dev1')).toBeUndefined();
    expect(await c2d.count('dev1')).toBe(0);
  });

  it('purges a queue without feedback', async () => {
    await c2d.send('dev1', message('x', { ack: 'full' }));
    await c2d.send('dev1', message('y', { ack: 'full' }));
    await c2d.send('dev2', message('z'));
    expect(await c2d.purge('dev1')).toEqual({ totalMessagesPurged: 2, deviceId: 'dev1', moduleId: null });
    await expect(c2d.purge('ghost')).rejects.toMatchObject({ code: 'DeviceNotFound' });
    expect(await c2d.count('dev1')).toBe(0);
    expect(await c2d.count('dev2')).toBe(1);
    expect(await c2d.receiveFeedback()).toBeUndefined();
    // Sequence numbers keep increasing after a purge.
    expect((await c2d.send('dev1', message('after'))).sequenceNumber).toBe(3);
  });

  it('locks feedback in batches: complete removes, abandon returns, lock tokens are checked', async () => {
    for (let index = 0; index < 3; index++) {
      await c2d.send('dev1', message(String(index), { messageId: `f${index}`, ack: 'positive' }));
      await c2d.complete('dev1', (await c2d.receive('dev1'))!.lockToken);
    }
    const first = await c2d.receiveFeedback({ maxRecords: 2 });
    expect(first?.records.map((record) => record.originalMessageId)).toEqual(['f0', 'f1']);
    const second = await c2d.receiveFeedback();
    expect(second?.records.map((record) => record.originalMessageId)).toEqual(['f2']);
    expect(await c2d.receiveFeedback()).toBeUndefined();

    await c2d.abandonFeedback(second!.lockToken);
    await c2d.completeFeedback(first!.lockToken);
    await expect(c2d.completeFeedback(first!.lockToken)).rejects.toMatchObject({ code: 'DeviceMessageLockLost' });
    const again = await c2d.receiveFeedback();
    expect(again?.records.map((record) => record.originalMessageId)).toEqual(['f2']);
    await c2d.completeFeedback(again!.lockToken);
    expect(await c2d.receiveFeedback()).toBeUndefined();
  });

  it('makes feedback visible again when its lock lapses, and drops it after its TTL', async () => {
    await c2d.send('dev1', message('x', { ack: 'full' }));
    await c2d.reject('dev1', (await c2d.receive('dev1'))!.lockToken);
    expect(await c2d.receiveFeedback()).toBeDefined();
    expect(await c2d.receiveFeedback()).toBeUndefined();
    core.advance(60_001);
    expect(await c2d.receiveFeedback()).toBeDefined();
    core.advance(60 * 60 * 1000);
    await c2d.sweep();
    expect(await c2d.receiveFeedback()).toBeUndefined();
  });

  it('forgets a deleted device: queue and pending feedback', async () => {
    await c2d.send('dev1', message('x', { ack: 'full' }));
    await c2d.send('dev2', message('y', { ack: 'full' }));
    await c2d.reject('dev1', (await c2d.receive('dev1'))!.lockToken);
    await c2d.reject('dev2', (await c2d.receive('dev2'))!.lockToken);
    await c2d.send('dev1', message('z'));
    await c2d.forgetDevice('dev1');
    expect(await c2d.count('dev1')).toBe(0);
    expect((await c2d.receiveFeedback())?.records.map((record) => record.deviceId)).toEqual(['dev2']);
  });

  it('keeps queues, delivery counts and feedback across a restart of the service', async () => {
    await c2d.send('dev1', message('x', { messageId: 'done', ack: 'full' }));
    await c2d.send('dev1', message('y', { messageId: 'kept', ack: 'full' }));
    await c2d.complete('dev1', (await c2d.receive('dev1'))!.lockToken);
    await c2d.abandon('dev1', (await c2d.receive('dev1'))!.lockToken);
    c2d.stop();

    c2d = new CloudToDevice(core.ctx, registry);
    const redelivered = await c2d.receive('dev1');
    expect(redelivered?.message.messageId).toBe('kept');
    expect(redelivered?.deliveryCount).toBe(2);
    expect(
      (await c2d.receiveFeedback())?.records.map((record) => [record.originalMessageId, record.statusCode]),
    ).toEqual([['done', 'Success']]);
  });

  it('encodes device ids in storage keys so prefixes never collide', async () => {
    registry.add('a/b').add('a');
    await c2d.send('a/b', message('x'));
    await c2d.send('a', message('y'));
    expect(await c2d.count('a')).toBe(1);
    const delivery = await c2d.receive('a/b');
    expect(delivery?.message.to).toBe('/devices/a%2Fb/messages/devicebound');
  });
});
