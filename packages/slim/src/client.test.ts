// The client's connection policy and protocol handling, on a fake host whose clock and sockets the test drives:
// the broker side speaks through the same codec (itself checked against mqtt-packet), so every packet the client
// writes is read back as the hub would read it.
import { createHmac } from 'node:crypto';
import { base64Decode, base64Encode, formatSasToken, sasStringToSign } from '@fieldhub/protocol';
import { describe, expect, it, vi } from 'vitest';
import { createClient } from './client';
import type { Host, HostConnectOptions, HostSocketEvents } from './host';
import { createDecoder, encodePacket } from './mqtt/codec';
import { decodeConnectOrSubscribe } from './mqtt/connect-subscribe';
import type { ConnectPacket, Packet, PublishPacket } from './mqtt/packets';
import type { SlimClient, SlimClientOptions, SlimError, SlimMessage } from './types';

const KEY = base64Encode(new Uint8Array(32).map((_, i) => i * 7));
const START = Date.UTC(2026, 10, 28, 12, 0, 0);

/** One socket the client opened; the test plays the hub on it. */
class FakeConnection {
  readonly written: Packet[] = [];
  closed = false;
  private readonly decoder = createDecoder(
    (packet) => this.written.push(packet),
    (error) => {
      throw error;
    },
    1 << 20,
    decodeConnectOrSubscribe,
  );
  constructor(
    readonly options: HostConnectOptions,
    private readonly events: HostSocketEvents,
  ) {}
  write(bytes: Uint8Array): void {
    if (this.closed) throw new Error('write after close');
    this.decoder.push(bytes);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.events.onClose();
  }
  accept(): void {
    this.events.onConnect();
  }
  receive(packet: Packet): void {
    this.events.onData(encodePacket(packet));
  }
  /** The hub publishes on `topic`: QoS 1 with `messageId`, else QoS 0. */
  deliver(topic: string, payload: string | Uint8Array = new Uint8Array(0), messageId?: number): void {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    const qos = messageId === undefined ? { qos: 0 as const } : { qos: 1 as const, messageId };
    this.receive({ type: 3, topic, payload: bytes, ...qos, dup: false, retain: false });
  }
  receiveBytes(bytes: Uint8Array): void {
    this.events.onData(bytes);
  }
  /** The peer goes away. */
  lose(): void {
    this.closed = true;
    this.events.onClose(new Error('reset'));
  }
  last<T extends Packet['type']>(type: T): Extract<Packet, { type: T }> {
    const found = this.written.filter((packet) => packet.type === type);
    const packet = found[found.length - 1];
    if (packet === undefined) throw new Error(`no packet of type ${type} written`);
    return packet as Extract<Packet, { type: T }>;
  }
  publishes(): PublishPacket[] {
    return this.written.filter((packet): packet is PublishPacket => packet.type === 3);
  }
  /** CONNACK 0 to the CONNECT, SUBACK to the SUBSCRIBE. */
  handshake(): void {
    this.accept();
    expect(this.written[0]?.type).toBe(1);
    this.receive({ type: 2, sessionPresent: false, returnCode: 0 });
    const subscribe = this.last(8);
    this.receive({ type: 9, messageId: subscribe.messageId, granted: subscribe.subscriptions.map((s) => s.qos) });
  }
}

