import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDeviceClient, type DeviceClientOptions } from './create-client';
import { sasKeyCredentialProvider } from './credentials';
import type { DeviceClient } from './device-client';
import { AbortError, AuthenticationError, ConnectionError, type HubError, ThrottledError } from './errors';
import type { ReconnectingEvent } from './events';
import { amqpLikeCapabilities, FakeHub } from './fake-transport';
import { exponentialBackoffWithJitter, noRetry } from './retry-policy';
import type { CredentialProvider } from './transport/transport';

const key = 'AAECAwQFBgcICQoLDA0ODw==';
const connectionString = `HostName=hub.local;DeviceId=dev1;SharedAccessKey=${key}`;

/** Full jitter with random() = 0.5: delays 500, 1000, 2000, ... ms. */
const retryPolicy = exponentialBackoffWithJitter({ random: () => 0.5, initialDelayMs: 1000, maxDelayMs: 8000 });

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: Date.UTC(2026, 0, 1) });
});
afterEach(() => {
  vi.useRealTimers();
});

const tick = async (ms = 0): Promise<void> => {
  await vi.advanceTimersByTimeAsync(ms);
};

interface Recorded {
  readonly client: DeviceClient;
  readonly events: (string | ReconnectingEvent | HubError | undefined)[];
}

async function connect(hub: FakeHub, options: Partial<DeviceClientOptions> = {}): Promise<Recorded> {
  const client = await createDeviceClient({ connectionString, transport: hub.factory(), retryPolicy, ...options });
  const events: Recorded['events'] = [];
  client.on('connected', () => events.push('connected'));
  client.on('disconnected', (error) => events.push('disconnected', error?.message));
  client.on('reconnecting', (event) => events.push(event));
  client.on('error', (error) => events.push('error', error));
  return { client, events };
}

/** Records how a promise settled, without an unhandled rejection. */
function outcome<T>(promise: Promise<T>): { settled: () => string | undefined; error: () => unknown } {
  let state: string | undefined;
  let reason: unknown;
  promise.then(
    () => {
      if (state) throw new Error('settled twice');
      state = 'resolved';
    },
    (error: unknown) => {
      if (state) throw new Error('settled twice');
      state = 'rejected';
      reason = error;
    },
  );
  return { settled: () => state, error: () => reason };
}

