/**
 * `client.uploadFile()` of @fieldhub/device against a real hub (in-process, real TLS on 127.0.0.1): a 50 MB file over
 * a client on `mqtt()` (streamed from disk) and one on `http()` (a Buffer), with progress, read back from the hub's
 * blob endpoint with the SAS the hub issued, and the file-upload notification read by @fieldhub/service over AMQP;
 * a tampered and an expired SAS refused by the store with the hub told of the failure; an abort mid-upload; a module
 * refused. The hub's clock is injectable (`createHub(..., { now })`): that is how a SAS expires without waiting.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { connect as connectTcp, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AbortError,
  AuthenticationError,
  amqp,
  createDeviceClient,
  type DeviceClient,
  type FileUploadProgress,
  type FileUploadService,
  type FileUploadTarget,
  type HubError,
  http,
  httpFileUpload,
  type Logger,
  mqtt,
  UnsupportedFeatureError,
} from '@fieldhub/device';
import { createHub, type Hub, type HubInfo } from '@fieldhub/hub';
import { createServiceClient, type FileUploadNotification, type ServiceClient } from '@fieldhub/service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const fileSize = 50 * 1024 * 1024;

let hub: Hub;
let info: HubInfo;
let ca: string;
let dataDir: string;
let workDir: string;
let service: ServiceClient;
let bigFile: string;
let bigContent: Buffer;
let bigDigest: string;
/** Added to the hub's clock (`now`): moves it past a SAS's expiry. */
let hubClockOffsetMs = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'fieldhub-device-upload-hub-'));
  workDir = await mkdtemp(join(tmpdir(), 'fieldhub-device-upload-'));
  hub = createHub(
    { dataDir, hostName: 'localhost', bind: '127.0.0.1', ports: { mqtt: 0, amqp: 0, https: 0 }, logLevel: 'silent' },
    { now: () => Date.now() + hubClockOffsetMs },
  );
  info = await hub.start();
  ca = await readFile(info.caCertificate, 'utf8');
  service = createServiceClient({
    connectionString: info.serviceConnectionString.replace(/HostName=([^;]+)/, `HostName=$1:${info.ports.https}`),
    ca,
    ...(info.ports.amqp !== null ? { amqpPort: info.ports.amqp } : {}),
  });
  bigContent = randomBytes(fileSize);
  bigDigest = createHash('sha256').update(bigContent).digest('hex');
  bigFile = join(workDir, 'big.bin');
  await writeFile(bigFile, bigContent);
});

afterAll(async () => {
  await notifications?.return(undefined).catch(() => undefined);
  await service?.close();
  await hub?.stop();
  await rm(dataDir, { recursive: true, force: true });
  await rm(workDir, { recursive: true, force: true });
});

/** What a {@link recording} service saw. */
interface Recorded {
  readonly targets: FileUploadTarget[];
  readonly notifications: { outcome: { isSuccess: boolean; statusCode: number }; error?: HubError }[];
}

/**
 * The real `httpFileUpload()` with what passes through it recorded; `changeTarget` alters the hub's answer before
 * the blob is put (a tampered signature) or runs something then (moving the hub's clock).
 */
function recording(changeTarget: (target: FileUploadTarget) => FileUploadTarget = (target) => target): {
  service: FileUploadService;
  recorded: Recorded;
} {
  const real = httpFileUpload({ port: info.ports.https });
  const recorded: Recorded = { targets: [], notifications: [] };
  return {
    recorded,
    service: {
      async createUpload(credentials, blobName, options) {
        const target = changeTarget(await real.createUpload(credentials, blobName, options));
        recorded.targets.push(target);
        return target;
      },
      putBlob: (target, data, options) => real.putBlob(target, data, options),
      async notify(credentials, correlationId, outcome, options) {
        try {
          await real.notify(credentials, correlationId, outcome, options);
          recorded.notifications.push({ outcome });
        } catch (error) {
          recorded.notifications.push({ outcome, error: error as HubError });
          throw error;
        }
      },
    },
  };
}

