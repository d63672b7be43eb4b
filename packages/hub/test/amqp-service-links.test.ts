import { randomUUID } from 'node:crypto';
import { createSasToken } from '@fieldhub/auth';
import mqtt, { type MqttClient } from 'mqtt';
import {
  type AwaitableSender,
  Connection,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  ReceiverEvents,
  message as rheaMessage,
  string_to_uuid,
} from 'rhea-promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FeedbackRecord } from '../src/core/cloud-to-device';
import { startTestHub, type TestHub } from './helpers/test-hub';

// The AMQP service links (protocol-service.md §3.2-3.4) against the in-process hub over real TLS: a service
// connection as the `azure-iothub` SDK opens it (no SASL, CBS put-token), rhea-promise links, and devices on MQTT
// (PUBACK completes) or settling through the core the device heads call (MQTT cannot reject).

interface FeedbackBatchSeen {
  readonly message: Message;
  readonly delivery: Delivery;
  readonly records: FeedbackRecord[];
}

const feedbackAddress = '/messages/serviceBound/feedback';
const sendAddress = '/messages/devicebound';
const to = (deviceId: string) => `/devices/${encodeURIComponent(deviceId)}/messages/devicebound`;

async function putToken(connection: Connection, audience: string, token: string): Promise<Message> {
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
    application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience },
    body: token,
  });
  return reply;
}

function bodyText(message: Message): string {
  const body = message.body as { content?: Buffer } | Buffer | string;
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return Buffer.from(body.content ?? []).toString('utf8');
}

