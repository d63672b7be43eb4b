import type { TransportEvents } from '@fieldhub/device-core/transport';
import { HubError, type HubError as HubErrorType, parseMqttUsername } from '@fieldhub/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import captures from './__fixtures__/captures.json';
import { type BrokerConnection, brokerCa, type FakeBroker, frames, startFakeBroker } from './__tests__/fake-broker';
import { mqtt } from './mqtt';
import type { MqttTransport } from './mqtt-transport';

const sasToken = 'SharedAccessSignature sr=localhost%2Fdevices%2Fdemo-dev1&sig=abc%3D&se=1795778670';

interface Recorded {
  events: TransportEvents;
  cloudToDevice: Parameters<TransportEvents['cloudToDeviceMessage']>[0][];
  desired: { patch: Readonly<Record<string, unknown>>; version: number }[];
  methods: Parameters<TransportEvents['methodRequest']>[0][];
  disconnected: (HubErrorType | undefined)[];
}

function recorder(): Recorded {
  const recorded: Omit<Recorded, 'events'> = { cloudToDevice: [], desired: [], methods: [], disconnected: [] };
  return {
    ...recorded,
    events: {
      cloudToDeviceMessage: (message) => recorded.cloudToDevice.push(message),
      desiredPropertiesPatch: (patch, version) => recorded.desired.push({ patch, version }),
      methodRequest: (request) => recorded.methods.push(request),
      disconnected: (error) => recorded.disconnected.push(error),
    },
  };
}

