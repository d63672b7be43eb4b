import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDeviceClient } from './create-client';
import type { DeviceClient } from './device-client';
import { AbortError, ArgumentError, ConnectionError, UnsupportedFeatureError } from './errors';
import { FakeHub, mqttLikeCapabilities } from './fake-transport';
import { exponentialBackoffWithJitter } from './retry-policy';
import { desiredPropertiesDiff, mergeDesiredPatches } from './twin';

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

async function connect(hub: FakeHub): Promise<DeviceClient> {
  return createDeviceClient({ connectionString, transport: hub.factory(), retryPolicy });
}

describe('getTwin and updateReportedProperties', () => {
  it('subscribes to twin responses first, then reads and patches with versions', async () => {
    const hub = new FakeHub();
    hub.desired = { fan: 'off' };
    hub.desiredVersion = 5;
    const client = await connect(hub);
    const twin = await client.getTwin();
    expect(twin).toEqual({ desired: { fan: 'off', $version: 5 }, reported: { $version: 1 } });
    expect(hub.enables).toEqual([{ connection: 1, feature: 'twin' }]);
    expect(await client.updateReportedProperties({ firmware: '1.2' })).toBe(2);
    expect(hub.reported).toEqual({ firmware: '1.2' });
    await client.close();
  });

  it('refuses an invalid reported patch with ArgumentError before sending', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    await expect(client.updateReportedProperties({ 'bad key': { $x: 1 } } as never)).rejects.toBeInstanceOf(
      ArgumentError,
    );
    await expect(client.updateReportedProperties([] as never)).rejects.toBeInstanceOf(ArgumentError);
    await client.close();
  });

  it('waits for the reconnect when offline, then re-subscribes and answers', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    await client.getTwin();
    hub.dropConnection();
    const reading = client.getTwin();
    await tick(500);
    await expect(reading).resolves.toMatchObject({ desired: { $version: 1 } });
    expect(hub.enables.filter((e) => e.feature === 'twin').map((e) => e.connection)).toEqual([1, 2]);
    await client.close();
  });

  it('throws UnsupportedFeatureError when the transport has no twin', async () => {
    const hub = new FakeHub({ ...mqttLikeCapabilities, twin: false });
    const client = await connect(hub);
    await expect(client.getTwin()).rejects.toBeInstanceOf(UnsupportedFeatureError);
    expect(() => client.desiredPropertyUpdates()).toThrow(UnsupportedFeatureError);
    await client.close();
  });
});

