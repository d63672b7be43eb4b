import { randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { Connection, type Delivery, type EventContext, type Message, ReceiverEvents } from 'rhea-promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FeedbackRecord } from '../src/core/cloud-to-device';
import type { FileNotification } from '../src/core/file-uploads';
import { startTestHub, type TestHub } from './helpers/test-hub';

// The service links that hand out a core queue's locked items (`service-links/locked-queue-link.ts`): feedback
// batches and file-upload notifications, against a real hub over TLS with raw rhea-promise receivers. What the
// peer's credit allows, and what a disposition read together with the detach means.

function bodyText(message: Message): string {
  const body = message.body as { content?: Buffer } | Buffer | string;
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return Buffer.from(body.content ?? []).toString('utf8');
}

let testHub: TestHub;
const deviceId = 'queue-device';

/** One route under test: how its items are produced, named in a message, and counted in the hub. */
interface QueueRoute {
  readonly name: string;
  readonly address: string;
  /** Produces `count` items; resolves with their ids. */
  produce(prefix: string, count: number): Promise<string[]>;
  /** The item ids one message carries. */
  ids(message: Message): string[];
  /** Items the hub holds (delivered or not) and not yet completed. */
  pending(): Promise<number>;
  /** Locks and completes what waits (cleanup). */
  drain(): Promise<void>;
  /** How many items the first message carries when `produce` made more than fit in one. */
  readonly perMessage: number;
}

/** Puts a blob through the SAS URI the hub signed (the embedded store on the HTTPS port). */
function putBlob(url: URL, content: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(content);
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: url.port,
        method: 'PUT',
        path: `${url.pathname}${url.search}`,
        headers: { 'x-ms-blob-type': 'BlockBlob', 'content-length': String(body.length) },
        ca: testHub.ca,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const feedback: QueueRoute = {
  name: 'feedback',
  address: '/messages/serviceBound/feedback',
  perMessage: 64,
  async produce(prefix, count) {
    const core = testHub.hub.core.cloudToDevice;
    const ids = Array.from({ length: count }, (_, index) => `${prefix}-${index}`);
    for (const messageId of ids) {
      await core.send(deviceId, { body: new Uint8Array(), messageId, ack: 'full' });
      const delivery = await core.receive(deviceId);
      await core.complete(deviceId, delivery?.lockToken ?? '');
    }
    return ids;
  },
  ids: (message) => (JSON.parse(bodyText(message)) as FeedbackRecord[]).map((record) => record.originalMessageId),
  pending: async () => (await testHub.hub.core.cloudToDevice.depths()).feedback,
  async drain() {
    const core = testHub.hub.core.cloudToDevice;
    for (let batch = await core.receiveFeedback(); batch; batch = await core.receiveFeedback()) {
      await core.completeFeedback(batch.lockToken);
    }
  },
};

const fileNotifications: QueueRoute = {
  name: 'file notifications',
  address: '/messages/serviceBound/filenotifications',
  perMessage: 1,
  async produce(prefix, count) {
    const core = testHub.hub.core.fileUploads;
    const ids: string[] = [];
    for (let index = 0; index < count; index++) {
      const sas = await core.createUpload(deviceId, `${prefix}-${index}.txt`);
      const url = new URL(`https://${sas.hostName}/${sas.containerName}/${sas.blobName}${sas.sasToken}`);
      expect(await putBlob(url, 'content')).toBe(201);
      await core.completeUpload(deviceId, sas.correlationId, { isSuccess: true, statusCode: 201 });
      ids.push(sas.blobName);
    }
    return ids;
  },
  ids: (message) => [(JSON.parse(bodyText(message)) as FileNotification).blobName],
  pending: () => testHub.hub.core.fileUploads.pendingNotifications(),
  async drain() {
    const core = testHub.hub.core.fileUploads;
    for (let next = await core.receiveNotification(); next; next = await core.receiveNotification()) {
      await core.completeNotification(next.lockToken);
    }
  },
};

beforeAll(async () => {
  testHub = await startTestHub();
  const response = await testHub.request('PUT', `/devices/${deviceId}`, { body: { deviceId } });
  expect(response.status).toBe(200);
});
afterAll(async () => {
  await testHub?.stop();
});

describe.each([feedback, fileNotifications])('AMQP $name link', (route) => {
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

  /** A receiver on the route that settles nothing by itself, granted `credit` once. */
  const queueReceiver = async (connection: Connection, credit: number) => {
    const received: { ids: string[]; delivery: Delivery }[] = [];
    let wake: (() => void) | undefined;
    const receiver = await connection.createReceiver({
      source: { address: route.address },
      autoaccept: false,
      credit_window: 0,
    });
    receiver.on(ReceiverEvents.message, (event: EventContext) => {
      if (!event.message || !event.delivery) return;
      received.push({ ids: route.ids(event.message), delivery: event.delivery });
      wake?.();
    });
    receiver.addCredit(credit);
    /** Waits for the `count`th message. */
    const message = async (count = 1) => {
      while (received.length < count) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      return received[count - 1] as { ids: string[]; delivery: Delivery };
    };
    return { receiver, received, message };
  };

  /**
   * Runs `frames` with the connection's socket corked until rhea has written what it started, so that its frames
   * leave in one TCP write and the hub reads them together (as a busy or distant peer's frames arrive); `frames` may
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

  afterEach(async () => {
    for (const connection of connections.splice(0)) await connection.close().catch(() => undefined);
    // Nothing a test left behind reaches the next one (the hub gives back what closed links held as it reads their
    // detaches: drain until nothing is left).
    await expect
      .poll(async () => {
        await route.drain();
        return route.pending();
      })
      .toBe(0);
  });

  it('sends no more messages than the credit: the rest goes to another receiver with room', async () => {
    const ids = await route.produce('credit', route.perMessage + 6);
    const narrow = await queueReceiver(await serviceConnection(), 1);
    expect((await narrow.message()).ids).toHaveLength(route.perMessage);
    // The narrow receiver has no credit left: what else waits is not locked for it, another receiver gets it.
    // (Locked into the narrow link's send buffer instead, it would wait for the 60 s lock to lapse.)
    const other = await queueReceiver(await serviceConnection(), 10);
    const seen = () => [...narrow.received, ...other.received].flatMap((message) => message.ids);
    await expect.poll(() => seen().length, { timeout: 10_000 }).toBe(ids.length);
    expect(new Set(seen())).toEqual(new Set(ids));
    expect(narrow.received).toHaveLength(1);
    for (const message of [...narrow.received, ...other.received]) message.delivery.accept();
    await expect.poll(route.pending).toBe(0);
  });

  it('completes what the peer accepted right before its detach, read together with it', async () => {
    const [id] = await route.produce('accept-then-detach', 1);
    const connection = await serviceConnection();
    const reader = await queueReceiver(connection, 1);
    expect((await reader.message()).ids).toEqual([id]);
    await inOneWrite(connection, async () => {
      reader.received[0]?.delivery.accept();
      await reader.receiver.close();
    });
    await expect.poll(route.pending).toBe(0);
  });

  it('completes (dead-letters) what the peer rejected right before its detach', async () => {
    await route.produce('reject-then-detach', 1);
    const connection = await serviceConnection();
    const reader = await queueReceiver(connection, 1);
    await reader.message();
    await inOneWrite(connection, async () => {
      reader.received[0]?.delivery.reject({ condition: 'amqp:decode-error', description: 'unwanted' });
      await reader.receiver.close();
    });
    await expect.poll(route.pending).toBe(0);
  });

  it('gives back at once what the peer released right before its detach, and what it never settled', async () => {
    const [id] = await route.produce('release-then-detach', 1);
    const connection = await serviceConnection();
    const released = await queueReceiver(connection, 1);
    await released.message();
    await inOneWrite(connection, async () => {
      released.received[0]?.delivery.release();
      await released.receiver.close();
    });
    // Well within the 60 s lock: delivered again, to the next receiver.
    const unsettled = await queueReceiver(connection, 1);
    expect((await unsettled.message()).ids).toEqual([id]);
    await unsettled.receiver.close();
    const last = await queueReceiver(connection, 1);
    expect((await last.message()).ids).toEqual([id]);
    last.received[0]?.delivery.accept();
    await expect.poll(route.pending).toBe(0);
  });
});
