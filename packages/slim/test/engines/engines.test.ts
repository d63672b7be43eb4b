import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServiceClient, type ServiceClient, type TelemetryEvent } from '@fieldhub/service';
import { type ConformanceHub, startConformanceHub } from '@fieldhub/transport-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, EngineOptions, EngineSession } from './engine';
import { startQuickJsSession } from './quickjs-engine';
import { startXsSession } from './xs-engine';

// The slim bundles (as `npm run build -w @fieldhub/slim` writes them) inside real engines with no Node API in
// reach, against the real hub: the bridge (bridge.js) gives the engine sockets and timers of this process, the
// scenario (scenario.js) drives the client and reports its callbacks here, and the service SDK checks what the hub
// saw. Issue #11, "Done when".

const dist = (path: string) => fileURLToPath(new URL(`../../dist/${path}`, import.meta.url));

/** Reads a bundle (once, when the file's tests start: every case then runs the same bytes). */
function bundle(path: string, kind: Bundle['kind']): () => Bundle {
  let read: Bundle | undefined;
  return () => {
    if (read) return read;
    const file = dist(path);
    if (!existsSync(file)) throw new Error(`${file} is missing: run npm run build -w @fieldhub/slim first`);
    read = { fileName: path.slice(path.lastIndexOf('/') + 1), code: readFileSync(file, 'utf8'), kind };
    return read;
  };
}

const es2020 = bundle('moddable/fieldhub-slim.js', 'module');
const espruino = bundle('espruino/fieldhub-slim.min.js', 'script');

interface EngineCase {
  readonly title: string;
  readonly bundle: () => Bundle;
  readonly start: (options: EngineOptions) => Promise<EngineSession>;
  /**
   * The host the client gets (scenario.js): `bridge`, the bridge's Host itself; `ecma419` / `espruino`, the
   * bundle's own adapter over the runtime-shaped sockets, timers and HMAC modules of shapes.js.
   */
  readonly host: 'bridge' | 'ecma419' | 'espruino';
}

const cases: readonly EngineCase[] = [
  { title: 'the ES2020 bundle in QuickJS', bundle: es2020, start: startQuickJsSession, host: 'bridge' },
  { title: 'the ES2020 bundle in XS', bundle: es2020, start: startXsSession, host: 'bridge' },
  { title: 'the Espruino script in QuickJS', bundle: espruino, start: startQuickJsSession, host: 'bridge' },
  {
    title: 'the ES2020 bundle in XS through its ECMA-419 host',
    bundle: es2020,
    start: startXsSession,
    host: 'ecma419',
  },
  {
    title: 'the Espruino script in QuickJS through its Espruino host',
    bundle: espruino,
    start: startQuickJsSession,
    host: 'espruino',
  },
];

let conformance: ConformanceHub;
let service: ServiceClient;

beforeAll(async () => {
  es2020();
  espruino();
  conformance = await startConformanceHub();
  const connectionString = conformance.info.serviceConnectionString.replace(
    /HostName=([^;]+)/,
    `HostName=$1:${conformance.info.ports.https}`,
  );
  const amqpPort = conformance.info.ports.amqp;
  if (typeof amqpPort !== 'number') throw new Error('the hub serves no AMQP port');
  service = createServiceClient({ connectionString, ca: conformance.ca, amqpPort });
});

afterAll(async () => {
  await service?.close();
  await conformance?.close();
});

interface ErrorData {
  message: string;
  code?: string;
}

/** The first telemetry event of `deviceId` with `messageId` on the built-in endpoint. */
async function readTelemetry(deviceId: string, messageId: string): Promise<TelemetryEvent> {
  for await (const event of service.telemetry.read({ from: 'earliest', signal: AbortSignal.timeout(20_000) })) {
    if (event.deviceId === deviceId && event.messageId === messageId) return event;
  }
  throw new Error('the telemetry reader ended');
}

/** Waits for the feedback record of `messageId` and returns its status. */
async function feedbackFor(messageId: string): Promise<string> {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(new Error(`no feedback for ${messageId} within 20 s`)), 20_000);
  let status: string | undefined;
  try {
    for await (const record of service.cloudToDevice.feedback({ signal: controller.signal })) {
      if (record.originalMessageId === messageId) {
        status = record.statusCode;
        // Aborting once the record is handled accepts its batch (the reader took it to the end).
        controller.abort();
      }
    }
  } catch (error) {
    if (status === undefined) throw error;
  } finally {
    clearTimeout(timeout);
  }
  if (status === undefined) throw new Error(`the feedback reader ended without ${messageId}`);
  return status;
}

