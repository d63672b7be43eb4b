/**
 * The two places devices can upload to, behind the core's `FileUploadStorage`: the hub's embedded Blob-compatible
 * store (the default) and an external store named by a storage connection string (Azure Storage, Azurite, or
 * another Blob-compatible store), asked for a blob's size with a Get Blob Properties (HEAD) under a read SAS.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { FileUploadStorage } from '../core/file-uploads';
import { encodeBlobPath } from '../core/file-uploads';
import { createBlobSas } from './blob-sas';
import type { BlobStore, EmbeddedAccount } from './blob-store';
import { type StorageAccount, uploadHostName } from './storage-account';

/** The embedded store: `hostName` is the hub's host (with `:port` when HTTPS is not on 443). */
export function embeddedUploadStorage(
  store: BlobStore,
  account: EmbeddedAccount,
  hostName: () => string,
): FileUploadStorage {
  return {
    accountName: account.accountName,
    accountKey: account.accountKey,
    hostName,
    async blobProperties(containerName, blobName) {
      const properties = await store.properties(containerName, blobName);
      return properties && { size: properties.size, lastModified: properties.lastModified };
    },
    sas: (containerName, blobName, permissions, expiresOn) =>
      createBlobSas({ ...account, containerName, blobName, permissions, expiresOn }),
  };
}

/** Options of {@link externalUploadStorage}. */
export interface ExternalStorageOptions {
  /** Extra CA certificates (PEM) to trust for the storage endpoint (a self-hosted store with its own CA). */
  readonly ca?: string | undefined;
  /** ms since epoch. */
  readonly now: () => number;
  /** Give up on a HEAD after this many ms. Default 30 s. */
  readonly timeoutMs?: number;
}

/** An external store named by a storage connection string. */
export function externalUploadStorage(account: StorageAccount, options: ExternalStorageOptions): FileUploadStorage {
  const hostName = uploadHostName(account);
  return {
    accountName: account.accountName,
    accountKey: account.accountKey,
    hostName: () => hostName,
    async blobProperties(containerName, blobName) {
      const sas = createBlobSas({
        ...account,
        containerName,
        blobName,
        permissions: 'r',
        expiresOn: new Date(options.now() + 5 * 60 * 1000),
      });
      const url = new URL(`${account.blobEndpoint}/${containerName}/${encodeBlobPath(blobName)}?${sas}`);
      const { status, headers } = await head(url, options);
      if (status === 404) return undefined;
      if (status !== 200)
        throw new Error(`storage answered ${status} to Get Blob Properties of ${containerName}/${blobName}`);
      const size = Number(headers['content-length']);
      const modified = headers['last-modified'];
      return {
        size: Number.isFinite(size) ? size : 0,
        lastModified: typeof modified === 'string' ? new Date(modified) : new Date(options.now()),
      };
    },
    sas: (containerName, blobName, permissions, expiresOn) =>
      createBlobSas({ ...account, containerName, blobName, permissions, expiresOn }),
  };
}

function head(
  url: URL,
  options: ExternalStorageOptions,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const request = send(
      url,
      {
        method: 'HEAD',
        headers: { 'x-ms-version': '2020-10-02' },
        timeout: options.timeoutMs ?? 30_000,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      },
      (response) => {
        response.resume();
        resolve({ status: response.statusCode ?? 0, headers: response.headers });
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer from ${url.host} in time`)));
    request.on('error', reject);
    request.end();
  });
}
