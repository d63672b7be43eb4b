import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDeviceClient } from './create-client';
import { FakeHub } from './fake-transport';
import { type DurableQueue, type DurableQueueEntry, OfflineQueue } from './offline-queue';
import type { OutgoingMessage } from './transport/transport';

const connectionString = 'HostName=hub.local;DeviceId=dev1;SharedAccessKey=AAECAwQFBgcICQoLDA0ODw==';

function item(sequence: number, weight = 1): { sequence: number; weight: number } {
  return { sequence, weight };
}

describe('OfflineQueue', () => {
  it('keeps order, bounds by weight, and puts re-queued items back in their place', () => {
    const queue = new OfflineQueue<{ sequence: number; weight: number }>({ maxMessages: 3, overflow: 'reject-new' });
    const [a, b, c] = [item(1), item(2, 2), item(3)];
    expect(queue.push(a)).toEqual({ accepted: true, dropped: [] });
    expect(queue.push(b).accepted).toBe(true);
    expect(queue.push(c)).toEqual({ accepted: false });
    expect(queue.shift()).toBe(a);
    queue.requeue(a);
    expect(queue.drain()).toEqual([a, b]);
    expect(queue.weight).toBe(0);
  });

  it("'drop-oldest' drops as many old items as the new one needs", () => {
    const queue = new OfflineQueue<{ sequence: number; weight: number }>({ maxMessages: 3, overflow: 'drop-oldest' });
    const [a, b, c] = [item(1), item(2), item(3, 2)];
    queue.push(a);
    queue.push(b);
    expect(queue.push(c)).toEqual({ accepted: true, dropped: [a] });
    expect(queue.push(item(4, 4))).toEqual({ accepted: false });
  });
});

class MemoryDurableQueue implements DurableQueue {
  readonly entries = new Map<string, OutgoingMessage>();
  #next = 0;
  async append(message: OutgoingMessage): Promise<string> {
    const key = `k${++this.#next}`;
    this.entries.set(key, message);
    return key;
  }
  async remove(key: string): Promise<void> {
    this.entries.delete(key);
  }
  async load(): Promise<readonly DurableQueueEntry[]> {
    return [...this.entries].map(([key, message]) => ({ key, message }));
  }
}

describe('durable queue seam', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('stores queued messages, keeps them when closed offline, and sends them first on the next start', async () => {
    const durable = new MemoryDurableQueue();
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory(), offlineQueue: { durable } });
    await client.sendTelemetry({ body: 'acked' });
    await vi.advanceTimersByTimeAsync(0);
    expect(durable.entries.size).toBe(0);
    hub.defaultOutcome = 'unreachable';
    hub.dropConnection();
    const pending = client.sendTelemetry({ body: 'kept' }).catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(0);
    expect(durable.entries.size).toBe(1);
    await client.close();
    expect(await pending).toMatchObject({ message: 'client closed' });
    expect(durable.entries.size).toBe(1);

    const nextHub = new FakeHub();
    const next = await createDeviceClient({
      connectionString,
      transport: nextHub.factory(),
      offlineQueue: { durable },
    });
    await next.sendTelemetry({ body: 'new' });
    expect(nextHub.telemetry.map((m) => new TextDecoder().decode(m.body))).toEqual(['kept', 'new']);
    await vi.advanceTimersByTimeAsync(0);
    expect(durable.entries.size).toBe(0);
    await next.close();
  });
});