describe('reconnection', () => {
  it('emits disconnected, then reconnecting per attempt with backoff, refreshes refused credentials, then connected', async () => {
    const hub = new FakeHub();
    const { client, events } = await connect(hub);
    hub.nextOutcomes.push('unreachable', 'refuse');
    hub.dropConnection();
    expect(client.state).toBe('reconnecting');
    expect(events.slice(0, 3)).toEqual([
      'disconnected',
      'network down',
      { attempt: 1, delayMs: 500, error: expect.any(ConnectionError) },
    ]);
    await tick(499);
    expect(hub.connectAttempts).toHaveLength(1);
    await tick(1);
    expect(hub.connectAttempts).toHaveLength(2);
    expect(events[3]).toEqual({ attempt: 2, delayMs: 1000, error: expect.any(ConnectionError) });
    await tick(1000);
    expect(hub.connectAttempts).toHaveLength(3);
    // Refused credentials: reported through 'error', and the client keeps trying.
    expect(events[4]).toBe('error');
    expect(events[5]).toBeInstanceOf(AuthenticationError);
    expect(events[6]).toEqual({ attempt: 3, delayMs: 2000, error: expect.any(AuthenticationError) });
    await tick(2000);
    expect(client.state).toBe('connected');
    expect(events.at(-1)).toBe('connected');
    // The attempt after the refusal signed a new token (the clock moved on).
    expect(hub.connectAttempts[3]?.credentials.sasToken).not.toBe(hub.connectAttempts[0]?.credentials.sasToken);
    await client.close();
  });

  it('asks for fresh credentials when the connection was lost to refused credentials', async () => {
    const hub = new FakeHub();
    const refreshes: boolean[] = [];
    const keys = sasKeyCredentialProvider({ hostName: 'hub.local', deviceId: 'dev1', key });
    const credentialProvider: CredentialProvider = {
      hostName: keys.hostName,
      deviceId: keys.deviceId,
      kind: 'sas',
      getCredentials: (options) => {
        refreshes.push(options?.refresh === true);
        return keys.getCredentials(options);
      },
    };
    const client = await createDeviceClient({ credentialProvider, transport: hub.factory(), retryPolicy });
    expect(refreshes).toEqual([false]);
    hub.dropConnection(new AuthenticationError('token refused'));
    await tick(500);
    expect(client.state).toBe('connected');
    expect(refreshes).toEqual([false, true]);
    await client.close();
  });

  it('caps the backoff and never gives up by default', async () => {
    const hub = new FakeHub();
    const { client, events } = await connect(hub);
    hub.defaultOutcome = 'unreachable';
    hub.dropConnection();
    await tick(60_000);
    const delays = events.filter((e): e is ReconnectingEvent => typeof e === 'object' && e !== null && 'attempt' in e);
    expect(delays.slice(0, 6).map((e) => e.delayMs)).toEqual([500, 1000, 2000, 4000, 4000, 4000]);
    expect(client.state).toBe('reconnecting');
    hub.defaultOutcome = 'accept';
    await tick(4000);
    expect(client.state).toBe('connected');
    await client.close();
  });

  it('when the policy gives up: emits error, rejects what waits, and the next operation connects on demand', async () => {
    const hub = new FakeHub();
    const { client, events } = await connect(hub, { retryPolicy: noRetry() });
    hub.defaultOutcome = 'unreachable';
    hub.holdAcks = true;
    const inFlight = outcome(client.sendTelemetry({ body: 'lost' }));
    await tick();
    hub.holdAcks = false;
    hub.dropConnection();
    await tick();
    expect(client.state).toBe('disconnected');
    expect(events).toContain('error');
    expect(inFlight.error()).toBeInstanceOf(ConnectionError);
    hub.defaultOutcome = 'accept';
    await client.sendTelemetry({ body: 'on demand' });
    expect(client.state).toBe('connected');
    expect(hub.telemetry).toHaveLength(1);
    await client.close();
  });
});

