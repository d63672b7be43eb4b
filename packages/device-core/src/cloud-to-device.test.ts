import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDeviceClient, type DeviceClientOptions } from './create-client';
import type { DeviceClient } from './device-client';
import { AbortError, ArgumentError, ConnectionError, UnsupportedFeatureError } from './errors';
import { amqpLikeCapabilities, FakeHub, mqttLikeCapabilities } from './fake-transport';
import { exponentialBackoffWithJitter } from './retry-policy';

const connectionString = 'HostName=hub.local;DeviceId=dev1;SharedAccessKey=AAECAwQFBgcICQoLDA0ODw==';
const retryPolicy = exponentialBackoffWithJitter({ random: () => 0.5 });

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

const tick = async (ms = 0): Promise<void> => {
  await vi.advanceTimersByTimeAsync(ms);
};

function connect(hub: FakeHub, options: Partial<DeviceClientOptions> = {}): Promise<DeviceClient> {
  return createDeviceClient({ connectionString, transport: hub.factory(), retryPolicy, ...options });
}

describe('cloud-to-device messages', () => {
  it('subscribes on the first iterator and yields messages that complete by the transport', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    hub.sendCloudToDevice('kept while unsubscribed', { a: '1' });
    const messages = client.cloudToDeviceMessages();
    await tick();
    const received: string[] = [];
    hub.sendCloudToDevice('second');
    for await (const message of messages) {
      received.push(message.text());
      await message.complete();
      await message.complete();
      if (received.length === 2) break;
    }
    expect(received).toEqual(['kept while unsubscribed', 'second']);
    expect(hub.settlements).toEqual([
      { lockToken: 'lock-1', settlement: 'complete' },
      { lockToken: 'lock-2', settlement: 'complete' },
    ]);
    await client.close();
  });

  it('reject() and abandon() throw UnsupportedFeatureError over an MQTT-like transport', async () => {
    const hub = new FakeHub(mqttLikeCapabilities);
    const client = await connect(hub);
    const messages = client.cloudToDeviceMessages();
    await tick();
    hub.sendCloudToDevice('x');
    const message = (await messages.next()).value;
    await expect(message?.reject()).rejects.toBeInstanceOf(UnsupportedFeatureError);
    await expect(message?.abandon()).rejects.toBeInstanceOf(UnsupportedFeatureError);
    await message?.complete();
    await client.close();
  });

  it('reject() and abandon() settle where the transport can; a second, different settlement is refused', async () => {
    const hub = new FakeHub(amqpLikeCapabilities);
    const client = await connect(hub);
    const messages = client.cloudToDeviceMessages();
    await tick();
    hub.sendCloudToDevice('x');
    hub.sendCloudToDevice('y');
    const first = (await messages.next()).value;
    const second = (await messages.next()).value;
    await first?.reject();
    await expect(first?.complete()).rejects.toBeInstanceOf(ArgumentError);
    await second?.abandon();
    expect(hub.settlements.map((s) => s.settlement)).toEqual(['reject', 'abandon']);
    await client.close();
  });

  it("'drop-newest' (default) leaves messages beyond the bound unsettled for redelivery", async () => {
    const hub = new FakeHub();
    const client = await connect(hub, { cloudToDevice: { bufferSize: 2 } });
    const messages = client.cloudToDeviceMessages();
    await tick();
    for (const body of ['1', '2', '3']) hub.sendCloudToDevice(body);
    expect((await messages.next()).value?.text()).toBe('1');
    expect((await messages.next()).value?.text()).toBe('2');
    hub.sendCloudToDevice('4');
    expect((await messages.next()).value?.text()).toBe('4');
    expect(hub.settlements).toEqual([]);
    await client.close();
  });

  it("'drop-oldest' abandons the oldest buffered message where the transport can", async () => {
    const hub = new FakeHub(amqpLikeCapabilities);
    const client = await connect(hub, { cloudToDevice: { bufferSize: 2, overflow: 'drop-oldest' } });
    const messages = client.cloudToDeviceMessages();
    await tick();
    for (const body of ['1', '2', '3']) hub.sendCloudToDevice(body);
    await tick();
    expect(hub.settlements).toEqual([{ lockToken: 'lock-1', settlement: 'abandon' }]);
    expect((await messages.next()).value?.text()).toBe('2');
    expect((await messages.next()).value?.text()).toBe('3');
    await client.close();
  });

  it('re-subscribes after a reconnect; a message from the old connection cannot be settled any more', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    const messages = client.cloudToDeviceMessages();
    await tick();
    hub.sendCloudToDevice('before');
    const old = (await messages.next()).value;
    hub.dropConnection();
    await expect(old?.complete()).rejects.toBeInstanceOf(ConnectionError);
    await tick(500);
    await expect(old?.complete()).rejects.toBeInstanceOf(ConnectionError);
    hub.sendCloudToDevice('after');
    const fresh = (await messages.next()).value;
    await fresh?.complete();
    expect(hub.settlements).toEqual([{ lockToken: 'lock-2', settlement: 'complete' }]);
    expect(hub.enables.filter((e) => e.feature === 'cloudToDevice').map((e) => e.connection)).toEqual([1, 2]);
    await client.close();
  });

  it('a pending next() rejects with AbortError on abort; close() ends iteration', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    const controller = new AbortController();
    const aborted = client.cloudToDeviceMessages({ signal: controller.signal }).next();
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AbortError);
    const pending = client.cloudToDeviceMessages().next();
    await client.close();
    await expect(pending).resolves.toEqual({ value: undefined, done: true });
  });

  it('throws UnsupportedFeatureError when the transport receives none', async () => {
    const hub = new FakeHub({ ...mqttLikeCapabilities, cloudToDevice: 'none' });
    const client = await connect(hub);
    expect(() => client.cloudToDeviceMessages()).toThrow(UnsupportedFeatureError);
    await client.close();
  });
});

describe('polling transports', () => {
  it('polls while the iterator has room, pausing pollIntervalMs after an empty poll', async () => {
    const hub = new FakeHub({ ...amqpLikeCapabilities, cloudToDevice: 'poll' });
    const client = await connect(hub, { cloudToDevice: { pollIntervalMs: 1000 } });
    const poll = vi.spyOn(hub.transport, 'receiveCloudToDevice');
    const messages = client.cloudToDeviceMessages();
    await tick();
    expect(poll).toHaveBeenCalledTimes(1);
    hub.sendCloudToDevice('polled');
    await tick(999);
    expect(poll).toHaveBeenCalledTimes(1);
    await tick(1);
    expect((await messages.next()).value?.text()).toBe('polled');
    expect(hub.enables).toEqual([]);
    await client.close();
    await tick(5000);
    expect(vi.getTimerCount()).toBe(0);
  });
});
