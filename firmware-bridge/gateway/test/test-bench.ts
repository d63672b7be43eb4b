/**
 * What both gateway suites run against: a real hub in-process (TLS on 127.0.0.1), a service client, every
 * telemetry event read from the hub's built-in endpoint, and a temporary directory for PTY links and builds.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServiceClient, type ServiceClient, type TelemetryEvent } from '@fieldhub/service';
import { type ConformanceHub, startConformanceHub } from '@fieldhub/transport-testing';
import { requireSocat } from './socat';

/** A running hub with its service client; {@link startTestBench}. */
export interface TestBench {
  readonly hub: ConformanceHub;
  readonly service: ServiceClient;
  /** Every telemetry event of the built-in endpoint, from the earliest, as it arrives. */
  readonly telemetry: TelemetryEvent[];
  /** A temporary directory, removed by `close()`. */
  readonly dir: string;
  /** Stops reading, closes the service client and the hub, removes `dir`. */
  close(): Promise<void>;
}

/**
 * Starts the hub and the telemetry reader.
 * @throws Error when socat is missing (the bridge tests never skip silently) or the hub does not start.
 */
export async function startTestBench(prefix: string): Promise<TestBench> {
  requireSocat();
  const dir = await mkdtemp(join(tmpdir(), prefix));
  let hub: ConformanceHub;
  try {
    hub = await startConformanceHub();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const connectionString = hub.info.serviceConnectionString.replace(
    /HostName=([^;]+)/,
    `HostName=$1:${hub.info.ports.https}`,
  );
  const service = createServiceClient({ connectionString, ca: hub.ca, amqpPort: hub.info.ports.amqp ?? 0 });
  const telemetry: TelemetryEvent[] = [];
  const reading = new AbortController();
  void (async () => {
    try {
      for await (const event of service.telemetry.read({ signal: reading.signal, from: 'earliest' })) {
        telemetry.push(event);
      }
    } catch {
      // aborted by close()
    }
  })();
  return {
    hub,
    service,
    telemetry,
    dir,
    async close() {
      reading.abort();
      await service.close();
      await hub.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `probe` until it returns something other than `undefined` or `false`; fails after `timeoutMs`. */
export async function until<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