describe.each(cases)('$title', ({ title, bundle: load, start, host }) => {
  const deviceId = `slim-${title.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`;
  let session: EngineSession;
  let primaryKey: string;

  beforeAll(async () => {
    const device = await conformance.createSasDevice(deviceId);
    primaryKey = device.primaryKey;
    session = await start({ bundle: load(), ca: conformance.ca });
  });

  afterAll(async () => {
    await session?.dispose();
  });

  it('has no Node API in reach', async () => {
    const probe = (await session.bridge.next('ready')) as Record<string, unknown>;
    expect(probe).toMatchObject({
      require: 'undefined',
      process: 'undefined',
      Buffer: 'undefined',
      setTimeout: 'undefined',
    });
    expect(probe.exports).toContain('createClient');
  });

  it('connects with a SAS key it signs inside the engine', async () => {
    session.bridge.command('open', {
      host,
      options: {
        connectionString: `HostName=${conformance.hostName};DeviceId=${deviceId};SharedAccessKey=${primaryKey}`,
        connectHost: '127.0.0.1',
        port: conformance.info.ports.mqtt,
        tls: { servername: conformance.hostName },
      },
    });
    await session.bridge.next('connect');
  });

  it('sends telemetry with application and system properties', async () => {
    const messageId = `${deviceId}-telemetry`;
    session.bridge.command('telemetry', {
      payload: '{"temperature":21.5}',
      properties: {
        '$.mid': messageId,
        '$.cid': 'correlation-1',
        '$.ct': 'application/json',
        '$.ce': 'utf-8',
        alert: 'high',
        'with space': 'a&b=c',
      },
    });
    const sent = (await session.bridge.next('telemetry-sent')) as { error: ErrorData | null };
    expect(sent.error).toBeNull();
    const event = await readTelemetry(deviceId, messageId);
    expect(event.correlationId).toBe('correlation-1');
    expect(event.contentType).toBe('application/json');
    expect(event.contentEncoding).toBe('utf-8');
    expect(event.properties).toEqual({ alert: 'high', 'with space': 'a&b=c' });
    expect(event.bodyText).toBe('{"temperature":21.5}');
  });

  it('receives a cloud-to-device message with its properties and completes it', async () => {
    const messageId = `${deviceId}-c2d`;
    await service.cloudToDevice.send(
      deviceId,
      {
        body: 'switch on',
        messageId,
        correlationId: 'c2d-correlation',
        contentType: 'text/plain',
        properties: { room: 'kitchen' },
      },
      { ack: 'positive' },
    );
    const message = (await session.bridge.next('message')) as Record<string, unknown>;
    expect(message).toMatchObject({
      text: 'switch on',
      messageId,
      correlationId: 'c2d-correlation',
      contentType: 'text/plain',
    });
    expect(message.properties).toMatchObject({ room: 'kitchen' });
    // Completed when onMessage returned: the hub reports delivery.
    expect(await feedbackFor(messageId)).toBe('Success');
  });

  it('gets the twin and patches reported properties', async () => {
    await service.twins.patch(deviceId, { properties: { desired: { interval: 10 } } });
    session.bridge.command('getTwin');
    const got = (await session.bridge.next('twin')) as {
      error: ErrorData | null;
      twin: { desired: Record<string, unknown>; reported: Record<string, unknown> };
    };
    expect(got.error).toBeNull();
    expect(got.twin.desired).toMatchObject({ interval: 10 });
    expect(typeof got.twin.desired.$version).toBe('number');
    expect(typeof got.twin.reported.$version).toBe('number');
    // The device was connected when the service patched: the patch came as a desired update too.
    const desired = (await session.bridge.next('desired', 20_000, (data) => {
      return (data as { patch: Record<string, unknown> }).patch.interval === 10;
    })) as { version: number };
    expect(desired.version).toBe(got.twin.desired.$version);

    session.bridge.command('updateReported', { patch: { firmware: '1.2.3', battery: { level: 87 } } });
    const reported = (await session.bridge.next('reported')) as { error: ErrorData | null; version: number | null };
    expect(reported.error).toBeNull();
    const twin = await service.twins.get(deviceId);
    expect(twin.properties?.reported).toMatchObject({ firmware: '1.2.3', battery: { level: 87 } });
    expect(reported.version).toBe(twin.properties?.reported?.$version);
  });

  it('receives a desired-properties update with its version', async () => {
    const twin = await service.twins.patch(deviceId, { properties: { desired: { interval: 30, mode: 'eco' } } });
    const update = (await session.bridge.next('desired', 20_000, (data) => {
      const patch = (data as { patch: Record<string, unknown> }).patch;
      return patch.mode === 'eco';
    })) as { patch: Record<string, unknown>; version: number };
    expect(update.patch).toMatchObject({ interval: 30, mode: 'eco' });
    expect(update.version).toBe(twin.properties?.desired?.$version);
  });

  it('answers a direct method', async () => {
    const answer = await service.directMethods.invoke(deviceId, {
      methodName: 'reboot',
      payload: { delaySeconds: 5 },
      responseTimeoutInSeconds: 20,
    });
    expect(answer).toEqual({ status: 200, payload: { method: 'reboot', echo: { delaySeconds: 5 } } });
    expect(await session.bridge.next('method')).toEqual({ name: 'reboot', payload: { delaySeconds: 5 } });
  });

  it('closes', async () => {
    // Nothing went wrong along the way: no error, disconnect or exception left unread.
    expect(session.bridge.pending()).toEqual([]);
    session.bridge.command('close');
    expect(await session.bridge.next('closed')).toEqual({ connected: false });
    expect(session.bridge.pending().filter((name) => name !== 'disconnect')).toEqual([]);
  });
});
