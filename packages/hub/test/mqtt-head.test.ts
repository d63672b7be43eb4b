import { connect as tlsConnect } from 'node:tls';
import {
  certificateThumbprint,
  createRootCa,
  createSasToken,
  createSelfSignedCertificate,
  issueDeviceCertificate,
} from '@fieldhub/auth';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EndpointEvent } from '../src/core/telemetry';
import { createMqttHead, type MqttHead } from '../src/heads/mqtt/mqtt-head';
import { createMetrics } from '../src/metrics';
import { ensureTlsMaterial } from '../src/tls/dev-certificates';
import { startTestHub, type TestHub } from './helpers/test-hub';

describe('MQTT device head', () => {
  let testHub: TestHub;
  const keys = new Map<string, string>();
  const clients: MqttClient[] = [];

  const createDevice = async (deviceId: string, body: Record<string, unknown> = {}): Promise<string> => {
    const response = await testHub.request('PUT', `/devices/${deviceId}`, { body: { deviceId, ...body } });
    expect(response.status).toBe(200);
    const key = (response.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication
      .symmetricKey.primaryKey;
    keys.set(deviceId, key);
    return key;
  };

  const tokenFor = (deviceId: string, options: { ttlSeconds?: number; expiresAt?: number; key?: string } = {}) =>
    createSasToken({
      resourceUri: `localhost/devices/${deviceId}`,
      key: options.key ?? (keys.get(deviceId) as string),
      ...(options.expiresAt === undefined
        ? { ttlSeconds: options.ttlSeconds ?? 3600 }
        : { expiresAt: options.expiresAt }),
    });

  const options = (deviceId: string, password: string | undefined, extra: IClientOptions = {}): IClientOptions => ({
    clientId: deviceId,
    username: `localhost/${deviceId}/?api-version=2021-04-12`,
    ...(password === undefined ? {} : { password }),
    ca: testHub.ca,
    servername: 'localhost',
    protocolVersion: 4,
    reconnectPeriod: 0,
    clean: false,
    keepalive: 60,
    ...extra,
  });

  const connectDevice = async (deviceId: string, extra: IClientOptions = {}, url?: string): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(
      url ?? `mqtts://127.0.0.1:${testHub.info.ports.mqtt}`,
      options(deviceId, await tokenFor(deviceId), extra),
    );
    clients.push(client);
    return client;
  };

  /** Connects and resolves with the CONNACK return code of a refusal. */
  const refusalCode = async (clientOptions: IClientOptions, port = testHub.info.ports.mqtt): Promise<number> => {
    try {
      const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, clientOptions);
      clients.push(client);
      return 0;
    } catch (error) {
      return (error as { code: number }).code;
    }
  };

  const closed = (client: MqttClient) =>
    new Promise<void>((resolve) => (client.connected ? client.once('close', () => resolve()) : resolve()));

  const endpointEvents = async (predicate: (event: EndpointEvent) => boolean): Promise<EndpointEvent[]> => {
    const reader = await testHub.hub.core.telemetry.read({ from: 'earliest', live: false });
    const found: EndpointEvent[] = [];
    for await (const event of reader) if (predicate(event)) found.push(event);
    return found;
  };

  const nextMessage = (client: MqttClient, prefix: string) =>
    new Promise<{ topic: string; payload: Buffer }>((resolve) => {
      const onMessage = (topic: string, payload: Buffer) => {
        if (!topic.startsWith(prefix)) return;
        client.off('message', onMessage);
        resolve({ topic, payload });
      };
      client.on('message', onMessage);
    });

  beforeAll(async () => {
    testHub = await startTestHub();
  });
  afterAll(async () => {
    for (const client of clients) client.end(true);
    await testHub?.stop();
  });

  it('serves MQTT on the port hub.json names', () => {
    expect(testHub.info.ports.mqtt).toEqual(expect.any(Number));
    expect(testHub.info.ports.mqtt).toBeGreaterThan(0);
  });

  it('connects with a device SAS token and appends telemetry with its properties before the PUBACK', async () => {
    await createDevice('tele1');
    const client = await connectDevice('tele1');
    await client.publishAsync(
      'devices/tele1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&n=1',
      '{"temperature":21.5}',
      { qos: 1 },
    );
    // PUBACK came back: the message is durable already.
    const [event] = await endpointEvents((e) => e.deviceId === 'tele1' && e.source === 'Telemetry');
    expect(event).toBeDefined();
    expect(Buffer.from(event?.body ?? []).toString()).toBe('{"temperature":21.5}');
    expect(event?.messageId).toBe('mid-1');
    expect(event?.correlationId).toBe('cid-1');
    expect(event?.contentType).toBe('application/json');
    expect(event?.contentEncoding).toBe('utf-8');
    expect(event?.properties).toEqual({ alert: 'high temp', n: '1' });
    expect(event?.systemProperties['iothub-connection-device-id']).toBe('tele1');
    expect(String(event?.systemProperties['iothub-connection-auth-method'])).toContain('"type":"sas"');

    const device = await testHub.request('GET', '/devices/tele1');
    expect((device.json as { connectionState: string }).connectionState).toBe('Connected');
    const connectedEvents = await endpointEvents(
      (e) => e.deviceId === 'tele1' && e.properties.opType === 'deviceConnected',
    );
    expect(connectedEvents).toHaveLength(1);

    await client.endAsync();
    await expect
      .poll(
        async () =>
          ((await testHub.request('GET', '/devices/tele1')).json as { connectionState: string }).connectionState,
      )
      .toBe('Disconnected');
    expect(
      await endpointEvents((e) => e.deviceId === 'tele1' && e.properties.opType === 'deviceDisconnected'),
    ).toHaveLength(1);
  });

  it('acknowledges many QoS 1 messages, every one durable, and accepts QoS 0', async () => {
    await createDevice('tele2');
    const client = await connectDevice('tele2');
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.publishAsync('devices/tele2/messages/events/', `m${i}`, { qos: 1 })),
    );
    await client.publishAsync('devices/tele2/messages/events/kind=qos0', 'zero', { qos: 0 });
    await expect
      .poll(async () => (await endpointEvents((e) => e.deviceId === 'tele2' && e.source === 'Telemetry')).length)
      .toBe(201);
    const bodies = (await endpointEvents((e) => e.deviceId === 'tele2' && e.source === 'Telemetry')).map((e) =>
      Buffer.from(e.body).toString(),
    );
    expect(bodies.slice(0, 200)).toEqual(Array.from({ length: 200 }, (_, i) => `m${i}`));
    await client.endAsync();
  });

  it('refuses bad credentials with CONNACK 5 and malformed ones with 4 or 2', async () => {
    await createDevice('auth1');
    const otherKey = Buffer.alloc(32, 7).toString('base64');
    expect(await refusalCode(options('auth1', await tokenFor('auth1', { key: otherKey })))).toBe(5);
    expect(
      await refusalCode(options('auth1', await tokenFor('auth1', { expiresAt: Math.floor(Date.now() / 1000) - 3600 }))),
    ).toBe(5);
    expect(await refusalCode(options('nosuchdevice', await tokenFor('auth1')))).toBe(5);
    // A token of another device, valid in itself, does not open this one.
    await createDevice('auth2');
    expect(await refusalCode(options('auth1', await tokenFor('auth2')))).toBe(5);
    expect(await refusalCode(options('auth1', 'not a token'))).toBe(4);
    expect(await refusalCode({ ...options('auth1', await tokenFor('auth1')), username: 'garbage' })).toBe(4);
    expect(await refusalCode({ ...options('auth1', await tokenFor('auth1')), clientId: 'a/b/c' })).toBe(2);
    expect(await refusalCode(options('auth1', undefined))).toBe(5);
  });

  it('refuses a disabled device with CONNACK 5', async () => {
    await createDevice('disabled1', { status: 'disabled' });
    expect(await refusalCode(options('disabled1', await tokenFor('disabled1')))).toBe(5);
  });

  it('accepts the secondary key, a policy token with DeviceConnect, and a host name with a port', async () => {
    const response = await testHub.request('PUT', '/devices/keys1', { body: { deviceId: 'keys1' } });
    const { secondaryKey } = (response.json as { authentication: { symmetricKey: { secondaryKey: string } } })
      .authentication.symmetricKey;
    const secondary = await createSasToken({ resourceUri: 'localhost:8883/devices/keys1', key: secondaryKey });
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${testHub.info.ports.mqtt}`, {
      ...options('keys1', secondary),
      username: 'localhost:8883/keys1/?api-version=2021-04-12&DeviceClientType=x',
    });
    await client.endAsync();
    const policyKey = (await testHub.hub.core.policies.get('device'))?.primaryKey as string;
    const policyToken = await createSasToken({ resourceUri: 'localhost/devices', key: policyKey, keyName: 'device' });
    const viaPolicy = await mqtt.connectAsync(
      `mqtts://127.0.0.1:${testHub.info.ports.mqtt}`,
      options('keys1', policyToken),
    );
    await viaPolicy.endAsync();
  });

  it('answers twin GET and reported PATCH, and pushes desired patches after a service update', async () => {
    await createDevice('twin1');
    const client = await connectDevice('twin1');
    await client.subscribeAsync('$iothub/twin/res/#', { qos: 0 });
    const got = nextMessage(client, '$iothub/twin/res/');
    await client.publishAsync('$iothub/twin/GET/?$rid=ab7ca61c-2ed5', ' ');
    const getResponse = await got;
    expect(getResponse.topic).toBe('$iothub/twin/res/200/?$rid=ab7ca61c-2ed5');
    const twin = JSON.parse(getResponse.payload.toString()) as { desired: { $version: number }; reported: object };
    expect(twin.desired.$version).toBe(1);
    expect(twin.reported).toMatchObject({ $version: 1 });

    const patched = nextMessage(client, '$iothub/twin/res/');
    await client.publishAsync(
      '$iothub/twin/PATCH/properties/reported/?$rid=42',
      '{"firmware":"1.0.0","nested":{"a":1}}',
    );
    const patchResponse = await patched;
    expect(patchResponse.topic).toBe('$iothub/twin/res/204/?$rid=42&$version=2');
    expect(patchResponse.payload.length).toBe(0);

    const bad = nextMessage(client, '$iothub/twin/res/');
    await client.publishAsync('$iothub/twin/PATCH/properties/reported/?$rid=43', '{not json');
    const badResponse = await bad;
    expect(badResponse.topic).toBe('$iothub/twin/res/400/?$rid=43');
    expect(JSON.parse(badResponse.payload.toString())).toMatchObject({ errorCode: 400006 });

    await client.subscribeAsync('$iothub/twin/PATCH/properties/desired/#', { qos: 0 });
    const desired = nextMessage(client, '$iothub/twin/PATCH/properties/desired/');
    const update = await testHub.request('PATCH', '/twins/twin1', {
      body: { properties: { desired: { setpoint: 5 } } },
    });
    expect(update.status).toBe(200);
    const push = await desired;
    expect(push.topic).toBe('$iothub/twin/PATCH/properties/desired/?$version=2');
    expect(JSON.parse(push.payload.toString())).toEqual({ setpoint: 5, $version: 2 });
    await client.endAsync();
  });

  it('round-trips a direct method invoked through the service API', async () => {
    await createDevice('method1');
    const client = await connectDevice('method1');
    await client.subscribeAsync('$iothub/methods/POST/#', { qos: 0 });
    client.on('message', (topic, payload) => {
      const match = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic);
      if (!match) return;
      const request = JSON.parse(payload.toString()) as { delay: number };
      void client.publishAsync(
        `$iothub/methods/res/201/?$rid=${match[2]}`,
        JSON.stringify({ ok: true, method: match[1], delay: request.delay }),
      );
    });
    const response = await testHub.request('POST', '/twins/method1/methods', {
      body: { methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 10 },
    });
    expect(response.status).toBe(200);
    expect(response.json).toEqual({ status: 201, payload: { ok: true, method: 'reboot', delay: 1 } });

    await client.unsubscribeAsync('$iothub/methods/POST/#');
    const offline = await testHub.request('POST', '/twins/method1/methods', { body: { methodName: 'reboot' } });
    expect(offline.status).toBe(404);
    await client.endAsync();
  });

  it('delivers a cloud-to-device message, completes it on PUBACK and produces feedback', async () => {
    await createDevice('c2d1');
    const sent = await testHub.request('POST', '/fieldhub/devices/c2d1/messages/devicebound', {
      body: 'hello device',
      headers: {
        'content-type': 'text/plain',
        'iothub-messageid': 'c2d-1',
        'iothub-correlationid': 'corr-9',
        'iothub-ack': 'full',
        'iothub-contentencoding': 'utf-8',
        'iothub-app-color': 'blue',
      },
    });
    expect(sent.status).toBe(202);
    const client = await connectDevice('c2d1');
    const message = nextMessage(client, 'devices/c2d1/messages/devicebound/');
    await client.subscribeAsync('devices/c2d1/messages/devicebound/#', { qos: 1 });
    const { topic, payload } = await message;
    expect(payload.toString()).toBe('hello device');
    expect(topic).toContain('%24.mid=c2d-1');
    expect(topic).toContain('%24.cid=corr-9');
    expect(topic).toContain('%24.to=%2Fdevices%2Fc2d1%2Fmessages%2Fdevicebound');
    expect(topic).toContain('%24.ct=text%2Fplain');
    expect(topic).toContain('iothub-ack=full');
    expect(topic).toContain('color=blue');
    // MQTT.js sends the PUBACK after the message handler: the message is completed, feedback follows.
    await expect.poll(() => testHub.hub.core.cloudToDevice.count('c2d1')).toBe(0);
    const feedback = await testHub.request('GET', '/messages/serviceBound/feedback');
    expect(feedback.status).toBe(200);
    expect(feedback.json).toEqual([
      expect.objectContaining({ originalMessageId: 'c2d-1', deviceId: 'c2d1', statusCode: 'Success' }),
    ]);
    await client.endAsync();
  });

  it('redelivers an unacknowledged cloud-to-device message on reconnect and delivers new ones live', async () => {
    await createDevice('c2d2');
    const raw = await rawConnect('c2d2');
    raw.write(subscribePacket('devices/c2d2/messages/devicebound/#'));
    await testHub.request('POST', '/fieldhub/devices/c2d2/messages/devicebound', {
      body: 'first',
      headers: { 'iothub-messageid': 'm1' },
    });
    // The raw client never acknowledges; it just leaves.
    await expect.poll(() => raw.received().includes('first')).toBe(true);
    raw.destroy();

    const client = await connectDevice('c2d2');
    const redelivered = nextMessage(client, 'devices/c2d2/messages/devicebound/');
    await client.subscribeAsync('devices/c2d2/messages/devicebound/#', { qos: 1 });
    expect((await redelivered).payload.toString()).toBe('first');
    await expect.poll(() => testHub.hub.core.cloudToDevice.count('c2d2')).toBe(0);

    const live = nextMessage(client, 'devices/c2d2/messages/devicebound/');
    await testHub.request('POST', '/fieldhub/devices/c2d2/messages/devicebound', { body: 'second' });
    expect((await live).payload.toString()).toBe('second');
    await client.endAsync();
  });

  it('evicts the older connection of the same device and keeps it Connected', async () => {
    await createDevice('evict1');
    const first = await connectDevice('evict1');
    const firstClosed = closed(first);
    const second = await connectDevice('evict1');
    await firstClosed;
    expect(second.connected).toBe(true);
    await second.publishAsync('devices/evict1/messages/events/', 'after eviction', { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const device = await testHub.request('GET', '/devices/evict1');
    expect((device.json as { connectionState: string }).connectionState).toBe('Connected');
    expect(
      await endpointEvents((e) => e.deviceId === 'evict1' && e.properties.opType === 'deviceDisconnected'),
    ).toHaveLength(0);
    await second.endAsync();
  });

  it("closes a connection that publishes on another device's topic, and only that one", async () => {
    await createDevice('rogue1');
    await createDevice('victim1');
    const rogue = await connectDevice('rogue1');
    const victim = await connectDevice('victim1');
    const rogueClosed = closed(rogue);
    rogue.publish('devices/victim1/messages/events/', 'spoofed', { qos: 1 });
    await rogueClosed;
    await victim.publishAsync('devices/victim1/messages/events/', 'genuine', { qos: 1 });
    const bodies = (await endpointEvents((e) => e.deviceId === 'victim1' && e.source === 'Telemetry')).map((e) =>
      Buffer.from(e.body).toString(),
    );
    expect(bodies).toEqual(['genuine']);
    await victim.endAsync();
  });

  it("closes a connection that subscribes to another device's cloud-to-device topic", async () => {
    await createDevice('rogue2');
    const rogue = await connectDevice('rogue2');
    const rogueClosed = closed(rogue);
    rogue.subscribe('devices/victim1/messages/devicebound/#', { qos: 1 });
    await rogueClosed;
  });

  it('serves MQTT over WebSockets at /$iothub/websocket on the HTTPS port', async () => {
    await createDevice('ws1');
    const client = await connectDevice(
      'ws1',
      { wsOptions: { ca: testHub.ca, servername: 'localhost' } },
      `wss://127.0.0.1:${testHub.info.ports.https}/$iothub/websocket`,
    );
    await client.publishAsync('devices/ws1/messages/events/via=ws', 'over websockets', { qos: 1 });
    const [event] = await endpointEvents((e) => e.deviceId === 'ws1' && e.source === 'Telemetry');
    expect(Buffer.from(event?.body ?? []).toString()).toBe('over websockets');
    expect(event?.properties).toEqual({ via: 'ws' });
    await client.endAsync();
  });

  it('connects a module with its own key; its telemetry carries the module id; C2D is refused to it', async () => {
    await createDevice('moddev');
    const created = await testHub.request('PUT', '/devices/moddev/modules/m1', {
      body: { deviceId: 'moddev', moduleId: 'm1' },
    });
    expect(created.status).toBeLessThan(300);
    const key = (created.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication
      .symmetricKey.primaryKey;
    const token = await createSasToken({ resourceUri: 'localhost/devices/moddev/modules/m1', key });
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${testHub.info.ports.mqtt}`, {
      ...options('moddev/m1', token),
      username: 'localhost/moddev/m1/?api-version=2021-04-12',
    });
    clients.push(client);
    await client.publishAsync('devices/moddev/modules/m1/messages/events/%24.on=out1', 'from module', { qos: 1 });
    const [event] = await endpointEvents((e) => e.deviceId === 'moddev' && e.source === 'Telemetry');
    expect(event?.moduleId).toBe('m1');
    expect(event?.systemProperties['iothub-outputname']).toBe('out1');
    // SUBACK failure (0x80) for that filter, which MQTT.js reports as an error; the connection stays.
    await expect(client.subscribeAsync('devices/moddev/messages/devicebound/#', { qos: 1 })).rejects.toThrow(
      /Subscribe error/,
    );
    expect(client.connected).toBe(true);
    // The module key does not open the device.
    expect(await refusalCode(options('moddev', token))).toBe(5);
    await client.endAsync();
  });

  it('authenticates a selfSigned device by the thumbprint of its TLS client certificate, over TLS and WebSockets', async () => {
    const self = await createSelfSignedCertificate({ commonName: 'x509self' });
    const other = await createSelfSignedCertificate({ commonName: 'x509self' });
    await createDevice('x509self', {
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: {
          primaryThumbprint: certificateThumbprint(self.certificate, 'sha1'),
          secondaryThumbprint: null,
        },
      },
    });
    const tlsOptions = { cert: self.certificate, key: self.privateKey };
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${testHub.info.ports.mqtt}`, {
      ...options('x509self', undefined),
      ...tlsOptions,
    });
    await client.publishAsync('devices/x509self/messages/events/', 'x509', { qos: 1 });
    const [event] = await endpointEvents((e) => e.deviceId === 'x509self' && e.source === 'Telemetry');
    expect(String(event?.systemProperties['iothub-connection-auth-method'])).toContain('"type":"x509"');
    await client.endAsync();

    const overWebSockets = await mqtt.connectAsync(`wss://127.0.0.1:${testHub.info.ports.https}/$iothub/websocket`, {
      ...options('x509self', undefined),
      ...tlsOptions,
      wsOptions: { ca: testHub.ca, servername: 'localhost', ...tlsOptions },
    });
    await overWebSockets.endAsync();

    expect(
      await refusalCode({ ...options('x509self', undefined), cert: other.certificate, key: other.privateKey }),
    ).toBe(5);
    expect(await refusalCode(options('x509self', undefined))).toBe(5);
  });

  it('authenticates a certificateAuthority device by a chain to a verified CA with CN = device id', async () => {
    const root = await createRootCa({ commonName: 'MQTT head test root' });
    const upload = await testHub.request('PUT', '/fieldhub/certificates/mqtt-test-root', {
      body: { certificate: root.certificate, isVerified: true },
    });
    expect(upload.status).toBeLessThan(300);
    await createDevice('x509ca', { authentication: { type: 'certificateAuthority' } });
    const leaf = await issueDeviceCertificate({ issuer: root, deviceId: 'x509ca' });
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${testHub.info.ports.mqtt}`, {
      ...options('x509ca', undefined),
      cert: leaf.certificate,
      key: leaf.privateKey as string,
    });
    await client.endAsync();

    const wrongName = await issueDeviceCertificate({ issuer: root, deviceId: 'someone-else' });
    expect(
      await refusalCode({
        ...options('x509ca', undefined),
        cert: wrongName.certificate,
        key: wrongName.privateKey as string,
      }),
    ).toBe(5);
    const stranger = await createRootCa({ commonName: 'not uploaded' });
    const untrusted = await issueDeviceCertificate({ issuer: stranger, deviceId: 'x509ca' });
    expect(
      await refusalCode({
        ...options('x509ca', undefined),
        cert: untrusted.certificate,
        key: untrusted.privateKey as string,
      }),
    ).toBe(5);
  });

  it('forwards the will as telemetry on an unclean disconnect, and not on a clean one', async () => {
    await createDevice('will1');
    const will = {
      topic: 'devices/will1/messages/events/reason=lost',
      payload: Buffer.from('gone'),
      qos: 1 as const,
      retain: false,
    };
    const clean = await connectDevice('will1', { will });
    await clean.endAsync();
    const unclean = await connectDevice('will1', { will });
    unclean.stream.destroy();
    await expect
      .poll(async () => (await endpointEvents((e) => e.deviceId === 'will1' && e.source === 'Telemetry')).length)
      .toBe(1);
    const [event] = await endpointEvents((e) => e.deviceId === 'will1' && e.source === 'Telemetry');
    expect(Buffer.from(event?.body ?? []).toString()).toBe('gone');
    expect(event?.properties).toEqual({ reason: 'lost', 'iothub-MessageType': 'Will' });
    const elsewhere = { ...will, topic: 'devices/victim1/messages/events/' };
    expect(await refusalCode(options('will1', await tokenFor('will1'), { will: elsewhere }))).toBe(5);
  });

  it('closes a connection that publishes with QoS 2', async () => {
    await createDevice('qos2');
    const client = await connectDevice('qos2');
    const gone = closed(client);
    client.publish('devices/qos2/messages/events/', 'two', { qos: 2 });
    await gone;
  });

  it('closes a connection whose packet announces more than the size limit, before its body arrives', async () => {
    await createDevice('big1');
    const raw = await rawConnect('big1');
    const length = 400 * 1024;
    const header = Buffer.from([0x30, (length & 0x7f) | 0x80, ((length >> 7) & 0x7f) | 0x80, length >> 14]);
    raw.write(Buffer.concat([header, Buffer.alloc(1024)]));
    await new Promise<void>((resolve) => raw.once('close', () => resolve()));
  });

  describe('with short timers', () => {
    let head: MqttHead;
    let port: number;

    beforeAll(async () => {
      const tls = await ensureTlsMaterial(testHub.dataDir, 'localhost', pino({ level: 'silent' }));
      head = createMqttHead(testHub.hub.core, {
        tls,
        logger: pino({ level: 'silent' }),
        metrics: createMetrics(),
        settings: { connectTimeoutMs: 300, clockSkewSeconds: 0, maxPendingAppends: 4 },
      });
      port = await head.listen(0, '127.0.0.1');
    });
    afterAll(async () => {
      await head?.close();
    });

    it('closes the connection when its SAS token expires', async () => {
      await createDevice('expiry1');
      const token = await tokenFor('expiry1', { expiresAt: Math.floor(Date.now() / 1000) + 2 });
      const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, options('expiry1', token));
      clients.push(client);
      const started = Date.now();
      await closed(client);
      expect(Date.now() - started).toBeLessThan(4000);
    });

    it('drops a socket that sends no CONNECT in time', async () => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: testHub.ca, servername: 'localhost' });
      await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    });

    it('pauses reading at the pending-append bound and still acknowledges everything in order', async () => {
      await createDevice('paced1');
      const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, options('paced1', await tokenFor('paced1')));
      clients.push(client);
      await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          client.publishAsync('devices/paced1/messages/events/', `p${i}`, { qos: 1 }),
        ),
      );
      const bodies = (await endpointEvents((e) => e.deviceId === 'paced1' && e.source === 'Telemetry')).map((e) =>
        Buffer.from(e.body).toString(),
      );
      expect(bodies).toEqual(Array.from({ length: 100 }, (_, i) => `p${i}`));
      await client.endAsync();
    });

    it('enforces 1.5 times the keep-alive', async () => {
      await createDevice('keepalive1');
      const raw = await rawConnect('keepalive1', port, 1);
      const started = Date.now();
      await new Promise<void>((resolve) => raw.once('close', () => resolve()));
      expect(Date.now() - started).toBeGreaterThanOrEqual(1200);
      expect(Date.now() - started).toBeLessThan(3000);
    });
  });

  // ---- a raw client, for what MQTT.js will not do (never acknowledge, stay silent) ------------------------------

  type RawClient = ReturnType<typeof tlsConnect> & { received(): string };

  async function rawConnect(deviceId: string, port = testHub.info.ports.mqtt, keepalive = 60): Promise<RawClient> {
    const { generate } = await import('mqtt-packet');
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: testHub.ca, servername: 'localhost' }) as RawClient;
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
    });
    socket.received = () => text;
    await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    socket.write(
      generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        keepalive,
        clientId: deviceId,
        username: `localhost/${deviceId}/?api-version=2021-04-12`,
        password: Buffer.from(await tokenFor(deviceId)),
      }),
    );
    await expect.poll(() => text.length >= 4).toBe(true);
    expect(text.charCodeAt(0)).toBe(0x20);
    expect(text.charCodeAt(3)).toBe(0);
    return socket;
  }

  function subscribePacket(filter: string): Buffer {
    const topic = Buffer.from(filter);
    const body = Buffer.concat([Buffer.from([0, 1, topic.length >> 8, topic.length & 0xff]), topic, Buffer.from([1])]);
    return Buffer.concat([Buffer.from([0x82, body.length]), body]);
  }
});