describe('desiredPropertyUpdates', () => {
  it('yields patches with their $version', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    const updates = client.desiredPropertyUpdates();
    await tick();
    hub.patchDesired({ fan: 'on' });
    hub.patchDesired({ speed: 3 });
    expect((await updates.next()).value).toEqual({ fan: 'on', $version: 2 });
    expect((await updates.next()).value).toEqual({ speed: 3, $version: 3 });
    await client.close();
    expect((await updates.next()).done).toBe(true);
  });

  it('ignores notifications whose $version is not above the last one (the GET covered them)', async () => {
    const hub = new FakeHub();
    hub.desiredVersion = 4;
    const client = await connect(hub);
    const updates = client.desiredPropertyUpdates();
    await tick();
    hub.transport.notifyDesired({ old: true }, 4);
    hub.transport.notifyDesired({ a: 1 }, 6);
    hub.transport.notifyDesired({ replay: true }, 5);
    hub.transport.notifyDesired({ replay: true }, 6);
    hub.transport.notifyDesired({ b: 2 }, 7);
    expect((await updates.next()).value).toEqual({ a: 1, $version: 6 });
    expect((await updates.next()).value).toEqual({ b: 2, $version: 7 });
    await client.close();
  });

  it('delivers notifications that raced ahead of the first read, in version order, once', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    const updates = client.desiredPropertyUpdates();
    // Before the GET answered: buffered, then filtered against its version.
    hub.transport.notifyDesired({ early: 1 }, 1);
    hub.transport.notifyDesired({ later: 2 }, 2);
    await tick();
    expect((await updates.next()).value).toEqual({ later: 2, $version: 2 });
    await client.close();
  });

  it('after a reconnect, yields the changes missed meanwhile as one diff with the fresh $version', async () => {
    const hub = new FakeHub();
    hub.desired = { fan: 'off', mode: { level: 1, night: true }, gone: 1 };
    const client = await connect(hub);
    const updates = client.desiredPropertyUpdates();
    await tick();
    hub.patchDesired({ fan: 'on' });
    expect((await updates.next()).value).toEqual({ fan: 'on', $version: 2 });
    hub.dropConnection();
    // Changed while the device was offline: no notification reaches it.
    hub.patchDesired({ mode: { level: 2 } });
    hub.patchDesired({ gone: null, added: [1, 2] });
    await tick(500);
    expect(client.state).toBe('connected');
    expect((await updates.next()).value).toEqual({ mode: { level: 2 }, gone: null, added: [1, 2], $version: 4 });
    // Nothing missed on the next reconnect: nothing yielded.
    hub.dropConnection();
    await tick(500);
    hub.patchDesired({ x: 1 });
    expect((await updates.next()).value).toEqual({ x: 1, $version: 5 });
    await client.close();
  });

  it('coalesces patches when the buffer is full, losing nothing', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory(), twin: { bufferSize: 2 } });
    const updates = client.desiredPropertyUpdates();
    await tick();
    hub.patchDesired({ a: 1 });
    hub.patchDesired({ b: { c: 1 } });
    hub.patchDesired({ b: { d: 2 }, a: null });
    expect((await updates.next()).value).toEqual({ a: 1, $version: 2 });
    expect((await updates.next()).value).toEqual({ a: null, b: { c: 1, d: 2 }, $version: 4 });
    await client.close();
  });

  it('a pending next() rejects with AbortError when its signal aborts', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    const controller = new AbortController();
    const updates = client.desiredPropertyUpdates({ signal: controller.signal });
    const next = updates.next();
    controller.abort();
    await expect(next).rejects.toBeInstanceOf(AbortError);
    await client.close();
  });
});

describe('desiredPropertiesDiff and mergeDesiredPatches', () => {
  it('diffs nested objects, removals and arrays as a merge patch', () => {
    expect(
      desiredPropertiesDiff({ a: 1, b: { c: 1, d: 2 }, e: [1] }, { a: 1, b: { c: 2, d: 2 }, e: [1, 2], f: null }),
    ).toEqual({
      b: { c: 2 },
      e: [1, 2],
      f: null,
    });
    expect(desiredPropertiesDiff({ a: { b: 1 } }, {})).toEqual({ a: null });
    expect(desiredPropertiesDiff({ a: 1 }, { a: { b: 1 } })).toEqual({ a: { b: 1 } });
    expect(desiredPropertiesDiff({ a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 2 }] } })).toEqual({});
  });

  it('merges successive patches, the newer winning', () => {
    expect(mergeDesiredPatches({ a: 1, b: { c: 1 }, $version: 2 }, { a: null, b: { d: 1 }, $version: 3 })).toEqual({
      a: null,
      b: { c: 1, d: 1 },
      $version: 3,
    });
  });
});

describe('interrupted twin operations', () => {
  it('a reported patch whose connection dropped under it runs again after the reconnect', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    await client.getTwin();
    const original = hub.transport.updateReportedProperties.bind(hub.transport);
    let calls = 0;
    hub.transport.updateReportedProperties = async (patch) => {
      calls++;
      if (calls === 1) {
        hub.dropConnection();
        throw new ConnectionError('connection lost');
      }
      return original(patch);
    };
    const update = client.updateReportedProperties({ a: 1 });
    await tick(500);
    await expect(update).resolves.toBe(2);
    expect(calls).toBe(2);
    await client.close();
  });
});

describe('desiredPropertyUpdates and close()', () => {
  it('ends a for-await loop when the client closes, also while the loop body awaits the client', async () => {
    const hub = new FakeHub();
    const client = await connect(hub);
    const seen: number[] = [];
    const loop = (async () => {
      for await (const patch of client.desiredPropertyUpdates()) {
        seen.push(patch.$version);
        await client.updateReportedProperties({ ack: patch.$version }).catch(() => undefined);
      }
      return 'ended';
    })();
    await tick(10);
    hub.patchDesired({ mode: 'eco' });
    await tick(10);
    await client.close();
    await tick(10);
    await expect(loop).resolves.toBe('ended');
  });
});