describe('offline queue', () => {
  it('queues telemetry while offline and resolves each send, in order, once the hub accepted it', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub);
    hub.dropConnection();
    const sends = ['a', 'b', 'c'].map((body) => outcome(client.sendTelemetry({ body })));
    await tick(100);
    expect(sends.map((s) => s.settled())).toEqual([undefined, undefined, undefined]);
    expect(client.queuedTelemetry).toBe(3);
    await tick(500);
    expect(sends.map((s) => s.settled())).toEqual(['resolved', 'resolved', 'resolved']);
    expect(hub.telemetry.map((m) => new TextDecoder().decode(m.body))).toEqual(['a', 'b', 'c']);
    await client.close();
  });

  it("'reject-new' (default) refuses a send beyond the bound with ThrottledError, keeping the queued ones", async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub, { offlineQueue: { maxMessages: 2 } });
    hub.dropConnection();
    const sends = ['a', 'b', 'c'].map((body) => outcome(client.sendTelemetry({ body })));
    await tick();
    expect(sends[2]?.settled()).toBe('rejected');
    expect(sends[2]?.error()).toBeInstanceOf(ThrottledError);
    expect(sends[2]?.error()).toMatchObject({ code: 'ThrottleBacklogLimitExceeded' });
    await tick(500);
    expect(sends.slice(0, 2).map((s) => s.settled())).toEqual(['resolved', 'resolved']);
    expect(hub.telemetry).toHaveLength(2);
    await client.close();
  });

  it("'drop-oldest' rejects the oldest queued send and keeps the new one", async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub, { offlineQueue: { maxMessages: 2, overflow: 'drop-oldest' } });
    hub.dropConnection();
    const sends = ['a', 'b', 'c'].map((body) => outcome(client.sendTelemetry({ body })));
    await tick();
    expect(sends[0]?.error()).toMatchObject({ code: 'ThrottleBacklogLimitExceeded' });
    await tick(500);
    expect(sends.map((s) => s.settled())).toEqual(['rejected', 'resolved', 'resolved']);
    expect(hub.telemetry.map((m) => new TextDecoder().decode(m.body))).toEqual(['b', 'c']);
    await client.close();
  });

  it('counts a batch as its messages and refuses one larger than the whole bound', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub, { offlineQueue: { maxMessages: 2 } });
    await expect(client.sendTelemetryBatch([{ body: '1' }, { body: '2' }, { body: '3' }])).rejects.toBeInstanceOf(
      ThrottledError,
    );
    await client.sendTelemetryBatch([{ body: '1' }, { body: '2' }]);
    expect(hub.telemetry).toHaveLength(2);
    await client.close();
  });

  it('re-sends telemetry that was in flight when the connection dropped, after the reconnect', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub);
    hub.holdAcks = true;
    const send = outcome(client.sendTelemetry({ body: 'in flight' }));
    await tick();
    expect(hub.heldAcks).toHaveLength(1);
    hub.holdAcks = false;
    hub.dropConnection();
    await tick();
    expect(send.settled()).toBeUndefined();
    await tick(500);
    expect(send.settled()).toBe('resolved');
    expect(hub.telemetry).toHaveLength(1);
    await client.close();
  });

  it('sends a batch in one operation where the transport can', async () => {
    const hub = new FakeHub(amqpLikeCapabilities);
    const { client } = await connect(hub);
    const batch = vi.spyOn(hub.transport, 'sendTelemetryBatch' as never);
    await client.sendTelemetryBatch([{ body: '1' }, { body: '2' }]);
    expect(batch).toHaveBeenCalledTimes(1);
    expect(hub.telemetry).toHaveLength(2);
    await client.close();
  });
});

describe('abort', () => {
  it('a queued send aborted before it went out rejects with AbortError and is never sent', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub);
    hub.dropConnection();
    const controller = new AbortController();
    const send = outcome(client.sendTelemetry({ body: 'x' }, { signal: controller.signal }));
    controller.abort();
    await tick();
    expect(send.error()).toBeInstanceOf(AbortError);
    expect(client.queuedTelemetry).toBe(0);
    await tick(500);
    expect(hub.telemetry).toHaveLength(0);
    await client.close();
  });

  it('an in-flight send aborted rejects with AbortError at once (the hub may still get it)', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub);
    hub.holdAcks = true;
    const controller = new AbortController();
    const send = outcome(client.sendTelemetry({ body: 'x' }, { signal: controller.signal }));
    await tick();
    controller.abort();
    await tick();
    expect(send.error()).toBeInstanceOf(AbortError);
    await client.close();
  });

  it('an already aborted signal rejects at once', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub);
    await expect(client.sendTelemetry({ body: 'x' }, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(
      AbortError,
    );
    await expect(client.getTwin({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    expect(hub.telemetry).toHaveLength(0);
    await client.close();
  });

  it('a twin read waiting for the reconnect rejects with AbortError when aborted', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub);
    hub.dropConnection();
    const controller = new AbortController();
    const read = outcome(client.getTwin({ signal: controller.signal }));
    controller.abort();
    await tick(500);
    expect(read.error()).toBeInstanceOf(AbortError);
    await client.close();
  });
});