/** A device identity with SAS keys, and a client for it on `transport`. */
async function deviceClient(
  deviceId: string,
  transport: 'mqtt' | 'amqp' | 'https',
  fileUpload: FileUploadService,
  extra: { logger?: Logger; moduleId?: string; mqttPort?: number } = {},
): Promise<DeviceClient> {
  const identity =
    extra.moduleId === undefined
      ? await service.devices.create(deviceId)
      : await service.devices.modules.create({ deviceId, moduleId: extra.moduleId });
  const key = identity.authentication?.symmetricKey?.primaryKey;
  if (!key) throw new Error(`the hub made no key for ${deviceId}`);
  const moduleId = extra.moduleId === undefined ? '' : `;ModuleId=${extra.moduleId}`;
  return createDeviceClient({
    connectionString: `HostName=${info.hostName};DeviceId=${deviceId}${moduleId};SharedAccessKey=${key}`,
    ca,
    transport:
      transport === 'mqtt'
        ? mqtt({ port: extra.mqttPort ?? info.ports.mqtt ?? 0 })
        : transport === 'amqp'
          ? amqp({ port: info.ports.amqp ?? 0 })
          : http({ port: info.ports.https }),
    fileUpload,
    // A day: the expired-SAS test moves the hub's clock by more than an hour, past a default token.
    sas: { ttlSeconds: 86_400 },
    ...(extra.logger !== undefined ? { logger: extra.logger } : {}),
  });
}

/** Reads a blob back through the hub's blob endpoint with the SAS the hub issued: its size and SHA-256. */
function readBlob(target: FileUploadTarget): Promise<{ status: number; size: number; digest: string }> {
  const port = Number(target.hostName.split(':')[1] ?? 443);
  const path = `/${target.containerName}/${target.blobName.split('/').map(encodeURIComponent).join('/')}${target.sasToken}`;
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', servername: 'localhost', port, path, method: 'GET', ca, agent: false },
      (res) => {
        const hash = createHash('sha256');
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          hash.update(chunk);
        });
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, size, digest: hash.digest('hex') }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

let notifications: AsyncGenerator<FileUploadNotification> | undefined;
const notified = new Map<string, FileUploadNotification>();

/** The file-upload notification of `blobName`, from one reader shared by the tests (each is completed). */
async function notificationOf(blobName: string): Promise<FileUploadNotification> {
  notifications ??= service.fileUploads.notifications();
  const reader = notifications;
  const deadline = AbortSignal.timeout(30_000);
  while (!notified.has(blobName)) {
    const next = await Promise.race([
      reader.next(),
      new Promise<never>((_resolve, reject) =>
        deadline.addEventListener('abort', () => reject(new Error(`no notification for ${blobName}`)), {
          once: true,
        }),
      ),
    ]);
    if (next.done) throw new Error('the notification reader ended');
    await next.value.complete();
    notified.set(next.value.blobName, next.value);
  }
  return notified.get(blobName) as FileUploadNotification;
}

function expectProgressToTheEnd(progress: readonly FileUploadProgress[], size: number): void {
  // Several blocks of 4 MiB, each acknowledged: the counts only grow, and end at the size.
  expect(progress.length).toBeGreaterThan(5);
  for (let i = 1; i < progress.length; i++) {
    expect(progress[i]?.bytesUploaded).toBeGreaterThan(progress[i - 1]?.bytesUploaded ?? 0);
  }
  expect(progress.at(-1)).toEqual({ bytesUploaded: size, totalBytes: size });
  expect(progress.every((event) => event.totalBytes === size)).toBe(true);
}

