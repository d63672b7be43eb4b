/**
 * The engine behind `fieldhub simulate`: connects many devices with @fieldhub/device over MQTT, in waves so a
 * small machine is not swamped by TLS handshakes, sends telemetry from each at a steady rate, and counts what was
 * sent, acknowledged (PUBACK) and failed.
 */
import { setMaxListeners } from 'node:events';
import { createDeviceClient, type DeviceClient, mqtt } from '@fieldhub/device';

/** A registered device the simulation runs as. */
export interface SimulatedDevice {
  readonly deviceId: string;
  /** Its primary symmetric key. */
  readonly key: string;
}

/** Options of {@link runSimulation}. */
export interface SimulationOptions {
  readonly devices: readonly SimulatedDevice[];
  /** The hub's host name (SAS resource and TLS server name). */
  readonly hostName: string;
  /** Where to dial: the hub's MQTT port (default 8883). */
  readonly mqttPort?: number;
  /** The hub's CA certificate (PEM). */
  readonly ca?: string;
  /** Telemetry messages per second, per device. */
  readonly ratePerDevice: number;
  /** Seconds of sending once every device is connected; until `signal` aborts when absent. */
  readonly durationSeconds?: number;
  /** How many devices connect at the same time. */
  readonly connectConcurrency: number;
  /** How long one device may take to connect (the SDK retries within it). Default 30. */
  readonly connectTimeoutSeconds?: number;
  /** Stops the simulation early (Ctrl+C); the summary is still produced. */
  readonly signal?: AbortSignal;
  /** Called about every second with the live figures. */
  readonly onProgress?: (progress: SimulationProgress) => void;
}

/** The live figures. */
export interface SimulationProgress {
  readonly phase: 'connecting' | 'sending' | 'stopping';
  readonly devices: number;
  readonly connected: number;
  readonly sent: number;
  readonly acknowledged: number;
  readonly errors: number;
  /** Acknowledged messages per second over the last few seconds. */
  readonly messagesPerSecond: number;
  readonly elapsedSeconds: number;
}

/** What a run achieved. */
export interface SimulationSummary {
  readonly devices: number;
  /** Devices that connected. */
  readonly connected: number;
  /** Devices that failed to connect. */
  readonly connectErrors: number;
  readonly connectSeconds: number;
  readonly sendSeconds: number;
  readonly sent: number;
  readonly acknowledged: number;
  /** Sends that failed, plus connection failures. */
  readonly errors: number;
  /** Telemetry the hub acknowledged per second while sending. */
  readonly achievedRate: number;
  /** devices × rate per device. */
  readonly targetRate: number;
  /** Connections lost and re-established by the SDK (not errors by themselves: unacknowledged sends are resent). */
  readonly disconnects: number;
  /** The first few distinct error messages. */
  readonly errorSamples: readonly string[];
  /** Whether Ctrl+C ended it before the duration. */
  readonly interrupted: boolean;
}

const progressIntervalMs = 1000;
const rateWindowMs = 5000;
const drainTimeoutMs = 15_000;

