/**
 * The gateway end to end against a real hub (in-process, TLS on 127.0.0.1): gateway <-> socat PTY pair <-> an MCU
 * simulated in TypeScript (test/ts-mcu.ts, built on the gateway's frame code). The C simulator of firmware-bridge/mcu
 * runs the same scenarios in e2e.test.ts.
 */
import { join } from 'node:path';
import type { ServiceClient, TelemetryEvent } from '@fieldhub/service';
import type { ConformanceHub } from '@fieldhub/transport-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Capability, createGateway, type Gateway, type GatewayConfig } from '../src/index';
import { PtyPair } from './socat';
import { startTestBench, type TestBench, until } from './test-bench';
import { TsMcu } from './ts-mcu';

const allCapabilities = Capability.sign | Capability.twin | Capability.methods | Capability.cloudToDevice;

let bench: TestBench;
let hub: ConformanceHub;
let service: ServiceClient;
let dir: string;
let events: TelemetryEvent[];

beforeAll(async () => {
  bench = await startTestBench('fieldhub-bridge-');
  ({ hub, service, dir, telemetry: events } = bench);
});

afterAll(async () => {
  await bench?.close();
});

interface Rig {
  readonly pair: PtyPair;
  readonly gateway: Gateway;
  readonly mcu: TsMcu;
  readonly config: GatewayConfig;
  readonly signRequests: string[];
  readonly linkStates: string[];
  close(): Promise<void>;
}

async function rig(
  name: string,
  options: {
    key?: string;
    gatewayKey?: string;
    capabilities?: number;
    transport?: 'amqp' | 'mqtt';
    settleOutcomes?: number[];
  },
): Promise<Rig> {
  const pair = new PtyPair(join(dir, `${name}-gw`), join(dir, `${name}-mcu`));
  await pair.start();
  const config: GatewayConfig = {
    hub:
      options.transport === 'mqtt'
        ? { hostName: hub.hostName, port: hub.info.ports.mqtt ?? 0, ca: hub.ca, transport: 'mqtt' }
        : { hostName: hub.hostName, port: hub.info.ports.amqp ?? 0, ca: hub.ca, transport: 'amqp' },
    ports: [
      {
        path: pair.gatewayPath,
        baudRate: 115200,
        devices: options.gatewayKey === undefined ? [] : [{ deviceId: name, sharedAccessKey: options.gatewayKey }],
      },
    ],
    log: { level: 'silent' },
  };
  const signRequests: string[] = [];
  const linkStates: string[] = [];
  const gateway = createGateway(config, {
    events: () => ({
      signRequested: (request) => signRequests.push(request.stringToSign),
      link: (state) => linkStates.push(state),
    }),
  });
  await gateway.start();
  const mcu = new TsMcu({
    path: pair.mcuPath,
    deviceId: name,
    capabilities: options.capabilities ?? allCapabilities,
    bootId: 0x1234,
    ...(options.key !== undefined ? { key: options.key } : {}),
    ...(options.settleOutcomes !== undefined ? { settleOutcomes: options.settleOutcomes } : {}),
  });
  mcu.start();
  return {
    pair,
    gateway,
    mcu,
    config,
    signRequests,
    linkStates,
    async close() {
      await mcu.stop();
      await gateway.close();
      await pair.stop();
    },
  };
}

