import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer as createTcpServer, type Socket, connect as tcpConnect } from 'node:net';
import { createServer } from 'node:tls';
import type { TransportCredentials } from '@fieldhub/device-core/transport';
import { HubError } from '@fieldhub/protocol';
import { message as rheaMessage, types } from 'rhea';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type FakeHub, fakeHubCa, startFakeHub } from './__tests__/fake-hub';
import { amqp } from './amqp';
import type { AmqpTransport } from './amqp-transport';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Shapes of captures/amqp-amqp.txt: the host name carries the port, which leaks into `sr` (URL-encoded).
const sasToken = (se: number) => `SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=c2lnbmF0dXJl&se=${se}`;
const credentials = (token = sasToken(4102444800)): TransportCredentials => ({
  hostName: 'localhost',
  deviceId: 'dev1',
  sasToken: token,
});

interface Recorded {
  cloudToDevice: { lockToken: string; messageId?: string; body: Uint8Array; properties: Record<string, string> }[];
  desired: { patch: Record<string, unknown>; version: number }[];
  methods: { requestId: string; methodName: string; payload: unknown }[];
  disconnected: (HubError | undefined)[];
}

function recorder() {
  const recorded: Recorded = { cloudToDevice: [], desired: [], methods: [], disconnected: [] };
  return {
    recorded,
    events: {
      cloudToDeviceMessage: (message: Recorded['cloudToDevice'][number]) => recorded.cloudToDevice.push(message),
      desiredPropertiesPatch: (patch: Record<string, unknown>, version: number) =>
        recorded.desired.push({ patch, version }),
      methodRequest: (request: Recorded['methods'][number]) => recorded.methods.push(request),
      disconnected: (error?: HubError) => recorded.disconnected.push(error),
    },
  };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function rejection(promise: Promise<unknown>): Promise<HubError> {
  try {
    await promise;
  } catch (error) {
    if (HubError.is(error)) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

const hubs: FakeHub[] = [];
const transports: AmqpTransport[] = [];

afterEach(async () => {
  await Promise.all(transports.splice(0).map((transport) => transport.disconnect()));
  await Promise.all(hubs.splice(0).map((hub) => hub.close()));
});

async function connected(kind: 'tls' | 'ws' = 'tls', token?: string) {
  const hub = await startFakeHub(kind);
  hubs.push(hub);
  const transport = amqp({ port: hub.port, webSockets: kind === 'ws' }).create() as AmqpTransport;
  transports.push(transport);
  const { recorded, events } = recorder();
  await transport.connect({ credentials: credentials(token), ca: fakeHubCa, timeoutMs: 5_000 }, events);
  return { hub, transport, recorded };
}

describe('AmqpTransport against a scripted AMQP peer', () => {
  it('connects without SASL and puts the token on $cbs with its sr as audience, as the Node SDK does', async () => {
    const { hub, transport } = await connected();
    expect(transport.connected).toBe(true);
    expect(hub.connections).toEqual([{ sasl: false, hostname: 'localhost' }]);
    const cbs = hub.messages.find((received) => received.address === '$cbs');
    expect(cbs?.message).toMatchObject({
      to: '$cbs',
      reply_to: 'cbs',
      application_properties: {
        operation: 'put-token',
        type: 'servicebus.windows.net:sastoken',
        name: 'localhost%2Fdevices%2Fdev1',
      },
      body: sasToken(4102444800),
    });
    expect(typeof cbs?.message.message_id).toBe('string');
    // The telemetry sender is attached while connecting (where the hub checks an X.509 identity).
    expect(hub.links.map((link) => `${link.role} ${link.address}`)).toEqual([
      'sender $cbs',
      'receiver $cbs',
      'sender /devices/dev1/messages/events',
    ]);
    expect(hub.links[2]?.properties['com.microsoft:client-version']).toMatch(/^@fieldhub\/transport-amqp\/0\.1\.0 /);
  });

  it('refuses a token the CBS answers with 401 with a non-retryable AuthenticationError', async () => {
    const hub = await startFakeHub();
    hubs.push(hub);
    hub.behaviour.cbsStatus = 401;
    const transport = amqp({ port: hub.port }).create();
    const error = await rejection(
      transport.connect({ credentials: credentials(), ca: fakeHubCa, timeoutMs: 5_000 }, recorder().events),
    );
    expect(error.name).toBe('AuthenticationError');
    expect(error.isRetryable).toBe(false);
    expect(transport.connected).toBe(false);
  });

  it('maps a refused attach (amqp:unauthorized-access) to AuthenticationError while connecting', async () => {
    const hub = await startFakeHub();
    hubs.push(hub);
    hub.behaviour.refuseAttach = {
      match: /messages\/events$/,
      error: { condition: 'amqp:unauthorized-access', description: 'no' },
    };
    const error = await rejection(
      amqp({ port: hub.port })
        .create()
        .connect({ credentials: credentials(), ca: fakeHubCa, timeoutMs: 5_000 }, recorder().events),
    );
    expect(error.name).toBe('AuthenticationError');
  });

  it('sends telemetry with the system properties and application properties of the Node SDK', async () => {
    const { hub, transport } = await connected();
    const next = hub.nextMessage(/messages\/events$/);
    await transport.sendTelemetry({
      body: encoder.encode('{"temperature":21.5}'),
      messageId: 'mid-1',
      correlationId: 'cid-1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      userId: 'me',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
      properties: { alert: 'high temp', 'a/b&c=d': 'x' },
    });
    const { message } = await next;
    expect(message).toMatchObject({
      to: '/devices/dev1/messages/events',
      message_id: 'mid-1',
      correlation_id: 'cid-1',
      content_type: 'application/json',
      content_encoding: 'utf-8',
      application_properties: { alert: 'high temp', 'a/b&c=d': 'x' },
    });
    expect(Buffer.from(message.user_id as unknown as Buffer).toString()).toBe('me');
    expect((message.absolute_expiry_time as Date).toISOString()).toBe('2030-01-01T00:00:00.000Z');
    // One data section (body_type 0x75), as the capture shows.
    expect((message.body as { typecode: number }).typecode).toBe(0x75);
    expect(decoder.decode((message.body as { content: Buffer }).content)).toBe('{"temperature":21.5}');
  });

  it('rejects telemetry the hub rejects with the mapped error and stays connected', async () => {
    const { hub, transport } = await connected();
    hub.behaviour.telemetryError = { condition: 'amqp:link:message-size-exceeded', description: 'too big' };
    const tooLarge = await rejection(transport.sendTelemetry({ body: encoder.encode('x') }));
    expect(tooLarge).toMatchObject({ name: 'ArgumentError', code: 'MessageTooLarge' });
    hub.behaviour.telemetryError = { condition: 'com.microsoft:device-container-throttled', description: 'slow' };
    const throttled = await rejection(transport.sendTelemetry({ body: encoder.encode('x') }));
    expect(throttled.name).toBe('ThrottledError');
    expect(throttled.isRetryable).toBe(true);
    expect(transport.connected).toBe(true);
  });

  it('renews the token in place with a second put-token on the same connection', async () => {
    const { hub, transport, recorded } = await connected();
    const next = hub.nextMessage(/^\$cbs$/);
    await transport.updateCredentials(credentials(sasToken(4102448400)));
    expect((await next).message.body).toBe(sasToken(4102448400));
    expect(hub.connections).toHaveLength(1);
    expect(hub.links.filter((link) => link.address === '$cbs')).toHaveLength(2);
    hub.behaviour.cbsStatus = 403;
    expect((await rejection(transport.updateCredentials(credentials(sasToken(4102452000))))).name).toBe(
      'AuthenticationError',
    );
    expect(recorded.disconnected).toEqual([]);
  });

  it('speaks twin on a link pair sharing twin:<uuid>: GET, PATCH reported, PUT desired, pushes', async () => {
    const { hub, transport, recorded } = await connected();
    hub.behaviour.twin = { desired: { fromHub: 'hello', $version: 3 }, reported: { $version: 1 } };
    await transport.enableTwin();
    const twinLinks = hub.links.filter((link) => link.address === '/devices/dev1/twin');
    expect(twinLinks.map((link) => link.role).sort()).toEqual(['receiver', 'sender']);
    const channel = twinLinks[0]?.properties['com.microsoft:channel-correlation-id'];
    expect(channel).toMatch(/^twin:[0-9a-f-]{36}$/);
    expect(twinLinks[1]?.properties['com.microsoft:channel-correlation-id']).toBe(channel);
    expect(twinLinks[0]?.properties['com.microsoft:api-version']).toBe('2021-04-12');
    // Settle modes as the Node SDK attaches them: pre-settled both ways, receiver settles first.
    expect(twinLinks.map((link) => [link.sndSettleMode, link.rcvSettleMode])).toEqual([
      [1, 0],
      [1, 0],
    ]);
    const put = hub.messages.find((received) => received.message.message_annotations?.operation === 'PUT');
    expect(put?.message.message_annotations).toEqual({
      operation: 'PUT',
      resource: '/notifications/twin/properties/desired',
    });

    const twin = await transport.getTwin();
    expect(twin.desired).toEqual({ fromHub: 'hello', $version: 3 });
    const get = hub.messages.find((received) => received.message.message_annotations?.operation === 'GET');
    expect(typeof get?.message.correlation_id).toBe('string');
    expect(decoder.decode((get?.message.body as { content: Buffer } | undefined)?.content)).toBe(' ');

    expect(await transport.updateReportedProperties({ firmware: '1.0.0' })).toBe(2);
    const patch = hub.messages.find((received) => received.message.message_annotations?.operation === 'PATCH');
    expect(patch?.message.message_annotations?.resource).toBe('/properties/reported');

    hub.send(/\/twin$/, {
      message_annotations: { version: types.wrap_long(7) },
      body: rheaMessage.data_section(Buffer.from('{"setpoint":5,"$version":7}')),
    });
    await until(() => recorded.desired.length === 1, 'a desired push');
    expect(recorded.desired[0]).toEqual({ patch: { setpoint: 5 }, version: 7 });
  });

  it('maps a twin status of 400 with an errorCode body to a non-retryable HubError', async () => {
    const { hub, transport } = await connected();
    hub.behaviour.patchStatus = 400;
    hub.behaviour.patchBody = '{"errorCode":400004,"message":"too big"}';
    const error = await rejection(transport.updateReportedProperties({ big: 'x' }));
    expect(error).toMatchObject({ name: 'ArgumentError', status: 400, isRetryable: false, message: 'too big' });
  });

  it('answers a method request with its correlation id as it came and IoThub-status as an int', async () => {
    const { hub, transport, recorded } = await connected();
    await transport.enableDirectMethods();
    const links = hub.links.filter((link) => link.address === '/devices/dev1/methods/devicebound');
    expect(links).toHaveLength(2);
    expect(links[0]?.properties['com.microsoft:channel-correlation-id']).toMatch(/^methods:/);
    const uuid = Buffer.from('6793cc31d04f467bbdfd18f92a1c2473', 'hex');
    hub.send(/methods\/devicebound$/, {
      correlation_id: types.wrap_uuid(uuid) as never,
      application_properties: { 'IoThub-methodname': 'reboot' },
      body: rheaMessage.data_section(Buffer.from('{"delay":1}')),
    });
    await until(() => recorded.methods.length === 1, 'a method request');
    expect(recorded.methods[0]).toEqual({
      requestId: '6793cc31-d04f-467b-bdfd-18f92a1c2473',
      methodName: 'reboot',
      payload: { delay: 1 },
    });
    const next = hub.nextMessage(/methods\/devicebound$/);
    await transport.sendMethodResponse('6793cc31-d04f-467b-bdfd-18f92a1c2473', 200, { ok: true });
    const { message } = await next;
    expect(Buffer.isBuffer(message.correlation_id)).toBe(true);
    expect((message.correlation_id as Buffer).equals(uuid)).toBe(true);
    expect(message.application_properties?.['IoThub-status']).toBe(200);
    expect(decoder.decode((message.body as { content: Buffer }).content)).toBe('{"ok":true}');
    // Answered once: a second answer has nothing to go to.
    expect(
      (await rejection(transport.sendMethodResponse('6793cc31-d04f-467b-bdfd-18f92a1c2473', 200, null))).code,
    ).toBe('InvalidOperation');
  });

  it('settles cloud-to-device messages: complete = accepted, reject = rejected, abandon = released', async () => {
    const { hub, transport, recorded } = await connected();
    await transport.enableCloudToDevice();
    const receiver = hub.links.find((link) => link.address === '/devices/dev1/messages/devicebound');
    expect(receiver?.role).toBe('receiver');
    expect(receiver?.rcvSettleMode).toBe(0);
    const tags = ['11', '22', '33'].map((byte) => Buffer.from(byte.repeat(16), 'hex'));
    for (const [index, tag] of tags.entries()) {
      hub.send(
        /messages\/devicebound$/,
        {
          message_id: `c2d-${index}`,
          to: '/devices/dev1/messages/deviceBound',
          application_properties: { color: 'blue', 'iothub-ack': 'full' },
          message_annotations: { 'iothub-deliverycount': 1 },
          body: rheaMessage.data_section(Buffer.from(`hello ${index}`)),
        },
        tag,
      );
    }
    await until(() => recorded.cloudToDevice.length === 3, 'three messages');
    const [first, second, third] = recorded.cloudToDevice;
    expect(first).toMatchObject({
      messageId: 'c2d-0',
      lockToken: '11111111-1111-1111-1111-111111111111',
      properties: { color: 'blue', 'iothub-ack': 'full' },
      deliveryCount: 1,
    });
    expect(decoder.decode(first?.body)).toBe('hello 0');
    await transport.settleCloudToDevice(first?.lockToken ?? '', 'complete');
    await transport.settleCloudToDevice(second?.lockToken ?? '', 'reject');
    await transport.settleCloudToDevice(third?.lockToken ?? '', 'abandon');
    await until(() => hub.dispositions.size === 3, 'three dispositions');
    expect(Object.fromEntries(hub.dispositions)).toEqual({
      'c2d-0': 'accepted',
      'c2d-1': 'rejected',
      'c2d-2': 'released',
    });
    expect((await rejection(transport.settleCloudToDevice(first?.lockToken ?? '', 'complete'))).code).toBe(
      'DeviceMessageLockLost',
    );
  });

  it('reports disconnected once when the hub detaches a link, and rejects operations afterwards', async () => {
    const { hub, transport, recorded } = await connected();
    hub.detach(/messages\/events$/, { condition: 'amqp:link:stolen', description: 'another connection' });
    await until(() => recorded.disconnected.length === 1, 'the disconnected event');
    expect(recorded.disconnected[0]?.name).toBe('ConnectionError');
    expect(transport.connected).toBe(false);
    expect((await rejection(transport.sendTelemetry({ body: encoder.encode('x') }))).name).toBe('ConnectionError');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(recorded.disconnected).toHaveLength(1);
  });

  it('reports disconnected once when the socket drops, with twin requests in flight rejected', async () => {
    const { hub, transport, recorded } = await connected();
    await transport.enableTwin();
    hub.dropConnections();
    await until(() => recorded.disconnected.length === 1, 'the disconnected event');
    expect(recorded.disconnected[0]).toMatchObject({ name: 'ConnectionError', isRetryable: true });
    expect((await rejection(transport.getTwin())).name).toBe('ConnectionError');
  });

  it('disconnect() is idempotent, reports nothing, and the transport connects again', async () => {
    const { hub, transport, recorded } = await connected();
    await Promise.all([transport.disconnect(), transport.disconnect()]);
    expect(transport.connected).toBe(false);
    expect(recorded.disconnected).toEqual([]);
    await transport.connect({ credentials: credentials(), ca: fakeHubCa, timeoutMs: 5_000 }, recorder().events);
    await transport.sendTelemetry({ body: encoder.encode('again') });
    expect(hub.connections).toHaveLength(2);
  });

  it('stops every rhea timer by the time disconnect() resolves: the idle-timeout check no longer keeps the process alive', async () => {
    const setTimer = vi.spyOn(globalThis, 'setTimeout');
    const clearTimer = vi.spyOn(globalThis, 'clearTimeout');
    try {
      for (const kind of ['tls', 'ws'] as const) {
        setTimer.mockClear();
        clearTimer.mockClear();
        const hub = await startFakeHub(kind);
        hubs.push(hub);
        // rhea re-arms its idle-timeout check (twice the keep-alive: 34 s here, a delay nothing else uses) on every
        // frame it reads, the hub's answer to the AMQP close included.
        const transport = amqp({ port: hub.port, webSockets: kind === 'ws', keepAliveSeconds: 17 }).create();
        transports.push(transport as AmqpTransport);
        await transport.connect({ credentials: credentials(), ca: fakeHubCa, timeoutMs: 5_000 }, recorder().events);
        await transport.enableTwin();
        await transport.disconnect();
        const idleChecks = setTimer.mock.calls.flatMap((call, index) =>
          call[1] === 34_000 ? [setTimer.mock.results[index]?.value] : [],
        );
        expect(idleChecks.length).toBeGreaterThan(0);
        const cleared = new Set(clearTimer.mock.calls.map((call) => call[0]));
        expect(
          idleChecks.filter((timer) => !cleared.has(timer)),
          kind,
        ).toEqual([]);
      }
    } finally {
      setTimer.mockRestore();
      clearTimer.mockRestore();
    }
  });

  it('gives up on a peer that accepts TLS and never answers: ConnectionError at timeoutMs, AbortError on abort', async () => {
    const key = readFileSync(new URL('./__fixtures__/broker-key.pem', import.meta.url), 'utf8');
    const sockets = new Set<{ destroy(): void }>();
    const silent = createServer({ cert: fakeHubCa, key }, (socket) => sockets.add(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const port = (silent.address() as AddressInfo).port;
      const transport = amqp({ port }).create();
      const timedOut = await rejection(
        transport.connect({ credentials: credentials(), ca: fakeHubCa, timeoutMs: 300 }, recorder().events),
      );
      expect(timedOut).toMatchObject({ name: 'ConnectionError', isRetryable: true });
      expect(transport.connected).toBe(false);
      const controller = new AbortController();
      const attempt = transport.connect(
        { credentials: credentials(), ca: fakeHubCa, timeoutMs: 10_000, signal: controller.signal },
        recorder().events,
      );
      controller.abort();
      expect((await rejection(attempt)).name).toBe('AbortError');
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('reports a hub that vanishes (no frames, socket still open) as lost once the idle timeout passes', async () => {
    const hub = await startFakeHub();
    hubs.push(hub);
    // A TCP relay that can go silent in both directions without closing anything: a vanished peer.
    let silent = false;
    const relayed = new Set<Socket>();
    const relay = createTcpServer((client) => {
      const upstream = tcpConnect(hub.port, '127.0.0.1');
      relayed.add(client).add(upstream);
      client.on('data', (data) => silent || upstream.write(data));
      upstream.on('data', (data) => silent || client.write(data));
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    relay.listen(0, '127.0.0.1');
    await once(relay, 'listening');
    try {
      const transport = amqp({ port: (relay.address() as AddressInfo).port, keepAliveSeconds: 1 }).create();
      transports.push(transport as AmqpTransport);
      const { recorded, events } = recorder();
      await transport.connect({ credentials: credentials(), ca: fakeHubCa, timeoutMs: 5_000 }, events);
      silent = true;
      await until(() => recorded.disconnected.length === 1, 'the idle timeout');
      expect(recorded.disconnected[0]).toMatchObject({ name: 'ConnectionError', isRetryable: true });
      expect(transport.connected).toBe(false);
    } finally {
      for (const socket of relayed) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    }
  });

  it('refuses a hub whose certificate it does not trust with a ConnectionError', async () => {
    const hub = await startFakeHub();
    hubs.push(hub);
    const error = await rejection(
      amqp({ port: hub.port }).create().connect({ credentials: credentials(), timeoutMs: 5_000 }, recorder().events),
    );
    expect(error.name).toBe('ConnectionError');
  });

  it('speaks the same over WebSockets: /$iothub/websocket with subprotocol AMQPWSB10', async () => {
    const { hub, transport } = await connected('ws');
    expect(transport.name).toBe('amqp-ws');
    expect(hub.upgrades).toEqual([{ path: '/$iothub/websocket', protocol: 'AMQPWSB10' }]);
    const next = hub.nextMessage(/messages\/events$/);
    // Bigger than one WebSocket frame header's short forms (126 / 65536 bytes).
    await transport.sendTelemetry({ body: new Uint8Array(100_000).fill(7) });
    expect((await next).message.body).toMatchObject({ typecode: 0x75 });
    expect(((await next).message.body as { content: Buffer }).content.length).toBe(100_000);
  });
});