describe('AMQP service links', () => {
  let testHub: TestHub;
  const connections: Connection[] = [];
  const clients: MqttClient[] = [];
  const keys = new Map<string, string>();

  const createDevice = async (deviceId: string) => {
    const response = await testHub.request('PUT', `/devices/${encodeURIComponent(deviceId)}`, { body: { deviceId } });
    expect(response.status).toBe(200);
    keys.set(
      deviceId,
      (response.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey
        .primaryKey,
    );
  };

  /** A service connection as the Node SDK opens it: TLS, no SASL, then CBS put-token with a policy's token. */
  const serviceConnection = async (policy = 'iothubowner'): Promise<Connection> => {
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
    const answer = await putToken(connection, testHub.info.hostName, await testHub.serviceToken(policy));
    expect(answer.application_properties?.['status-code']).toBe(200);
    return connection;
  };

  const sendLink = (connection: Connection): Promise<AwaitableSender> =>
    connection.createAwaitableSender({ target: { address: sendAddress } });

  /** Sends and resolves with the delivery's outcome: `accepted` or the rejection's AMQP error. */
  const outcome = async (sender: AwaitableSender, message: Message) => {
    try {
      await sender.send(message, { timeoutInSeconds: 30 });
      return { accepted: true } as const;
    } catch (error) {
      const inner = (error as { innerError?: { condition: string; description: string; info?: unknown } }).innerError;
      if (!inner) throw error;
      // rhea's decoded error reads its fields through getters: copy them.
      return { accepted: false, condition: inner.condition, description: inner.description, info: inner.info } as const;
    }
  };

  const connectDevice = async (deviceId: string): Promise<MqttClient> => {
    const password = await createSasToken({
      resourceUri: `localhost/devices/${deviceId}`,
      key: keys.get(deviceId) ?? '',
      ttlSeconds: 3600,
    });
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${testHub.info.ports.mqtt}`, {
      clientId: deviceId,
      username: `localhost/${deviceId}/?api-version=2021-04-12`,
      password,
      ca: testHub.ca,
      servername: 'localhost',
      protocolVersion: 4,
      reconnectPeriod: 0,
      clean: false,
    });
    clients.push(client);
    return client;
  };

  /** A feedback receiver that settles nothing by itself; `batches` fills as they arrive. */
  const feedbackReceiver = async (connection: Connection, credit = 10, address = feedbackAddress) => {
    const batches: FeedbackBatchSeen[] = [];
    let wake: (() => void) | undefined;
    const receiver: Receiver = await connection.createReceiver({
      source: { address },
      autoaccept: false,
      credit_window: 0,
    });
    receiver.on(ReceiverEvents.message, (event: EventContext) => {
      if (!event.message || !event.delivery) return;
      batches.push({
        message: event.message,
        delivery: event.delivery,
        records: JSON.parse(bodyText(event.message)) as FeedbackRecord[],
      });
      wake?.();
    });
    receiver.addCredit(credit);
    /** Waits until the records received (from batch `from` on) satisfy `done`. */
    const until = async (done: (records: FeedbackRecord[]) => boolean, from = 0) => {
      for (;;) {
        const records = batches.slice(from).flatMap((batch) => batch.records);
        if (done(records)) return records;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    };
    return { receiver, batches, until };
  };

  beforeAll(async () => {
    testHub = await startTestHub();
    for (const deviceId of [
      'fb1',
      'fb2',
      'map1',
      'uuid1',
      'order1',
      'full1',
      'big1',
      'rel1',
      'rej1',
      'mix1',
      'dev#1+(x)',
    ]) {
      await createDevice(deviceId);
    }
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.endAsync(true);
    for (const connection of connections.splice(0)) await connection.close().catch(() => undefined);
  });
  afterAll(async () => {
    await testHub?.stop();
  });

  it('queues messages sent on /messages/devicebound and delivers Success and Rejected feedback batches', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const send = (deviceId: string, messageId: string) =>
      outcome(sender, {
        to: to(deviceId),
        message_id: messageId,
        application_properties: { 'iothub-ack': 'full' },
        body: rheaMessage.data_section(Buffer.from(messageId)),
      });
    expect(await send('fb1', 'fb-ok')).toEqual({ accepted: true });
    expect(await send('fb2', 'fb-no')).toEqual({ accepted: true });

    // One device completes (MQTT PUBACK), the other rejects (the core operation the device heads call).
    const device = await connectDevice('fb1');
    const received = new Promise<string>((resolve) => device.once('message', (topic) => resolve(topic)));
    await device.subscribeAsync('devices/fb1/messages/devicebound/#', { qos: 1 });
    expect(await received).toContain('%24.mid=fb-ok');
    const core = testHub.hub.core.cloudToDevice;
    const second = await core.receive('fb2');
    expect(second?.message.messageId).toBe('fb-no');
    await core.reject('fb2', second?.lockToken ?? '');

    const feedback = await feedbackReceiver(connection);
    const records = await feedback.until(
      (seen) => seen.filter((record) => record.deviceId.startsWith('fb')).length >= 2,
    );
    const generation = async (deviceId: string) => (await testHub.hub.core.registry.getDevice(deviceId)).generationId;
    const ours = records.filter((record) => record.deviceId.startsWith('fb'));
    expect(ours.sort((a, b) => a.deviceId.localeCompare(b.deviceId))).toEqual([
      {
        originalMessageId: 'fb-ok',
        deviceId: 'fb1',
        deviceGenerationId: await generation('fb1'),
        statusCode: 'Success',
        description: 'Success',
        enqueuedTimeUtc: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      },
      {
        originalMessageId: 'fb-no',
        deviceId: 'fb2',
        deviceGenerationId: await generation('fb2'),
        statusCode: 'Rejected',
        description: 'Rejected',
        enqueuedTimeUtc: expect.any(String),
      },
    ]);
    const batch = feedback.batches[0]!;
    expect(batch.message.content_type).toBe('application/vnd.microsoft.iothub.feedback.json');
    expect(Buffer.from(batch.message.user_id as unknown as Buffer).toString()).toBe(testHub.hub.core.context.hubName);
    expect(batch.message.application_properties).toEqual({ 'iothub-interface-name': 'feedback' });
    expect(batch.delivery.tag).toHaveLength(16);

    // Accepting completes the batches: nothing is left for the HTTP feedback receive either.
    for (const seen of feedback.batches) seen.delivery.accept();
    await expect.poll(async () => (await testHub.hub.core.cloudToDevice.depths()).feedback).toBe(0);
    expect((await testHub.request('GET', feedbackAddress)).status).toBe(204);
  });

  it('maps the AMQP properties, application properties and body onto the queued message', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const expiry = new Date(Date.now() + 10 * 60_000);
    const messageId = randomUUID();
    const correlationId = randomUUID();
    const sent = await outcome(sender, {
      to: to('map1'),
      message_id: string_to_uuid(messageId),
      correlation_id: string_to_uuid(correlationId),
      content_type: 'application/json',
      content_encoding: 'utf-8',
      absolute_expiry_time: expiry,
      application_properties: { 'iothub-ack': 'positive', color: 'blue', count: 3, on: true },
      body: rheaMessage.data_section(Buffer.from('{"on":true}')),
    });
    expect(sent).toEqual({ accepted: true });
    const delivery = await testHub.hub.core.cloudToDevice.receive('map1');
    expect(delivery?.message).toMatchObject({
      deviceId: 'map1',
      messageId,
      correlationId,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      expiryTimeUtc: expiry.getTime(),
      ack: 'positive',
      properties: { color: 'blue', count: '3', on: 'true' },
    });
    expect(Buffer.from(delivery?.message.body ?? []).toString()).toBe('{"on":true}');

    // An amqp-value string body and a device id that needs URL encoding.
    expect(await outcome(sender, { to: to('dev#1+(x)'), message_id: 'slashed', body: 'text body' })).toEqual({
      accepted: true,
    });
    const slashed = await testHub.hub.core.cloudToDevice.receive('dev#1+(x)');
    expect(slashed?.message).toMatchObject({ messageId: 'slashed', to: '/devices/dev%231%2B(x)/messages/devicebound' });
    expect(Buffer.from(slashed?.message.body ?? []).toString()).toBe('text body');
  });

  it('delivers a uuid message id to an MQTT device as its canonical lower-case string', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const messageId = randomUUID();
    await outcome(sender, { to: to('uuid1'), message_id: string_to_uuid(messageId), body: 'x' });
    const device = await connectDevice('uuid1');
    const received = new Promise<string>((resolve) => device.once('message', (topic) => resolve(topic)));
    await device.subscribeAsync('devices/uuid1/messages/devicebound/#', { qos: 1 });
    expect(await received).toContain(`%24.mid=${messageId}`);
  });

  it('queues 20 messages sent back to back in the order they were sent', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const ids = Array.from({ length: 20 }, (_, index) => `order-${index}`);
    const outcomes = await Promise.all(
      ids.map((id) => outcome(sender, { to: to('order1'), message_id: id, body: id })),
    );
    expect(outcomes.every((result) => result.accepted)).toBe(true);
    // The hub grants credit per settled message: back to the full window once all are settled.
    await expect.poll(() => sender.credit).toBe(100);
    const device = await connectDevice('order1');
    const topics: string[] = [];
    const all = new Promise<void>((resolve) =>
      device.on('message', (topic) => {
        topics.push(topic);
        if (topics.length === ids.length) resolve();
      }),
    );
    await device.subscribeAsync('devices/order1/messages/devicebound/#', { qos: 1 });
    await all;
    expect(topics.map((topic) => /%24\.mid=([^&]+)/.exec(topic)?.[1])).toEqual(ids);
  });

  it('refuses a message to an unknown device with amqp:not-found and keeps the link usable', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    expect(await outcome(sender, { to: to('nobody'), body: 'x' })).toMatchObject({
      accepted: false,
      condition: 'amqp:not-found',
      info: expect.objectContaining({ 'com.microsoft:error-code': 404001 }),
    });
    expect(await outcome(sender, { to: to('map1'), message_id: 'after-refusal', body: 'x' })).toEqual({
      accepted: true,
    });
  });

  it('gives each cloud-to-device send its own outcome when a refusal and an acceptance are settled together', async () => {
    // rhea 3.0.5 folds the dispositions of one session in one turn into ranges (heads/amqp/settlement.ts): without
    // the hub spreading differing outcomes over turns, the second send of a burst reports the first one's outcome.
    const connection = await serviceConnection();
    const session = await connection.createSession();
    const sender = await session.createAwaitableSender({ target: { address: sendAddress } });
    const refusedTo = { condition: 'amqp:not-allowed' };
    for (let round = 0; round < 5; round++) {
      // Queued, then refused at once (a malformed `to`): both settled in the turn the first one is stored.
      const [queued, refused] = await Promise.all([
        outcome(sender, { to: to('mix1'), message_id: `mix-a-${round}`, body: 'a' }),
        outcome(sender, { to: '/devices/', body: 'x' }),
      ]);
      expect(queued).toEqual({ accepted: true });
      expect(refused).toMatchObject({ accepted: false, ...refusedTo });
      // Refused (unknown device), then refused differently, then queued.
      const [unknown, malformed, queued2] = await Promise.all([
        outcome(sender, { to: to('nobody'), body: 'x' }),
        outcome(sender, { body: 'x' }),
        outcome(sender, { to: to('mix1'), message_id: `mix-b-${round}`, body: 'b' }),
      ]);
      expect(unknown).toMatchObject({ accepted: false, condition: 'amqp:not-found' });
      expect(malformed).toMatchObject({ accepted: false, ...refusedTo });
      expect(queued2).toEqual({ accepted: true });
    }
    const device = await connectDevice('mix1');
    const ids: string[] = [];
    const all = new Promise<void>((resolve) =>
      device.on('message', (topic) => {
        ids.push(/%24\.mid=([^&]+)/.exec(topic)?.[1] ?? '');
        if (ids.length === 10) resolve();
      }),
    );
    await device.subscribeAsync('devices/mix1/messages/devicebound/#', { qos: 1 });
    await all;
    expect(ids).toEqual([0, 1, 2, 3, 4].flatMap((round) => [`mix-a-${round}`, `mix-b-${round}`]));
  });

  it('refuses a missing, malformed or module `to` with amqp:not-allowed (InvalidOperation)', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    for (const address of [
      undefined,
      '/devices/',
      '/devices/x/messages/events',
      '/devices/map1/modules/m1/messages/devicebound',
      '/devices/%E0%A4%A/messages/devicebound',
    ]) {
      const result = await outcome(sender, { ...(address === undefined ? {} : { to: address }), body: 'x' });
      expect(result).toMatchObject({ accepted: false, condition: 'amqp:not-allowed' });
      expect((result as { description: string }).description).toContain(
        'Amqp Message.Properties.To must contain the device identifier',
      );
    }
  });

  it('refuses a 51st queued message with amqp:resource-limit-exceeded', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    for (let index = 0; index < 50; index++) {
      expect(await outcome(sender, { to: to('full1'), body: `m${index}` })).toEqual({ accepted: true });
    }
    expect(await outcome(sender, { to: to('full1'), body: 'one too many' })).toMatchObject({
      accepted: false,
      condition: 'amqp:resource-limit-exceeded',
    });
    expect(await testHub.hub.core.cloudToDevice.count('full1')).toBe(50);
  });

  it('refuses a message over 64 KB with amqp:link:message-size-exceeded', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const result = await outcome(sender, {
      to: to('big1'),
      body: rheaMessage.data_section(Buffer.alloc(64 * 1024 + 1, 1)),
    });
    expect(result).toMatchObject({ accepted: false, condition: 'amqp:link:message-size-exceeded' });
    expect(
      await outcome(sender, { to: to('big1'), body: rheaMessage.data_section(Buffer.alloc(60 * 1024, 1)) }),
    ).toEqual({ accepted: true });
  });

  it('refuses bad fields with com.microsoft:argument-error', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const refusals = [
      { to: to('map1'), application_properties: { 'iothub-ack': 'sometimes' }, body: 'x' },
      { to: to('map1'), message_id: 'x'.repeat(129), body: 'x' },
      { to: to('map1'), body: rheaMessage.sequence_section([1, 2]) },
      { to: to('map1'), body: { a: 1 } },
      { to: to('map1'), application_properties: { nested: Buffer.from('bin') }, body: 'x' },
    ];
    for (const message of refusals) {
      expect(await outcome(sender, message as Message)).toMatchObject({
        accepted: false,
        condition: 'com.microsoft:argument-error',
      });
    }
  });

  it('redelivers a released feedback batch and drops a rejected one', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const core = testHub.hub.core.cloudToDevice;
    const completeOne = async (deviceId: string, messageId: string) => {
      await outcome(sender, {
        to: to(deviceId),
        message_id: messageId,
        application_properties: { 'iothub-ack': 'positive' },
        body: 'x',
      });
      const delivery = await core.receive(deviceId);
      await core.complete(deviceId, delivery?.lockToken ?? '');
    };
    const feedback = await feedbackReceiver(connection);
    const has = (id: string) => (records: FeedbackRecord[]) =>
      records.some((record) => record.originalMessageId === id);

    await completeOne('rel1', 'released-1');
    await feedback.until(has('released-1'));
    for (const batch of feedback.batches) batch.delivery.release();
    let from = feedback.batches.length;
    await feedback.until(has('released-1'), from);
    for (const batch of feedback.batches.slice(from)) batch.delivery.accept();

    await completeOne('rej1', 'rejected-1');
    from = feedback.batches.length;
    await feedback.until(has('rejected-1'), from);
    for (const batch of feedback.batches.slice(from)) {
      batch.delivery.reject({ condition: 'amqp:internal-error', description: 'cannot process' });
    }
    // A rejected batch is dead-lettered: the next batch carries newer records only.
    await completeOne('rej1', 'after-reject');
    from = feedback.batches.length;
    const after = await feedback.until(has('after-reject'), from);
    expect(after.map((record) => record.originalMessageId)).not.toContain('rejected-1');
    for (const batch of feedback.batches.slice(from)) batch.delivery.accept();
    await expect.poll(async () => (await core.depths()).feedback).toBe(0);
  });

  it('gives the batches of a closed feedback link back at once', async () => {
    const connection = await serviceConnection();
    const sender = await sendLink(connection);
    const core = testHub.hub.core.cloudToDevice;
    await outcome(sender, {
      to: to('rel1'),
      message_id: 'orphan-1',
      application_properties: { 'iothub-ack': 'full' },
      body: 'x',
    });
    const delivery = await core.receive('rel1');
    await core.complete('rel1', delivery?.lockToken ?? '');
    const first = await feedbackReceiver(connection);
    await first.until((records) => records.some((record) => record.originalMessageId === 'orphan-1'));
    await first.receiver.close();
    // Well within the 60 s lock: the records came back when the link closed.
    const second = await feedbackReceiver(connection);
    await second.until((records) => records.some((record) => record.originalMessageId === 'orphan-1'));
    for (const batch of second.batches) batch.delivery.accept();
  });

  it('attaches the file notification links and keeps them open with nothing to deliver', async () => {
    const connection = await serviceConnection();
    for (const address of [
      '/messages/serviceBound/filenotifications',
      '/messages/servicebound/fileuploadnotifications',
    ]) {
      const receiver = await connection.createReceiver({ source: { address } });
      expect(receiver.isOpen()).toBe(true);
      expect(receiver.source?.address).toBe(address);
      await receiver.close();
    }
  });

  it('refuses the service links to a policy without ServiceConnect', async () => {
    const connection = await serviceConnection('registryRead');
    // rhea-promise may settle the attach on the hub's attach (null terminus) or on the detach that follows it.
    const refusal = async (open: () => Promise<{ error?: unknown }>) => {
      try {
        const link = await open();
        await expect.poll(() => link.error).toBeDefined();
        return (link.error as { condition?: string }).condition;
      } catch (error) {
        return (error as { condition?: string }).condition;
      }
    };
    expect(await refusal(() => sendLink(connection))).toBe('amqp:unauthorized-access');
    for (const address of [feedbackAddress, '/messages/serviceBound/filenotifications']) {
      expect(await refusal(() => connection.createReceiver({ source: { address } }))).toBe('amqp:unauthorized-access');
    }
  });
});

describe('AMQP feedback link flow control', () => {
  let testHub: TestHub;
  let connection: Connection | undefined;

  beforeAll(async () => {
    testHub = await startTestHub();
  });
  afterAll(async () => {
    await connection?.close().catch(() => undefined);
    await testHub?.stop();
  });

  it('sends one batch of at most 64 records per credit and the rest when credit is added', async () => {
    const core = testHub.hub.core.cloudToDevice;
    for (const deviceId of ['credit1', 'credit2']) {
      const response = await testHub.request('PUT', `/devices/${deviceId}`, { body: { deviceId } });
      expect(response.status).toBe(200);
      for (let index = 0; index < 35; index++) {
        await core.send(deviceId, { body: new Uint8Array(), messageId: `${deviceId}-${index}`, ack: 'full' });
        const delivery = await core.receive(deviceId);
        await core.complete(deviceId, delivery?.lockToken ?? '');
      }
    }
    connection = new Connection({
      transport: 'tls',
      host: '127.0.0.1',
      hostname: 'localhost',
      servername: 'localhost',
      port: testHub.info.ports.amqp ?? 0,
      ca: testHub.ca,
      reconnect: false,
    });
    await connection.open();
    await putToken(connection, testHub.info.hostName, await testHub.serviceToken('service'));
    const batches: { records: FeedbackRecord[]; delivery: Delivery }[] = [];
    let wake: (() => void) | undefined;
    const receiver = await connection.createReceiver({
      source: { address: feedbackAddress },
      autoaccept: false,
      credit_window: 0,
    });
    receiver.on(ReceiverEvents.message, (event: EventContext) => {
      if (!event.message || !event.delivery) return;
      batches.push({ records: JSON.parse(bodyText(event.message)) as FeedbackRecord[], delivery: event.delivery });
      wake?.();
    });
    const next = async (count: number) => {
      while (batches.length < count) await new Promise<void>((resolve) => (wake = resolve));
    };
    receiver.addCredit(1);
    await next(1);
    expect(batches[0]?.records).toHaveLength(64);
    receiver.addCredit(1);
    await next(2);
    expect(batches[1]?.records).toHaveLength(6);
    const ids = batches.flatMap((batch) => batch.records.map((record) => record.originalMessageId));
    expect(new Set(ids).size).toBe(70);
    for (const batch of batches) batch.delivery.accept();
    await expect.poll(async () => (await core.depths()).feedback).toBe(0);
  });
});
