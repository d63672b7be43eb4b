import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BlobClient,
  BlobSASPermissions,
  BlockBlobClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { Client as DeviceClient } from 'azure-iot-device';
import { Mqtt } from 'azure-iot-device-mqtt';
import { AmqpWs, Registry, Client as ServiceClient } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubProcess, startHubProcess } from '../support/hub-process';

// File upload with the official SDKs, unchanged, against the hub as a child process on 443: `azure-iot-device`'s
// uploadToBlob (HTTPS to the hub for the SAS URI and the notification, `@azure/storage-blob` to the hub's embedded
// Blob-compatible store), and `azure-iothub`'s file notification receiver over AMQP. The device never opens its MQTT
// connection (uploadToBlob is HTTPS only), so its HostName is plain `localhost`. The hub's CA is trusted
// through NODE_EXTRA_CA_CERTS (global-setup.ts).

interface FileNotification {
  deviceId: string;
  blobUri: string;
  blobName: string;
  lastUpdatedTime: string;
  blobSizeInBytes: number;
  enqueuedTimeUtc: string;
}

/** hub.json's file upload part (the embedded store's connection string, for reading the blob back). */
interface HubJsonFileUpload {
  fileUpload: { containerName: string; storageConnectionString: string | null };
}

describe('file upload with the official SDKs (port 443)', () => {
  let hub: HubProcess;
  let registry: Registry;
  let service: ServiceClient;
  let fileDir: string;

  beforeAll(async () => {
    hub = await startHubProcess();
    registry = Registry.fromConnectionString(hub.info.serviceConnectionString);
    // AmqpWs dials 443, where the hub serves AMQP over WebSockets (its AMQP port is not 5671 here).
    service = ServiceClient.fromConnectionString(hub.info.serviceConnectionString, AmqpWs);
    await service.open();
    fileDir = mkdtempSync(join(tmpdir(), 'fieldhub-upload-'));
  });

  afterAll(async () => {
    await service?.close().catch(() => undefined);
    await hub?.dispose();
    if (fileDir) rmSync(fileDir, { recursive: true, force: true });
  });

  it('uploads a 10 MB file with uploadToBlob, notifies the service, and stores the same bytes', async () => {
    const { responseBody } = await registry.create({ deviceId: 'uploader-443' });
    const key = responseBody.authentication?.symmetricKey?.primaryKey;
    const device = DeviceClient.fromConnectionString(
      `HostName=localhost;DeviceId=uploader-443;SharedAccessKey=${key}`,
      Mqtt,
    );
    // The callback form: the SDK's promise form resolves with the receiver itself, not the `{ transportObj }` its
    // typings announce.
    const receiver = await new Promise<ServiceClient.ServiceReceiver>((resolve, reject) =>
      service.getFileNotificationReceiver((error, received) =>
        error || !received ? reject(error ?? new Error('no receiver')) : resolve(received),
      ),
    );
    const notified = new Promise<FileNotification>((resolve, reject) => {
      receiver.on('message', (message: { getData(): Buffer }) => {
        const notification = JSON.parse(message.getData().toString()) as FileNotification;
        receiver.complete(message as never, (error) => (error ? reject(error) : resolve(notification)));
      });
      receiver.on('error', reject);
    });

    const data = randomBytes(10 * 1024 * 1024);
    const path = join(fileDir, 'ten-megabytes.bin');
    writeFileSync(path, data);
    try {
      await device.uploadToBlob('logs/ten-megabytes.bin', createReadStream(path), data.length);
    } finally {
      await device.close().catch(() => undefined);
    }

    const notification = await notified;
    expect(notification).toMatchObject({
      deviceId: 'uploader-443',
      blobName: 'uploader-443/logs/ten-megabytes.bin',
      blobUri: 'https://localhost/fieldhub-uploads/uploader-443/logs/ten-megabytes.bin',
      blobSizeInBytes: data.length,
    });
    expect(Date.parse(notification.enqueuedTimeUtc)).not.toBeNaN();

    // Read the blob back through the blob endpoint with the embedded account's key (hub.json).
    const hubJson = JSON.parse(readFileSync(join(hub.dataDir, 'hub.json'), 'utf8')) as HubJsonFileUpload;
    const connectionString = hubJson.fileUpload.storageConnectionString ?? '';
    const field = (name: string) => new RegExp(`${name}=([^;]+)`).exec(connectionString)?.[1] ?? '';
    const credential = new StorageSharedKeyCredential(field('AccountName'), field('AccountKey'));
    const readSas = generateBlobSASQueryParameters(
      {
        containerName: hubJson.fileUpload.containerName,
        blobName: notification.blobName,
        permissions: BlobSASPermissions.parse('r'),
        expiresOn: new Date(Date.now() + 10 * 60 * 1000),
      },
      credential,
    ).toString();
    const readUrl = `${field('BlobEndpoint')}/${hubJson.fileUpload.containerName}/${notification.blobName}?${readSas}`;
    // The hub's store takes SAS only (no Shared Key authorization): read anonymously with a read SAS.
    const bytes = await new BlobClient(readUrl).downloadToBuffer();
    expect(bytes.length).toBe(data.length);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('refuses a tampered or expired SAS at the blob endpoint and takes the failure report (step by step API)', async () => {
    const { responseBody } = await registry.create({ deviceId: 'refused-443' });
    const key = responseBody.authentication?.symmetricKey?.primaryKey;
    const device = DeviceClient.fromConnectionString(
      `HostName=localhost;DeviceId=refused-443;SharedAccessKey=${key}`,
      Mqtt,
    );
    try {
      const upload = await device.getBlobSharedAccessSignature('refused.txt');
      expect(upload.hostName).toBe('localhost');
      const url = (sasToken: string) =>
        `https://${upload.hostName}/${upload.containerName}/${upload.blobName}${sasToken}`;
      const query = new URLSearchParams(upload.sasToken.slice(1));
      const signature = Buffer.from(query.get('sig') ?? '', 'base64');
      signature[3] = (signature[3] ?? 0) ^ 0x20;
      query.set('sig', signature.toString('base64'));
      const body = Buffer.from('not stored');
      await expect(new BlockBlobClient(url(`?${query}`)).upload(body, body.length)).rejects.toMatchObject({
        statusCode: 403,
      });
      const expired = new URLSearchParams(upload.sasToken.slice(1));
      expired.set('se', '2020-01-01T00:00:00Z');
      await expect(new BlockBlobClient(url(`?${expired}`)).upload(body, body.length)).rejects.toMatchObject({
        statusCode: 403,
      });
      await device.notifyBlobUploadStatus(upload.correlationId, false, 403, 'AuthenticationFailed');
      // The genuine SAS still works; nothing was stored by the refused requests.
      await expect(new BlockBlobClient(url(upload.sasToken)).getProperties()).rejects.toMatchObject({
        statusCode: 404,
      });
    } finally {
      await device.close().catch(() => undefined);
    }
  });
});
