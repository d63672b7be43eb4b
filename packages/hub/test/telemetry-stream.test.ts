import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '../src/core/telemetry';
import { startTestHub, type TestHub } from './helpers/test-hub';

/** One event as the SSE stream sends it. */
interface StreamEvent {
  deviceId: string | null;
  moduleId: string | null;
  messageId: string | null;
  contentType: string | null;
  properties: Record<string, string>;
  systemProperties: Record<string, unknown>;
  body: string;
  bodyEncoding: 'utf-8' | 'base64';
  enqueuedTime: string;
  sequenceNumber: number;
  partition: number;
}

/** A raw HTTPS client of the event stream that parses `data:` lines as they arrive. */
class EventStreamClient {
  readonly events: StreamEvent[] = [];
  response!: IncomingMessage;
  ended = false;
  private buffer = '';
  private waiters: (() => void)[] = [];
  private constructor(private readonly request: ReturnType<typeof httpsRequest>) {}

  static async open(testHub: TestHub, query: string, options: { paused?: boolean } = {}): Promise<EventStreamClient> {
    const token = await testHub.serviceToken();
    return new Promise((resolve, reject) => {
      const request = httpsRequest({
        host: '127.0.0.1',
        servername: testHub.info.hostName,
        port: testHub.info.ports.https,
        path: `/fieldhub/events${query}`,
        headers: { authorization: token, accept: 'text/event-stream' },
        ca: testHub.ca,
      });
      const client = new EventStreamClient(request);
      request.on('response', (response) => {
        client.response = response;
        response.setEncoding('utf8');
        if (options.paused) response.pause();
        response.on('data', (chunk: string) => client.receive(chunk));
        response.on('end', () => {
          client.ended = true;
          client.wake();
        });
        response.on('error', () => undefined);
        resolve(client);
      });
      request.on('error', reject);
      request.end();
    });
  }