describe('client.uploadFile() against a real hub', () => {
  it('uploads a 50 MB file streamed from disk over a client on mqtt(), with progress; the service is notified', async () => {
    const { service: fileUpload, recorded } = recording();
    await using client = await deviceClient('upload-mqtt', 'mqtt', fileUpload);
    const progress: FileUploadProgress[] = [];
    const result = await client.uploadFile('videos/big stream.bin', createReadStream(bigFile), {
      length: fileSize,
      onProgress: (event) => progress.push(event),
    });
    expect(result).toMatchObject({
      blobName: 'upload-mqtt/videos/big stream.bin',
      containerName: info.fileUpload.containerName,
      size: fileSize,
    });
    expect(result.correlationId).toBe(recorded.targets[0]?.correlationId);
    expectProgressToTheEnd(progress, fileSize);
    expect(await readBlob(recorded.targets[0] as FileUploadTarget)).toEqual({
      status: 200,
      size: fileSize,
      digest: bigDigest,
    });
    const notification = await notificationOf(result.blobName);
    expect(notification).toMatchObject({ deviceId: 'upload-mqtt', blobSizeInBytes: fileSize });
    expect(await hub.core.fileUploads.activeUploads('upload-mqtt')).toBe(0);
  });

  it('uploads a 50 MB Buffer over a client on http(), with progress; the service is notified', async () => {
    const { service: fileUpload, recorded } = recording();
    await using client = await deviceClient('upload-https', 'https', fileUpload);
    const progress: FileUploadProgress[] = [];
    const result = await client.uploadFile('big.bin', bigContent, { onProgress: (event) => progress.push(event) });
    expect(result).toMatchObject({ blobName: 'upload-https/big.bin', size: fileSize });
    expectProgressToTheEnd(progress, fileSize);
    expect(await readBlob(recorded.targets[0] as FileUploadTarget)).toEqual({
      status: 200,
      size: fileSize,
      digest: bigDigest,
    });
    expect(await notificationOf(result.blobName)).toMatchObject({
      deviceId: 'upload-https',
      blobSizeInBytes: fileSize,
    });
    expect(recorded.notifications).toEqual([
      { outcome: expect.objectContaining({ isSuccess: true, statusCode: 201 }) },
    ]);
  });

  it('uploads over a client on amqp() too: the upload does not depend on the transport', async () => {
    const { service: fileUpload, recorded } = recording();
    await using client = await deviceClient('upload-amqp', 'amqp', fileUpload);
    const content = randomBytes(100_000);
    const result = await client.uploadFile('small.bin', content);
    expect(result).toMatchObject({ blobName: 'upload-amqp/small.bin', size: content.length });
    expect(await readBlob(recorded.targets[0] as FileUploadTarget)).toEqual({
      status: 200,
      size: content.length,
      digest: createHash('sha256').update(content).digest('hex'),
    });
    expect(await notificationOf(result.blobName)).toMatchObject({ deviceId: 'upload-amqp', blobSizeInBytes: 100_000 });
  });

  it('uploads while the MQTT connection is down and the client is reconnecting', async () => {
    // The client reaches MQTT through a TCP relay the test can cut; uploads go to the HTTPS port directly.
    const sockets = new Set<Socket>();
    const relay: Server = createServer((socket) => {
      const upstream = connectTcp(info.ports.mqtt ?? 0, '127.0.0.1');
      sockets.add(socket).add(upstream);
      socket.pipe(upstream).pipe(socket);
      const end = (): void => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const address = relay.address();
    const relayPort = typeof address === 'object' && address !== null ? address.port : 0;
    const { service: fileUpload } = recording();
    await using client = await deviceClient('upload-offline', 'mqtt', fileUpload, { mqttPort: relayPort });
    expect(client.state).toBe('connected');
    await new Promise<void>((resolve) => {
      relay.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
    await expect.poll(() => client.state).toBe('reconnecting');
    const result = await client.uploadFile('while-offline.bin', randomBytes(10_000));
    expect(result.size).toBe(10_000);
    expect(await notificationOf(result.blobName)).toMatchObject({ deviceId: 'upload-offline' });
    expect(client.state).not.toBe('connected');
  });

  it('refuses a tampered SAS with AuthenticationError and tells the hub, which frees the upload slot', async () => {
    const { service: fileUpload, recorded } = recording((target) => ({
      ...target,
      // Another signature of the same length: the store's check, not a parser, refuses it.
      sasToken: target.sasToken.replace(/sig=(.)/, (_match, first: string) => `sig=${first === 'A' ? 'B' : 'A'}`),
    }));
    await using client = await deviceClient('upload-tampered', 'mqtt', fileUpload);
    const error = await client.uploadFile('tampered.bin', randomBytes(64 * 1024)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(recorded.notifications).toEqual([{ outcome: expect.objectContaining({ isSuccess: false }) }]);
    // The hub took the failure report (no error above) and dropped the upload: its SAS has an hour to go.
    expect(await hub.core.fileUploads.activeUploads('upload-tampered')).toBe(0);
  });

  it('refuses an expired SAS with AuthenticationError and tells the hub, which answers that the upload expired', async () => {
    const hourAndMore = hub.config.fileUpload.sasTtlMs + 10 * 60 * 1000;
    const { service: fileUpload, recorded } = recording((target) => {
      // The device is slow to start: by the time it puts the blob, the SAS (and the upload) expired.
      hubClockOffsetMs = hourAndMore;
      return target;
    });
    const logged: { message: string; details?: Readonly<Record<string, unknown>> }[] = [];
    const logger: Logger = { warn: (message, details) => logged.push({ message, ...(details ? { details } : {}) }) };
    await using client = await deviceClient('upload-expired', 'https', fileUpload, { logger });
    try {
      const error = await client.uploadFile('late.bin', randomBytes(1024)).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(AuthenticationError);
    } finally {
      hubClockOffsetMs = 0;
    }
    // The hub got the failure report and refused it as Azure does for an expired upload (400016).
    expect(recorded.notifications).toHaveLength(1);
    expect(recorded.notifications[0]?.outcome.isSuccess).toBe(false);
    expect(recorded.notifications[0]?.error?.code).toBe('ExpiredFileUploadCorrelationId');
    expect(logged.map((entry) => entry.message)).toContain(
      'could not notify the hub of a failed upload; it frees the slot when the SAS expires',
    );
  });

  it('aborts mid-upload with AbortError, commits no blob, and the hub frees the upload slot', async () => {
    const { service: fileUpload, recorded } = recording();
    await using client = await deviceClient('upload-aborted', 'mqtt', fileUpload);
    const controller = new AbortController();
    let streamClosed = false;
    async function* endless(): AsyncGenerator<Uint8Array> {
      try {
        for (;;) yield randomBytes(1024 * 1024);
      } finally {
        streamClosed = true;
      }
    }
    const error = await client
      .uploadFile('aborted.bin', endless(), { signal: controller.signal, onProgress: () => controller.abort() })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AbortError);
    await expect.poll(() => recorded.notifications.length, { timeout: 15_000 }).toBe(1);
    expect(recorded.notifications[0]).toEqual({
      outcome: expect.objectContaining({ isSuccess: false, statusCode: 499 }),
    });
    expect(await hub.core.fileUploads.activeUploads('upload-aborted')).toBe(0);
    await expect.poll(() => streamClosed).toBe(true);
    expect((await readBlob(recorded.targets[0] as FileUploadTarget)).status).toBe(404);
  });

  it('refuses a module identity: modules cannot upload files', async () => {
    const { service: fileUpload, recorded } = recording();
    await service.devices.create('upload-edge');
    await using client = await deviceClient('upload-edge', 'mqtt', fileUpload, { moduleId: 'camera' });
    const error = await client.uploadFile('m.bin', randomBytes(16)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnsupportedFeatureError);
    expect((error as Error).message).toMatch(/modules cannot upload files/);
    expect(recorded.targets).toHaveLength(0);
  });

  it('rejects later uploads with ConnectionError `client closed` once the client is closed', async () => {
    const { service: fileUpload } = recording();
    const client = await deviceClient('upload-closed', 'https', fileUpload);
    await client.close();
    await expect(client.uploadFile('x.bin', randomBytes(16))).rejects.toMatchObject({
      name: 'ConnectionError',
      message: 'client closed',
    });
  });
});
