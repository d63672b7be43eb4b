import { randomUUID } from 'node:crypto';
import {
  type AmqpError,
  Connection,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  ReceiverEvents,
  type Sender,
  types,
} from 'rhea-promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type EndpointMessageInput, partitionOf } from '../src/core/telemetry';
import { startTestHub, type TestHub } from './helpers/test-hub';

// The built-in endpoint as Event Hubs speaks it (protocol-service.md §4) against the in-process hub over real TLS:
// rhea-promise links shaped as @azure/event-hubs 6 shapes them (partitionReceiver.js, managementClient.js), a
// service connection authorized by CBS put-token, events appended through the core the device heads call.

const selectorFilter = (expression: string) => ({
  'apache.org:selector-filter:string': types.wrap_described(expression, 0x468c00000004),
});

interface Received {
  readonly message: Message;
  readonly delivery: Delivery;
}

/** A partition receiver as the tests drive it. */
interface TestReceiver {
  readonly receiver: Receiver;
  readonly received: Received[];
  /** Resolves once `count` messages arrived in total. */
  waitFor(count: number): Promise<Received[]>;
  /** Resolves with the error the hub detached the link with. */
  readonly detached: Promise<AmqpError | undefined>;
}

interface ReceiverOptions {
  readonly filter?: string;
  /** Credit granted up front (rhea's credit window); 0 grants none. */
  readonly credit?: number;
  readonly epoch?: number;
  readonly desiredCapabilities?: string[];
}