describe('the firmware bridge gateway against a real hub', () => {
  let gatewayKeyed: Rig;
  let signing: Rig;

  beforeAll(async () => {
    const keyed = await hub.createSasDevice('bridge-keyed');
    gatewayKeyed = await rig('bridge-keyed', {
      gatewayKey: keyed.primaryKey,
      capabilities: allCapabilities & ~Capability.sign,
    });
    const signed = await hub.createSasDevice('bridge-signed');
    signing = await rig('bridge-signed', { key: signed.primaryKey });
    await until(() => gatewayKeyed.gateway.sessions.get(gatewayKeyed.pair.gatewayPath)?.client, 'the keyed client');
    await until(() => signing.gateway.sessions.get(signing.pair.gatewayPath)?.client, 'the signing client');
  });

  afterAll(async () => {
    await gatewayKeyed?.close();
    await signing?.close();
  });

  it('delivers telemetry with system and application properties to the built-in endpoint, then TELEMETRY_ACK 200', async () => {
    const { mcu } = gatewayKeyed;
    mcu.sendTelemetry(
      1,
      [
        ['$.mid', 'm-1'],
        ['$.ct', 'application/json'],
        ['$.ce', 'utf-8'],
        ['zone', 'hall-b'],
      ],
      '{"t":21.5}',
    );
    await until(() => mcu.acknowledged.get(1) === 200, 'TELEMETRY_ACK 1');
    const event = await until(() => events.find((item) => item.messageId === 'm-1'), 'the telemetry event');
    expect(event.deviceId).toBe('bridge-keyed');
    expect(event.properties).toMatchObject({ zone: 'hall-b' });
    expect(event.contentType).toBe('application/json');
    expect(event.bodyText).toBe('{"t":21.5}');
  });

  it('delivers a cloud-to-device message to the MCU, which completes it (positive feedback)', async () => {
    const { mcu } = gatewayKeyed;
    await service.cloudToDevice.send('bridge-keyed', {
      body: 'open valve',
      messageId: 'c2d-1',
      properties: { prio: 'high' },
    });
    const delivered = await until(
      () => mcu.received.find((message) => message.kind === 'cloudToDevice'),
      'the C2D frame',
    );
    expect(delivered).toMatchObject({
      properties: expect.arrayContaining([
        ['$.mid', 'c2d-1'],
        ['prio', 'high'],
      ]),
    });
    await until(
      async () => (await hub.hub.core.cloudToDevice.depths()).messages === 0 || undefined,
      'the queue to drain',
    );
  });

  it('pushes a desired patch to the MCU and carries its reported patch back', async () => {
    const { mcu } = gatewayKeyed;
    await service.twins.patch('bridge-keyed', { properties: { desired: { interval: 30 } } } as never);
    const desired = await until(
      () => mcu.received.find((message) => message.kind === 'twinDesired' && message.json.includes('interval')),
      'TWIN_DESIRED',
    );
    expect(desired).toMatchObject({ kind: 'twinDesired' });
    mcu.send({ kind: 'twinReported', rid: 7, json: '{"interval":30,"fw":"1.2.0"}' });
    const result = await until(
      () => mcu.received.find((message) => message.kind === 'twinResult' && message.rid === 7),
      'TWIN_RESULT',
    );
    expect(result).toMatchObject({ status: 204 });
    const twin = (await service.twins.get('bridge-keyed')) as { properties: { reported: Record<string, unknown> } };
    expect(twin.properties.reported).toMatchObject({ interval: 30, fw: '1.2.0' });
    mcu.send({ kind: 'twinGet', rid: 8 });
    const read = await until(
      () => mcu.received.find((message) => message.kind === 'twin' && message.rid === 8),
      'TWIN',
    );
    expect(read).toMatchObject({ status: 200 });
    expect(JSON.parse((read as { json: string }).json)).toMatchObject({
      desired: { interval: 30 },
      reported: { fw: '1.2.0' },
    });
  });

  it('has the MCU answer direct methods of any name (the gateway knows none in advance)', async () => {
    const response = await service.directMethods.invoke('bridge-keyed', {
      methodName: 'reboot',
      payload: { delay: 5 },
      responseTimeoutInSeconds: 20,
    });
    expect(response).toEqual({ status: 200, payload: { method: 'reboot', got: { delay: 5 } } });
    const other = await service.directMethods.invoke('bridge-keyed', {
      methodName: 'valve.open',
      responseTimeoutInSeconds: 20,
    });
    expect(other).toEqual({ status: 200, payload: { method: 'valve.open', got: null } });
  });

  it('connects an MCU that signs its own tokens: the gateway config holds no key', async () => {
    expect(JSON.stringify(signing.config)).not.toMatch(/SharedAccessKey|sharedAccessKey/);
    expect(signing.signRequests.length).toBeGreaterThan(0);
    expect(signing.signRequests[0]).toMatch(/%2Fdevices%2Fbridge-signed\n\d+$/);
    signing.mcu.sendTelemetry(1, [['$.mid', 'signed-1']], 'hi');
    await until(() => signing.mcu.acknowledged.get(1) === 200, 'TELEMETRY_ACK');
    await until(() => events.find((item) => item.messageId === 'signed-1'), 'the signed telemetry');
  });

  it('confirms a re-sent telemetry message from its memory without sending it to the hub again', async () => {
    const { mcu } = gatewayKeyed;
    mcu.sendTelemetry(50, [['$.mid', 'dup-50']], 'once');
    await until(() => mcu.acknowledged.get(50) === 200, 'the first TELEMETRY_ACK');
    mcu.acknowledged.delete(50);
    mcu.send({ kind: 'telemetry', id: 50, properties: [['$.mid', 'dup-50']], body: new TextEncoder().encode('once') });
    await until(() => mcu.acknowledged.get(50) === 200, 'the second TELEMETRY_ACK');
    // A later message proves the hub's stream has moved past where a duplicate would be.
    mcu.sendTelemetry(51, [['$.mid', 'dup-51']], 'after');
    await until(() => events.find((item) => item.messageId === 'dup-51'), 'the later message');
    expect(events.filter((item) => item.messageId === 'dup-50')).toHaveLength(1);
  });

  it('refuses an auth 0 identity the config does not list: STATUS refused 401, its telemetry answered 401', async () => {
    const stranger = await rig('bridge-stranger', { capabilities: Capability.twin });
    try {
      await until(
        () => stranger.mcu.received.find((message) => message.kind === 'status' && message.state === 3),
        'STATUS refused',
      );
      expect(stranger.mcu.received.find((message) => message.kind === 'status' && message.state === 3)).toMatchObject({
        status: 401,
      });
      stranger.mcu.sendTelemetry(1, [], 'x');
      await until(() => stranger.mcu.acknowledged.get(1), 'TELEMETRY_ACK');
      expect(stranger.mcu.acknowledged.get(1)).toBe(401);
    } finally {
      await stranger.close();
    }
  });

  it('reports STATUS refused 401 to an MCU whose signatures the hub refuses (a wrong key on the MCU)', async () => {
    await hub.createSasDevice('bridge-wrong-key');
    const wrong = await rig('bridge-wrong-key', { key: Buffer.from('not the device key at all').toString('base64') });
    try {
      const refused = await until(
        () => wrong.mcu.received.find((message) => message.kind === 'status' && message.state === 3),
        'STATUS refused',
      );
      expect(refused).toMatchObject({ status: 401 });
      expect(wrong.signRequests.length).toBeGreaterThan(0);
      expect(wrong.gateway.sessions.get(wrong.pair.gatewayPath)?.client).toBeUndefined();
    } finally {
      await wrong.close();
    }
  });

  it('answers a reject over MQTT (complete only) with ERROR Unsupported, then takes the MCU complete; methods for an MCU without METHODS are answered 404', async () => {
    const device = await hub.createSasDevice('bridge-mqtt');
    const mqttRig = await rig('bridge-mqtt', {
      gatewayKey: device.primaryKey,
      transport: 'mqtt',
      capabilities: Capability.cloudToDevice,
      settleOutcomes: [1, 0],
    });
    try {
      await until(() => mqttRig.gateway.sessions.get(mqttRig.pair.gatewayPath)?.client, 'the MQTT client');
      await service.cloudToDevice.send('bridge-mqtt', { body: 'x', messageId: 'mqtt-reject' });
      const error = await until(
        () => mqttRig.mcu.received.find((message) => message.kind === 'error'),
        'ERROR Unsupported',
      );
      expect(error).toMatchObject({ kind: 'error', code: 5 });
      await until(
        async () => ((await hub.hub.core.cloudToDevice.depths()).messages === 0 ? true : undefined),
        'completion',
      );
      // No METHODS capability: the gateway answers for the MCU, which sees no request (PROTOCOL.md §5.6).
      const method = await service.directMethods.invoke('bridge-mqtt', {
        methodName: 'reboot',
        responseTimeoutInSeconds: 20,
      });
      expect(method.status).toBe(404);
      expect(mqttRig.mcu.received.some((message) => message.kind === 'methodRequest')).toBe(false);
    } finally {
      await mqttRig.close();
    }
  });

  it('tells the MCU to read the twin after a desired patch it missed while unplugged', async () => {
    const { mcu, pair, linkStates } = gatewayKeyed;
    await pair.stop();
    await until(() => linkStates.at(-1) === 'down' || undefined, 'the gateway to see the link down');
    const patched = await service.twins.patch('bridge-keyed', { properties: { desired: { missed: true } } });
    const version = Number(patched.properties?.desired?.$version);
    const before = mcu.received.length;
    await pair.start();
    const notice = await until(
      () =>
        mcu.received
          .slice(before)
          .find((message) => message.kind === 'twinDesired' && message.version === version && message.json === '{}'),
      'TWIN_DESIRED {} after the replug',
    );
    expect(notice).toBeDefined();
  });

  it('loses no acknowledged telemetry across unplugging and replugging the cable', async () => {
    const { mcu, pair, gateway, linkStates } = gatewayKeyed;
    const session = gateway.sessions.get(pair.gatewayPath);
    const clientBefore = session?.client;
    const linkUps = linkStates.filter((state) => state === 'up').length;
    for (let id = 100; id < 105; id++) mcu.sendTelemetry(id, [['$.mid', `pull-${id}`]], `n${id}`);
    await pair.stop();
    for (let id = 105; id < 110; id++) mcu.sendTelemetry(id, [['$.mid', `pull-${id}`]], `n${id}`);
    await until(() => linkStates.at(-1) === 'down' || undefined, 'the gateway to see the link down');
    await pair.start();
    await until(
      () => [...Array(10).keys()].every((index) => mcu.acknowledged.get(100 + index) === 200),
      'every ACK',
      45_000,
    );
    for (let id = 100; id < 110; id++) {
      await until(() => events.find((item) => item.messageId === `pull-${id}`), `pull-${id} at the hub`);
    }
    expect(linkStates.filter((state) => state === 'up').length).toBeGreaterThan(linkUps);
    // The same MCU (same bootId) kept its device client across the pull.
    expect(session?.client).toBe(clientBefore);
  });
});