/** A host with a virtual clock: timers run only when the test advances time. */
class FakeHost implements Host {
  time = START;
  readonly connections: FakeConnection[] = [];
  private timers: Array<{ id: number; at: number; callback: () => void }> = [];
  private nextTimer = 0;
  connect(options: HostConnectOptions, events: HostSocketEvents): FakeConnection {
    const connection = new FakeConnection(options, events);
    this.connections.push(connection);
    return connection;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    this.nextTimer += 1;
    // As Node (and 32-bit timer fields) do: a delay beyond 2^31 - 1 ms fires at once.
    this.timers.push({ id: this.nextTimer, at: this.time + (ms > 2 ** 31 - 1 ? 1 : ms), callback });
    return this.nextTimer;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((timer) => timer.id !== handle);
  }
  now(): number {
    return this.time;
  }
  hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
    return new Uint8Array(createHmac('sha256', key).update(message).digest());
  }
  /** Runs every timer due within `ms`, in order, then sets the clock to now + ms. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = this.timers.filter((timer) => timer.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (due === undefined) break;
      this.timers = this.timers.filter((timer) => timer !== due);
      this.time = due.at;
      // Moddable's Timer passes its id to the callback: the client must not take it for anything.
      (due.callback as (id: number) => void)(due.id);
    }
    this.time = end;
  }
  /** Advances timer by timer until `condition` holds; returns the virtual time it took. */
  advanceUntil(condition: () => boolean, limit = 10 * 60_000): number {
    const begin = this.time;
    while (!condition()) {
      const next = [...this.timers].sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (next === undefined || next.at - begin > limit) throw new Error('the condition never held');
      this.advance(next.at - this.time);
    }
    return this.time - begin;
  }
  get current(): FakeConnection {
    const connection = this.connections[this.connections.length - 1];
    if (connection === undefined) throw new Error('no connection');
    return connection;
  }
}

interface Events {
  connects: number;
  disconnects: Array<string | undefined>;
  errors: string[];
  messages: SlimMessage[];
}

/** Options of a test: any may be given as undefined to remove a default of setup(). */
type TestOptions = { [K in keyof SlimClientOptions]?: SlimClientOptions[K] | undefined };