describe('close', () => {
  it('settles every pending operation once, stops timers, and races with disconnect and abort', async () => {
    const hub = new FakeHub();
    const { client, events } = await connect(hub);
    hub.holdAcks = true;
    const controller = new AbortController();
    const inFlight = outcome(client.sendTelemetry({ body: 'a' }, { signal: controller.signal }));
    const inFlight2 = outcome(client.sendTelemetry({ body: 'b' }));
    await tick();
    hub.dropConnection();
    const queued = outcome(client.sendTelemetry({ body: 'c' }));
    const twin = outcome(client.getTwin());
    controller.abort();
    const closing = client.close();
    controller.abort();
    hub.dropConnection();
    await closing;
    await tick();
    expect(inFlight.error()).toBeInstanceOf(AbortError);
    for (const op of [inFlight2, queued, twin]) {
      expect(op.settled()).toBe('rejected');
      expect(op.error()).toMatchObject({ name: 'ConnectionError', message: 'client closed', isRetryable: false });
    }
    expect(vi.getTimerCount()).toBe(0);
    const before = events.length;
    await tick(60_000);
    expect(events).toHaveLength(before);
    expect(hub.connectAttempts).toHaveLength(1);
  });

  it('aborts a connection attempt in progress', async () => {
    const hub = new FakeHub();
    const { client } = await connect(hub);
    hub.nextOutcomes.push('hold');
    hub.dropConnection();
    await tick(500);
    expect(hub.connectAttempts).toHaveLength(2);
    await client.close();
    hub.releaseConnects();
    await tick(10_000);
    expect(hub.transport.connected).toBe(false);
    expect(client.state).toBe('closed');
  });

  it('supports await using', async () => {
    const hub = new FakeHub();
    {
      await using client = await createDeviceClient({ connectionString, transport: hub.factory() });
      expect(client.state).toBe('connected');
    }
    expect(hub.transport.connected).toBe(false);
  });
});

describe('SAS renewal', () => {
  it('reconnects with a new token at expiry - margin, re-enabling features, with no failed operation', async () => {
    const hub = new FakeHub();
    const { client, events } = await connect(hub);
    const messages = client.cloudToDeviceMessages();
    client.onDirectMethod('reboot', () => ({ status: 200 }));
    const updates = client.desiredPropertyUpdates();
    await tick();
    expect(
      hub.enables
        .filter((e) => e.connection === 1)
        .map((e) => e.feature)
        .sort(),
    ).toEqual(['cloudToDevice', 'directMethods', 'twin']);
    hub.holdAcks = true;
    const inFlight = outcome(client.sendTelemetry({ body: 'before' }));
    await tick(2_700_000 - 1);
    expect(hub.connectAttempts).toHaveLength(1);
    hub.nextOutcomes.push('hold');
    await tick(1);
    // Renewal waits for what is in flight.
    expect(client.state).toBe('renewing');
    const during = outcome(client.sendTelemetry({ body: 'during' }));
    const twin = outcome(client.getTwin());
    hub.holdAcks = false;
    hub.releaseAcks();
    await tick();
    expect(inFlight.settled()).toBe('resolved');
    expect(hub.connectAttempts).toHaveLength(2);
    hub.releaseConnects();
    await tick();
    expect(client.state).toBe('connected');
    expect(during.settled()).toBe('resolved');
    expect(twin.settled()).toBe('resolved');
    const [first, second] = hub.connectAttempts;
    expect(second?.credentials.sasToken).not.toBe(first?.credentials.sasToken);
    expect(second?.credentials.sasTokenExpiresAt).toBe(Date.UTC(2026, 0, 1) + 2_700_000 + 3_600_000);
    expect(
      hub.enables
        .filter((e) => e.connection === 2)
        .map((e) => e.feature)
        .sort(),
    ).toEqual(['cloudToDevice', 'directMethods', 'twin']);
    // A planned renewal is not a lifecycle event.
    expect(events).toEqual([]);
    // And the features work on the new connection.
    hub.sendCloudToDevice('hi');
    expect((await messages.next()).value?.text()).toBe('hi');
    expect(await hub.invokeMethod('reboot')).toEqual({ status: 200, payload: null });
    hub.patchDesired({ fan: 'on' });
    expect((await updates.next()).value).toEqual({ fan: 'on', $version: 2 });
    // Only the next renewal's timer is left (the drain timer was cleared).
    expect(vi.getTimerCount()).toBe(1);
    // The next renewal is scheduled from the new token.
    await tick(2_700_000);
    expect(hub.connectAttempts).toHaveLength(3);
    await client.close();
  });

  it("hands the new token over in place for 'inPlace' transports", async () => {
    const hub = new FakeHub(amqpLikeCapabilities);
    const { client } = await connect(hub);
    await tick(2_700_000);
    expect(hub.updatedCredentials).toHaveLength(1);
    expect(hub.connectAttempts).toHaveLength(1);
    await client.close();
  });

  it('does not renew a fixed token in a loop', async () => {
    const hub = new FakeHub();
    const token = `SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=abc&se=${Date.UTC(2026, 0, 1) / 1000 + 600}`;
    const { client } = await connect(hub, {
      connectionString: `HostName=hub.local;DeviceId=dev1;SharedAccessSignature=${token}`,
    });
    await tick(600_000);
    expect(hub.connectAttempts).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
    await client.close();
  });
});

