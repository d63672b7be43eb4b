import { randomUUID } from 'node:crypto';
import { createSasToken } from '@fieldhub/auth';
import mqtt from 'mqtt';
import {
  type AwaitableSender,
  Connection,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  ReceiverEvents,
  message as rheaMessage,
  types as rheaTypes,
  SenderEvents,
  string_to_uuid,
  uuid_to_string,
} from 'rhea-promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FeedbackRecord } from '../src/core/cloud-to-device';
import type { EndpointEvent } from '../src/core/telemetry';
import { startTestHub, type TestHub } from './helpers/test-hub';

// The AMQP device links (protocol-device.md §3.3-3.7) against the in-process hub over real TLS: connections as the
// Node SDK opens them (no SASL, CBS put-token per device, captures/amqp-amqp.txt), rhea-promise links, the service
// side through the hub's REST API and core. AMQP types the SDKs insist on (twin `status` int, `version` long; a
// uuid request id) are checked on the encoded bytes the client received.

interface Received {
  readonly message: Message;
  readonly delivery: Delivery;
}

/** Encoded messages as the test's rhea decoded them, to check the AMQP types of what the hub sent. */
const rawOf = new WeakMap<object, Buffer>();
const originalDecode = rheaMessage.decode;
rheaMessage.decode = (buffer: Buffer) => {
  const decoded = originalDecode(buffer);
  rawOf.set(decoded, Buffer.from(buffer));
  return decoded;
};

/** rhea's decoder of encoded AMQP values (not in its typings). */
interface AmqpReader {
  remaining(): number;
  read(): { descriptor?: { value: unknown }; value: unknown };
}
const Reader = (rheaTypes as unknown as { Reader: new (buffer: Buffer) => AmqpReader }).Reader;

/** The AMQP type names (rhea's: `Int`, `SmallLong`, `Uuid`, ...) of a received message's annotations. */
function annotationTypes(message: Message): Record<string, string> {
  const raw = rawOf.get(message);
  if (!raw) throw new Error('no raw bytes recorded for this message');
  const reader = new Reader(raw);
  while (reader.remaining()) {
    const section = reader.read();
    if (section.descriptor?.value !== 0x72) continue;
    const entries = section.value as { type: { name: string }; value: unknown }[];
    const types: Record<string, string> = {};
    for (let i = 0; i + 1 < entries.length; i += 2) {
      types[String(entries[i]?.value)] = entries[i + 1]?.type.name ?? '';
    }
    return types;
  }
  return {};
}

/** The AMQP type name of a received message's `correlation_id`. */
function correlationIdType(message: Message): string | undefined {
  const raw = rawOf.get(message);
  if (!raw) throw new Error('no raw bytes recorded for this message');
  const reader = new Reader(raw);
  while (reader.remaining()) {
    const section = reader.read();
    if (section.descriptor?.value !== 0x73) continue;
    return (section.value as { type: { name: string } }[])[5]?.type.name;
  }
  return undefined;
}

function bodyText(message: Message): string {
  const body = message.body as { content?: Buffer } | Buffer | string | undefined;
  if (body === undefined) return '';
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return Buffer.from(body.content ?? []).toString('utf8');
}

const dataBody = (value: unknown) =>
  rheaMessage.data_section(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)));

/** A receiver's messages, in arrival order, taken one at a time. */
class Inbox {
  private readonly items: Received[] = [];
  private wake: (() => void) | undefined;

  constructor(readonly receiver: Receiver) {
    receiver.on(ReceiverEvents.message, (event: EventContext) => {
      if (!event.message || !event.delivery) return;
      this.items.push({ message: event.message, delivery: event.delivery });
      this.wake?.();
    });
  }