function setup(options: TestOptions = {}): { host: FakeHost; client: SlimClient; events: Events } {
  const host = new FakeHost();
  const events: Events = { connects: 0, disconnects: [], errors: [], messages: [] };
  const client = createClient(host, {
    hostName: 'hub.example',
    deviceId: 'dev-1',
    sharedAccessKey: KEY,
    reconnectMinMs: 100,
    reconnectMaxMs: 1000,
    keepAliveSeconds: 60,
    operationTimeoutMs: 5000,
    onConnect: () => {
      events.connects += 1;
    },
    onDisconnect: (error) => events.disconnects.push(error?.code),
    onError: (error) => events.errors.push(error.code),
    onMessage: (message: SlimMessage) => events.messages.push(message),
    ...options,
  } as SlimClientOptions);
  return { host, client, events };
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe('createClient', () => {
  it('connects with clientId = deviceId, the IoT Hub user name and a SAS token the protocol package would sign', () => {
    const { host, client, events } = setup();
    client.open();
    const connection = host.current;
    expect(connection.options).toMatchObject({ host: 'hub.example', port: 8883, tls: { servername: 'hub.example' } });
    connection.handshake();
    const connect = connection.written[0] as ConnectPacket;
    expect(connect).toMatchObject({
      clientId: 'dev-1',
      clean: true,
      keepAlive: 60,
      username: 'hub.example/dev-1/?api-version=2021-04-12',
    });
    const expiry = START / 1000 + 3600;
    const signature = createHmac('sha256', base64Decode(KEY))
      .update(sasStringToSign('hub.example/devices/dev-1', expiry))
      .digest('base64');
    expect(connect.password).toBe(formatSasToken({ resourceUri: 'hub.example/devices/dev-1', signature, expiry }));
    expect(client.connected).toBe(true);
    expect(events.connects).toBe(1);
  });

  it('reads host, device, key and gateway from a connection string and subscribes only to what has a handler', () => {
    const { host, client } = setup({
      hostName: undefined,
      deviceId: undefined,
      sharedAccessKey: undefined,
      connectionString: `HostName=hub.example;DeviceId=dev-2;SharedAccessKey=${KEY};GatewayHostName=edge.local`,
      onMethod: (_request, respond) => respond(200),
    });
    client.open();
    host.current.accept();
    // The gateway's certificate names the gateway; the user name (and SAS) still name the hub.
    expect(host.current.options).toMatchObject({ host: 'edge.local', tls: { servername: 'edge.local' } });
    expect(host.current.written[0]).toMatchObject({
      clientId: 'dev-2',
      username: 'hub.example/dev-2/?api-version=2021-04-12',
    });
    host.current.receive({ type: 2, sessionPresent: false, returnCode: 0 });
    expect(host.current.last(8).subscriptions).toEqual([
      { topic: '$iothub/twin/res/#', qos: 0 },
      { topic: 'devices/dev-2/messages/devicebound/#', qos: 1 },
      { topic: '$iothub/methods/POST/#', qos: 0 },
    ]);
  });

  it('refuses options without a credential', () => {
    expect(() => setup({ sharedAccessKey: undefined })).toThrow(expect.objectContaining({ code: 'ArgumentInvalid' }));
    expect(() => setup({ sharedAccessKey: 'not base64!' })).toThrow(
      expect.objectContaining({ code: 'ArgumentInvalid' }),
    );
  });

  it('sends telemetry QoS 1 with its property bag and calls back on PUBACK', () => {
    const { host, client } = setup();
    client.open();
    host.current.handshake();
    const results: Array<string | null> = [];
    client.sendTelemetry('{"t":1}', { '$.ct': 'application/json', 'a b': 'c&d' }, (error) => {
      results.push(error ? error.code : null);
    });
    const publish = host.current.publishes()[0] as PublishPacket;
    expect(publish).toMatchObject({ qos: 1, dup: false, retain: false });
    expect(publish.topic).toBe('devices/dev-1/messages/events/%24.ct=application%2Fjson&a%20b=c%26d');
    expect(text(publish.payload)).toBe('{"t":1}');
    expect(results).toEqual([]);
    host.current.receive({ type: 4, messageId: publish.messageId as number });
    expect(results).toEqual([null]);
  });

  it('refuses telemetry over 256 KB at once with MessageTooLarge, sending nothing', () => {
    const { host, client } = setup();
    client.open();
    host.current.handshake();
    const results: string[] = [];
    client.sendTelemetry(new Uint8Array(256 * 1024), null, (error) => results.push(error ? error.code : 'ok'));
    expect(results).toEqual(['MessageTooLarge']);
    expect(host.current.publishes()).toEqual([]);
    client.sendTelemetry(new Uint8Array(200 * 1024), { a: 'b' }, (error) => results.push(error ? error.code : 'ok'));
    expect(host.current.publishes()).toHaveLength(1);
  });

  it('refuses telemetry whose properties make the topic longer than MQTT allows with MessageTooLarge, queueing nothing', () => {
    const { host, client } = setup();
    const results: string[] = [];
    const record = (error: SlimError | null) => results.push(error ? error.code : 'ok');
    // An MQTT topic is a string of at most 65535 bytes [MQTT-1.5.3]: offline, such a message would poison every
    // reconnect; online, its encoding would throw out of sendTelemetry.
    client.sendTelemetry('offline', { big: 'x'.repeat(65_536) }, record);
    client.open();
    host.current.handshake();
    client.sendTelemetry('online', { big: 'x'.repeat(65_536) }, record);
    expect(results).toEqual(['MessageTooLarge', 'MessageTooLarge']);
    client.sendTelemetry('small', { a: 'b' }, record);
    const publishes = host.current.publishes();
    expect(publishes.map((publish) => text(publish.payload))).toEqual(['small']);
    host.current.receive({ type: 4, messageId: publishes[0]?.messageId as number });
    expect(results).toEqual(['MessageTooLarge', 'MessageTooLarge', 'ok']);
  });

  it('re-sends unacknowledged telemetry with DUP after a reconnect, then what was queued offline', () => {
    const { host, client, events } = setup();
    client.open();
    host.current.handshake();
    const results: string[] = [];
    client.sendTelemetry('first', null, (error) => results.push(error ? error.code : 'first'));
    const first = host.current.publishes()[0] as PublishPacket;
    host.current.lose();
    expect(events.disconnects).toEqual(['ConnectionLost']);
    client.sendTelemetry('second', null, (error) => results.push(error ? error.code : 'second'));
    host.advanceUntil(() => host.connections.length === 2);
    host.current.handshake();
    const again = host.current.publishes();
    expect(again.map((p) => [text(p.payload), p.dup])).toEqual([
      ['first', true],
      ['second', false],
    ]);
    expect(again[0]?.messageId).toBe(first.messageId);
    for (const publish of again) host.current.receive({ type: 4, messageId: publish.messageId as number });
    expect(results).toEqual(['first', 'second']);
    expect(events.connects).toBe(2);
  });

  it('gets the twin from onConnect even when telemetry queued offline fills the buffer', () => {
    // The catch-up GET after a reconnect (desired patches made offline never arrive otherwise) must not lose to
    // the telemetry it reconnected with.
    const outcomes: unknown[] = [];
    const { host, client } = setup({
      maxPendingTelemetry: 2,
      onConnect: () => client.getTwin((error, twin) => outcomes.push(error ? error.code : twin)),
    });
    client.sendTelemetry('1', null);
    client.sendTelemetry('2', null);
    client.open();
    host.current.handshake();
    const get = host.current.publishes().find((publish) => publish.topic.startsWith('$iothub/twin/GET/'));
    expect(outcomes).toEqual([]);
    host.current.deliver(`$iothub/twin/res/200/?$rid=${get?.topic.split('$rid=')[1]}`, '{"desired":{"$version":1}}');
    expect(outcomes).toEqual([{ desired: { $version: 1 } }]);
    // Telemetry still has its own bound.
    const results: string[] = [];
    client.sendTelemetry('3', null, (error) => results.push(error ? error.code : 'ok'));
    expect(results).toEqual(['BufferFull']);
  });

  it('fails telemetry with Timeout when no PUBACK comes within operationTimeoutMs', () => {
    const { host, client } = setup();
    client.open();
    host.current.handshake();
    const results: string[] = [];
    client.sendTelemetry('x', null, (error) => results.push(error ? error.code : 'ok'));
    host.advance(4999);
    expect(results).toEqual([]);
    host.advance(1);
    expect(results).toEqual(['Timeout']);
  });

  it('pings after keepAliveSeconds of silence and drops the connection when no PINGRESP comes', () => {
    const { host, client, events } = setup({ keepAliveSeconds: 10 });
    client.open();
    host.current.handshake();
    host.advance(9999);
    expect(host.current.written.some((p) => p.type === 12)).toBe(false);
    host.advance(1);
    expect(host.current.written.filter((p) => p.type === 12)).toHaveLength(1);
    host.current.receive({ type: 13 });
    host.advance(10_000);
    expect(host.current.written.filter((p) => p.type === 12)).toHaveLength(2);
    host.advance(5000);
    expect(events.disconnects).toEqual(['Timeout']);
    expect(host.current.closed).toBe(true);
    expect(client.connected).toBe(false);
  });

  it('probes with PINGREQ when a request goes unanswered and drops a connection that stays silent', () => {
    // Telemetry every few seconds keeps the keep-alive timer from ever pinging: without a probe, a half-open
    // connection would look up forever while every message timed out.
    const { host, client, events } = setup({ keepAliveSeconds: 60 });
    client.open();
    host.current.handshake();
    const results: string[] = [];
    const record = (error: SlimError | null) => results.push(error ? error.code : 'ok');
    client.sendTelemetry('1', null, record);
    host.advance(4000);
    client.sendTelemetry('2', null, record);
    host.advance(1000);
    expect(results).toEqual(['Timeout']);
    expect(host.current.last(12)).toEqual({ type: 12 });
    // The hub answers the probe: the connection stays.
    host.current.receive({ type: 13 });
    host.advance(4000);
    expect(results).toEqual(['Timeout', 'Timeout']);
    expect(host.current.written.filter((packet) => packet.type === 12)).toHaveLength(2);
    expect(client.connected).toBe(true);
    // It does not answer this one: dropped after one more operation timeout, and dialled again.
    host.advance(5000);
    expect(events.disconnects).toEqual(['Timeout']);
    expect(host.connections[0]?.closed).toBe(true);
    host.advanceUntil(() => host.connections.length === 2);
  });

  it('maps refused CONNACKs to codes, reports each through onError and backs off between attempts', () => {
    const { host, client, events } = setup({ reconnectMinMs: 100, reconnectMaxMs: 1000 });
    client.open();
    const delays: number[] = [];
    [5, 4, 3, 2, 1, 5, 5].forEach((returnCode, attempt) => {
      if (attempt > 0) {
        const before = host.connections.length;
        delays.push(host.advanceUntil(() => host.connections.length > before));
      }
      host.current.accept();
      host.current.receive({ type: 2, sessionPresent: false, returnCode });
      expect(host.current.closed).toBe(true);
    });
    expect(events.errors).toEqual([
      'Unauthorized',
      'Unauthorized',
      'ServerUnavailable',
      'Unauthorized',
      'UnacceptableProtocolVersion',
      'Unauthorized',
      'Unauthorized',
    ]);
    expect(events.connects).toBe(0);
    // Each delay lies between half and all of min * 2^n, capped at the maximum.
    delays.forEach((delay, n) => {
      const ceiling = Math.min(1000, 100 * 2 ** n);
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delay).toBeLessThanOrEqual(ceiling);
    });
    // A session that comes up resets the backoff. The first retry is spread too, down to half the minimum: a fleet
    // dropped by one hub restart must not come back in step.
    host.advanceUntil(() => host.connections.length === 8);
    host.current.handshake();
    const random = vi.spyOn(Math, 'random').mockReturnValue(0);
    try {
      host.current.lose();
      expect(host.advanceUntil(() => host.connections.length === 9)).toBe(50);
    } finally {
      random.mockRestore();
    }
  });

  it('renews its token at 80 % of the lifetime: DISCONNECT, then a new CONNECT with a later expiry', () => {
    const { host, client, events } = setup({ tokenLifetimeSeconds: 100, keepAliveSeconds: 600 });
    client.open();
    host.current.handshake();
    const firstToken = (host.current.written[0] as ConnectPacket).password;
    host.advance(79_999);
    expect(host.connections).toHaveLength(1);
    host.advance(1);
    expect(host.connections[0]?.last(14)).toEqual({ type: 14 });
    expect(host.connections[0]?.closed).toBe(true);
    expect(events.disconnects).toEqual([undefined]);
    host.advance(0);
    expect(host.connections).toHaveLength(2);
    host.current.handshake();
    const secondToken = (host.current.written[0] as ConnectPacket).password;
    expect(secondToken).toContain(`&se=${START / 1000 + 80 + 100}`);
    expect(secondToken).not.toBe(firstToken);
    expect(events.connects).toBe(2);
    expect(events.errors).toEqual([]);
  });

  it('keeps a long-lived token for weeks instead of renewing at once when 80 % of it overflows a timer', () => {
    const { host, client, events } = setup({ tokenLifetimeSeconds: 365 * 24 * 3600, keepAliveSeconds: 1000 });
    client.open();
    const connection = host.current;
    connection.handshake();
    // The hub answers every PINGREQ (0xc0), a little later.
    const write = connection.write.bind(connection);
    connection.write = (bytes) => {
      write(bytes);
      if (bytes[0] === 0xc0) host.setTimeout(() => connection.receive({ type: 13 }), 10);
    };
    host.advanceUntil(() => host.connections.length === 2, 40 * 24 * 3600_000);
    // Renewed within the longest delay a 32-bit timer holds (24.8 days), and not before 23 days.
    expect(host.time - START).toBeGreaterThan(23 * 24 * 3600_000);
    expect(host.time - START).toBeLessThanOrEqual(2 ** 31 - 1);
    expect(events.errors).toEqual([]);
  });

  it('signs through options.sign, called back later, and reports a failed signature as SigningFailed', () => {
    const requests: Array<{ stringToSign: string; done: (error: Error | null, signature?: string) => void }> = [];
    const { host, client, events } = setup({
      sharedAccessKey: undefined,
      sign: (stringToSign, done) => requests.push({ stringToSign, done }),
    });
    client.open();
    expect(requests[0]?.stringToSign).toBe(`hub.example%2Fdevices%2Fdev-1\n${START / 1000 + 3600}`);
    expect(host.connections).toHaveLength(0);
    requests[0]?.done(null, 'c2lnbmF0dXJl+/=');
    host.current.handshake();
    expect((host.current.written[0] as ConnectPacket).password).toBe(
      `SharedAccessSignature sr=hub.example%2Fdevices%2Fdev-1&sig=c2lnbmF0dXJl%2B%2F%3D&se=${START / 1000 + 3600}`,
    );
    host.current.lose();
    host.advanceUntil(() => requests.length === 2);
    requests[1]?.done(new Error('secure element busy'));
    // The loss of a session that was up goes to onDisconnect; the failed attempt to onError.
    expect(events.disconnects).toEqual(['ConnectionLost']);
    expect(events.errors).toEqual(['SigningFailed']);
  });

  it('reports a sign hook that throws, or calls back twice, as one SigningFailed attempt and tries again', () => {
    let calls = 0;
    const { host, client, events } = setup({
      sharedAccessKey: undefined,
      sign: (_stringToSign, done) => {
        calls += 1;
        if (calls === 2) done(null, 'c2ln');
        if (calls < 3) throw new Error('secure element gone');
        done(null, 'c2ln');
      },
    });
    // From open() and from the reconnect timer alike, nothing escapes to the caller or the host's timer.
    client.open();
    expect(events.errors).toEqual(['SigningFailed']);
    host.advanceUntil(() => host.connections.length === 1);
    host.current.handshake();
    host.current.lose();
    host.advanceUntil(() => calls === 3);
    expect(host.connections).toHaveLength(2);
    host.current.handshake();
    expect(events.connects).toBe(2);
  });

  it('answers 500 when a method handler throws and leaves a message whose handler throws unacknowledged', () => {
    const { host, client, events } = setup({
      onMethod: () => {
        throw new Error('boom');
      },
      onMessage: () => {
        throw new Error('bang');
      },
    });
    client.open();
    host.current.handshake();
    host.current.deliver('$iothub/methods/POST/reboot/?$rid=42', '{"delay":1}');
    const answer = host.current.publishes()[0] as PublishPacket;
    expect(answer.topic).toBe('$iothub/methods/res/500/?$rid=42');
    host.current.deliver('devices/dev-1/messages/devicebound/%24.mid=m1&x=1', new Uint8Array([104, 105]), 9);
    expect(host.current.written.some((p) => p.type === 4)).toBe(false);
    expect(events.errors).toEqual(['CallbackFailed', 'CallbackFailed']);
    expect(client.connected).toBe(true);
  });

  it('drops a method answer given after its connection was lost: the new session may reuse the $rid', () => {
    const responders: Array<(status: number, payload?: unknown) => void> = [];
    const { host, client } = setup({ onMethod: (_request, respond) => responders.push(respond) });
    client.open();
    host.current.handshake();
    host.current.deliver('$iothub/methods/POST/slow/?$rid=1');
    host.current.lose();
    host.advanceUntil(() => host.connections.length === 2);
    host.current.handshake();
    // The hub numbers rids per session: this `1` is another call.
    host.current.deliver('$iothub/methods/POST/fast/?$rid=1');
    responders[0]?.(200, 'for slow');
    expect(host.current.publishes()).toEqual([]);
    responders[1]?.(200, 'for fast');
    expect(host.current.publishes().map((publish) => text(publish.payload))).toEqual(['"for fast"']);
  });

  it('answers 500 when a method handler responds with a payload JSON cannot carry, and answers once', () => {
    const { host, client, events } = setup({
      onMethod: (_request, respond) => {
        const cyclic: { self?: unknown } = {};
        cyclic.self = cyclic;
        respond(200, cyclic);
      },
    });
    client.open();
    host.current.handshake();
    host.current.deliver('$iothub/methods/POST/status/?$rid=7');
    expect(host.current.publishes().map((publish) => publish.topic)).toEqual(['$iothub/methods/res/500/?$rid=7']);
    expect(events.errors).toEqual(['CallbackFailed']);
  });

  it('delivers a cloud-to-device message with its system and application properties, then acknowledges it', () => {
    const { host, client, events } = setup();
    client.open();
    host.current.handshake();
    host.current.deliver(
      'devices/dev-1/messages/devicebound/%24.mid=m1&%24.cid=c1&%24.ct=text%2Fplain&%24.ce=utf-8' +
        '&%24.to=%2Fdevices%2Fdev-1%2Fmessages%2FdeviceBound&iothub-ack=full&color=dark+red&flag&__proto__=x',
      'héllo',
      7,
    );
    expect(events.messages).toHaveLength(1);
    const message = events.messages[0] as SlimMessage;
    expect(message).toMatchObject({
      text: 'héllo',
      messageId: 'm1',
      correlationId: 'c1',
      contentType: 'text/plain',
      contentEncoding: 'utf-8',
    });
    expect(message.properties).toEqual({ color: 'dark red', flag: '' });
    expect(host.current.last(4)).toEqual({ type: 4, messageId: 7 });
  });

  it('takes a message the hub publishes before its SUBACK [MQTT-3.8.4-3]', () => {
    const { host, client, events } = setup();
    client.open();
    host.current.accept();
    host.current.receive({ type: 2, sessionPresent: false, returnCode: 0 });
    const subscribe = host.current.last(8);
    host.current.deliver('devices/dev-1/messages/devicebound/', new Uint8Array([49]), 3);
    host.current.receive({ type: 9, messageId: subscribe.messageId, granted: [0, 1] });
    expect(events.messages.map((message) => message.text)).toEqual(['1']);
    expect(host.current.last(4)).toEqual({ type: 4, messageId: 3 });
    expect(events.connects).toBe(1);
  });

  it('answers twin requests, fails them on an error status and when the connection drops', () => {
    const { host, client } = setup({ onDesired: (patch, version) => desired.push([patch, version]) });
    const desired: Array<[unknown, number]> = [];
    client.open();
    host.current.handshake();
    const outcomes: unknown[] = [];
    client.getTwin((error, twin) => outcomes.push(error ? [error.code, error.status] : twin));
    client.updateReported({ a: 1 }, (error, version) => outcomes.push(error ? [error.code, error.status] : version));
    client.updateReported({ b: 2 }, (error, version) => outcomes.push(error ? [error.code, error.status] : version));
    client.getTwin((error: SlimError | null) => outcomes.push(error ? error.code : 'twin'));
    const [get, patchA, patchB] = host.current.publishes();
    expect(get?.topic).toMatch(/^\$iothub\/twin\/GET\/\?\$rid=\d+$/);
    expect(patchA?.topic).toMatch(/^\$iothub\/twin\/PATCH\/properties\/reported\/\?\$rid=\d+$/);
    expect(text(patchA?.payload as Uint8Array)).toBe('{"a":1}');
    const rid = (topic: string | undefined) => topic?.split('$rid=')[1];
    const twin = { desired: { $version: 3 }, reported: { $version: 5 } };
    host.current.deliver(`$iothub/twin/res/200/?$rid=${rid(get?.topic)}`, JSON.stringify(twin));
    host.current.deliver(`$iothub/twin/res/204/?$rid=${rid(patchA?.topic)}&$version=6`);
    host.current.deliver(`$iothub/twin/res/429/?$rid=${rid(patchB?.topic)}`);
    host.current.deliver('$iothub/twin/PATCH/properties/desired/?$version=4', '{"x":1,"$version":4}');
    host.current.lose();
    expect(outcomes).toEqual([twin, 6, ['ThrottlingException', 429], 'NotConnected']);
    expect(desired).toEqual([[{ x: 1, $version: 4 }, 4]]);
    client.getTwin((error) => outcomes.push(error?.code));
    expect(outcomes[4]).toBe('NotConnected');
  });

  it('drops the connection on bytes that are not MQTT and reconnects', () => {
    const { host, client, events } = setup();
    client.open();
    host.current.handshake();
    host.current.receiveBytes(new Uint8Array([0xf0, 0x00]));
    expect(events.disconnects).toEqual(['ProtocolError']);
    host.advanceUntil(() => host.connections.length === 2);
    host.current.handshake();
    expect(client.connected).toBe(true);
  });

  it('gives up dialling, CONNACK or SUBACK after operationTimeoutMs and tries again', () => {
    const { host, client, events } = setup();
    client.open();
    host.advance(5000);
    expect(host.connections[0]?.closed).toBe(true);
    expect(events.errors).toEqual(['Timeout']);
    host.advanceUntil(() => host.connections.length === 2);
    host.current.handshake();
    expect(events.connects).toBe(1);
  });

  it('closes from inside a callback: the rest of the chunk is dropped, nothing follows DISCONNECT, each callback once', () => {
    const outcomes: string[] = [];
    const { host, client, events } = setup({
      onMessage: (message) => {
        outcomes.push(`message ${message.text}`);
        client.close(() => outcomes.push('closed'));
      },
    });
    client.open();
    host.current.handshake();
    client.sendTelemetry('t', null, (error) => outcomes.push(`telemetry ${error?.code ?? 'ok'}`));
    client.getTwin((error) => outcomes.push(`twin ${error?.code ?? 'ok'}`));
    const message = (id: number): Uint8Array =>
      encodePacket({
        type: 3,
        topic: 'devices/dev-1/messages/devicebound/',
        payload: new TextEncoder().encode(String(id)),
        qos: 1,
        messageId: id,
        dup: false,
        retain: false,
      });
    const first = message(1);
    const second = message(2);
    const chunk = new Uint8Array(first.length + second.length);
    chunk.set(first);
    chunk.set(second, first.length);
    host.current.receiveBytes(chunk);
    expect(outcomes).toEqual(['message 1', 'telemetry Closed', 'twin Closed', 'closed']);
    const written = host.current.written.map((packet) => packet.type);
    expect(written[written.length - 1]).toBe(14);
    expect(written.filter((type) => type === 4)).toEqual([]);
    expect(events.disconnects).toEqual([undefined]);
    expect(events.errors).toEqual([]);
    host.advance(60 * 60_000);
    expect(host.connections).toHaveLength(1);
  });

  it('closes idempotently: DISCONNECT once, pending telemetry fails with Closed, nothing reconnects', () => {
    const { host, client, events } = setup();
    client.open();
    host.current.handshake();
    const results: string[] = [];
    client.sendTelemetry('x', null, (error) => results.push(error ? error.code : 'ok'));
    let closes = 0;
    client.close(() => {
      closes += 1;
    });
    client.close(() => {
      closes += 1;
    });
    expect(closes).toBe(2);
    expect(results).toEqual(['Closed']);
    expect(host.current.written.filter((p) => p.type === 14)).toHaveLength(1);
    expect(events.disconnects).toEqual([undefined]);
    host.advance(60 * 60_000);
    expect(host.connections).toHaveLength(1);
    client.open();
    expect(host.connections).toHaveLength(1);
  });
});
