import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDeviceClient } from './create-client';
import { ArgumentError, UnsupportedFeatureError } from './errors';
import { FakeHub, mqttLikeCapabilities } from './fake-transport';
import { exponentialBackoffWithJitter } from './retry-policy';

const connectionString = 'HostName=hub.local;DeviceId=dev1;SharedAccessKey=AAECAwQFBgcICQoLDA0ODw==';
const retryPolicy = exponentialBackoffWithJitter({ random: () => 0.5 });

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('direct methods', () => {
  it('answers with the handler status and payload', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory() });
    const seen: unknown[] = [];
    client.onDirectMethod('reboot', async (request) => {
      seen.push(request.payload, request.methodName);
      return { status: 200, payload: { ok: true } };
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(await hub.invokeMethod('reboot', { delay: 5 })).toEqual({ status: 200, payload: { ok: true } });
    expect(seen).toEqual([{ delay: 5 }, 'reboot']);
    await client.close();
  });

  it('answers 501 for a method with no handler, and again after the handler was removed', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory() });
    const stop = client.onDirectMethod('known', () => ({ status: 200 }));
    await vi.advanceTimersByTimeAsync(0);
    expect((await hub.invokeMethod('unknown')).status).toBe(501);
    expect((await hub.invokeMethod('known')).status).toBe(200);
    stop();
    stop();
    expect(await hub.invokeMethod('known')).toEqual({
      status: 501,
      payload: { message: "method 'known' is not implemented" },
    });
    await client.close();
  });

  it('answers 500 when a handler throws or answers no status, without leaking the error text', async () => {
    const hub = new FakeHub();
    const warnings: string[] = [];
    const client = await createDeviceClient({
      connectionString,
      transport: hub.factory(),
      logger: { warn: (message) => warnings.push(message) },
    });
    client.onDirectMethod('throws', () => {
      throw new Error('secret internals');
    });
    client.onDirectMethod('bad', () => ({}) as never);
    await vi.advanceTimersByTimeAsync(0);
    expect(await hub.invokeMethod('throws')).toEqual({ status: 500, payload: { message: "method 'throws' failed" } });
    expect((await hub.invokeMethod('bad')).status).toBe(500);
    expect(warnings).toContain('a direct-method handler failed');
    await client.close();
  });

  it('refuses a second handler for the same name and a transport without methods', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory() });
    client.onDirectMethod('a', () => ({ status: 200 }));
    expect(() => client.onDirectMethod('a', () => ({ status: 200 }))).toThrow(ArgumentError);
    expect(() => client.onDirectMethod('', () => ({ status: 200 }))).toThrow(ArgumentError);
    await client.close();
    const https = new FakeHub({ ...mqttLikeCapabilities, directMethods: false });
    const other = await createDeviceClient({ connectionString, transport: https.factory() });
    expect(() => other.onDirectMethod('a', () => ({ status: 200 }))).toThrow(UnsupportedFeatureError);
    await other.close();
  });

  it('answers every name without a handler of its own from the default handler; named handlers come first', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory() });
    const seen: string[] = [];
    const stop = client.onDefaultDirectMethod(async (request) => {
      seen.push(request.methodName);
      return { status: 202, payload: { forwarded: request.methodName, payload: request.payload } };
    });
    client.onDirectMethod('named', () => ({ status: 200, payload: 'own' }));
    await vi.advanceTimersByTimeAsync(0);
    expect(hub.enables.filter((e) => e.feature === 'directMethods')).toHaveLength(1);
    expect(await hub.invokeMethod('any.name', { a: 1 })).toEqual({
      status: 202,
      payload: { forwarded: 'any.name', payload: { a: 1 } },
    });
    expect(await hub.invokeMethod('named')).toEqual({ status: 200, payload: 'own' });
    expect(seen).toEqual(['any.name']);
    stop();
    expect((await hub.invokeMethod('any.name')).status).toBe(501);
    await client.close();
  });

  it('answers 500 when the default handler throws, and refuses a second default handler', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory(), logger: {} });
    client.onDefaultDirectMethod(() => {
      throw new Error('secret internals');
    });
    expect(() => client.onDefaultDirectMethod(() => ({ status: 200 }))).toThrow(ArgumentError);
    expect(() => client.onDefaultDirectMethod('nope' as never)).toThrow(ArgumentError);
    await vi.advanceTimersByTimeAsync(0);
    expect(await hub.invokeMethod('x')).toEqual({ status: 500, payload: { message: "method 'x' failed" } });
    await client.close();
    const https = new FakeHub({ ...mqttLikeCapabilities, directMethods: false });
    const other = await createDeviceClient({ connectionString, transport: https.factory() });
    expect(() => other.onDefaultDirectMethod(() => ({ status: 200 }))).toThrow(UnsupportedFeatureError);
    await other.close();
  });

  it('re-subscribes after a reconnect', async () => {
    const hub = new FakeHub();
    const client = await createDeviceClient({ connectionString, transport: hub.factory(), retryPolicy });
    client.onDirectMethod('ping', () => ({ status: 204 }));
    await vi.advanceTimersByTimeAsync(0);
    hub.dropConnection();
    await vi.advanceTimersByTimeAsync(500);
    expect(hub.enables.filter((e) => e.feature === 'directMethods').map((e) => e.connection)).toEqual([1, 2]);
    expect((await hub.invokeMethod('ping')).status).toBe(204);
    await client.close();
  });
});
