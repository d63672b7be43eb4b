/**
 * End to end (issue #12): the C simulated MCU (firmware-bridge/mcu, fb_sim) <-> socat PTY pair <-> the gateway
 * <-> a real hub in-process (TLS on 127.0.0.1), read back with @fieldhub/service.
 */
import { join } from 'node:path';
import type { ServiceClient, TelemetryEvent } from '@fieldhub/service';
import type { ConformanceHub } from '@fieldhub/transport-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway, type GatewayConfig } from '../src/index';
import { buildSimulator, FbSim, type SimEvent } from './fb-sim';
import { PtyPair } from './socat';
import { startTestBench, type TestBench, until } from './test-bench';

let bench: TestBench;
let hub: ConformanceHub;
let service: ServiceClient;
let dir: string;
let simulator: string;
let telemetry: TelemetryEvent[];

beforeAll(async () => {
  bench = await startTestBench('fieldhub-e2e-');
  ({ hub, service, dir, telemetry } = bench);
  simulator = buildSimulator(join(dir, 'build'));
});

afterAll(async () => {
  await bench?.close();
});

interface Rig {
  readonly pair: PtyPair;
  readonly gateway: Gateway;
  readonly sim: FbSim;
  readonly config: GatewayConfig;
  readonly signRequests: string[];
  close(): Promise<void>;
}

async function rig(deviceId: string, auth: { gatewayKey: string } | { mcuKey: string }): Promise<Rig> {
  const pair = new PtyPair(join(dir, `${deviceId}-gw`), join(dir, `${deviceId}-mcu`));
  await pair.start();
  const config: GatewayConfig = {
    hub: { hostName: hub.hostName, port: hub.info.ports.amqp ?? 0, ca: hub.ca, transport: 'amqp' },
    ports: [
      {
        path: pair.gatewayPath,
        baudRate: 115200,
        devices: 'gatewayKey' in auth ? [{ deviceId, sharedAccessKey: auth.gatewayKey }] : [],
      },
    ],
    log: { level: 'silent' },
  };
  const signRequests: string[] = [];
  const gateway = createGateway(config, {
    events: () => ({ signRequested: (request) => signRequests.push(request.stringToSign) }),
  });
  await gateway.start();
  const sim = new FbSim(simulator, [
    '--port',
    pair.mcuPath,
    '--device',
    deviceId,
    ...('mcuKey' in auth ? ['--key', auth.mcuKey] : ['--auth', 'gateway']),
    '--boot-id',
    '4660',
  ]);
  const close = async (): Promise<void> => {
    await sim.stop();
    await gateway.close();
    await pair.stop();
  };
  try {
    // STATUS online (state 2): the gateway's device client for this MCU is connected.
    await sim.waitFor((event) => event.event === 'status' && event.state === 2, `${deviceId} online`);
  } catch (error) {
    // No rig to close in afterAll: socat and fb_sim would outlive the test run.
    await close();
    throw error;
  }
  return { pair, gateway, sim, config, signRequests, close };
}

const queuedId = (event: SimEvent): number => event.id as number;

