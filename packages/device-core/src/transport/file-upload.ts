/**
 * The file-upload spec: how `DeviceClient.uploadFile()` talks to the hub and to blob storage
 * (protocol-device.md §4.3). Uploads go over HTTPS whichever transport carries the device's other traffic, as
 * in Azure's SDKs, so this is a separate seam from {@link Transport}: `@fieldhub/device` plugs in the
 * `@fieldhub/transport-http` implementation; device-core orchestrates (credentials, the three steps, progress,
 * abort, notifying the hub of a failure). No Node APIs here.
 *
 * Implementations reject with `HubError`s as transports do: `AuthenticationError` for refused credentials (401),
 * `ArgumentError` for a request the hub or the store refuses (4xx), `ThrottledError` for 403
 * `DeviceMaximumActiveFileUploadLimitExceeded` / 429, `ConnectionError` when the hub or store cannot be reached,
 * `AbortError` when `signal` aborted.
 */
import type { OperationOptions, TransportCredentials } from './transport';

/** Where the device puts the blob: the hub's answer to `POST /devices/{id}/files`. */
export interface FileUploadTarget {
  readonly correlationId: string;
  /** The storage host, possibly with a port (`127.0.0.1:8443`, `account.blob.core.windows.net`). */
  readonly hostName: string;
  readonly containerName: string;
  /** The blob's full name in the container (the hub prefixes the device id: `{deviceId}/{name}`). */
  readonly blobName: string;
  /** The SAS query string, starting with `?`. */
  readonly sasToken: string;
}

/** The blob URL the target names: `https://{hostName}/{containerName}/{blobName}{sasToken}`. */
export function blobUrlOf(target: FileUploadTarget): string {
  const name = target.blobName.split('/').map(encodeURIComponent).join('/');
  return `https://${target.hostName}/${encodeURIComponent(target.containerName)}/${name}${target.sasToken}`;
}

/** How the upload went, as the device reports it to the hub (`POST /devices/{id}/files/notifications`). */
export interface FileUploadOutcome {
  readonly isSuccess: boolean;
  /** The storage's HTTP status (201 on success). */
  readonly statusCode: number;
  readonly statusDescription: string;
}

/** Progress of one upload. */
export interface FileUploadProgress {
  /** Bytes the store has acknowledged so far. */
  readonly bytesUploaded: number;
  /** The file's size when known (a `Uint8Array`, or a stream with `length` given). */
  readonly totalBytes?: number;
}

/** The body of a blob: bytes, or chunks as they come (a Node `Readable` and a web `ReadableStream` both are). */
export type FileUploadData = Uint8Array | AsyncIterable<Uint8Array>;

/** Options of {@link FileUploadService.putBlob}. */
export interface PutBlobOptions extends OperationOptions {
  /** Extra trusted CA certificates (PEM): the client's `ca`, as the hub's own blob endpoint shares its TLS. */
  readonly ca?: string;
  /** Called as the store acknowledges parts of the blob (at least once at the end). Must not throw. */
  readonly onProgress?: (progress: FileUploadProgress) => void;
  /** The size of `data` when it is a stream and the caller knows it. */
  readonly length?: number;
}

/** Options of the hub calls. */
export interface FileUploadHubOptions extends OperationOptions {
  readonly ca?: string;
}

/** What `uploadFile` needs: the three steps of an upload. */
export interface FileUploadService {
  /** `POST /devices/{id}/files` with `{ blobName }`: a target with a SAS for one blob. */
  createUpload(
    credentials: TransportCredentials,
    blobName: string,
    options?: FileUploadHubOptions,
  ): Promise<FileUploadTarget>;
  /** Puts the blob (one Put Blob for small bodies, Put Block + Put Block List for large or streamed ones). */
  putBlob(target: FileUploadTarget, data: FileUploadData, options?: PutBlobOptions): Promise<void>;
  /** `POST /devices/{id}/files/notifications` with the outcome: the hub then notifies the service. */
  notify(
    credentials: TransportCredentials,
    correlationId: string,
    outcome: FileUploadOutcome,
    options?: FileUploadHubOptions,
  ): Promise<void>;
}
