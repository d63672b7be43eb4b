// The slim client on the Node host against the real hub in-process (TLS on 127.0.0.1), checked from the service
// side: telemetry on the built-in endpoint, cloud-to-device feedback, twins, direct methods; plus the connection
// policy: refused keys, a hub that restarts, the bounded buffer, SAS renewal, close.

import { createServiceClient, type ServiceClient, type TelemetryEvent } from '@fieldhub/service';
import { type ConformanceHub, startConformanceHub } from '@fieldhub/transport-testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createNodeHost } from '../src/hosts/node';
import { createClient, type SlimClient, type SlimClientOptions, type SlimError, type SlimMessage } from '../src/index';

let hub: ConformanceHub;
let service: ServiceClient;
const clients: SlimClient[] = [];

beforeAll(async () => {
  hub = await startConformanceHub();
  const connectionString = hub.info.serviceConnectionString.replace(
    /HostName=([^;]+)/,
    `HostName=$1:${hub.info.ports.https}`,
  );
  service = createServiceClient({ connectionString, ca: hub.ca, amqpPort: hub.info.ports.amqp ?? 5671 });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => new Promise<void>((resolve) => client.close(resolve))));
});

afterAll(async () => {
  await service?.close();
  await hub?.close();
});

/** What a client reported through its option callbacks. */
interface Recorded {
  connects: number;
  disconnects: Array<SlimError | undefined>;
  errors: SlimError[];
  messages: SlimMessage[];
  desired: Array<{ patch: { [key: string]: unknown }; version: number }>;
}

let deviceCount = 0;

/** A new device on the hub and a slim client for it (not opened), recording its callbacks. */
async function deviceClient(
  options: Partial<SlimClientOptions> = {},
): Promise<{ client: SlimClient; deviceId: string; key: string; recorded: Recorded }> {
  deviceCount += 1;
  const deviceId = `slim-${deviceCount}-${Date.now()}`;
  const device = await hub.createSasDevice(deviceId);
  const recorded: Recorded = { connects: 0, disconnects: [], errors: [], messages: [], desired: [] };
  const client = createClient(createNodeHost(), {
    hostName: hub.hostName,
    deviceId,
    sharedAccessKey: device.primaryKey,
    connectHost: '127.0.0.1',
    port: hub.info.ports.mqtt ?? 0,
    tls: { ca: hub.ca },
    reconnectMinMs: 100,
    reconnectMaxMs: 500,
    operationTimeoutMs: 15_000,
    onConnect: () => {
      recorded.connects += 1;
    },
    onDisconnect: (error) => {
      recorded.disconnects.push(error);
    },
    onError: (error) => {
      recorded.errors.push(error);
    },
    onMessage: (message) => {
      recorded.messages.push(message);
    },
    onDesired: (patch, version) => {
      recorded.desired.push({ patch, version });
    },
    ...options,
  });
  clients.push(client);
  return { client, deviceId, key: device.primaryKey, recorded };
}

async function opened(client: SlimClient, recorded: Recorded, connects = 1): Promise<void> {
  client.open();
  await vi.waitFor(() => expect(recorded.connects).toBeGreaterThanOrEqual(connects), { timeout: 20_000 });
}

function send(client: SlimClient, payload: string, properties: { [name: string]: string } | null): Promise<void> {
  return new Promise((resolve, reject) => {
    client.sendTelemetry(payload, properties, (error) => (error ? reject(error) : resolve()));
  });
}

