/**
 * Fault tests of the device SDK against a real hub running as a child process (so that it can be SIGKILLed):
 * a crash and restart under load, desired properties changed while the device was away, short-lived SAS tokens,
 * a client started before its hub, and aborted sends. Needs `npx turbo run build` (the CLI and hub dist).
 */
import {
  createDeviceClient,
  type DeviceClient,
  exponentialBackoffWithJitter,
  HubError,
  mqtt,
  sasKeyCredentialProvider,
  type TransportConnectOptions,
  type TransportEvents,
  type TransportFactory,
} from '@fieldhub/device';
import { afterEach, describe, expect, it } from 'vitest';
import { type HubHarness, hubHarness } from './support/hub-process';
import { createSasDevice, serviceCall, telemetryIds } from './support/service-rest';

const harnesses: HubHarness[] = [];
const clients: DeviceClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(harnesses.splice(0).map((harness) => harness.dispose()));
});

async function runningHub(): Promise<HubHarness> {
  const harness = await hubHarness();
  harnesses.push(harness);
  await harness.start();
  return harness;
}

/** Reconnects quickly, for tests that wait on reconnection. */
const fastRetry = exponentialBackoffWithJitter({ initialDelayMs: 200, maxDelayMs: 1000 });

async function client(harness: HubHarness, options: Parameters<typeof createDeviceClient>[0]): Promise<DeviceClient> {
  const made = await createDeviceClient({
    ca: harness.ca,
    transport: mqtt({ port: harness.mqttPort }),
    retryPolicy: fastRetry,
    connectTimeoutMs: 5_000,
    ...options,
  });
  clients.push(made);
  return made;
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('device SDK under faults (hub as a child process)', () => {
  it('loses no acknowledged message of 10,000 when the hub is killed and restarted mid-stream, and delivers what was sent while it was down', async () => {
    const harness = await runningHub();
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'stream-1');
    const device = await client(harness, {
      connectionString,
      offlineQueue: { maxMessages: 20_000 },
    });

    const total = 10_000;
    const acknowledged = new Set<string>();
    const failures: unknown[] = [];
    const sends: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const messageId = `m-${i}`;
      sends.push(
        device.sendTelemetry({ body: { i }, messageId }).then(
          () => {
            acknowledged.add(messageId);
          },
          (error: unknown) => {
            failures.push(error);
          },
        ),
      );
    }
    await until(() => acknowledged.size >= 2_000, 60_000, '2,000 acknowledgements');
    await harness.kill();
    const atKill = acknowledged.size;
    expect(atKill).toBeLessThan(total);

    // Sent while the hub is down: queued offline, delivered after the reconnect.
    const whileDown: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) {
      const messageId = `down-${i}`;
      whileDown.push(
        device.sendTelemetry({ body: { down: i }, messageId }).then(() => {
          acknowledged.add(messageId);
        }),
      );
    }
    await sleep(1_500);
    expect(acknowledged.size).toBeLessThanOrEqual(atKill + 32);
    await harness.start();

    await Promise.all([...sends, ...whileDown]);
    expect(failures).toEqual([]);
    expect(acknowledged.size).toBe(total + 100);

    const stored = await telemetryIds(harness.info, harness.ca, 'stream-1');
    const missing = [...acknowledged].filter((id) => !stored.has(id));
    expect(missing).toEqual([]);
  }, 180_000);

  it('delivers desired properties patched while the device was offline once it reconnects', async () => {
    const harness = await runningHub();
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'desired-1');
    const device = await client(harness, { connectionString });
    const updates = device.desiredPropertyUpdates();
    const initial = await device.getTwin();

    // The device goes offline: the hub comes back without MQTT on the device's port, so REST works and the
    // device cannot reconnect.
    await harness.stop();
    const otherPort = harness.mqttPort === 65535 ? 65534 : harness.mqttPort + 1;
    await harness.start({ mqttPort: otherPort }).catch(async () => {
      await harness.start({ mqttPort: 0 });
    });
    await serviceCall(harness.info, harness.ca, 'PATCH', '/twins/desired-1', {
      properties: { desired: { setpoint: 42, mode: 'eco' } },
    });
    await sleep(1_000);
    await harness.stop();
    await harness.start();

    const next = await Promise.race([
      updates.next(),
      sleep(30_000).then(() => {
        throw new Error('no desired-property update within 30 s of the hub coming back');
      }),
    ]);
    expect(next.done).toBe(false);
    expect(next.value).toMatchObject({ setpoint: 42, mode: 'eco' });
    expect(next.value?.$version).toBeGreaterThan(initial.desired.$version);
  }, 120_000);

  it('fails no operation over two minutes with 30-second SAS tokens', async () => {
    const harness = await runningHub();
    const { key } = await createSasDevice(harness.info, harness.ca, 'short-sas-1');
    // Counts the tokens the transport connects with: renewal reconnects with a new one (credentialRenewal:
    // 'reconnect', protocol-device.md §1.3).
    const tokens = new Set<string>();
    const base = mqtt({ port: harness.mqttPort });
    const counting: TransportFactory = {
      name: base.name,
      capabilities: base.capabilities,
      create() {
        const transport = base.create();
        const connect = transport.connect.bind(transport);
        return Object.assign(transport, {
          connect: (options: TransportConnectOptions, events: TransportEvents) => {
            if (options.credentials.sasToken) tokens.add(options.credentials.sasToken);
            return connect(options, events);
          },
        });
      },
    };
    const device = await client(harness, {
      transport: counting,
      credentialProvider: sasKeyCredentialProvider({
        hostName: harness.info.hostName,
        deviceId: 'short-sas-1',
        key,
        ttlSeconds: 30,
        renewalMarginSeconds: 10,
      }),
    });
    device.onDirectMethod('ping', async () => ({ status: 200, payload: { pong: true } }));

    const failures: unknown[] = [];
    let operations = 0;
    const track = (promise: Promise<unknown>): Promise<unknown> =>
      promise.then(
        () => {
          operations++;
        },
        (error: unknown) => {
          failures.push(error);
        },
      );
    const running: Promise<unknown>[] = [];
    const end = Date.now() + 120_000;
    let round = 0;
    while (Date.now() < end) {
      round++;
      running.push(track(device.sendTelemetry({ body: { round } })));
      if (round % 10 === 0) {
        running.push(track(device.updateReportedProperties({ round })));
        running.push(track(device.getTwin()));
      }
      if (round % 25 === 0) {
        running.push(
          track(
            serviceCall(harness.info, harness.ca, 'POST', '/twins/short-sas-1/methods', {
              methodName: 'ping',
              responseTimeoutInSeconds: 30,
              connectTimeoutInSeconds: 30,
            }),
          ),
        );
      }
      await sleep(200);
    }
    await Promise.all(running);
    expect(
      failures.map((error) => (HubError.is(error) ? `${error.name} ${error.code}: ${error.message}` : String(error))),
    ).toEqual([]);
    expect(operations).toBeGreaterThan(500);
    // A token lives 30 s and is renewed 10 s before expiry: about six tokens in two minutes.
    expect(tokens.size).toBeGreaterThanOrEqual(4);
  }, 180_000);

  it('connects a client started while the hub is down once the hub comes up', async () => {
    const harness = await runningHub();
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'early-1');
    const ca = harness.ca;
    await harness.stop();

    const starting = createDeviceClient({
      connectionString,
      ca,
      transport: mqtt({ port: harness.mqttPort }),
      retryPolicy: fastRetry,
      connectTimeoutMs: 5_000,
    });
    // Observed at once, so that an early rejection is this test's failure, not an unhandled rejection.
    starting.catch(() => undefined);
    await sleep(3_000);
    await harness.start();
    const device = await Promise.race([
      starting,
      sleep(30_000).then(() => {
        throw new Error('the client did not connect within 30 s of the hub coming up');
      }),
    ]);
    clients.push(device);
    expect(device.state).toBe('connected');
    await device.sendTelemetry({ body: 'hello', messageId: 'early' });
    expect(await telemetryIds(harness.info, harness.ca, 'early-1')).toContain('early');
  }, 90_000);

  it('settles an aborted send with AbortError, queued offline or already aborted, and never delivers it', async () => {
    const harness = await runningHub();
    const { connectionString } = await createSasDevice(harness.info, harness.ca, 'abort-1');
    const device = await client(harness, { connectionString });

    const already = new AbortController();
    already.abort();
    await expect(
      device.sendTelemetry({ body: 'x', messageId: 'pre-aborted' }, { signal: already.signal }),
    ).rejects.toMatchObject({
      name: 'AbortError',
    });

    await harness.kill();
    await until(() => device.state !== 'connected', 10_000, 'the client to notice the hub is gone');
    const controller = new AbortController();
    const queued = device.sendTelemetry({ body: 'x', messageId: 'aborted-offline' }, { signal: controller.signal });
    const kept = device.sendTelemetry({ body: 'y', messageId: 'kept-offline' });
    await sleep(200);
    controller.abort();
    await expect(queued).rejects.toMatchObject({ name: 'AbortError' });

    await harness.start();
    await kept;
    const ids = await telemetryIds(harness.info, harness.ca, 'abort-1');
    expect(ids).toContain('kept-offline');
    expect(ids).not.toContain('aborted-offline');
    expect(ids).not.toContain('pre-aborted');
  }, 90_000);
});
