import { createSasToken } from '@fieldhub/auth';
import { Agent, fetch } from 'undici';
import { expect } from 'vitest';
import type { TestHub } from '../../../hub/test/helpers/test-hub';

/** What one upload left in the hub's storage. */
export interface Uploaded {
  /** `{deviceId}/{name}`, as the hub named the blob. */
  readonly blobName: string;
  readonly size: number;
}

/**
 * The device side of file upload done by hand with fetch, as protocol-device.md §4.3 describes it (so that service
 * tests depend on the hub's wire, not on a device SDK): `POST /devices/{id}/files`, PUT the blob to the SAS URI,
 * `POST /devices/{id}/files/notifications`. Each request is signed with the device's own key.
 */
export class DeviceUploader implements AsyncDisposable {
  private readonly dispatcher: Agent;

  constructor(
    private readonly hub: TestHub,
    private readonly keys: ReadonlyMap<string, string>,
  ) {
    this.dispatcher = new Agent({ connect: { ca: hub.ca } });
  }

  /** Uploads a file; resolves once the hub took the completion report (the notification is queued). */
  async upload(deviceId: string, name: string, content: string): Promise<Uploaded> {
    const created = await this.post(deviceId, '/files', { blobName: name });
    expect(created.status, created.text).toBe(200);
    const target = JSON.parse(created.text) as {
      correlationId: string;
      hostName: string;
      containerName: string;
      blobName: string;
      sasToken: string;
    };
    expect(target.sasToken.startsWith('?')).toBe(true);
    const blobPath = target.blobName.split('/').map(encodeURIComponent).join('/');
    const bytes = new TextEncoder().encode(content);
    const put = await fetch(`https://${target.hostName}/${target.containerName}/${blobPath}${target.sasToken}`, {
      method: 'PUT',
      headers: { 'x-ms-blob-type': 'BlockBlob', 'content-type': 'text/plain' },
      body: bytes,
      dispatcher: this.dispatcher,
    });
    expect(put.status, await put.text()).toBe(201);
    const notified = await this.post(deviceId, '/files/notifications', {
      correlationId: target.correlationId,
      isSuccess: true,
      statusCode: 201,
      statusDescription: 'uploaded',
    });
    expect(notified.status, notified.text).toBe(204);
    return { blobName: target.blobName, size: bytes.byteLength };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispatcher.close();
  }

  private async post(deviceId: string, path: string, body: unknown): Promise<{ status: number; text: string }> {
    const authorization = await createSasToken({
      resourceUri: `${this.hub.info.hostName}/devices/${deviceId}`,
      key: this.keys.get(deviceId) ?? '',
      ttlSeconds: 3600,
    });
    const device = encodeURIComponent(deviceId);
    const response = await fetch(
      `https://localhost:${this.hub.info.ports.https}/devices/${device}${path}?api-version=2021-04-12`,
      {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        dispatcher: this.dispatcher,
      },
    );
    return { status: response.status, text: await response.text() };
  }
}