  /** The next message (waits for it). */
  async next(): Promise<Received> {
    for (;;) {
      const item = this.items.shift();
      if (item) return item;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** The next message matching `predicate`; others are skipped. */
  async find(predicate: (message: Message) => boolean): Promise<Received> {
    for (;;) {
      const item = await this.next();
      if (predicate(item.message)) return item;
    }
  }
}

describe('AMQP device links', () => {
  let testHub: TestHub;
  const connections: Connection[] = [];
  const keys = new Map<string, string>();

  const register = async (deviceId: string, moduleId?: string): Promise<void> => {
    const path =
      moduleId === undefined
        ? `/devices/${encodeURIComponent(deviceId)}`
        : `/devices/${encodeURIComponent(deviceId)}/modules/${encodeURIComponent(moduleId)}`;
    const response = await testHub.request('PUT', path, { body: { deviceId, ...(moduleId ? { moduleId } : {}) } });
    expect(response.status).toBe(200);
    keys.set(
      moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`,
      (response.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey
        .primaryKey,
    );
  };

  /** A TLS connection with no SASL layer, as the Node SDK opens it. */
  const connect = async (): Promise<Connection> => {
    const connection = new Connection({
      transport: 'tls',
      host: '127.0.0.1',
      hostname: 'localhost',
      servername: 'localhost',
      port: testHub.info.ports.amqp ?? 0,
      ca: testHub.ca,
      reconnect: false,
    });
    await connection.open();
    connections.push(connection);
    return connection;
  };

  /** CBS put-token for a device or module on `connection` (the Node SDK's request, §3.2). */
  const authorize = async (connection: Connection, deviceId: string, moduleId?: string): Promise<void> => {
    const resource =
      moduleId === undefined
        ? `localhost/devices/${encodeURIComponent(deviceId)}`
        : `localhost/devices/${encodeURIComponent(deviceId)}/modules/${encodeURIComponent(moduleId)}`;
    const token = await createSasToken({
      resourceUri: resource,
      key: keys.get(moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`) ?? '',
      ttlSeconds: 3600,
    });
    const sender = await connection.createAwaitableSender({ target: { address: '$cbs' } });
    const receiver = await connection.createReceiver({ source: { address: '$cbs' } });
    const messageId = randomUUID();
    const reply = new Promise<Message>((resolve) => {
      receiver.on(ReceiverEvents.message, (event: EventContext) => {
        if (event.message?.correlation_id === messageId) resolve(event.message);
      });
    });
    await sender.send({
      to: '$cbs',
      reply_to: 'cbs',
      message_id: messageId,
      application_properties: {
        operation: 'put-token',
        type: 'servicebus.windows.net:sastoken',
        name: encodeURIComponent(resource),
      },
      body: token,
    });
    expect((await reply).application_properties?.['status-code']).toBe(200);
    await sender.close();
    await receiver.close();
  };

  /** A connected device: a connection with CBS done for it. */
  const connectAs = async (deviceId: string, moduleId?: string): Promise<Connection> => {
    const connection = await connect();
    await authorize(connection, deviceId, moduleId);
    return connection;
  };

  const telemetrySender = (connection: Connection, address: string): Promise<AwaitableSender> =>
    connection.createAwaitableSender({ target: { address } });

  /** Sends and resolves with the outcome: accepted, or the rejection's AMQP error. */
  const outcome = async (sender: AwaitableSender, message: Message) => {
    try {
      await sender.send(message, { timeoutInSeconds: 30 });
      return { accepted: true } as const;
    } catch (error) {
      const inner = (error as { innerError?: { condition: string; description: string } }).innerError;
      if (!inner) throw error;
      return { accepted: false, condition: inner.condition, description: inner.description } as const;
    }
  };

  /** A receiver that settles nothing by itself, with `credit` granted. */
  const inbox = async (connection: Connection, address: string, credit = 10, properties?: Record<string, string>) => {
    const receiver = await connection.createReceiver({
      source: { address },
      autoaccept: false,
      credit_window: 0,
      ...(properties ? { properties } : {}),
    });
    const box = new Inbox(receiver);
    receiver.addCredit(credit);
    return box;
  };

  const endpointEvents = async (predicate: (event: EndpointEvent) => boolean): Promise<EndpointEvent[]> => {
    const reader = await testHub.hub.core.telemetry.read({ from: 'earliest', live: false });
    const found: EndpointEvent[] = [];
    for await (const event of reader) if (predicate(event)) found.push(event);
    return found;
  };

  const connectionState = async (deviceId: string): Promise<string> =>
    ((await testHub.request('GET', `/devices/${deviceId}`)).json as { connectionState: string }).connectionState;

  /** Resolves with the AMQP error a link is detached with (the hub's side closing it). */
  const detached = (link: { once(event: string, listener: (context: EventContext) => void): unknown }) =>
    new Promise<{ condition?: string; description?: string }>((resolve) => {
      const onClose = (context: EventContext) => {
        const error = (context.receiver ?? context.sender)?.error as
          | { condition?: string; description?: string }
          | undefined;
        resolve(error ?? {});
      };
      link.once(ReceiverEvents.receiverClose, onClose);
      link.once(SenderEvents.senderClose, onClose);
      link.once(ReceiverEvents.receiverError, onClose);
      link.once(SenderEvents.senderError, onClose);
    });

  /**
   * The AMQP error an attach is refused with: the hub answers with a null terminus and then detaches (AMQP 1.0
   * §2.6.3), which rhea-promise reports either as a failed open or as an opened link detached at once.
   */
  const refusal = async (
    opening: Promise<AwaitableSender | Receiver | Inbox>,
  ): Promise<{ condition?: string; description?: string }> => {
    let opened: AwaitableSender | Receiver | Inbox;
    try {
      opened = await opening;
    } catch (error) {
      return error as { condition?: string; description?: string };
    }
    const link = opened instanceof Inbox ? opened.receiver : opened;
    const error = link.error as { condition?: string; description?: string } | undefined;
    if (error || !link.isRemoteOpen()) return error ?? {};
    return detached(link);
  };

  beforeAll(async () => {
    testHub = await startTestHub();
    if (!testHub.info.ports.amqp) throw new Error('the test hub serves no AMQP port');
    for (const deviceId of [
      'tele1',
      'tele2',
      'tele3',
      'big1',
      'c2d1',
      'c2d2',
      'twin1',
      'twin2',
      'meth1',
      'multi1',
      'multi2',
      'evict1',
    ]) {
      await register(deviceId);
    }
    await register('state1');
    await register('modhost');
    await register('modhost', 'mod1');
  });
  afterEach(async () => {
    for (const connection of connections.splice(0)) await connection.close().catch(() => undefined);
  });
  afterAll(async () => {
    await testHub?.stop();
  });

  it('appends telemetry with its properties and annotations and accepts it only once it is durable', async () => {
    const connection = await connectAs('tele1');
    const sender = await telemetrySender(connection, '/devices/tele1/messages/events');
    const messageId = randomUUID();
    const result = await outcome(sender, {
      // The Node SDK encodes a UUID-shaped message id as an AMQP uuid (§3.4).
      message_id: string_to_uuid(messageId) as unknown as string,
      correlation_id: 'cid-1',
      to: '/devices/tele1/messages/events',
      content_type: 'application/json',
      content_encoding: 'utf-8',
      // `constructor`: an application property like any other, not Object.prototype's member.
      application_properties: { alert: 'high temp', n: 1, constructor: 'c' },
      message_annotations: { 'iothub-interface-id': 'dtmi:example:Thermostat;1', 'dt-subject': 'thermostat1' },
      body: dataBody('{"temperature":21.5}'),
    });
    expect(result).toEqual({ accepted: true });
    // Accepted: the message is readable from the store already.
    const [event] = await endpointEvents((e) => e.deviceId === 'tele1' && e.source === 'Telemetry');
    expect(event).toBeDefined();
    expect(Buffer.from(event?.body ?? []).toString()).toBe('{"temperature":21.5}');
    expect(event?.messageId).toBe(messageId);
    expect(event?.correlationId).toBe('cid-1');
    expect(event?.contentType).toBe('application/json');
    expect(event?.contentEncoding).toBe('utf-8');
    expect(event?.properties).toEqual({ alert: 'high temp', n: '1', constructor: 'c' });
    expect(event?.systemProperties['iothub-connection-device-id']).toBe('tele1');
    expect(String(event?.systemProperties['iothub-connection-auth-method'])).toContain('"type":"sas"');
    expect(event?.systemProperties['iothub-connection-auth-generation-id']).toEqual(expect.any(String));
    expect(event?.systemProperties['iothub-interface-id']).toBe('dtmi:example:Thermostat;1');
    expect(event?.systemProperties['dt-subject']).toBe('thermostat1');
  });

  it('matches telemetry addresses case-insensitively with URL-encoded ids and accepts a burst in order', async () => {
    const connection = await connectAs('tele2');
    const sender = await telemetrySender(connection, '/DEVICES/%74ele2/Messages/Events');
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => outcome(sender, { message_id: `m${i}`, body: dataBody(`m${i}`) })),
    );
    expect(results.every((result) => result.accepted)).toBe(true);
    const events = await endpointEvents((e) => e.deviceId === 'tele2' && e.source === 'Telemetry');
    expect(events.map((e) => Buffer.from(e.body).toString())).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
  });

  it('rejects an oversize or malformed message with an AMQP error and keeps the link usable', async () => {
    const connection = await connectAs('big1');
    const sender = await telemetrySender(connection, '/devices/big1/messages/events');
    const oversize = await outcome(sender, { body: rheaMessage.data_section(Buffer.alloc(256 * 1024 + 1, 0x61)) });
    expect(oversize).toMatchObject({ accepted: false, condition: 'amqp:link:message-size-exceeded' });
    const malformed = await outcome(sender, { body: { not: 'bytes' } });
    expect(malformed).toMatchObject({ accepted: false, condition: 'com.microsoft:argument-error' });
    const badProperty = await outcome(sender, {
      application_properties: { list: rheaTypes.wrap_list([1, 2]) },
      body: dataBody('x'),
    });
    expect(badProperty).toMatchObject({ accepted: false, condition: 'com.microsoft:argument-error' });
    expect(await outcome(sender, { body: dataBody('fine') })).toEqual({ accepted: true });
    // In one burst: a small message and one that fits 256 KB only without the hub's own stamps (the endpoint
    // refuses it). Each gets its own outcome.
    const [small, almost] = await Promise.all([
      outcome(sender, { body: dataBody('small') }),
      outcome(sender, { body: rheaMessage.data_section(Buffer.alloc(256 * 1024 - 8, 0x62)) }),
    ]);
    expect(small).toEqual({ accepted: true });
    expect(almost).toMatchObject({ accepted: false, condition: 'amqp:link:message-size-exceeded' });
    const events = await endpointEvents((e) => e.deviceId === 'big1' && e.source === 'Telemetry');
    expect(events.map((e) => Buffer.from(e.body).toString())).toEqual(['fine', 'small']);
  });

  it('gives each delivery its own outcome when a rejection and an acceptance go out together on one session', async () => {
    // The Node SDK opens every link on one session; rhea folds dispositions of one turn into ranges.
    const connection = await connectAs('tele3');
    const session = await connection.createSession();
    const telemetry = await session.createAwaitableSender({ target: { address: '/devices/tele3/messages/events' } });
    const twin = await session.createAwaitableSender({ target: { address: '/devices/tele3/twin' } });
    await session.createReceiver({ source: { address: '/devices/tele3/twin' } });
    for (let round = 0; round < 5; round++) {
      const [refused, request] = await Promise.all([
        outcome(telemetry, { body: { not: 'bytes' } }),
        outcome(twin, {
          correlation_id: `get-${round}`,
          message_annotations: { operation: 'GET' },
          body: dataBody(' '),
        }),
      ]);
      expect(refused).toMatchObject({ accepted: false, condition: 'com.microsoft:argument-error' });
      expect(request).toEqual({ accepted: true });
      const [request2, refused2] = await Promise.all([
        outcome(twin, {
          correlation_id: `get2-${round}`,
          message_annotations: { operation: 'GET' },
          body: dataBody(' '),
        }),
        outcome(telemetry, { body: { not: 'bytes' } }),
      ]);
      expect(request2).toEqual({ accepted: true });
      expect(refused2).toMatchObject({ accepted: false, condition: 'com.microsoft:argument-error' });
    }
  });

  it('delivers cloud-to-device messages with GUID tags: accept completes, reject dead-letters, release redelivers', async () => {
    const core = testHub.hub.core.cloudToDevice;
    for (const messageId of ['c2d-1', 'c2d-2', 'c2d-3']) {
      await core.send('c2d1', {
        body: Buffer.from(`hello ${messageId}`),
        messageId,
        correlationId: 'corr-9',
        userId: 'svc',
        contentType: 'text/plain',
        contentEncoding: 'utf-8',
        ack: 'full',
        properties: { color: 'blue' },
      });
    }
    const connection = await connectAs('c2d1');
    const box = await inbox(connection, '/devices/c2d1/messages/deviceBound');
    const first = await box.next();
    const second = await box.next();
    const third = await box.next();
    expect([first, second, third].map((item) => item.message.message_id)).toEqual(['c2d-1', 'c2d-2', 'c2d-3']);

    const { message, delivery } = first;
    expect(bodyText(message)).toBe('hello c2d-1');
    expect(message.to).toBe('/devices/c2d1/messages/devicebound');
    expect(message.correlation_id).toBe('corr-9');
    expect(Buffer.from(message.user_id as unknown as Buffer).toString()).toBe('svc');
    expect(message.content_type).toBe('text/plain');
    expect(message.content_encoding).toBe('utf-8');
    expect(message.absolute_expiry_time).toBeInstanceOf(Date);
    expect(message.application_properties).toEqual({ color: 'blue', 'iothub-ack': 'full' });
    const annotations = message.message_annotations ?? {};
    expect(annotations['iothub-enqueuedtime']).toBeInstanceOf(Date);
    expect(annotations['iothub-deliverycount']).toBe(1);
    expect(annotations['x-opt-sequence-number']).toEqual(expect.any(Number));
    const lockToken = String(annotations['x-opt-lock-token']);
    expect(lockToken).toMatch(/^[0-9a-f-]{36}$/);
    // The delivery tag is the lock token GUID in .NET byte order (new Guid(deliveryTag) gives the same text).
    const tag = Buffer.from(delivery.tag as Buffer);
    expect(tag).toHaveLength(16);
    const hex = tag.toString('hex');
    const swapped = (text: string) => text.match(/../g)?.reverse().join('') ?? '';
    expect(
      `${swapped(hex.slice(0, 8))}-${swapped(hex.slice(8, 12))}-${swapped(hex.slice(12, 16))}-${hex.slice(16, 20)}-${hex.slice(20)}`,
    ).toBe(lockToken);
    expect(annotationTypes(message)['iothub-deliverycount']).toMatch(/Ubyte$/i);
    expect(annotationTypes(message)['x-opt-sequence-number']).toMatch(/Ulong$/i);

    // One outcome at a time: rhea folds dispositions written in the same turn into one range with the first's
    // outcome (its write_dispositions compares outcomes only from the second delivery of a range on).
    first.delivery.accept();
    await expect.poll(() => core.count('c2d1')).toBe(2);
    second.delivery.reject({ condition: 'amqp:not-allowed', description: 'no thanks' });
    await expect.poll(() => core.count('c2d1')).toBe(1);
    third.delivery.release();
    const again = await box.next();
    expect(again.message.message_id).toBe('c2d-3');
    expect(again.message.message_annotations?.['iothub-deliverycount']).toBe(2);
    expect(Buffer.from(again.delivery.tag as Buffer)).toHaveLength(16);
    again.delivery.accept();

    const records: FeedbackRecord[] = [];
    while (records.filter((record) => record.deviceId === 'c2d1').length < 3) {
      const batch = await core.receiveFeedback();
      if (!batch) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      records.push(...batch.records);
      await core.completeFeedback(batch.lockToken);
    }
    const byMessage = Object.fromEntries(
      records
        .filter((record) => record.deviceId === 'c2d1')
        .map((record) => [record.originalMessageId, record.statusCode]),
    );
    expect(byMessage).toEqual({ 'c2d-1': 'Success', 'c2d-2': 'Rejected', 'c2d-3': 'Success' });
    expect(await core.count('c2d1')).toBe(0);
  });

  it('delivers only as far as the credit goes and redelivers what a dropped connection left unsettled', async () => {
    const core = testHub.hub.core.cloudToDevice;
    await core.send('c2d2', { body: Buffer.from('one'), messageId: 'one' });
    await core.send('c2d2', { body: Buffer.from('two'), messageId: 'two' });
    const first = await connectAs('c2d2');
    const box = await inbox(first, '/devices/c2d2/messages/devicebound', 1);
    const got = await box.next();
    expect(got.message.message_id).toBe('one');
    // One credit: `two` is still in the queue, not locked by this link.
    const other = await core.receive('c2d2');
    expect(other?.message.messageId).toBe('two');
    await core.abandon('c2d2', other?.lockToken ?? '');

    await first.close();
    const second = await connectAs('c2d2');
    const box2 = await inbox(second, '/devices/c2d2/messages/devicebound', 5);
    const redelivered = await box2.find((message) => message.message_id === 'one');
    expect(redelivered.message.message_annotations?.['iothub-deliverycount']).toBe(2);
    redelivered.delivery.accept();
    const next = await box2.find((message) => message.message_id === 'two');
    next.delivery.accept();
    await expect.poll(() => core.count('c2d2')).toBe(0);
  });

  it('answers twin GET and PATCH with an int status and a long version, and pushes desired patches', async () => {
    const desired = await testHub.request('PATCH', '/twins/twin1', {
      body: { properties: { desired: { fromHub: 'hello' } } },
    });
    expect(desired.status).toBe(200);
    const connection = await connectAs('twin1');
    const channel = { 'com.microsoft:channel-correlation-id': `twin:${randomUUID()}` };
    const requests = await connection.createAwaitableSender({
      target: { address: '/devices/twin1/twin' },
      properties: channel,
    });
    const responses = await inbox(connection, '/devices/twin1/twin', 10, channel);
    const request = async (operation: string, resource: string | undefined, body: string) => {
      const correlationId = randomUUID();
      await requests.send({
        correlation_id: correlationId,
        message_annotations: { operation, ...(resource ? { resource } : {}) },
        body: dataBody(body),
      });
      const response = await responses.find((message) => message.correlation_id === correlationId);
      response.delivery.accept();
      return response.message;
    };

    const get = await request('GET', undefined, ' ');
    expect(get.message_annotations?.status).toBe(200);
    expect(annotationTypes(get).status).toMatch(/Int$/);
    const twin = JSON.parse(bodyText(get)) as { desired: Record<string, unknown>; reported: Record<string, unknown> };
    expect(twin.desired.fromHub).toBe('hello');
    expect(twin.reported.$version).toEqual(expect.any(Number));

    const patch = await request('PATCH', '/properties/reported', '{"firmware":"1.0.0"}');
    expect(patch.message_annotations?.status).toBe(204);
    expect(annotationTypes(patch)).toMatchObject({
      status: expect.stringMatching(/Int$/),
      version: expect.stringMatching(/Long$/),
    });
    const reportedVersion = patch.message_annotations?.version as number;
    const after = await request('GET', undefined, ' ');
    const afterTwin = JSON.parse(bodyText(after)) as { reported: Record<string, unknown> };
    expect(afterTwin.reported).toMatchObject({ firmware: '1.0.0', $version: reportedVersion });

    const bad = await request('PATCH', '/properties/reported', '{not json');
    expect(bad.message_annotations?.status).toBe(400);
    expect(JSON.parse(bodyText(bad))).toMatchObject({ errorCode: 400006 });

    const subscribe = await request('PUT', '/notifications/twin/properties/desired', ' ');
    expect(subscribe.message_annotations?.status).toBe(200);
    const update = await testHub.request('PATCH', '/twins/twin1', {
      body: { properties: { desired: { setpoint: 5 } } },
    });
    expect(update.status).toBe(200);
    const push = await responses.find((message) => message.correlation_id === undefined);
    push.delivery.accept();
    expect(annotationTypes(push.message).version).toMatch(/Long$/);
    const pushed = JSON.parse(bodyText(push.message)) as Record<string, unknown>;
    expect(pushed).toEqual({ setpoint: 5, $version: push.message.message_annotations?.version });

    const unsubscribe = await request('DELETE', '/notifications/twin/properties/desired', ' ');
    expect(unsubscribe.message_annotations?.status).toBe(200);
  });

  it('sends twin responses pre-settled when asked and detaches a response link whose reader takes nothing', async () => {
    const connection = await connectAs('twin2');
    const requests = await connection.createAwaitableSender({ target: { address: '/devices/twin2/twin' } });
    // Node's twin receiver: snd-settle-mode settled (§3.3).
    const settled = await connection.createReceiver({
      source: { address: '/devices/twin2/twin' },
      snd_settle_mode: 1,
      rcv_settle_mode: 0,
    });
    const answers = new Inbox(settled);
    await requests.send({
      correlation_id: 'get-settled',
      message_annotations: { operation: 'GET' },
      body: dataBody(' '),
    });
    const answer = await answers.find((message) => message.correlation_id === 'get-settled');
    expect(answer.delivery.remote_settled).toBe(true);
    await settled.close();

    // A reader granting no credit: responses wait, up to a bound, then the link is detached.
    const stalled = await connection.createReceiver({
      source: { address: '/devices/twin2/twin' },
      autoaccept: false,
      credit_window: 0,
    });
    const overflow = detached(stalled);
    for (let i = 0; i <= 100; i++) {
      await requests.send({
        correlation_id: `get-${i}`,
        message_annotations: { operation: 'GET' },
        body: dataBody(' '),
      });
    }
    expect(await overflow).toMatchObject({ condition: 'amqp:resource-limit-exceeded' });
    // The request link and the connection keep working.
    const fresh = await inbox(connection, '/devices/twin2/twin');
    await requests.send({
      correlation_id: 'get-after',
      message_annotations: { operation: 'GET' },
      body: dataBody(' '),
    });
    expect(
      (await fresh.find((message) => message.correlation_id === 'get-after')).message.message_annotations?.status,
    ).toBe(200);
  });

  it('routes direct methods to the attached method links and fails pending calls when they detach', async () => {
    const connection = await connectAs('meth1');
    const channel = { 'com.microsoft:channel-correlation-id': `methods:${randomUUID()}` };
    const responses = await connection.createAwaitableSender({
      target: { address: '/devices/meth1/methods/devicebound' },
      properties: channel,
    });
    const requests = await inbox(connection, '/devices/meth1/methods/devicebound', 10, channel);
    const invocation = testHub.request('POST', '/twins/meth1/methods', {
      body: { methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 30 },
    });
    const { message, delivery } = await requests.next();
    delivery.accept();
    expect(correlationIdType(message)).toBe('Uuid');
    const requestId = uuid_to_string(message.correlation_id as unknown as Buffer);
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(message.application_properties?.['IoThub-methodname']).toBe('reboot');
    expect(JSON.parse(bodyText(message))).toEqual({ delay: 1 });
    await responses.send({
      correlation_id: message.correlation_id as Buffer,
      application_properties: { 'IoThub-status': rheaTypes.wrap_int(201) },
      body: dataBody({ ok: true }),
    });
    const answer = await invocation;
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ status: 201, payload: { ok: true } });

    // A response whose correlation id is the request id's text is matched too.
    const second = testHub.request('POST', '/twins/meth1/methods', { body: { methodName: 'ping' } });
    const request2 = await requests.next();
    request2.delivery.accept();
    await responses.send({
      correlation_id: uuid_to_string(request2.message.correlation_id as unknown as Buffer),
      application_properties: { 'IoThub-status': rheaTypes.wrap_int(200) },
      body: dataBody(''),
    });
    expect((await second).json).toEqual({ status: 200, payload: null });

    const pending = testHub.request('POST', '/twins/meth1/methods', { body: { methodName: 'slow' } });
    await requests.next();
    await requests.receiver.close();
    const failed = await pending;
    expect(failed.status).toBe(404);
    expect(String((failed.json as { Message?: unknown }).Message)).toContain('DeviceNotOnline');
  });

  it('serves a module: telemetry with its output name, twin and direct methods', async () => {
    const connection = await connectAs('modhost', 'mod1');
    const sender = await telemetrySender(connection, '/devices/modhost/modules/mod1/messages/events');
    expect(
      await outcome(sender, { application_properties: { 'iothub-outputname': 'out1', k: 'v' }, body: dataBody('m') }),
    ).toEqual({ accepted: true });
    const [event] = await endpointEvents((e) => e.deviceId === 'modhost' && e.source === 'Telemetry');
    expect(event?.moduleId).toBe('mod1');
    expect(event?.properties).toEqual({ k: 'v' });
    expect(event?.systemProperties['iothub-outputname']).toBe('out1');
    expect(event?.systemProperties['iothub-connection-module-id']).toBe('mod1');

    // Node's module input receiver (§3.3) stays attached and idle.
    await inbox(connection, '/devices/modhost/modules/mod1/messages/events');

    const twinRequests = await connection.createAwaitableSender({
      target: { address: '/devices/modhost/modules/mod1/twin' },
    });
    const twinResponses = await inbox(connection, '/devices/modhost/modules/mod1/twin');
    await twinRequests.send({
      correlation_id: 'get-1',
      message_annotations: { operation: 'GET' },
      body: dataBody(' '),
    });
    const twin = await twinResponses.find((message) => message.correlation_id === 'get-1');
    expect(twin.message.message_annotations?.status).toBe(200);

    const methodResponses = await connection.createAwaitableSender({
      target: { address: '/devices/modhost/modules/mod1/methods/devicebound' },
    });
    const methodRequests = await inbox(connection, '/devices/modhost/modules/mod1/methods/devicebound');
    const invocation = testHub.request('POST', '/twins/modhost/modules/mod1/methods', { body: { methodName: 'm' } });
    const request = await methodRequests.next();
    await methodResponses.send({
      correlation_id: request.message.correlation_id as Buffer,
      application_properties: { 'IoThub-status': 200 },
      body: dataBody('"done"'),
    });
    expect((await invocation).json).toEqual({ status: 200, payload: 'done' });
    // A module has no cloud-to-device queue: its address under the device is refused for the module's token.
    expect(await refusal(inbox(connection, '/devices/modhost/messages/devicebound'))).toMatchObject({
      condition: 'amqp:unauthorized-access',
    });
  });

  it('multiplexes two devices on one connection and refuses links to a device the connection did not authorize', async () => {
    const connection = await connectAs('multi1');
    expect(await refusal(telemetrySender(connection, '/devices/multi2/messages/events'))).toMatchObject({
      condition: 'amqp:unauthorized-access',
    });
    expect(await refusal(inbox(connection, '/devices/multi2/messages/devicebound'))).toMatchObject({
      condition: 'amqp:unauthorized-access',
    });
    await authorize(connection, 'multi2');
    const one = await telemetrySender(connection, '/devices/multi1/messages/events');
    const two = await telemetrySender(connection, '/devices/multi2/messages/events');
    expect(await outcome(one, { body: dataBody('from one') })).toEqual({ accepted: true });
    expect(await outcome(two, { body: dataBody('from two') })).toEqual({ accepted: true });
    const events = await endpointEvents((e) => e.source === 'Telemetry' && e.deviceId?.startsWith('multi') === true);
    expect(events.map((e) => [e.deviceId, Buffer.from(e.body).toString()]).sort()).toEqual([
      ['multi1', 'from one'],
      ['multi2', 'from two'],
    ]);
    expect(await connectionState('multi1')).toBe('Connected');
    expect(await connectionState('multi2')).toBe('Connected');
  });

  it('detaches the links of an older connection with amqp:link:stolen when the identity connects again', async () => {
    const older = await connectAs('evict1');
    await authorize(older, 'multi1');
    const oldSender = await telemetrySender(older, '/devices/evict1/messages/events');
    const bystander = await telemetrySender(older, '/devices/multi1/messages/events');
    const stolen = detached(oldSender);
    const newer = await connectAs('evict1');
    const newSender = await telemetrySender(newer, '/devices/evict1/messages/events');
    expect(await stolen).toMatchObject({ condition: 'amqp:link:stolen' });
    expect(await outcome(newSender, { body: dataBody('newer') })).toEqual({ accepted: true });
    // The other device on the older connection is untouched.
    expect(await outcome(bystander, { body: dataBody('still here') })).toEqual({ accepted: true });
    expect(await connectionState('evict1')).toBe('Connected');

    // An MQTT connection of the same identity takes over from AMQP too.
    const stolenByMqtt = detached(newSender);
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${testHub.info.ports.mqtt}`, {
      clientId: 'evict1',
      username: 'localhost/evict1/?api-version=2021-04-12',
      password: await createSasToken({
        resourceUri: 'localhost/devices/evict1',
        key: keys.get('evict1') ?? '',
        ttlSeconds: 3600,
      }),
      ca: testHub.ca,
      servername: 'localhost',
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    try {
      expect(await stolenByMqtt).toMatchObject({ condition: 'amqp:link:stolen' });
      expect(await connectionState('evict1')).toBe('Connected');
      // And AMQP takes over from MQTT: the MQTT connection is closed.
      const mqttClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      const newest = await connectAs('evict1');
      const newestSender = await telemetrySender(newest, '/devices/evict1/messages/events');
      await mqttClosed;
      expect(await outcome(newestSender, { body: dataBody('newest') })).toEqual({ accepted: true });
      expect(await connectionState('evict1')).toBe('Connected');
    } finally {
      await client.endAsync(true);
    }
  });

  it('counts connected device and module identities in fieldhub_connected_devices, not connections', async () => {
    // A hub of its own, so that the gauge's values are exact.
    const shared = testHub;
    testHub = await startTestHub();
    try {
      for (const deviceId of ['gauge1', 'gauge2', 'gauge3']) await register(deviceId);
      await register('gauge3', 'mod1');
      const scrape = async () => (await testHub.request('GET', '/metrics', { apiVersion: false })).text;
      const gauge = async () =>
        Number(/^fieldhub_connected_devices\{protocol="amqp"\} (\d+)$/m.exec(await scrape())?.[1] ?? Number.NaN);
      // A connection without CBS, and one authorized for a device that opens no device link: no device.
      await connect();
      await connectAs('gauge1');
      expect(await gauge()).toBe(0);
      // One connection carrying two devices (the second one on two links).
      const multiplexed = await connectAs('gauge1');
      await authorize(multiplexed, 'gauge2');
      await telemetrySender(multiplexed, '/devices/gauge1/messages/events');
      await telemetrySender(multiplexed, '/devices/gauge2/messages/events');
      await inbox(multiplexed, '/devices/gauge2/messages/devicebound');
      await expect.poll(gauge).toBe(2);
      // A device and its module on another connection.
      const other = await connectAs('gauge3');
      await authorize(other, 'gauge3', 'mod1');
      await telemetrySender(other, '/devices/gauge3/messages/events');
      await telemetrySender(other, '/devices/gauge3/modules/mod1/messages/events');
      await expect.poll(gauge).toBe(4);
      // gauge1 connects again elsewhere: its older session is evicted, it still counts once.
      const newer = await connectAs('gauge1');
      const takeover = await telemetrySender(newer, '/devices/gauge1/messages/events');
      expect(takeover.isOpen()).toBe(true);
      await expect.poll(gauge).toBe(4);
      // The multiplexed connection goes: gauge2 leaves.
      await multiplexed.close();
      await expect.poll(gauge).toBe(3);
      // The connection counter still counts connections: the five above.
      expect(await scrape()).toMatch(/^fieldhub_connections_total\{protocol="amqp",outcome="opened"\} 5$/m);
    } finally {
      for (const connection of connections.splice(0)) await connection.close().catch(() => undefined);
      await testHub.stop();
      testHub = shared;
    }
  });

  it('reports Connected on the first device link and Disconnected after the last', async () => {
    const connection = await connectAs('state1');
    expect(await connectionState('state1')).toBe('Disconnected');
    const sender = await telemetrySender(connection, '/devices/state1/messages/events');
    const box = await inbox(connection, '/devices/state1/messages/devicebound');
    await expect.poll(() => connectionState('state1')).toBe('Connected');
    await sender.close();
    expect(await connectionState('state1')).toBe('Connected');
    await box.receiver.close();
    await expect.poll(() => connectionState('state1')).toBe('Disconnected');
    const events = await endpointEvents((e) => e.deviceId === 'state1' && e.source === 'deviceConnectionStateEvents');
    expect(events.map((e) => e.properties.opType)).toEqual(['deviceConnected', 'deviceDisconnected']);
  });
});