/**
 * Runs a simulation to the end of its duration (or until `signal` aborts) and closes every client.
 * Never throws for a device's failure: failures are counted in the summary.
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationSummary> {
  const started = Date.now();
  const clients: DeviceClient[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const inFlight = new Set<Promise<void>>();
  const errorSamples = new Set<string>();
  const counts = { sent: 0, acknowledged: 0, errors: 0, connectErrors: 0, disconnects: 0 };
  const history: { at: number; acknowledged: number }[] = [{ at: started, acknowledged: 0 }];
  let phase: SimulationProgress['phase'] = 'connecting';
  let connectedAt = started;
  let stoppedAt: number | undefined;
  const signal = options.signal;
  // Every connecting client listens to it.
  if (signal) setMaxListeners(0, signal);

  const recordError = (error: unknown) => {
    if (errorSamples.size < 5) errorSamples.add(error instanceof Error ? error.message : String(error));
  };

  const progress = (): SimulationProgress => {
    const now = Date.now();
    history.push({ at: now, acknowledged: counts.acknowledged });
    while (history.length > 2 && (history[0]?.at ?? now) < now - rateWindowMs) history.shift();
    const first = history[0] ?? { at: now, acknowledged: 0 };
    const seconds = (now - first.at) / 1000;
    return {
      phase,
      devices: options.devices.length,
      connected: clients.length,
      sent: counts.sent,
      acknowledged: counts.acknowledged,
      errors: counts.errors + counts.connectErrors,
      messagesPerSecond: seconds > 0 ? (counts.acknowledged - first.acknowledged) / seconds : 0,
      elapsedSeconds: (now - started) / 1000,
    };
  };
  const ticker = setInterval(() => options.onProgress?.(progress()), progressIntervalMs);

  try {
    // Connect in waves: at most `connectConcurrency` handshakes at a time.
    const queue = [...options.devices];
    const transport = mqtt(options.mqttPort === undefined ? {} : { port: options.mqttPort });
    const connectTimeoutMs = (options.connectTimeoutSeconds ?? 30) * 1000;
    // When the very first connections fail, the rest would too (hub down, wrong port): stop trying.
    let givenUp = false;
    const worker = async () => {
      for (let device = queue.shift(); device !== undefined && !signal?.aborted && !givenUp; device = queue.shift()) {
        const timeout = AbortSignal.timeout(connectTimeoutMs);
        try {
          const client = await createDeviceClient({
            connectionString: `HostName=${options.hostName};DeviceId=${device.deviceId};SharedAccessKey=${device.key}`,
            transport,
            ...(options.ca === undefined ? {} : { ca: options.ca }),
            signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
          });
          client.on('disconnected', () => {
            counts.disconnects += 1;
          });
          client.on('error', (error) => {
            counts.errors += 1;
            recordError(error);
          });
          clients.push(client);
        } catch (error) {
          if (signal?.aborted) return;
          counts.connectErrors += 1;
          recordError(
            timeout.aborted
              ? new Error(`${device.deviceId} did not connect within ${connectTimeoutMs / 1000} s`)
              : error,
          );
          if (clients.length === 0) givenUp = true;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.connectConcurrency) }, worker));
    connectedAt = Date.now();

    if (!signal?.aborted && clients.length > 0) {
      phase = 'sending';
      const intervalMs = 1000 / options.ratePerDevice;
      const sendFrom = (client: DeviceClient, sequence: number) => {
        counts.sent += 1;
        const temperature = Math.round((20 + 5 * Math.sin(sequence / 10) + Math.random()) * 10) / 10;
        const sending = client
          .sendTelemetry({ body: { sequence, temperature }, properties: { source: 'simulate' } })
          .then(
            () => {
              counts.acknowledged += 1;
            },
            (error: unknown) => {
              counts.errors += 1;
              recordError(error);
            },
          );
        inFlight.add(sending);
        void sending.finally(() => inFlight.delete(sending));
      };
      // Every device on its own clock, started at a random phase so the sends spread evenly over each interval.
      const sendStart = Date.now();
      for (const client of clients) {
        let sequence = 0;
        const offset = Math.random() * intervalMs;
        const tick = () => {
          timers.delete(timer);
          if (signal?.aborted || stoppedAt !== undefined) return;
          sequence += 1;
          sendFrom(client, sequence);
          // Scheduled against the start time, so timer lateness does not lower the rate.
          const next = sendStart + offset + sequence * intervalMs - Date.now();
          timer = setTimeout(tick, Math.max(0, next));
          timers.add(timer);
        };
        let timer = setTimeout(tick, offset);
        timers.add(timer);
      }
      await waitFor(options.durationSeconds, signal);
    }
  } finally {
    stoppedAt = Date.now();
    phase = 'stopping';
    for (const timer of timers) clearTimeout(timer);
    // Let the acknowledgements of what was sent arrive, bounded.
    await Promise.race([Promise.allSettled([...inFlight]), delay(drainTimeoutMs)]);
    clearInterval(ticker);
    options.onProgress?.(progress());
    await closeAll(clients);
  }

  const sendSeconds = Math.max(0.001, (stoppedAt - connectedAt) / 1000);
  return {
    devices: options.devices.length,
    connected: clients.length,
    connectErrors: counts.connectErrors,
    connectSeconds: (connectedAt - started) / 1000,
    sendSeconds,
    sent: counts.sent,
    acknowledged: counts.acknowledged,
    errors: counts.errors + counts.connectErrors + inFlight.size,
    achievedRate: counts.acknowledged / sendSeconds,
    targetRate: options.devices.length * options.ratePerDevice,
    disconnects: counts.disconnects,
    errorSamples:
      inFlight.size > 0 ? [...errorSamples, `${inFlight.size} sends were never acknowledged`] : [...errorSamples],
    interrupted: signal?.aborted === true,
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function waitFor(seconds: number | undefined, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = seconds === undefined ? undefined : setTimeout(done, seconds * 1000);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

async function closeAll(clients: readonly DeviceClient[]): Promise<void> {
  const queue = [...clients];
  const worker = async () => {
    for (let client = queue.shift(); client !== undefined; client = queue.shift()) {
      await client.close().catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
}