async function until(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function caught(promise: Promise<unknown>): Promise<HubErrorType> {
  try {
    await promise;
  } catch (error) {
    if (HubError.is(error)) return error;
    throw error;
  }
  throw new Error('resolved');
}

let broker: FakeBroker | undefined;
const transports: MqttTransport[] = [];

afterEach(async () => {
  await Promise.all(transports.splice(0).map((transport) => transport.disconnect()));
  await broker?.close();
  broker = undefined;
});

async function connect(
  options: Parameters<typeof mqtt>[0] = {},
  brokerOptions: Parameters<typeof startFakeBroker>[0] = {},
): Promise<{ transport: MqttTransport; recorded: Recorded; connection: BrokerConnection }> {
  broker = await startFakeBroker(brokerOptions);
  const transport = mqtt({ port: broker.port, ...options }).create() as MqttTransport;
  transports.push(transport);
  const recorded = recorder();
  const connection = broker.nextConnection();
  await transport.connect(
    { credentials: { hostName: 'localhost', deviceId: 'demo-dev1', sasToken }, ca: brokerCa },
    recorded.events,
  );
  return { transport, recorded, connection: await connection };
}

describe('MqttTransport CONNECT', () => {
  it('sends client id, username and password as the official SDK, with a persistent session', async () => {
    const { connection } = await connect();
    const packet = await connection.next('connect');
    expect(packet).toMatchObject({
      protocolName: 'MQTT',
      level: 4,
      clean: false,
      keepalive: 180,
      clientId: 'demo-dev1',
      password: sasToken,
    });
    // Same shape as captures/mqtt-mqtt.txt: host/device/?api-version=...&DeviceClientType=<encoded UA>.
    expect(packet.username).toMatch(
      /^localhost\/demo-dev1\/\?api-version=2021-04-12&DeviceClientType=%40fieldhub%2Ftransport-mqtt%2F/,
    );
    const ours = parseMqttUsername(packet.username ?? '');
    const theirs = parseMqttUsername(captures.username);
    expect(Object.keys(ours.parameters)).toEqual(Object.keys(theirs.parameters));
    expect(ours.deviceClientType).toMatch(/^@fieldhub\/transport-mqtt\/\d+\.\d+\.\d+ \(node v\d+/);
  });

  it('uses a clean session and the keep-alive when asked', async () => {
    const { connection } = await connect({ clean: true, keepAliveSeconds: 30 });
    expect(await connection.next('connect')).toMatchObject({ clean: true, keepalive: 30 });
  });

  it('names a module as device/module in the client id and username', async () => {
    broker = await startFakeBroker();
    const transport = mqtt({ port: broker.port }).create();
    transports.push(transport as MqttTransport);
    const connection = broker.nextConnection();
    await transport.connect(
      { credentials: { hostName: 'localhost', deviceId: 'd1', moduleId: 'm1', sasToken }, ca: brokerCa },
      recorder().events,
    );
    const packet = await (await connection).next('connect');
    expect(packet.clientId).toBe('d1/m1');
    expect(packet.username).toMatch(/^localhost\/d1\/m1\/\?api-version=/);
    await expect(transport.enableCloudToDevice()).rejects.toMatchObject({ name: 'UnsupportedFeatureError' });
  });

  it.each([
    [5, 'AuthenticationError'],
    [4, 'AuthenticationError'],
    [3, 'ConnectionError'],
  ])('rejects CONNACK %i with %s and reports no disconnected event', async (code, name) => {
    broker = await startFakeBroker({ onConnect: (connection) => connection.send(frames.connack(code)) });
    const transport = mqtt({ port: broker.port }).create();
    const recorded = recorder();
    const error = await caught(
      transport.connect(
        { credentials: { hostName: 'localhost', deviceId: 'd1', sasToken }, ca: brokerCa },
        recorded.events,
      ),
    );
    expect(error.name).toBe(name);
    expect(transport.connected).toBe(false);
    expect(recorded.disconnected).toEqual([]);
  });

  it('rejects with ConnectionError when the server certificate is not trusted', async () => {
    broker = await startFakeBroker();
    const transport = mqtt({ port: broker.port }).create();
    const error = await caught(
      transport.connect({ credentials: { hostName: 'localhost', deviceId: 'd1', sasToken } }, recorder().events),
    );
    expect(error.name).toBe('ConnectionError');
  });

  it('rejects with ConnectionError when no CONNACK comes in time', async () => {
    broker = await startFakeBroker({ onConnect: () => undefined });
    const transport = mqtt({ port: broker.port }).create();
    const started = Date.now();
    const error = await caught(
      transport.connect(
        { credentials: { hostName: 'localhost', deviceId: 'd1', sasToken }, ca: brokerCa, timeoutMs: 300 },
        recorder().events,
      ),
    );
    expect(error.name).toBe('ConnectionError');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(transport.connected).toBe(false);
  });

  it('rejects with AbortError when the signal aborts while connecting', async () => {
    broker = await startFakeBroker({ onConnect: () => undefined });
    const transport = mqtt({ port: broker.port }).create();
    const controller = new AbortController();
    const connecting = transport.connect(
      { credentials: { hostName: 'localhost', deviceId: 'd1', sasToken }, ca: brokerCa, signal: controller.signal },
      recorder().events,
    );
    setTimeout(() => controller.abort(), 100);
    expect((await caught(connecting)).name).toBe('AbortError');
    // The transport can be used again.
    broker.close();
    broker = await startFakeBroker();
  });
});

describe('MqttTransport cloud-to-device', () => {
  it('withholds the PUBACK until the message is completed, without stalling later packets', async () => {
    const { transport, recorded, connection } = await connect();
    await transport.enableCloudToDevice();
    const subscribe = await connection.next('subscribe');
    expect(subscribe.subscriptions).toEqual([{ topic: 'devices/demo-dev1/messages/devicebound/#', qos: 1 }]);

    connection.send(
      frames.publish(captures.cloudToDeviceTopic.replace(/demo-dev1/g, 'demo-dev1'), 'hello device', 1, 7),
    );
    await until(() => recorded.cloudToDevice.length === 1);
    const [message] = recorded.cloudToDevice;
    expect(message).toMatchObject({
      messageId: 'c2d-1',
      correlationId: 'corr-9',
      contentType: 'text/plain',
      contentEncoding: 'utf-8',
      properties: { 'iothub-ack': 'full', color: 'blue' },
    });
    expect(new TextDecoder().decode(message?.body)).toBe('hello device');

    // A second message and a twin response arrive while the first is not completed.
    connection.send(frames.publish('devices/demo-dev1/messages/devicebound/%24.mid=c2d-2', 'second', 1, 8));
    await until(() => recorded.cloudToDevice.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(connection.packets.filter((packet) => packet.cmd === 'puback')).toEqual([]);

    await transport.settleCloudToDevice(recorded.cloudToDevice[1]?.lockToken ?? '', 'complete');
    expect(await connection.next('puback')).toEqual({ cmd: 'puback', messageId: 8 });
    await transport.settleCloudToDevice(message?.lockToken ?? '', 'complete');
    expect(await connection.next('puback')).toEqual({ cmd: 'puback', messageId: 7 });

    const again = await caught(transport.settleCloudToDevice(message?.lockToken ?? '', 'complete'));
    expect(again.code).toBe('DeviceMessageLockLost');
  });

  it('refuses reject and abandon with UnsupportedFeatureError', async () => {
    const { transport } = await connect();
    expect((await caught(transport.settleCloudToDevice('x', 'reject'))).name).toBe('UnsupportedFeatureError');
    expect((await caught(transport.settleCloudToDevice('x', 'abandon'))).name).toBe('UnsupportedFeatureError');
  });

  it('acknowledges a message for another device at once and does not deliver it', async () => {
    const { transport, recorded, connection } = await connect();
    await transport.enableCloudToDevice();
    connection.send(frames.publish('devices/other/messages/devicebound/', 'not mine', 1, 9));
    expect(await connection.next('puback')).toEqual({ cmd: 'puback', messageId: 9 });
    expect(recorded.cloudToDevice).toEqual([]);
  });

  it('refuses a subscription the hub refuses (SUBACK 0x80) with UnsupportedFeatureError', async () => {
    const { transport } = await connect({}, { grant: () => 0x80 });
    const refusedError = await caught(transport.enableCloudToDevice());
    expect(refusedError.name, refusedError.message).toBe('UnsupportedFeatureError');
  });
});

describe('MqttTransport twin', () => {
  it('subscribes at QoS 0, sends GET with a one-space body and reads the response by $rid', async () => {
    const { transport, connection } = await connect();
    await transport.enableTwin();
    const first = await connection.next('subscribe');
    const second = await connection.next('subscribe');
    expect([...first.subscriptions, ...second.subscriptions]).toEqual([
      { topic: '$iothub/twin/res/#', qos: 0 },
      { topic: '$iothub/twin/PATCH/properties/desired/#', qos: 0 },
    ]);
    const twin = transport.getTwin();
    const get = await connection.next('publish');
    expect(get.qos).toBe(0);
    expect(get.payload.toString()).toBe(' ');
    const rid = /^\$iothub\/twin\/GET\/\?\$rid=(.+)$/.exec(get.topic)?.[1];
    expect(rid).toBeDefined();
    connection.send(frames.publish(`$iothub/twin/res/200/?$rid=someone-else`, '{}'));
    connection.send(frames.publish(`$iothub/twin/res/200/?$rid=${rid}`, captures.twinResponsePayload));
    expect(await twin).toEqual({ desired: { fromHub: 'hello', $version: 1 }, reported: { $version: 1 } });
  });

  it('returns the reported $version of the 204, and maps an error status to HubError', async () => {
    const { transport, connection } = await connect();
    await transport.enableTwin();
    const patch = transport.updateReportedProperties({ firmware: '1.0.0', nested: { a: 1 } });
    const request = await connection.next('publish');
    expect(request.payload.toString()).toBe('{"firmware":"1.0.0","nested":{"a":1}}');
    const rid = /\?\$rid=(.+)$/.exec(request.topic)?.[1];
    connection.send(frames.publish(`$iothub/twin/res/204/?$rid=${rid}&$version=2`, ''));
    expect(await patch).toBe(2);

    const refused = transport.updateReportedProperties({ bad: true });
    const second = await connection.next('publish');
    const rid2 = /\?\$rid=(.+)$/.exec(second.topic)?.[1];
    connection.send(frames.publish(`$iothub/twin/res/400/?$rid=${rid2}`, '{"errorCode":400004,"message":"nope"}'));
    expect(await caught(refused)).toMatchObject({ name: 'ArgumentError', code: 'ArgumentInvalid', message: 'nope' });
  });

  it('times out a request the hub never answers with TimeoutError', async () => {
    const { transport } = await connect({ operationTimeoutSeconds: 1 });
    expect((await caught(transport.getTwin())).name).toBe('TimeoutError');
  });

  it('reports desired patches without $version, with the version of the topic', async () => {
    const { transport, recorded, connection } = await connect();
    await transport.enableTwin();
    connection.send(frames.publish(captures.desiredTopic, captures.desiredPayload));
    await until(() => recorded.desired.length === 1);
    expect(recorded.desired).toEqual([{ patch: { setpoint: 5 }, version: 2 }]);
  });
});

describe('MqttTransport direct methods', () => {
  it('reports the request and answers on the response topic at QoS 0', async () => {
    const { transport, recorded, connection } = await connect();
    await transport.enableDirectMethods();
    expect((await connection.next('subscribe')).subscriptions).toEqual([{ topic: '$iothub/methods/POST/#', qos: 0 }]);
    connection.send(frames.publish(captures.methodTopic, captures.methodPayload));
    await until(() => recorded.methods.length === 1);
    expect(recorded.methods[0]).toEqual({ requestId: '42', methodName: 'reboot', payload: { delay: 1 } });
    await transport.sendMethodResponse('42', 200, { ok: true });
    const response = await connection.next('publish');
    expect(response).toMatchObject({ topic: captures.methodResponseTopic, qos: 0 });
    expect(response.payload.toString()).toBe('{"ok":true}');
  });
});

describe('MqttTransport telemetry and connection loss', () => {
  it('resolves telemetry on PUBACK, with the topic of the official SDK', async () => {
    const { transport, connection } = await connect();
    const sent = transport.sendTelemetry({
      body: new TextEncoder().encode('{"temperature":21.5}'),
      messageId: 'mid-1',
      correlationId: 'cid-1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      properties: { alert: 'high temp', n: '1' },
    });
    const publish = await connection.next('publish');
    expect(publish).toMatchObject({ qos: 1, topic: captures.telemetryTopic });
    let settled = false;
    void sent.then(() => {
      settled = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(settled).toBe(false);
    connection.send(frames.puback(publish.messageId ?? 0));
    await sent;
  });

  it('reports disconnected exactly once when the socket drops, and rejects what is in flight', async () => {
    const { transport, recorded, connection } = await connect();
    const inFlight = caught(transport.sendTelemetry({ body: new Uint8Array([1]) }));
    await connection.next('publish');
    connection.socket.destroy();
    expect((await inFlight).name).toBe('ConnectionError');
    await until(() => recorded.disconnected.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(recorded.disconnected).toHaveLength(1);
    expect(recorded.disconnected[0]).toMatchObject({ name: 'ConnectionError', isRetryable: true });
    expect(transport.connected).toBe(false);
    expect((await caught(transport.sendTelemetry({ body: new Uint8Array() }))).name).toBe('ConnectionError');
  });

  it('sends DISCONNECT on disconnect(), rejects what is in flight, and reports nothing', async () => {
    const { transport, recorded, connection } = await connect();
    const inFlight = caught(transport.sendTelemetry({ body: new Uint8Array([1]) }));
    await connection.next('publish');
    await transport.disconnect();
    expect((await inFlight).name).toBe('ConnectionError');
    expect(await connection.next('disconnect')).toEqual({ cmd: 'disconnect' });
    expect(recorded.disconnected).toEqual([]);
  });

  it('aborts an operation in flight with AbortError', async () => {
    const { transport, connection } = await connect();
    const controller = new AbortController();
    const sent = caught(transport.sendTelemetry({ body: new Uint8Array([1]) }, { signal: controller.signal }));
    await connection.next('publish');
    controller.abort();
    expect((await sent).name).toBe('AbortError');
    expect(transport.connected).toBe(true);
  });

  it('refuses a second connect while connected', async () => {
    const { transport } = await connect();
    const error = await caught(
      transport.connect(
        { credentials: { hostName: 'localhost', deviceId: 'd1', sasToken }, ca: brokerCa },
        recorder().events,
      ),
    );
    expect(error.code).toBe('InvalidOperation');
    expect(transport.connected).toBe(true);
  });
});