describe('one gateway, several ports', () => {
  it('serves an MCU on each port, and replaces the device client of an MCU that rebooted', async () => {
    const first = await hub.createSasDevice('bridge-port-1');
    const second = await hub.createSasDevice('bridge-port-2');
    const pairs = [1, 2].map((index) => new PtyPair(join(dir, `multi-${index}-gw`), join(dir, `multi-${index}-mcu`)));
    await Promise.all(pairs.map((pair) => pair.start()));
    const [pair1, pair2] = pairs as [PtyPair, PtyPair];
    const gateway = createGateway({
      hub: { hostName: hub.hostName, port: hub.info.ports.amqp ?? 0, ca: hub.ca, transport: 'amqp' },
      ports: [
        {
          path: pair1.gatewayPath,
          baudRate: 115200,
          devices: [{ deviceId: 'bridge-port-1', sharedAccessKey: first.primaryKey }],
        },
        { path: pair2.gatewayPath, baudRate: 115200, devices: [] },
      ],
      log: { level: 'silent' },
    });
    const mcus: TsMcu[] = [];
    const mcu = (path: string, deviceId: string, bootId: number, key?: string): TsMcu => {
      const started = new TsMcu({
        path,
        deviceId,
        bootId,
        capabilities: key === undefined ? Capability.twin : Capability.sign | Capability.twin,
        ...(key !== undefined ? { key } : {}),
      });
      started.start();
      mcus.push(started);
      return started;
    };
    try {
      await gateway.start();
      const one = mcu(pair1.mcuPath, 'bridge-port-1', 1);
      const two = mcu(pair2.mcuPath, 'bridge-port-2', 2, second.primaryKey);
      const session1 = gateway.sessions.get(pair1.gatewayPath);
      const session2 = gateway.sessions.get(pair2.gatewayPath);
      const client1 = await until(() => session1?.client, 'the client of port 1');
      await until(() => session2?.client, 'the client of port 2');
      one.sendTelemetry(1, [['$.mid', 'multi-1']], 'a');
      two.sendTelemetry(1, [['$.mid', 'multi-2']], 'b');
      const [event1, event2] = await Promise.all([
        until(() => events.find((item) => item.messageId === 'multi-1'), 'port 1 telemetry'),
        until(() => events.find((item) => item.messageId === 'multi-2'), 'port 2 telemetry'),
      ]);
      expect([event1.deviceId, event2.deviceId]).toEqual(['bridge-port-1', 'bridge-port-2']);

      // The MCU on port 1 reboots: a new bootId in its HELLO.
      await one.stop();
      const rebooted = mcu(pair1.mcuPath, 'bridge-port-1', 99);
      const client1After = await until(
        () => (session1?.client !== undefined && session1.client !== client1 ? session1.client : undefined),
        'a new client for the rebooted MCU',
      );
      expect(client1After).not.toBe(client1);
      rebooted.sendTelemetry(1, [['$.mid', 'multi-1-after-reboot']], 'c');
      // Same id 1 as before the reboot, but a new bootId: not a duplicate, so it reaches the hub.
      await until(() => events.find((item) => item.messageId === 'multi-1-after-reboot'), 'telemetry after the reboot');
    } finally {
      await Promise.all(mcus.map((started) => started.stop()));
      await gateway.close();
      await Promise.all(pairs.map((pair) => pair.stop()));
    }
  });
});