  /** Resolves once `count` events arrived (or the stream ended). */
  async waitFor(count: number, timeoutMs = 5000): Promise<StreamEvent[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length < count && !this.ended) {
      if (Date.now() > deadline) throw new Error(`only ${this.events.length} of ${count} events arrived`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.events;
  }

  async text(): Promise<string> {
    while (!this.ended) await this.waitFor(Number.POSITIVE_INFINITY, 5000);
    return this.buffer;
  }

  close(): void {
    this.request.destroy();
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let end = this.buffer.indexOf('\n\n');
    while (end >= 0) {
      const frame = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      for (const line of frame.split('\n')) {
        if (line.startsWith('data: ')) this.events.push(JSON.parse(line.slice(6)) as StreamEvent);
      }
      end = this.buffer.indexOf('\n\n');
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

const text = (value: string) => new TextEncoder().encode(value);

describe('telemetry event stream (Fieldhub extension)', () => {
  let testHub: TestHub;

  beforeAll(async () => {
    testHub = await startTestHub();
    const telemetry = testHub.hub.core.telemetry;
    await telemetry.append({
      deviceId: 'dev1',
      body: text('{"temp":21}'),
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      messageId: 'm1',
      properties: { alert: 'no' },
      authMethod: { scope: 'device', type: 'sas', issuer: 'iothub' },
    });
    await telemetry.append({ deviceId: 'dev2', moduleId: 'mod', body: new Uint8Array([0, 255, 1]) });
    await telemetry.append({ deviceId: 'dev1', body: text('plain'), contentType: 'text/plain' });
  });
  afterAll(async () => {
    await testHub?.stop();
  });

  it('reads everything from earliest and ends when caught up with live=false', async () => {
    const client = await EventStreamClient.open(testHub, '?from=earliest&live=false');
    expect(client.response.statusCode).toBe(200);
    expect(client.response.headers['content-type']).toContain('text/event-stream');
    await client.text();
    expect(client.events).toHaveLength(3);
    // Partitions are merged by enqueued time: events appended in the same millisecond may come in either order.
    const first = client.events.find((event) => event.messageId === 'm1');
    const binary = client.events.find((event) => event.deviceId === 'dev2');
    const plain = client.events.find((event) => event.body === 'plain');
    expect(first).toMatchObject({
      deviceId: 'dev1',
      moduleId: null,
      messageId: 'm1',
      contentType: 'application/json',
      properties: { alert: 'no' },
      body: '{"temp":21}',
      bodyEncoding: 'utf-8',
      partition: partitionOf('dev1', 4),
      sequenceNumber: 0,
    });
    expect(first?.systemProperties).toMatchObject({
      'iothub-connection-device-id': 'dev1',
      'iothub-connection-auth-method': '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
      'iothub-message-source': 'Telemetry',
      'x-opt-sequence-number': 0,
    });
    expect(Number.isNaN(Date.parse(first!.enqueuedTime))).toBe(false);
    expect(binary).toMatchObject({ deviceId: 'dev2', moduleId: 'mod', body: 'AP8B', bodyEncoding: 'base64' });
    expect(plain).toMatchObject({ body: 'plain', bodyEncoding: 'utf-8', sequenceNumber: 1 });
  });

  it('reads one partition from a sequence number (exclusive)', async () => {
    const partition = partitionOf('dev1', 4);
    const client = await EventStreamClient.open(testHub, `?partition=${partition}&from=seq:0&live=false`);
    await client.text();
    expect(client.events.map((event) => event.body)).toEqual(['plain']);
  });

  it('tails live: from=latest sees only new events, as they are appended', async () => {
    const client = await EventStreamClient.open(testHub, '?from=latest');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(client.events).toHaveLength(0);
    await testHub.hub.core.telemetry.append({ deviceId: 'dev3', body: text('live-1'), contentType: 'text/plain' });
    await testHub.hub.core.telemetry.append({ deviceId: 'dev4', body: text('live-2'), contentType: 'text/plain' });
    const events = await client.waitFor(2);
    expect(events.map((event) => event.body)).toEqual(['live-1', 'live-2']);
    expect(testHub.hub.core.telemetry.openReaders).toBe(1);
    client.close();
    // The client went away: its reader is closed, nothing keeps reading for it.
    const deadline = Date.now() + 5000;
    while (testHub.hub.core.telemetry.openReaders > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(testHub.hub.core.telemetry.openReaders).toBe(0);
  });

  it('delivers every event in order to a client that reads slowly (backpressure)', async () => {
    const client = await EventStreamClient.open(testHub, '?from=latest&partition=' + partitionOf('slow', 4), {
      paused: true,
    });
    const big = 'x'.repeat(16 * 1024);
    for (let index = 0; index < 300; index++) {
      await testHub.hub.core.telemetry.append({
        deviceId: 'slow',
        body: text(`${index}:${big}`),
        contentType: 'text/plain',
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    client.response.resume();
    const events = await client.waitFor(300, 20_000);
    expect(events.map((event) => Number(event.body.split(':')[0]))).toEqual(Array.from({ length: 300 }, (_, i) => i));
    client.close();
  });

  it('validates parameters before streaming and requires ServiceConnect', async () => {
    const badFrom = await testHub.request('GET', '/fieldhub/events?from=yesterday', { apiVersion: false });
    expect(badFrom.status).toBe(400);
    expect(badFrom.headers['iothub-errorcode']).toBe('ArgumentInvalid');
    const badPartition = await testHub.request('GET', '/fieldhub/events?partition=9', { apiVersion: false });
    expect(badPartition.status).toBe(400);
    const unknownGroup = await testHub.request('GET', '/fieldhub/events?consumerGroup=nope', { apiVersion: false });
    expect(unknownGroup.status).toBe(404);
    const anonymous = await testHub.request('GET', '/fieldhub/events', { policy: null, apiVersion: false });
    expect(anonymous.status).toBe(401);
  });

  it('manages consumer groups', async () => {
    const created = await testHub.request('PUT', '/fieldhub/consumergroups/Analytics', { apiVersion: false });
    expect(created.status).toBe(200);
    expect(created.json).toMatchObject({ name: 'Analytics' });
    const list = await testHub.request('GET', '/fieldhub/consumergroups', { apiVersion: false });
    expect((list.json as { name: string }[]).map((group) => group.name)).toEqual(['$Default', 'Analytics']);
    expect((await testHub.request('GET', '/fieldhub/consumergroups/analytics', { apiVersion: false })).status).toBe(
      200,
    );

    const client = await EventStreamClient.open(testHub, '?consumerGroup=analytics&live=false');
    await client.text();
    expect(client.events.length).toBeGreaterThanOrEqual(3);

    expect((await testHub.request('DELETE', '/fieldhub/consumergroups/ANALYTICS', { apiVersion: false })).status).toBe(
      204,
    );
    expect((await testHub.request('DELETE', '/fieldhub/consumergroups/analytics', { apiVersion: false })).status).toBe(
      404,
    );
    expect((await testHub.request('DELETE', '/fieldhub/consumergroups/$Default', { apiVersion: false })).status).toBe(
      400,
    );
  });

  it('persists consumer groups and events across a restart, and stop() ends open streams', async () => {
    expect((await testHub.request('PUT', '/fieldhub/consumergroups/kept', { apiVersion: false })).status).toBe(200);
    const open = await EventStreamClient.open(testHub, '?from=latest');
    await testHub.restart();
    await open.waitFor(Number.POSITIVE_INFINITY, 5000);
    expect(open.ended).toBe(true);
    const list = await testHub.request('GET', '/fieldhub/consumergroups', { apiVersion: false });
    expect((list.json as { name: string }[]).map((group) => group.name)).toContain('kept');
    const client = await EventStreamClient.open(testHub, '?live=false');
    await client.text();
    expect(client.events.map((event) => event.messageId)).toContain('m1');
  }, 30_000);
});