describe('settle exactly once', () => {
  // A small deterministic PRNG (mulberry32), so that every seed replays the same interleaving.
  function prng(seed: number): () => number {
    let a = seed;
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  it('every operation settles once, with an allowed outcome, whatever the order of drops, aborts and close', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const random = prng(seed);
      const hub = new FakeHub();
      const client = await createDeviceClient({
        connectionString,
        transport: hub.factory(),
        retryPolicy: exponentialBackoffWithJitter({ random }),
        offlineQueue: { maxMessages: 5, overflow: random() < 0.5 ? 'reject-new' : 'drop-oldest' },
      });
      const ops: {
        kind: string;
        body?: string;
        controller: AbortController;
        counts: { resolved: number; rejected: number };
        error?: unknown;
      }[] = [];
      const start = (kind: string): void => {
        const controller = new AbortController();
        const entry: (typeof ops)[number] = { kind, controller, counts: { resolved: 0, rejected: 0 } };
        const body = `m${ops.length}`;
        const promise =
          kind === 'telemetry'
            ? client.sendTelemetry({ body }, { signal: controller.signal })
            : kind === 'twin'
              ? client.getTwin({ signal: controller.signal })
              : client.updateReportedProperties({ n: ops.length }, { signal: controller.signal });
        if (kind === 'telemetry') entry.body = body;
        promise.then(
          () => {
            entry.counts.resolved++;
          },
          (error: unknown) => {
            entry.counts.rejected++;
            entry.error = error;
          },
        );
        ops.push(entry);
      };
      for (let step = 0; step < 30; step++) {
        const r = random();
        if (r < 0.4) start(random() < 0.7 ? 'telemetry' : random() < 0.5 ? 'twin' : 'reported');
        else if (r < 0.5) hub.dropConnection();
        else if (r < 0.6) ops[Math.floor(random() * ops.length)]?.controller.abort();
        else if (r < 0.7) hub.holdAcks = !hub.holdAcks;
        else if (r < 0.8) hub.releaseAcks();
        else if (r < 0.85) hub.nextOutcomes.push(random() < 0.5 ? 'refuse' : 'unreachable');
        else await tick(Math.floor(random() * 3000));
      }
      await client.close();
      await tick(100_000);
      expect(vi.getTimerCount()).toBe(0);
      const accepted = new Set(hub.telemetry.map((m) => new TextDecoder().decode(m.body)));
      for (const op of ops) {
        expect(op.counts.resolved + op.counts.rejected, `seed ${seed} ${op.kind}`).toBe(1);
        if (op.counts.resolved === 1 && op.body) expect(accepted.has(op.body)).toBe(true);
        if (op.counts.rejected === 1) {
          const allowed =
            op.error instanceof AbortError || op.error instanceof ConnectionError || op.error instanceof ThrottledError;
          expect(allowed, `seed ${seed}: ${String(op.error)}`).toBe(true);
        }
      }
    }
  });
});