/** Telemetry of `deviceId` on the built-in endpoint, enqueued from `since` on, until `count` events came. */
async function telemetryOf(deviceId: string, since: number, count: number): Promise<TelemetryEvent[]> {
  const events: TelemetryEvent[] = [];
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 20_000);
  try {
    for await (const event of service.telemetry.read({
      from: { enqueuedTime: since - 2000 },
      signal: controller.signal,
    })) {
      // Hub events (device created, twin changed) travel on the built-in endpoint too.
      const source = event.systemProperties['iothub-message-source'];
      if (event.deviceId !== deviceId || (source !== undefined && source !== 'Telemetry')) continue;
      events.push(event);
      if (events.length === count) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return events;
}

describe('slim client on the Node host', () => {
  it('connects with a device key and sends telemetry that arrives with its application and system properties', async () => {
    const { client, deviceId, recorded } = await deviceClient();
    await opened(client, recorded);
    expect(client.connected).toBe(true);
    const since = Date.now();
    await send(client, '{"temperature":21.5}', {
      '$.mid': 'message-1',
      '$.cid': 'correlation-1',
      '$.ct': 'application/json',
      '$.ce': 'utf-8',
      site: 'plant 1/hall A',
      'é&=': 'ünïcode & more',
    });
    const [event] = await telemetryOf(deviceId, since, 1);
    expect(event?.bodyText).toBe('{"temperature":21.5}');
    expect(event?.messageId).toBe('message-1');
    expect(event?.correlationId).toBe('correlation-1');
    expect(event?.contentType).toBe('application/json');
    expect(event?.contentEncoding).toBe('utf-8');
    expect(event?.properties).toEqual({ site: 'plant 1/hall A', 'é&=': 'ünïcode & more' });
  });

  it('receives a cloud-to-device message with its properties and completes it (positive feedback)', async () => {
    const { client, deviceId, recorded } = await deviceClient();
    await opened(client, recorded);
    const messageId = `c2d-${deviceId}`;
    await service.cloudToDevice.send(
      deviceId,
      {
        body: 'switch on',
        messageId,
        correlationId: 'order-7',
        contentType: 'text/plain',
        properties: { relay: '2', 'with space': 'a/b&c' },
      },
      { ack: 'positive' },
    );
    await vi.waitFor(() => expect(recorded.messages).toHaveLength(1), { timeout: 20_000 });
    const message = recorded.messages[0] as SlimMessage;
    expect(message.text).toBe('switch on');
    expect(message.messageId).toBe(messageId);
    expect(message.correlationId).toBe('order-7');
    expect(message.contentType).toBe('text/plain');
    expect(message.properties).toEqual({ relay: '2', 'with space': 'a/b&c' });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 20_000);
    try {
      for await (const record of service.cloudToDevice.feedback({ signal: controller.signal })) {
        if (record.originalMessageId !== messageId) continue;
        expect(record.statusCode).toBe('Success');
        expect(record.deviceId).toBe(deviceId);
        break;
      }
    } finally {
      clearTimeout(timer);
    }
  });

  it('gets the twin, patches reported properties and hears desired updates', async () => {
    const { client, deviceId, recorded } = await deviceClient();
    await opened(client, recorded);
    const twin = await new Promise<unknown>((resolve, reject) =>
      client.getTwin((error, result) => (error ? reject(error) : resolve(result))),
    );
    expect(twin).toMatchObject({ desired: { $version: 1 }, reported: { $version: 1 } });
    const version = await new Promise<number | undefined>((resolve, reject) =>
      client.updateReported({ firmware: '1.2.3', battery: { level: 87 } }, (error, result) =>
        error ? reject(error) : resolve(result),
      ),
    );
    expect(version).toBe(2);
    const seen = await service.twins.get(deviceId);
    expect(seen.properties.reported).toMatchObject({ firmware: '1.2.3', battery: { level: 87 }, $version: 2 });
    await service.twins.patch(deviceId, { properties: { desired: { interval: 30 } } });
    await vi.waitFor(() => expect(recorded.desired).toHaveLength(1), { timeout: 20_000 });
    expect(recorded.desired[0]).toEqual({ patch: { interval: 30, $version: 2 }, version: 2 });
  });

  it('answers a direct method with a status and payload the service sees', async () => {
    const requests: unknown[] = [];
    const { client, deviceId, recorded } = await deviceClient({
      onMethod: (request, respond) => {
        requests.push(request);
        respond(201, { rebooting: true, after: (request.payload as { delay: number }).delay });
      },
    });
    await opened(client, recorded);
    const result = await service.directMethods.invoke(deviceId, {
      methodName: 'reboot',
      payload: { delay: 5 },
      responseTimeoutInSeconds: 15,
    });
    expect(requests).toEqual([{ name: 'reboot', payload: { delay: 5 } }]);
    expect(result).toEqual({ status: 201, payload: { rebooting: true, after: 5 } });
  });

  it('reports a wrong key as Unauthorized through onError and keeps retrying', async () => {
    const { client, recorded } = await deviceClient({ sharedAccessKey: Buffer.alloc(32, 7).toString('base64') });
    client.open();
    await vi.waitFor(() => expect(recorded.errors.length).toBeGreaterThanOrEqual(2), { timeout: 20_000 });
    expect(recorded.errors.map((error) => error.code)).toEqual(recorded.errors.map(() => 'Unauthorized'));
    expect(recorded.connects).toBe(0);
    expect(client.connected).toBe(false);
  });

  it('reconnects after the hub restarts and sends the telemetry buffered meanwhile', async () => {
    const { client, deviceId, recorded } = await deviceClient();
    await opened(client, recorded);
    await hub.stopHub();
    await vi.waitFor(() => expect(recorded.disconnects).toHaveLength(1), { timeout: 20_000 });
    expect(recorded.disconnects[0]?.code).toBe('ConnectionLost');
    expect(client.connected).toBe(false);
    const since = Date.now();
    const sent = Promise.all([send(client, 'offline 1', { n: '1' }), send(client, 'offline 2', { n: '2' })]);
    await hub.restart();
    await vi.waitFor(() => expect(recorded.connects).toBe(2), { timeout: 20_000 });
    await sent;
    const events = await telemetryOf(deviceId, since, 2);
    expect(events.map((event) => [event.bodyText ?? new TextDecoder().decode(event.body), event.properties.n])).toEqual(
      [
        ['offline 1', '1'],
        ['offline 2', '2'],
      ],
    );
  });

  it('fails telemetry beyond the buffer with BufferFull at once and pending telemetry with Closed on close', async () => {
    const { client } = await deviceClient({ maxPendingTelemetry: 2 });
    const results: Array<string | null> = [];
    const record = (error: SlimError | null) => results.push(error ? error.code : null);
    // Not opened: everything waits in the buffer.
    client.sendTelemetry('1', null, record);
    client.sendTelemetry('2', null, record);
    client.sendTelemetry('3', null, record);
    expect(results).toEqual(['BufferFull']);
    let closes = 0;
    client.close(() => {
      closes += 1;
    });
    expect(results).toEqual(['BufferFull', 'Closed', 'Closed']);
    // Idempotent: a second close calls back too, and the client refuses further work.
    client.close(() => {
      closes += 1;
    });
    expect(closes).toBe(2);
    client.sendTelemetry('4', null, record);
    expect(results[3]).toBe('Closed');
    client.getTwin((error) => results.push(error ? error.code : null));
    expect(results[4]).toBe('Closed');
  });

  it('closes a connected client with a clean disconnect and fails twin requests in flight with Closed', async () => {
    const { client, recorded } = await deviceClient();
    await opened(client, recorded);
    const outcome = new Promise<string | undefined>((resolve) => client.getTwin((error) => resolve(error?.code)));
    await new Promise<void>((resolve) => client.close(resolve));
    expect(await outcome).toBe('Closed');
    expect(client.connected).toBe(false);
    expect(recorded.disconnects).toEqual([undefined]);
  });

  it('renews its SAS token by reconnecting before it expires, and telemetry still flows', async () => {
    const { client, deviceId, recorded } = await deviceClient({ tokenLifetimeSeconds: 4 });
    await opened(client, recorded);
    await vi.waitFor(() => expect(recorded.connects).toBeGreaterThanOrEqual(2), { timeout: 20_000 });
    // A renewal is a goodbye of the client's own: no error.
    expect(recorded.disconnects[0]).toBeUndefined();
    expect(recorded.errors).toEqual([]);
    const since = Date.now();
    await send(client, 'after renewal', null);
    const [event] = await telemetryOf(deviceId, since, 1);
    expect(event?.deviceId).toBe(deviceId);
  });

  it('ends with TokenExpired when a fixed SAS token has run out', async () => {
    const deviceId = `slim-expired-${Date.now()}`;
    await hub.createSasDevice(deviceId);
    const errors: SlimError[] = [];
    const expired = createClient(createNodeHost(), {
      hostName: hub.hostName,
      deviceId,
      sasToken: `SharedAccessSignature sr=${hub.hostName}%2Fdevices%2F${deviceId}&sig=AAAA&se=1000`,
      connectHost: '127.0.0.1',
      port: hub.info.ports.mqtt ?? 0,
      tls: { ca: hub.ca },
      onError: (error) => errors.push(error),
    });
    clients.push(expired);
    expired.open();
    expect(errors.map((error) => error.code)).toEqual(['TokenExpired']);
    const results: string[] = [];
    expired.sendTelemetry('x', null, (error) => results.push(error?.code ?? 'ok'));
    expect(results).toEqual(['TokenExpired']);
    expect(expired.connected).toBe(false);
  });
});
