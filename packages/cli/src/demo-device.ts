import { createDeviceClient, type DeviceClient, mqtt } from '@fieldhub/device';
import type { Hub, HubInfo } from '@fieldhub/hub';

/** The identity the demo runs as. */
export const demoDeviceId = 'demo-device';

/** A running demo device; `stop()` closes it. */
export interface DemoDevice {
  readonly deviceId: string;
  stop(): Promise<void>;
}

/**
 * Runs a demo device inside `fieldhub hub start --demo` (the root `npm start`), so a newcomer sees the hub work at
 * once: it is registered if missing, connects with the device SDK over MQTT, sends telemetry every second, reports
 * its properties, follows desired properties and answers the direct methods `ping` and `setInterval`.
 */
export async function startDemoDevice(
  hub: Hub,
  info: HubInfo,
  ca: string,
  print: (line: string) => void,
): Promise<DemoDevice> {
  if (info.ports.mqtt === null) throw new Error('the demo device needs the MQTT head');
  const registry = hub.core.registry;
  const existing = await registry.getDeviceRecord(demoDeviceId);
  const device = existing
    ? await registry.getDevice(demoDeviceId)
    : await registry.putDevice(demoDeviceId, { deviceId: demoDeviceId }, undefined);
  const key = device.authentication.symmetricKey?.primaryKey;
  if (!key) throw new Error(`${demoDeviceId} has no symmetric key`);

  const client: DeviceClient = await createDeviceClient({
    connectionString: `HostName=${info.hostName};DeviceId=${demoDeviceId};SharedAccessKey=${key}`,
    transport: mqtt({ port: info.ports.mqtt }),
    ca,
  });
  let intervalMs = 1000;
  let sequence = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const tick = async () => {
    sequence += 1;
    const temperature = Math.round((20 + 5 * Math.sin(sequence / 10) + Math.random()) * 10) / 10;
    try {
      await client.sendTelemetry({ body: { sequence, temperature }, properties: { source: 'demo' } });
      if (sequence === 1 || sequence % 10 === 0) print(`[${demoDeviceId}] telemetry #${sequence}: ${temperature} °C`);
    } catch (error) {
      print(`[${demoDeviceId}] telemetry #${sequence} failed: ${(error as Error).message}`);
    }
    if (!stopped) timer = setTimeout(tick, intervalMs);
  };

  const stopPing = client.onDirectMethod('ping', async (request) => {
    print(`[${demoDeviceId}] direct method ping ${JSON.stringify(request.payload)}`);
    return { status: 200, payload: { pong: true, sequence } };
  });
  const stopInterval = client.onDirectMethod('setInterval', async (request) => {
    const seconds = Number((request.payload as { seconds?: unknown } | null)?.seconds);
    if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 3600) {
      return { status: 400, payload: { error: 'payload must be { "seconds": 0.1..3600 }' } };
    }
    intervalMs = seconds * 1000;
    print(`[${demoDeviceId}] telemetry interval is now ${seconds} s`);
    return { status: 200, payload: { intervalSeconds: seconds } };
  });
  await client.updateReportedProperties({ firmware: '1.0.0', startedAt: new Date().toISOString() });
  print(`[${demoDeviceId}] connected over MQTT, reported its properties; answers direct methods ping and setInterval`);

  // Ended by stop(): an iterator is not guaranteed to end by itself when its client closes.
  const iteration = new AbortController();
  const desired = (async () => {
    for await (const patch of client.desiredPropertyUpdates({ signal: iteration.signal })) {
      print(`[${demoDeviceId}] desired properties changed: ${JSON.stringify(patch)}`);
      await client.updateReportedProperties({ lastDesiredVersion: patch.$version ?? null }).catch(() => undefined);
    }
  })().catch(() => undefined);

  void tick();
  return {
    deviceId: demoDeviceId,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      stopPing();
      stopInterval();
      iteration.abort();
      await client.close();
      await desired;
    },
  };
}