describe('AMQP Event Hubs-compatible endpoint', () => {
  let testHub: TestHub;
  let hubName: string;
  const connections: Connection[] = [];
  const devices = new Map<number, string>();

  /** A device id whose telemetry lands on `partition` (the hub's FNV-1a partitioning). */
  const deviceOn = (partition: number): string => {
    const known = devices.get(partition);
    if (known) return known;
    for (let index = 0; ; index++) {
      const id = `eh-device-${index}`;
      if (partitionOf(id, testHub.hub.core.telemetry.partitionCount) === partition) {
        devices.set(partition, id);
        return id;
      }
    }
  };

  const append = (partition: number, input: Partial<EndpointMessageInput> = {}) =>
    testHub.hub.core.telemetry.append({ deviceId: deviceOn(partition), body: Buffer.from('{}'), ...input });

  /** The last sequence number of a partition now (-1 when empty). */
  const lastSequence = async (partition: number) =>
    (await testHub.hub.core.telemetry.partitionInfo(partition)).lastSequenceNumber;

  /** A connection authorized as a policy (CBS put-token), as the Event Hubs client opens it: SASL ANONYMOUS. */
  const serviceConnection = async (policy = 'iothubowner'): Promise<Connection> => {
    const connection = new Connection({
      transport: 'tls',
      host: '127.0.0.1',
      hostname: 'localhost',
      servername: 'localhost',
      port: testHub.info.ports.amqp ?? 0,
      ca: testHub.ca,
      reconnect: false,
      username: policy,
    });
    await connection.open();
    connections.push(connection);
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
        name: `sb://localhost/${hubName}`,
      },
      body: await testHub.serviceToken(policy),
    });
    expect((await reply).application_properties?.['status-code']).toBe(200);
    return connection;
  };

  /** A `$management` request/response pair as core-amqp's RequestResponseLink opens it. */
  const management = async (connection: Connection, address = '$management') => {
    const replyTo = `reply-${randomUUID()}`;
    const session = await connection.createSession();
    const sender: Sender = await session.createSender({ target: { address } });
    const receiver = await session.createReceiver({ name: replyTo, source: { address }, target: { address: replyTo } });
    const waiting = new Map<string, (message: Message) => void>();
    receiver.on(ReceiverEvents.message, (event: EventContext) => {
      const id = String(event.message?.correlation_id);
      waiting.get(id)?.(event.message as Message);
      waiting.delete(id);
    });
    return {
      request(properties: Record<string, unknown>): Promise<Message> {
        const messageId = randomUUID();
        const reply = new Promise<Message>((resolve) => waiting.set(messageId, resolve));
        sender.send({
          message_id: messageId,
          reply_to: replyTo,
          application_properties: properties,
          body: Buffer.from('[]'),
        });
        return reply;
      },
    };
  };

  const openReceiver = async (
    connection: Connection,
    address: string,
    options: ReceiverOptions = {},
  ): Promise<TestReceiver> => {
    const received: Received[] = [];
    const waiters: { count: number; resolve: (value: Received[]) => void }[] = [];
    let detach: (error: AmqpError | undefined) => void = () => {};
    const detached = new Promise<AmqpError | undefined>((resolve) => {
      detach = resolve;
    });
    const properties: Record<string, unknown> = {};
    if (options.epoch !== undefined) properties['com.microsoft:epoch'] = types.wrap_long(options.epoch);
    const receiver = await connection
      .createReceiver({
        name: `receiver-${randomUUID()}`,
        source: {
          address,
          ...(options.filter !== undefined ? { filter: selectorFilter(options.filter) } : {}),
        },
        credit_window: options.credit ?? 100,
        autoaccept: true,
        properties,
        ...(options.desiredCapabilities ? { desired_capabilities: options.desiredCapabilities } : {}),
        onMessage: (event: EventContext) => {
          if (!event.message || !event.delivery) return;
          received.push({ message: event.message, delivery: event.delivery });
          for (const waiter of [...waiters]) {
            if (received.length >= waiter.count) {
              waiters.splice(waiters.indexOf(waiter), 1);
              waiter.resolve(received.slice(0, waiter.count));
            }
          }
        },
        onError: (event: EventContext) => detach(event.receiver?.error as AmqpError | undefined),
        onClose: (event: EventContext) => detach(event.receiver?.error as AmqpError | undefined),
      })
      .catch((error: AmqpError) => {
        detach(error);
        return undefined;
      });
    return {
      get receiver() {
        if (!receiver) throw new Error('the receiver was refused');
        return receiver;
      },
      received,
      detached,
      waitFor(count) {
        if (received.length >= count) return Promise.resolve(received.slice(0, count));
        return new Promise((resolve) => waiters.push({ count, resolve }));
      },
    };
  };

  const partitionAddress = (partition: number, group = '$default') =>
    `${hubName}/ConsumerGroups/${group}/Partitions/${partition}`;

  const bodyText = (message: Message): string => {
    const body = message.body as { content?: Buffer } | Buffer;
    return Buffer.isBuffer(body) ? body.toString('utf8') : Buffer.from(body.content ?? []).toString('utf8');
  };

  beforeAll(async () => {
    testHub = await startTestHub();
    hubName = testHub.hub.core.context.hubName;
  });

  afterEach(async () => {
    for (const connection of connections.splice(0)) await connection.close().catch(() => {});
  });

  afterAll(async () => {
    await testHub?.stop();
  });

  describe('$management', () => {
    it('describes the event hub: name, creation time, partition count and ids', async () => {
      const connection = await serviceConnection();
      const node = await management(connection);
      const answer = await node.request({ operation: 'READ', name: hubName, type: 'com.microsoft:eventhub' });
      expect(answer.application_properties?.['status-code']).toBe(200);
      const body = answer.body as Record<string, unknown>;
      expect(body.name).toBe(hubName);
      expect(body.partition_count).toBe(4);
      expect(body.partition_ids).toEqual(['0', '1', '2', '3']);
      expect(body.created_at).toBeInstanceOf(Date);
      // The creation time is stored: the next answer (on IoT Hub's own address) gives the same one.
      const again = await (await management(connection, '/messages/events/$management')).request({
        operation: 'READ',
        name: hubName,
        type: 'com.microsoft:eventhub',
      });
      expect((again.body as Record<string, unknown>).created_at).toEqual(body.created_at);
    });

    it('describes a partition: begin and last sequence number, last offset and time, emptiness', async () => {
      const first = await append(1);
      const last = await append(1, { body: Buffer.from('second') });
      const connection = await serviceConnection();
      const node = await management(connection, `${hubName}/$management`);
      const answer = await node.request({
        operation: 'READ',
        name: hubName,
        type: 'com.microsoft:partition',
        partition: '1',
      });
      expect(answer.application_properties?.['status-code']).toBe(200);
      const body = answer.body as Record<string, unknown>;
      expect(body).toMatchObject({
        name: hubName,
        partition: '1',
        last_enqueued_sequence_number: last.sequenceNumber,
        last_enqueued_offset: last.offset,
        is_partition_empty: false,
      });
      expect(body.begin_sequence_number as number).toBeLessThanOrEqual(first.sequenceNumber);
      expect((body.last_enqueued_time_utc as Date).getTime()).toBe(last.enqueuedTime);
    });

    it('answers errors with status-code, status-description and error-condition', async () => {
      const connection = await serviceConnection();
      const node = await management(connection);
      const cases: [Record<string, unknown>, number, string][] = [
        [
          { operation: 'READ', name: hubName, type: 'com.microsoft:partition', partition: '9' },
          400,
          'argument-out-of-range',
        ],
        [
          { operation: 'READ', name: hubName, type: 'com.microsoft:partition', partition: 'x' },
          400,
          'argument-out-of-range',
        ],
        [{ operation: 'READ', name: 'other-hub', type: 'com.microsoft:eventhub' }, 404, 'amqp:not-found'],
        [{ operation: 'READ', name: hubName, type: 'com.microsoft:queue' }, 400, 'com.microsoft:argument-error'],
        [{ operation: 'DELETE', name: hubName, type: 'com.microsoft:eventhub' }, 400, 'com.microsoft:argument-error'],
      ];
      for (const [request, status, condition] of cases) {
        const answer = await node.request(request);
        expect(answer.application_properties?.['status-code'], JSON.stringify(request)).toBe(status);
        expect(String(answer.application_properties?.['error-condition'])).toContain(condition);
        expect(answer.application_properties?.['status-description']).toEqual(expect.any(String));
      }
    });

    it('refuses a connection without a ServiceConnect token', async () => {
      const connection = await serviceConnection('registryRead');
      const replyTo = `reply-${randomUUID()}`;
      const refused = await connection
        .createReceiver({ name: replyTo, source: { address: '$management' }, target: { address: replyTo } })
        .then(
          (receiver) =>
            new Promise<AmqpError | undefined>((resolve) => {
              if (receiver.error) resolve(receiver.error as AmqpError);
              receiver.on(ReceiverEvents.receiverError, (event: EventContext) =>
                resolve(event.receiver?.error as AmqpError),
              );
              receiver.on(ReceiverEvents.receiverClose, (event: EventContext) =>
                resolve(event.receiver?.error as AmqpError),
              );
            }),
          (error: AmqpError) => error,
        );
      expect(refused?.condition).toBe('amqp:unauthorized-access');
    });
  });

  describe('partition receivers', () => {
    it('delivers events with their body, properties, annotations and Event Hubs positions', async () => {
      const from = await lastSequence(2);
      const event = await append(2, {
        body: Buffer.from('{"temperature":21}'),
        properties: { alert: 'no', 'iothub-creation-time-utc': '2026-11-27T16:00:00Z' },
        messageId: 'm-1',
        correlationId: 'c-1',
        userId: 'u-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        authMethod: { scope: 'device', type: 'sas', issuer: 'iothub' },
        authGenerationId: '638000000000000000',
      });
      const connection = await serviceConnection();
      const reader = await openReceiver(connection, partitionAddress(2), {
        filter: `amqp.annotation.x-opt-sequence-number > '${from}'`,
      });
      const [{ message, delivery }] = (await reader.waitFor(1)) as [Received];
      expect(bodyText(message)).toBe('{"temperature":21}');
      expect(message.message_id).toBe('m-1');
      expect(message.correlation_id).toBe('c-1');
      expect(Buffer.from(message.user_id as unknown as Buffer).toString()).toBe('u-1');
      expect(message.content_type).toBe('application/json');
      expect(message.content_encoding).toBe('utf-8');
      expect(message.application_properties).toEqual({
        alert: 'no',
        'iothub-creation-time-utc': '2026-11-27T16:00:00Z',
      });
      const annotations = message.message_annotations as Record<string, unknown>;
      expect(annotations).toMatchObject({
        'iothub-connection-device-id': deviceOn(2),
        'iothub-connection-auth-method':
          '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
        'iothub-connection-auth-generation-id': '638000000000000000',
        'iothub-message-source': 'Telemetry',
        'x-opt-sequence-number': event.sequenceNumber,
        'x-opt-offset': event.offset,
      });
      expect((annotations['x-opt-enqueued-time'] as Date).getTime()).toBe(event.enqueuedTime);
      expect((annotations['iothub-enqueuedtime'] as Date).getTime()).toBe(event.enqueuedTime);
      expect(annotations).not.toHaveProperty('message-id');
      // Pre-settled: Event Hubs receivers read a log, they do not consume it.
      expect(delivery.remote_settled).toBe(true);
    });

    it('starts where the filter says: offset -1, sequence number, inclusive, enqueued time, @latest', async () => {
      const partition = 3;
      const before = await lastSequence(partition);
      const events = [];
      for (let index = 0; index < 3; index++) events.push(await append(partition, { messageId: `pos-${index}` }));
      const [e0, e1, e2] = events as [(typeof events)[0], (typeof events)[0], (typeof events)[0]];
      const connection = await serviceConnection();
      const ids = async (filter: string | undefined, count: number) => {
        const reader = await openReceiver(
          connection,
          partitionAddress(partition),
          filter === undefined ? {} : { filter },
        );
        const got = await reader.waitFor(count);
        await reader.receiver.close();
        return got.map(({ message }) => message.message_annotations?.['x-opt-sequence-number'] as number);
      };
      const all = before + 4;
      expect((await ids("amqp.annotation.x-opt-offset > '-1'", all)).slice(-3)).toEqual([
        e0.sequenceNumber,
        e1.sequenceNumber,
        e2.sequenceNumber,
      ]);
      expect((await ids(undefined, all)).slice(-3)).toEqual([e0.sequenceNumber, e1.sequenceNumber, e2.sequenceNumber]);
      expect(await ids(`amqp.annotation.x-opt-sequence-number > '${e0.sequenceNumber}'`, 2)).toEqual([
        e1.sequenceNumber,
        e2.sequenceNumber,
      ]);
      expect(await ids(`amqp.annotation.x-opt-sequence-number >= '${e1.sequenceNumber}'`, 2)).toEqual([
        e1.sequenceNumber,
        e2.sequenceNumber,
      ]);
      expect(await ids(`amqp.annotation.x-opt-offset > '${e1.offset}'`, 1)).toEqual([e2.sequenceNumber]);
      expect((await ids(`amqp.annotation.x-opt-enqueued-time >= '${e0.enqueuedTime}'`, 3))[0]).toBe(e0.sequenceNumber);

      // @latest: only what is appended after the receiver's reader opened (the live tail).
      const readers = testHub.hub.core.telemetry.openReaders;
      const latest = await openReceiver(connection, partitionAddress(partition), {
        filter: "amqp.annotation.x-opt-offset > '@latest'",
      });
      await expect.poll(() => testHub.hub.core.telemetry.openReaders).toBe(readers + 1);
      const fresh = await append(partition, { messageId: 'after-latest' });
      const [first] = (await latest.waitFor(1)) as [Received];
      expect(first.message.message_annotations?.['x-opt-sequence-number']).toBe(fresh.sequenceNumber);
    });

    it('sends no more than the credit the receiver grants, and gives the rest back on drain', async () => {
      const partition = 0;
      const from = await lastSequence(partition);
      for (let index = 0; index < 10; index++) await append(partition, { messageId: `credit-${index}` });
      const connection = await serviceConnection();
      const reader = await openReceiver(connection, partitionAddress(partition), {
        filter: `amqp.annotation.x-opt-sequence-number > '${from}'`,
        credit: 0,
      });
      reader.receiver.addCredit(3);
      await reader.waitFor(3);
      // A management round trip after the three: had the hub sent beyond the credit, it would have by now.
      await (await management(connection)).request({
        operation: 'READ',
        name: hubName,
        type: 'com.microsoft:eventhub',
      });
      expect(reader.received).toHaveLength(3);
      expect(reader.receiver.credit).toBe(0);

      const drained = new Promise<void>((resolve) =>
        reader.receiver.once(ReceiverEvents.receiverDrained, () => resolve()),
      );
      reader.receiver.drain = true;
      reader.receiver.addCredit(50);
      await drained;
      await reader.waitFor(10);
      expect(reader.received.map(({ message }) => message.message_id)).toEqual(
        Array.from({ length: 10 }, (_, index) => `credit-${index}`),
      );
      expect(reader.receiver.credit).toBe(0);
    });

    it('adds the last enqueued event to every delivery when asked (runtime metric) and offers it back', async () => {
      const from = await lastSequence(1);
      await append(1);
      const last = await append(1);
      const connection = await serviceConnection();
      const reader = await openReceiver(connection, partitionAddress(1), {
        filter: `amqp.annotation.x-opt-sequence-number > '${from}'`,
        desiredCapabilities: ['com.microsoft:georeplication', 'com.microsoft:enable-receiver-runtime-metric'],
      });
      const [first] = (await reader.waitFor(2)) as [Received];
      expect(first.message.delivery_annotations).toMatchObject({
        last_enqueued_sequence_number: last.sequenceNumber,
        last_enqueued_offset: last.offset,
      });
      expect((first.message.delivery_annotations?.last_enqueued_time_utc as Date | undefined)?.getTime()).toBe(
        last.enqueuedTime,
      );
      expect([reader.receiver.offeredCapabilities].flat()).toContain('com.microsoft:enable-receiver-runtime-metric');
      // Without the capability, no delivery annotations.
      const plain = await openReceiver(connection, partitionAddress(1), {
        filter: `amqp.annotation.x-opt-sequence-number > '${from}'`,
      });
      const [plainFirst] = (await plain.waitFor(1)) as [Received];
      expect(plainFirst.message.delivery_annotations).toBeUndefined();
    });

    it('lets a higher epoch take the partition (amqp:link:stolen) and refuses lower epochs and epoch-less readers', async () => {
      const connection = await serviceConnection();
      const address = partitionAddress(2);
      const owner = await openReceiver(connection, address, {
        epoch: 1,
        filter: "amqp.annotation.x-opt-offset > '@latest'",
      });
      const plainBefore = await openReceiver(connection, partitionAddress(3));
      const higher = await openReceiver(connection, address, {
        epoch: 2,
        filter: "amqp.annotation.x-opt-offset > '@latest'",
      });
      expect((await owner.detached)?.condition).toBe('amqp:link:stolen');
      expect((await (await openReceiver(connection, address, { epoch: 1 })).detached)?.condition).toBe(
        'amqp:link:stolen',
      );
      expect((await (await openReceiver(connection, address)).detached)?.condition).toBe('amqp:link:stolen');
      // The owner keeps reading; other partitions were never affected.
      const fresh = await append(2);
      const [got] = (await higher.waitFor(1)) as [Received];
      expect(got.message.message_annotations?.['x-opt-sequence-number']).toBe(fresh.sequenceNumber);
      expect(plainBefore.receiver.isOpen()).toBe(true);
    });

    it('reads consumer groups case-insensitively and refuses unknown groups, partitions and entities', async () => {
      await testHub.hub.core.telemetry.createConsumerGroup('Analytics');
      const connection = await serviceConnection();
      const fresh = await append(0);
      const reader = await openReceiver(connection, `/messages/events/ConsumerGroups/analytics/Partitions/0`, {
        filter: `amqp.annotation.x-opt-sequence-number >= '${fresh.sequenceNumber}'`,
      });
      const [got] = (await reader.waitFor(1)) as [Received];
      expect(got.message.message_annotations?.['x-opt-sequence-number']).toBe(fresh.sequenceNumber);
      for (const address of [
        partitionAddress(0, 'nobody'),
        partitionAddress(4),
        partitionAddress(-1),
        `other-hub/ConsumerGroups/$default/Partitions/0`,
      ]) {
        expect((await (await openReceiver(connection, address)).detached)?.condition, address).toBe('amqp:not-found');
      }
      const badFilter = await openReceiver(connection, partitionAddress(0), {
        filter: "amqp.annotation.x-opt-offset > 'yesterday'",
      });
      expect((await badFilter.detached)?.condition).toBe('com.microsoft:argument-error');
    });

    it('refuses a connection whose policy lacks ServiceConnect', async () => {
      const connection = await serviceConnection('registryReadWrite');
      expect((await (await openReceiver(connection, partitionAddress(0))).detached)?.condition).toBe(
        'amqp:unauthorized-access',
      );
    });

    it('closes its reader when the link or the connection closes', async () => {
      const telemetry = testHub.hub.core.telemetry;
      const before = telemetry.openReaders;
      const connection = await serviceConnection();
      const fresh = await append(1);
      const first = await openReceiver(connection, partitionAddress(1), {
        filter: `amqp.annotation.x-opt-sequence-number >= '${fresh.sequenceNumber}'`,
      });
      const second = await openReceiver(connection, partitionAddress(1), {
        filter: `amqp.annotation.x-opt-sequence-number >= '${fresh.sequenceNumber}'`,
      });
      await Promise.all([first.waitFor(1), second.waitFor(1)]);
      expect(telemetry.openReaders).toBe(before + 2);
      await first.receiver.close();
      await (await management(connection)).request({
        operation: 'READ',
        name: hubName,
        type: 'com.microsoft:eventhub',
      });
      expect(telemetry.openReaders).toBe(before + 1);
      await connection.close();
      await expect.poll(() => telemetry.openReaders).toBe(before);
    });
  });

  // Last: it restarts the shared hub.
  it('keeps the event hub creation time and the partitions across a restart', async () => {
    const read = async () => {
      const node = await management(await serviceConnection());
      const hubAnswer = await node.request({ operation: 'READ', name: hubName, type: 'com.microsoft:eventhub' });
      const partitionAnswer = await node.request({
        operation: 'READ',
        name: hubName,
        type: 'com.microsoft:partition',
        partition: '2',
      });
      return {
        hub: hubAnswer.body as Record<string, unknown>,
        partition: partitionAnswer.body as Record<string, unknown>,
      };
    };
    const before = await read();
    for (const connection of connections.splice(0)) await connection.close();
    await testHub.restart();
    const after = await read();
    expect(after.hub.created_at).toEqual(before.hub.created_at);
    expect(after.partition.last_enqueued_sequence_number).toBe(before.partition.last_enqueued_sequence_number);
  });
});