describe('simulated MCU (C) <-> PTY <-> gateway <-> real hub', () => {
  let keyed: Rig;
  let signing: Rig;

  beforeAll(async () => {
    const keyedDevice = await hub.createSasDevice('e2e-keyed');
    const signingDevice = await hub.createSasDevice('e2e-signing');
    const [keyedRig, signingRig] = await Promise.allSettled([
      rig('e2e-keyed', { gatewayKey: keyedDevice.primaryKey }),
      rig('e2e-signing', { mcuKey: signingDevice.primaryKey }),
    ]);
    // Both are assigned before a failure is thrown, so that afterAll closes the one that started.
    if (keyedRig.status === 'fulfilled') keyed = keyedRig.value;
    if (signingRig.status === 'fulfilled') signing = signingRig.value;
    for (const result of [keyedRig, signingRig]) if (result.status === 'rejected') throw result.reason;
  });

  afterAll(async () => {
    await keyed?.close();
    await signing?.close();
  });

  it('delivers telemetry with properties to the built-in endpoint and confirms it to the MCU', async () => {
    const { sim } = keyed;
    sim.command('telemetry $.mid=e2e-1,$.ct=application/json,$.ce=utf-8,zone=hall-b {"temperature":21.5}');
    const queued = await sim.waitFor((event) => event.event === 'telemetry_queued', 'telemetry_queued');
    await sim.waitFor(
      (event) => event.event === 'telemetry_ack' && event.id === queuedId(queued) && event.status === 200,
      'TELEMETRY_ACK 200',
    );
    const event = await until(() => telemetry.find((item) => item.messageId === 'e2e-1'), 'the event at the hub');
    expect(event.deviceId).toBe('e2e-keyed');
    expect(event.properties).toEqual({ zone: 'hall-b' });
    expect(event.contentType).toBe('application/json');
    expect(event.contentEncoding).toBe('utf-8');
    expect(JSON.parse(event.bodyText ?? '')).toEqual({ temperature: 21.5 });
  });

  it('delivers a cloud-to-device message that the MCU completes (the queue drains)', async () => {
    const { sim } = keyed;
    await service.cloudToDevice.send('e2e-keyed', {
      body: 'open valve 3',
      messageId: 'c2d-e2e',
      properties: { prio: 'high' },
    });
    const c2d = await sim.waitFor((event) => event.event === 'c2d', 'the C2D event');
    expect(c2d.properties).toMatchObject({ '$.mid': 'c2d-e2e', prio: 'high' });
    expect(c2d.body).toBe('open valve 3');
    await sim.waitFor((event) => event.event === 'settled' && event.outcome === 'complete', 'the settlement');
    await until(
      async () => ((await hub.hub.core.cloudToDevice.depths()).messages === 0 ? true : undefined),
      'an empty queue',
    );
  });

  it('pushes a desired patch to the MCU and carries its reported patch back to the twin', async () => {
    const { sim } = keyed;
    await service.twins.patch('e2e-keyed', { properties: { desired: { interval: 30 } } });
    const desired = await sim.waitFor(
      (event) => event.event === 'desired' && String(event.patch).includes('interval'),
      'desired',
    );
    expect(JSON.parse(desired.patch as string)).toMatchObject({ interval: 30 });
    sim.command('report {"interval":30,"fw":"1.2.0"}');
    const result = await sim.waitFor((event) => event.event === 'twin_result', 'TWIN_RESULT');
    expect(result.status).toBe(204);
    const twin = await service.twins.get('e2e-keyed');
    expect(twin.properties?.reported).toMatchObject({ interval: 30, fw: '1.2.0' });
  });

  it('has a direct method answered by the MCU', async () => {
    const response = await service.directMethods.invoke('e2e-keyed', {
      methodName: 'reboot',
      payload: { delay: 5 },
      responseTimeoutInSeconds: 20,
    });
    expect(response).toEqual({ status: 200, payload: { echo: { delay: 5 }, method: 'reboot' } });
  });

  it('connects with tokens the MCU signs: the gateway never holds the key', async () => {
    const { sim, config, signRequests } = signing;
    expect(signRequests.length).toBeGreaterThan(0);
    expect(signRequests[0]).toMatch(/%2Fdevices%2Fe2e-signing\n\d+$/);
    await sim.waitFor((event) => event.event === 'signed', 'the MCU to sign');
    expect(config.ports.flatMap((port) => port.devices)).toEqual([]);
    expect(JSON.stringify(config)).not.toMatch(/sharedAccessKey|SharedAccessKey/);
    sim.command('telemetry $.mid=signed-1 hello');
    await sim.waitFor((event) => event.event === 'telemetry_ack' && event.status === 200, 'TELEMETRY_ACK');
    await until(() => telemetry.find((item) => item.messageId === 'signed-1'), 'the signed telemetry at the hub');
  });

  it('loses no acknowledged telemetry when the cable is pulled and plugged back in', async () => {
    const { sim, pair } = keyed;
    const before = sim.events.length;
    const send = (name: string): void => sim.command(`telemetry $.mid=${name} ${name}`);
    for (let index = 0; index < 4; index++) send(`around-${index}`);
    await pair.stop();
    await sim.waitFor((event) => event.event === 'port' && event.open === false, 'the MCU to see the port gone');
    for (let index = 0; index < 4; index++) send(`unplugged-${index}`);
    await pair.start();
    const names = [...Array(4).keys()].flatMap((index) => [`around-${index}`, `unplugged-${index}`]);
    const queued = await until(() => {
      const events = sim.events.slice(before).filter((event) => event.event === 'telemetry_queued');
      return events.length === names.length ? events : undefined;
    }, 'every message queued on the MCU');
    const ids = queued.map(queuedId);
    await until(
      () => {
        const acked = new Set(
          sim.events.filter((event) => event.event === 'telemetry_ack' && event.status === 200).map(queuedId),
        );
        return ids.every((id) => acked.has(id)) ? true : undefined;
      },
      'TELEMETRY_ACK 200 for every message',
      45_000,
    );
    for (const name of names) {
      await until(() => telemetry.find((item) => item.messageId === name), `${name} at the hub`);
    }
  });
});
