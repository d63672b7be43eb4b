import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { Connection, type Delivery, type EventContext, type Message, ReceiverEvents } from 'rhea-promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FeedbackRecord } from '../src/core/cloud-to-device';
import { startTestHub, type TestHub } from './helpers/test-hub';

// The hub's `/messages/serviceBound/feedback` sender against a real hub over TLS, with raw rhea-promise receivers:
// what the peer's credit allows and what a disposition read together with a detach means.

const feedbackAddress = '/messages/serviceBound/feedback';

function bodyText(message: Message): string {
  const body = message.body as { content?: Buffer } | Buffer | string;
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return Buffer.from(body.content ?? []).toString('utf8');
}

describe('AMQP feedback link', () => {
  let testHub: TestHub;
  const connections: Connection[] = [];

  /** A service connection as the Node SDK opens it: TLS, no SASL, then CBS put-token. */
  const serviceConnection = async (): Promise<Connection> => {
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
    const sender = await connection.createAwaitableSender({ target: { address: '$cbs' } });
    const cbsReceiver = await connection.createReceiver({ source: { address: '$cbs' } });
    const messageId = randomUUID();
    const reply = new Promise<Message>((resolve) => {
      cbsReceiver.on(ReceiverEvents.message, (event: EventContext) => {
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
        name: testHub.info.hostName,
      },
      body: await testHub.serviceToken('service'),
    });
    expect((await reply).application_properties?.['status-code']).toBe(200);
    return connection;
  };

  /** A feedback receiver that settles nothing by itself, granted `credit` once. */
  const feedbackReceiver = async (connection: Connection, credit: number) => {
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
    receiver.addCredit(credit);
    /** Waits until `count` records arrived. */
    const records = async (count: number) => {
      for (;;) {
        const all = batches.flatMap((batch) => batch.records);
        if (all.length >= count) return all;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    };
    return { receiver, batches, records };
  };

  /** Produces one `Success` record per message id (device `fb-device`). */
  const produceFeedback = async (messageIds: string[]) => {
    const core = testHub.hub.core.cloudToDevice;
    for (const messageId of messageIds) {
      await core.send('fb-device', { body: new Uint8Array(), messageId, ack: 'full' });
      const delivery = await core.receive('fb-device');
      await core.complete('fb-device', delivery?.lockToken ?? '');
    }
  };

  /**
   * Runs `frames` with the connection's socket corked until rhea has written what it started, so that its frames
   * leave in one TCP write and the hub reads them together (as a busy or remote peer's frames arrive); `frames` may
   * wait for the hub's answer to them.
   */
  const inOneWrite = async (connection: Connection, frames: () => Promise<void>) => {
    const socket = (connection as unknown as { _connection: { socket: Socket } })._connection.socket;
    socket.cork();
    const done = frames();
    // rhea writes on the next tick; after that, all of it waits in the corked socket.
    await new Promise<void>((resolve) => setImmediate(resolve));
    socket.uncork();
    await done;
  };

  const feedbackDepth = async () => (await testHub.hub.core.cloudToDevice.depths()).feedback;

  beforeAll(async () => {
    testHub = await startTestHub();
    const response = await testHub.request('PUT', '/devices/fb-device', { body: { deviceId: 'fb-device' } });
    expect(response.status).toBe(200);
  });
  afterEach(async () => {
    for (const connection of connections.splice(0)) await connection.close().catch(() => undefined);
    // Nothing a test left behind reaches the next one (the hub gives back what closed links held as it reads the
    // detaches: drain until nothing is left).
    const core = testHub.hub.core.cloudToDevice;
    await expect
      .poll(async () => {
        for (let batch = await core.receiveFeedback(); batch; batch = await core.receiveFeedback()) {
          await core.completeFeedback(batch.lockToken);
        }
        return feedbackDepth();
      })
      .toBe(0);
  });
  afterAll(async () => {
    await testHub?.stop();
  });

  it('sends no more batches than the credit: the rest goes to another receiver with room', async () => {
    const ids = Array.from({ length: 70 }, (_, index) => `credit-${index}`);
    await produceFeedback(ids);
    const connection = await serviceConnection();
    const narrow = await feedbackReceiver(connection, 1);
    expect(await narrow.records(64)).toHaveLength(64);
    // The narrow receiver has no credit left: the 6 other records are not locked for it, another receiver gets them.
    // (Locked into the narrow link's send buffer instead, they would wait for its 60 s lock to lapse.)
    const other = await feedbackReceiver(await serviceConnection(), 5);
    const seen = () => [...narrow.batches, ...other.batches].flatMap((b) => b.records.map((r) => r.originalMessageId));
    await expect.poll(() => seen().length, { timeout: 10_000 }).toBe(70);
    expect(new Set(seen())).toEqual(new Set(ids));
    expect(other.batches.flatMap((batch) => batch.records)).toHaveLength(6);
    for (const batch of [...narrow.batches, ...other.batches]) batch.delivery.accept();
    await expect.poll(feedbackDepth).toBe(0);
  });

  it('completes a batch accepted right before the detach, in the same read', async () => {
    await produceFeedback(['settle-then-detach']);
    const connection = await serviceConnection();
    const reader = await feedbackReceiver(connection, 1);
    await reader.records(1);
    await inOneWrite(connection, async () => {
      reader.batches[0]?.delivery.accept();
      await reader.receiver.close();
    });
    await expect.poll(feedbackDepth).toBe(0);
    expect(await testHub.hub.core.cloudToDevice.receiveFeedback()).toBeUndefined();
  });

  it('abandons a batch released right before the detach, and one the peer never settled', async () => {
    await produceFeedback(['release-then-detach']);
    const connection = await serviceConnection();
    const released = await feedbackReceiver(connection, 1);
    await released.records(1);
    await inOneWrite(connection, async () => {
      released.batches[0]?.delivery.release();
      await released.receiver.close();
    });
    const unsettled = await feedbackReceiver(connection, 1);
    expect((await unsettled.records(1))[0]?.originalMessageId).toBe('release-then-detach');
    await unsettled.receiver.close();
    // Given back at once (well within the lock), and delivered again.
    const last = await feedbackReceiver(connection, 1);
    expect((await last.records(1))[0]?.originalMessageId).toBe('release-then-detach');
    last.batches[0]?.delivery.accept();
    await expect.poll(feedbackDepth).toBe(0);
  });
});
