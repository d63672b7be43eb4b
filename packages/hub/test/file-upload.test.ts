import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { globalAgent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AnonymousCredential, BlockBlobClient, newPipeline, type StoragePipelineOptions } from '@azure/storage-blob';
import { createSasToken } from '@fieldhub/auth';
import pino from 'pino';
import {
  Connection,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  ReceiverEvents,
} from 'rhea-promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBlobSas } from '../src/blob/blob-sas';
import { parseStorageConnectionString } from '../src/blob/storage-account';
import type { FileNotification } from '../src/core/file-uploads';
import { createHub } from '../src/index';
import { startTestHub, type TestHub } from './helpers/test-hub';

// File upload against the in-process hub over real TLS: the device's HTTPS calls (SAS URI, notification), the
// embedded Blob-compatible endpoint driven by `@azure/storage-blob` (the device SDK's own version), and the
// file-upload notification read over AMQP with rhea-promise.

interface SasUri {
  correlationId: string;
  hostName: string;
  containerName: string;
  blobName: string;
  sasToken: string;
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const notificationsAddress = '/messages/serviceBound/filenotifications';

/** The blob URL a device builds, dialled on 127.0.0.1 (the certificate covers it; `localhost` may be ::1). */
function blobUrl(sas: SasUri): string {
  const port = sas.hostName.split(':')[1] ?? '443';
  return `https://127.0.0.1:${port}/${sas.containerName}/${sas.blobName}${sas.sasToken}`;
}

/** `@azure/storage-blob` as the device SDK sets it up (no keep-alive: the global agent, which trusts the hub's CA). */
function blobClient(url: string): BlockBlobClient {
  const options: StoragePipelineOptions = { retryOptions: { maxTries: 1 }, keepAliveOptions: { enable: false } };
  return new BlockBlobClient(url, newPipeline(new AnonymousCredential(), options));
}

function rawRequest(
  url: string,
  method: string,
  ca: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(url, { method, ca, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
      );
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

function bodyText(message: Message): string {
  const body = message.body as { content?: Buffer } | Buffer | string;
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return Buffer.from(body.content ?? []).toString('utf8');
}

/** A service-side reader of file-upload notifications over AMQP (CBS put-token with `iothubowner`). */
async function notificationReader(testHub: TestHub) {
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
  const sender = await connection.createAwaitableSender({ target: { address: '$cbs' } });
  const cbs = await connection.createReceiver({ source: { address: '$cbs' } });
  const messageId = randomUUID();
  const answered = new Promise<Message>((resolve) => {
    cbs.on(ReceiverEvents.message, (event: EventContext) => {
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
    body: await testHub.serviceToken(),
  });
  expect((await answered).application_properties?.['status-code']).toBe(200);
  const seen: { message: Message; delivery: Delivery; notification: FileNotification }[] = [];
  let wake: (() => void) | undefined;
  const receiver: Receiver = await connection.createReceiver({
    source: { address: notificationsAddress },
    autoaccept: false,
    credit_window: 10,
  });
  receiver.on(ReceiverEvents.message, (event: EventContext) => {
    if (!event.message || !event.delivery) return;
    seen.push({
      message: event.message,
      delivery: event.delivery,
      notification: JSON.parse(bodyText(event.message)) as FileNotification,
    });
    wake?.();
  });
  return {
    seen,
    async next(count: number) {
      while (seen.length < count) await new Promise<void>((resolve) => (wake = resolve));
      return seen[count - 1]!;
    },
    close: () => connection.close().catch(() => undefined),
  };
}

async function createDevice(testHub: TestHub, deviceId: string): Promise<string> {
  const response = await testHub.request('PUT', `/devices/${encodeURIComponent(deviceId)}`, { body: { deviceId } });
  expect(response.status).toBe(200);
  return (response.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey
    .primaryKey;
}

/** A device's HTTPS request (SAS of the device key). */
async function deviceRequest(
  testHub: TestHub,
  deviceId: string,
  key: string,
  method: string,
  path: string,
  body?: unknown,
) {
  const authorization = await createSasToken({ resourceUri: `localhost/devices/${deviceId}`, key, ttlSeconds: 3600 });
  return testHub.request(method, path, { policy: null, headers: { authorization }, body });
}

describe('file upload', () => {
  let testHub: TestHub;
  let key: string;
  const previousCa = globalAgent.options.ca;
  const readers: { close(): Promise<unknown> }[] = [];

  beforeAll(async () => {
    testHub = await startTestHub({ fileUpload: { maxBlobBytes: 1024 * 1024 } });
    globalAgent.options.ca = testHub.ca;
    key = await createDevice(testHub, 'uploader');
  });
  afterEach(async () => {
    for (const reader of readers.splice(0)) await reader.close();
  });
  afterAll(async () => {
    globalAgent.options.ca = previousCa;
    await testHub?.stop();
  });

  const sasUri = async (blobName: string, deviceId = 'uploader', deviceKey = key): Promise<SasUri> => {
    const response = await deviceRequest(testHub, deviceId, deviceKey, 'POST', `/devices/${deviceId}/files`, {
      blobName,
    });
    expect(response.status, response.text).toBe(200);
    return response.json as SasUri;
  };

  it('answers a SAS URI for {deviceId}/{blobName} on the hub host and port', async () => {
    const sas = await sasUri('reports/hello.txt');
    expect(sas).toMatchObject({
      hostName: `localhost:${testHub.info.ports.https}`,
      containerName: 'fieldhub-uploads',
      blobName: 'uploader/reports/hello.txt',
    });
    expect(sas.correlationId).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    const query = new URLSearchParams(sas.sasToken.slice(1));
    expect(sas.sasToken.startsWith('?')).toBe(true);
    expect(query.get('sr')).toBe('b');
    expect(query.get('sp')).toBe('rw');
    expect(query.get('spr')).toBe('https');
    expect(Date.parse(query.get('se') ?? '') - Date.now()).toBeGreaterThan(55 * 60 * 1000);
    expect(testHub.info.fileUpload.containerName).toBe('fieldhub-uploads');
    expect(testHub.info.fileUpload.storageConnectionString).toContain(`BlobEndpoint=https://localhost:`);
  });

  it('stores a blob uploaded in blocks and a committed block list, and serves it back', async () => {
    const sas = await sasUri('blocks.bin');
    const data = randomBytes(300 * 1024 + 17);
    const client = blobClient(blobUrl(sas));
    const uploaded = await client.uploadData(data, { blockSize: 64 * 1024, maxSingleShotSize: 64 * 1024 });
    expect(uploaded.etag).toMatch(/^"0x[0-9A-F]+"$/);
    const blocks = await client.getBlockList('all');
    expect(blocks.committedBlocks).toHaveLength(5);
    expect(blocks.uncommittedBlocks ?? []).toHaveLength(0);
    expect(Buffer.compare(await client.downloadToBuffer(), data)).toBe(0);
    const properties = await client.getProperties();
    expect(properties.contentLength).toBe(data.length);
    expect(properties.blobType).toBe('BlockBlob');
    expect(properties.etag).toBe(uploaded.etag);
    const download = await client.download();
    expect(download.contentLength).toBe(data.length);
  });

  it('stores a single-put blob with its content type and MD5, reads ranges and deletes it', async () => {
    const sas = await sasUri('single.json');
    const client = blobClient(blobUrl(sas).replace('sp=rw', 'sp=rw'));
    const data = Buffer.from(JSON.stringify({ hello: 'blob' }));
    const uploaded = await client.upload(data, data.length, {
      blobHTTPHeaders: { blobContentType: 'application/json' },
    });
    expect(Buffer.from(uploaded.contentMD5 ?? new Uint8Array()).toString('hex')).toHaveLength(32);
    const properties = await client.getProperties();
    expect(properties.contentType).toBe('application/json');
    expect(properties.contentLength).toBe(data.length);
    const range = await client.download(2, 5);
    expect(range.contentLength).toBe(5);
    expect(range.contentRange).toBe(`bytes 2-6/${data.length}`);
    // The device's SAS (rw) does not grant delete.
    await expect(client.delete()).rejects.toMatchObject({ statusCode: 403 });
    const account = parseStorageConnectionString(testHub.info.fileUpload.storageConnectionString ?? '');
    const deleteSas = createBlobSas({
      ...account,
      containerName: sas.containerName,
      blobName: sas.blobName,
      permissions: 'd',
      expiresOn: new Date(Date.now() + 60_000),
    });
    const deleted = await rawRequest(
      `https://127.0.0.1:${testHub.info.ports.https}/${sas.containerName}/${sas.blobName}?${deleteSas}`,
      'DELETE',
      testHub.ca,
    );
    expect(deleted.status).toBe(202);
    await expect(client.getProperties()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('commits Committed, Uncommitted and Latest blocks of a block list in its order', async () => {
    const sas = await sasUri('mixed.bin');
    const url = blobUrl(sas);
    const id = (name: string) => Buffer.from(name.padEnd(8, '-')).toString('base64');
    const stage = async (name: string, content: string) => {
      const staged = await rawRequest(
        `${url}&comp=block&blockid=${encodeURIComponent(id(name))}`,
        'PUT',
        testHub.ca,
        Buffer.from(content),
      );
      expect(staged.status).toBe(201);
    };
    const commit = (entries: string) =>
      rawRequest(
        `${url}&comp=blocklist`,
        'PUT',
        testHub.ca,
        Buffer.from(`<?xml version="1.0" encoding="utf-8"?><BlockList>${entries}</BlockList>`),
        {
          'content-type': 'application/xml',
          'x-ms-blob-content-type': 'text/plain',
        },
      );
    await stage('a', 'AAA');
    await stage('b', 'BB');
    expect((await commit(`<Latest>${id('a')}</Latest><Latest>${id('b')}</Latest>`)).status).toBe(201);
    await stage('c', 'C');
    await stage('b', 'bbbb');
    const mixed = await commit(
      `<Committed>${id('b')}</Committed><Uncommitted>${id('c')}</Uncommitted><Latest>${id('a')}</Latest><Latest>${id('b')}</Latest>`,
    );
    expect(mixed.status).toBe(201);
    const read = await rawRequest(url, 'GET', testHub.ca);
    expect(read.body.toString()).toBe('BBCAAAbbbb');
    expect(read.headers['content-type']).toBe('text/plain');
    // A block that is not there, and a malformed list.
    const missing = await commit(`<Uncommitted>${id('zz')}</Uncommitted>`);
    expect(missing.status).toBe(400);
    expect(missing.headers['x-ms-error-code']).toBe('InvalidBlockList');
    const malformed = await commit('<Nope/>');
    expect(malformed.headers['x-ms-error-code']).toBe('InvalidXmlDocument');
    expect((await rawRequest(url, 'GET', testHub.ca)).body.toString()).toBe('BBCAAAbbbb');
  });

  it('refuses a tampered signature, an expired SAS and a SAS of another blob with 403 AuthenticationFailed', async () => {
    const sas = await sasUri('guarded.txt');
    const body = Buffer.from('guarded');
    const put = (url: string) => rawRequest(url, 'PUT', testHub.ca, body, { 'x-ms-blob-type': 'BlockBlob' });
    const query = new URLSearchParams(sas.sasToken.slice(1));
    const signature = Buffer.from(query.get('sig') ?? '', 'base64');
    signature[0] = (signature[0] ?? 0) ^ 1;
    query.set('sig', signature.toString('base64'));
    const base = `https://127.0.0.1:${testHub.info.ports.https}/${sas.containerName}`;
    const tampered = await put(`${base}/${sas.blobName}?${query}`);
    expect(tampered.status).toBe(403);
    expect(tampered.headers['x-ms-error-code']).toBe('AuthenticationFailed');
    expect(tampered.body.toString()).toMatch(/<Error><Code>AuthenticationFailed<\/Code><Message>/);

    const widened = new URLSearchParams(sas.sasToken.slice(1));
    widened.set('sp', 'rwd');
    expect((await put(`${base}/${sas.blobName}?${widened}`)).headers['x-ms-error-code']).toBe('AuthenticationFailed');

    const other = await put(`${base}/uploader/other.txt${sas.sasToken}`);
    expect(other.status).toBe(403);
    expect(other.headers['x-ms-error-code']).toBe('AuthenticationFailed');

    const account = parseStorageConnectionString(testHub.info.fileUpload.storageConnectionString ?? '');
    const expired = createBlobSas({
      ...account,
      containerName: sas.containerName,
      blobName: sas.blobName,
      permissions: 'rw',
      expiresOn: new Date(Date.now() - 10 * 60 * 1000),
    });
    const late = await put(`${base}/${sas.blobName}?${expired}`);
    expect(late.status).toBe(403);
    expect(late.headers['x-ms-error-code']).toBe('AuthenticationFailed');

    const unsigned = await put(`${base}/${sas.blobName}`);
    expect(unsigned.status).toBe(403);
    // Nothing was stored by any refused request.
    const read = await rawRequest(`${base}/${sas.blobName}${sas.sasToken}`, 'GET', testHub.ca);
    expect(read.status).toBe(404);
    expect(read.headers['x-ms-error-code']).toBe('BlobNotFound');
  });

  it('refuses a blob over the size cap with 413 RequestBodyTooLarge, in one put and in blocks', async () => {
    const sas = await sasUri('big.bin');
    const client = blobClient(blobUrl(sas));
    const data = randomBytes(1024 * 1024 + 1);
    await expect(client.upload(data, data.length)).rejects.toMatchObject({ statusCode: 413 });
    await expect(
      client.uploadData(data, { blockSize: 256 * 1024, maxSingleShotSize: 256 * 1024 }),
    ).rejects.toMatchObject({ statusCode: 413 });
    const response = await rawRequest(blobUrl(sas), 'PUT', testHub.ca, data, { 'x-ms-blob-type': 'BlockBlob' });
    expect(response.status).toBe(413);
    expect(response.headers['x-ms-error-code']).toBe('RequestBodyTooLarge');
    await expect(client.getProperties()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('notifies the service over AMQP of a successful upload (both notification forms), once', async () => {
    const reader = await notificationReader(testHub);
    readers.push(reader);
    const sas = await sasUri('notified.bin');
    const data = randomBytes(4096);
    await blobClient(blobUrl(sas)).upload(data, data.length);
    const notified = await deviceRequest(
      testHub,
      'uploader',
      key,
      'POST',
      `/devices/uploader/files/notifications/${encodeURIComponent(sas.correlationId)}`,
      { isSuccess: true, statusCode: 201, statusDescription: '' },
    );
    expect(notified.status, notified.text).toBe(204);
    const first = await reader.next(1);
    expect(first.notification).toMatchObject({
      deviceId: 'uploader',
      blobName: 'uploader/notified.bin',
      blobUri: `https://localhost:${testHub.info.ports.https}/fieldhub-uploads/uploader/notified.bin`,
      blobSizeInBytes: 4096,
    });
    expect(Date.parse(first.notification.enqueuedTimeUtc)).not.toBeNaN();
    expect(Date.parse(first.notification.lastUpdatedTime)).not.toBeNaN();
    expect(first.message.content_type).toBe('application/vnd.microsoft.iothub.filenotification.json');
    first.delivery.accept();

    // The body form (correlationId in the body); a failed upload is not notified.
    const failed = await sasUri('failed.bin');
    const failedReport = await deviceRequest(
      testHub,
      'uploader',
      key,
      'POST',
      '/devices/uploader/files/notifications',
      {
        correlationId: failed.correlationId,
        isSuccess: false,
        statusCode: 500,
        statusDescription: 'disk error',
      },
    );
    expect(failedReport.status).toBe(204);
    const second = await sasUri('second.bin');
    await blobClient(blobUrl(second)).upload(Buffer.from('2'), 1);
    const secondReport = await deviceRequest(
      testHub,
      'uploader',
      key,
      'POST',
      '/devices/uploader/files/notifications',
      {
        correlationId: second.correlationId,
        isSuccess: true,
        statusCode: 201,
        statusDescription: 'ok',
      },
    );
    expect(secondReport.status).toBe(204);
    const next = await reader.next(2);
    expect(next.notification.blobName).toBe('uploader/second.bin');
    next.delivery.accept();
    await expect.poll(() => testHub.hub.core.fileUploads.pendingNotifications()).toBe(0);
    // Reporting again: the upload is no longer active.
    const again = await deviceRequest(testHub, 'uploader', key, 'POST', '/devices/uploader/files/notifications', {
      correlationId: second.correlationId,
      isSuccess: true,
    });
    expect(again.status).toBe(400);
    expect(again.headers['iothub-errorcode']).toBe('InvalidFileUploadCorrelationId');
  });

  it('delivers a released notification again with the next delivery', async () => {
    const reader = await notificationReader(testHub);
    readers.push(reader);
    const sas = await sasUri('released.bin');
    await blobClient(blobUrl(sas)).upload(Buffer.from('x'), 1);
    await deviceRequest(testHub, 'uploader', key, 'POST', '/devices/uploader/files/notifications', {
      correlationId: sas.correlationId,
      isSuccess: true,
    });
    const first = await reader.next(1);
    first.delivery.release();
    const second = await reader.next(2);
    expect(second.notification.blobName).toBe('uploader/released.bin');
    second.delivery.accept();
    await expect.poll(() => testHub.hub.core.fileUploads.pendingNotifications()).toBe(0);
  });

  it('refuses bad requests as Azure does', async () => {
    const post = (path: string, body?: unknown) => deviceRequest(testHub, 'uploader', key, 'POST', path, body);
    const missing = await post('/devices/uploader/files', {});
    expect(missing.status).toBe(400);
    expect(missing.headers['iothub-errorcode']).toBe('ArgumentInvalid');
    for (const blobName of ['../escape', 'a//b', 'x\\y', 42]) {
      expect((await post('/devices/uploader/files', { blobName })).status).toBe(400);
    }
    const unknown = await post('/devices/uploader/files/notifications/nope', { isSuccess: true });
    expect(unknown.status).toBe(400);
    expect(unknown.headers['iothub-errorcode']).toBe('InvalidFileUploadCorrelationId');
    const sas = await sasUri('status.txt');
    const noStatus = await post(`/devices/uploader/files/notifications/${sas.correlationId}`, {});
    expect(noStatus.headers['iothub-errorcode']).toBe('InvalidFileUploadCompletionStatus');
    // Success reported without a blob in storage: refused, the upload stays active.
    const noBlob = await post(`/devices/uploader/files/notifications/${sas.correlationId}`, { isSuccess: true });
    expect(noBlob.status).toBe(400);
    expect(noBlob.headers['iothub-errorcode']).toBe('InvalidFileUploadCompletionStatus');
    expect(
      (await post(`/devices/uploader/files/notifications/${sas.correlationId}`, { isSuccess: false })).status,
    ).toBe(204);

    // Another device cannot complete this device's upload.
    const otherKey = await createDevice(testHub, 'other-device');
    const mine = await sasUri('mine.txt');
    const stolen = await deviceRequest(
      testHub,
      'other-device',
      otherKey,
      'POST',
      `/devices/other-device/files/notifications/${mine.correlationId}`,
      { isSuccess: false },
    );
    expect(stolen.headers['iothub-errorcode']).toBe('InvalidFileUploadCorrelationId');
    // Wrong credentials, and modules.
    const wrong = await deviceRequest(testHub, 'uploader', otherKey, 'POST', '/devices/uploader/files', {
      blobName: 'x',
    });
    expect(wrong.status).toBe(401);
    const module = await post('/devices/uploader/modules/m1/files', { blobName: 'x' });
    expect(module.status).toBe(400);
  });

  it('allows 10 active uploads per device and refuses the 11th with 403006', async () => {
    const deviceKey = await createDevice(testHub, 'busy');
    const uploads: SasUri[] = [];
    for (let index = 0; index < 10; index++) uploads.push(await sasUri(`f${index}`, 'busy', deviceKey));
    const refused = await deviceRequest(testHub, 'busy', deviceKey, 'POST', '/devices/busy/files', { blobName: 'f10' });
    expect(refused.status).toBe(403);
    expect(refused.headers['iothub-errorcode']).toBe('DeviceMaximumActiveFileUploadLimitExceeded');
    expect((refused.json as { Message: string }).Message).toMatch(
      /^ErrorCode:DeviceMaximumActiveFileUploadLimitExceeded;/,
    );
    const done = await deviceRequest(testHub, 'busy', deviceKey, 'POST', '/devices/busy/files/notifications', {
      correlationId: uploads[0]?.correlationId,
      isSuccess: false,
    });
    expect(done.status).toBe(204);
    expect(
      (await deviceRequest(testHub, 'busy', deviceKey, 'POST', '/devices/busy/files', { blobName: 'f10' })).status,
    ).toBe(200);
  });
});

describe('file upload across a restart', () => {
  let testHub: TestHub;
  const previousCa = globalAgent.options.ca;

  beforeAll(async () => {
    testHub = await startTestHub();
    globalAgent.options.ca = testHub.ca;
  });
  afterAll(async () => {
    globalAgent.options.ca = previousCa;
    await testHub?.stop();
  });

  it('keeps blobs, pending notifications and the account key (earlier SAS still verify)', async () => {
    const key = await createDevice(testHub, 'durable');
    const response = await deviceRequest(testHub, 'durable', key, 'POST', '/devices/durable/files', {
      blobName: 'kept.bin',
    });
    const sas = response.json as SasUri;
    const data = randomBytes(10_000);
    await blobClient(blobUrl(sas)).upload(data, data.length);
    const notified = await deviceRequest(testHub, 'durable', key, 'POST', '/devices/durable/files/notifications', {
      correlationId: sas.correlationId,
      isSuccess: true,
    });
    expect(notified.status).toBe(204);
    const storageBefore = testHub.info.fileUpload.storageConnectionString;

    await testHub.restart();
    globalAgent.options.ca = testHub.ca;
    const account = parseStorageConnectionString(testHub.info.fileUpload.storageConnectionString ?? '');
    expect(account.accountKey).toBe(parseStorageConnectionString(storageBefore ?? '').accountKey);
    // The SAS issued before the restart reads the blob on the new port.
    const moved = { ...sas, hostName: `localhost:${testHub.info.ports.https}` };
    expect(Buffer.compare(await blobClient(blobUrl(moved)).downloadToBuffer(), data)).toBe(0);
    const reader = await notificationReader(testHub);
    try {
      const seen = await reader.next(1);
      expect(seen.notification).toMatchObject({
        deviceId: 'durable',
        blobName: 'durable/kept.bin',
        blobSizeInBytes: 10_000,
      });
      seen.delivery.accept();
      await expect.poll(() => testHub.hub.core.fileUploads.pendingNotifications()).toBe(0);
    } finally {
      await reader.close();
    }
  });
});

describe('file upload to an external Blob-compatible store', () => {
  let storageHub: TestHub;
  let testHub: TestHub;
  const previousCa = globalAgent.options.ca;

  beforeAll(async () => {
    // Hub B's embedded store is the "external" storage of hub A, named by a storage connection string.
    storageHub = await startTestHub();
    const account = parseStorageConnectionString(storageHub.info.fileUpload.storageConnectionString ?? '');
    testHub = await startTestHub({
      fileUpload: {
        storageConnectionString:
          `DefaultEndpointsProtocol=https;AccountName=${account.accountName};AccountKey=${account.accountKey};` +
          `BlobEndpoint=https://127.0.0.1:${storageHub.info.ports.https}`,
        storageCaCertificate: storageHub.info.caCertificate,
      },
    });
    globalAgent.options.ca = [storageHub.ca, testHub.ca];
  });
  afterAll(async () => {
    globalAgent.options.ca = previousCa;
    await testHub?.stop();
    await storageHub?.stop();
  });

  it('sends devices to the external store and reads the blob size from it for the notification', async () => {
    expect(testHub.info.fileUpload.storageConnectionString).toBeNull();
    const key = await createDevice(testHub, 'remote');
    const response = await deviceRequest(testHub, 'remote', key, 'POST', '/devices/remote/files', {
      blobName: 'far.bin',
    });
    expect(response.status).toBe(200);
    const sas = response.json as SasUri;
    expect(sas.hostName).toBe(`127.0.0.1:${storageHub.info.ports.https}`);
    const data = randomBytes(70_000);
    await blobClient(`https://${sas.hostName}/${sas.containerName}/${sas.blobName}${sas.sasToken}`).uploadData(data, {
      blockSize: 32 * 1024,
      maxSingleShotSize: 32 * 1024,
    });
    const reader = await notificationReader(testHub);
    try {
      const notified = await deviceRequest(testHub, 'remote', key, 'POST', '/devices/remote/files/notifications', {
        correlationId: sas.correlationId,
        isSuccess: true,
      });
      expect(notified.status, notified.text).toBe(204);
      const seen = await reader.next(1);
      expect(seen.notification).toMatchObject({
        deviceId: 'remote',
        blobName: 'remote/far.bin',
        blobSizeInBytes: 70_000,
        blobUri: `https://127.0.0.1:${storageHub.info.ports.https}/fieldhub-uploads/remote/far.bin`,
      });
      seen.delivery.accept();
    } finally {
      await reader.close();
    }
    // The bytes are in hub B's store.
    const stored = storageHub.hub;
    expect(stored.info?.fileUpload.containerName).toBe('fieldhub-uploads');
  });
});

describe('blob endpoint logs', () => {
  it('never logs the SAS signature of a refused blob request', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const dataDir = mkdtempSync(join(tmpdir(), 'fieldhub-blob-logs-'));
    const hub = createHub(
      { hostName: 'localhost', bind: '127.0.0.1', logLevel: 'debug', dataDir, ports: { mqtt: 0, amqp: 0, https: 0 } },
      { logger: pino({ level: 'debug' }, sink) },
    );
    try {
      const info = await hub.start();
      const ca = readFileSync(info.caCertificate, 'utf8');
      const account = parseStorageConnectionString(info.fileUpload.storageConnectionString ?? '');
      const readOnly = createBlobSas({
        ...account,
        containerName: info.fileUpload.containerName,
        blobName: 'dev/secret.txt',
        permissions: 'r',
        expiresOn: new Date(Date.now() + 60_000),
      });
      const url = `https://127.0.0.1:${info.ports.https}/${info.fileUpload.containerName}/dev/secret.txt?${readOnly}`;
      // Its own agent: the file's other hubs have their own CAs.
      const code = await new Promise<unknown>((resolve, reject) => {
        const request = httpsRequest(
          url,
          { method: 'PUT', ca, agent: false, headers: { 'x-ms-blob-type': 'BlockBlob', 'content-length': '1' } },
          (response) => {
            response.resume();
            response.on('end', () => resolve(response.headers['x-ms-error-code']));
          },
        );
        request.on('error', reject);
        request.end('x');
      });
      expect(code).toBe('AuthorizationPermissionMismatch');
      const signature = new URLSearchParams(readOnly).get('sig') ?? '';
      const logged = lines.join('');
      expect(logged).toContain('dev/secret.txt');
      expect(logged).not.toContain(encodeURIComponent(signature));
      expect(logged).not.toContain(signature);
    } finally {
      await hub.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
