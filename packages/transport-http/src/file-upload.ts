/**
 * `httpFileUpload()`: device-core's FileUploadService over HTTPS (protocol-device.md §4.3; captures/http.txt), which
 * `DeviceClient.uploadFile()` uses whichever transport carries the device's other traffic, as Azure's SDKs do:
 * `POST /devices/{id}/files` for a target, the blob put to the store, `POST /devices/{id}/files/notifications` with
 * the outcome. Each hub call dials the hub (or gateway) anew with the credentials it is given; nothing is kept
 * between calls.
 */
import type {
  FileUploadData,
  FileUploadHubOptions,
  FileUploadOutcome,
  FileUploadService,
  FileUploadTarget,
  PutBlobOptions,
  TransportCredentials,
} from '@fieldhub/device-core/transport';
import { AbortError, ArgumentError, HubError, UnsupportedFeatureError } from '@fieldhub/protocol';
import { type Dispatcher, Pool } from 'undici';
import { blockSize, uploadBlob } from './blob-upload';
import { endpoint } from './endpoint';
import { errorFromResponse, requestFailure } from './http-error';
import { apiVersion } from './http-transport';
import { identityPath } from './messages';
import { tlsConnector } from './tls-options';
import { userAgent } from './user-agent';

/** Options of {@link httpFileUpload}. */
export interface HttpFileUploadOptions {
  /** The hub's port; default the host name's, else 443 (as `http({ port })`). The store's port is in its target. */
  readonly port?: number;
  /** How long a hub request may wait for its answer, seconds; default 60. */
  readonly operationTimeoutSeconds?: number;
  /** How long one blob request (a block of 4 MiB) may take, seconds; default 300. */
  readonly blobTimeoutSeconds?: number;
  /** Blocks of a large blob in flight at once, 1..8; default 4. */
  readonly blockConcurrency?: number;
  /** Appended to the `User-Agent` header. */
  readonly productInfo?: string;
}

const defaults = { operationTimeoutSeconds: 60, blobTimeoutSeconds: 300, blockConcurrency: 4 } as const;

function checkRange(value: number | undefined, field: string, minimum: number, maximum: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new ArgumentError(`${field} must be an integer from ${minimum} to ${maximum}, not ${value}`, { field });
  }
}

/**
 * The file-upload service over HTTPS, for `createDeviceClient({ fileUpload: httpFileUpload() })` (`@fieldhub/device`
 * plugs it in by default). Blobs of at most 4 MiB go in one Put Blob; larger ones and streams that outgrow one block
 * go in 4 MiB blocks (`blockConcurrency` in flight) and a Put Block List. The store is trusted by Node's roots plus
 * the client's `ca` (the hub's own blob endpoint shares the hub's certificate).
 *
 * @throws ArgumentError when `port` is not 1..65535, a timeout not 1..3600 s or `blockConcurrency` not 1..8.
 */
export function httpFileUpload(options: HttpFileUploadOptions = {}): FileUploadService {
  checkRange(options.port, 'port', 1, 65535);
  checkRange(options.operationTimeoutSeconds, 'operationTimeoutSeconds', 1, 3600);
  checkRange(options.blobTimeoutSeconds, 'blobTimeoutSeconds', 1, 3600);
  checkRange(options.blockConcurrency, 'blockConcurrency', 1, 8);
  const agent = userAgent(options.productInfo);
  const timeoutMs = (options.operationTimeoutSeconds ?? defaults.operationTimeoutSeconds) * 1000;

  async function hubRequest(
    credentials: TransportCredentials,
    path: string,
    json: unknown,
    hubOptions: FileUploadHubOptions,
  ): Promise<{ status: number; text: string }> {
    const signal = hubOptions.signal;
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
    if (credentials.sasToken === undefined && credentials.x509 === undefined) {
      throw new ArgumentError('credentials carry neither a SAS token nor an X.509 certificate', {
        field: 'credentials',
      });
    }
    if (credentials.moduleId !== undefined) {
      throw new UnsupportedFeatureError('IoT Hub has no file upload for modules');
    }
    const target = endpoint(credentials.gatewayHostName ?? credentials.hostName, options.port);
    const pool = new Pool(target.origin, {
      connect: tlsConnector(target, { ca: hubOptions.ca, x509: credentials.x509, timeoutMs }),
      connections: 1,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const what = `POST ${target.origin}${path}`;
    try {
      let response: Dispatcher.ResponseData;
      let text: string;
      try {
        response = await pool.request({
          method: 'POST',
          path: `${path}?api-version=${apiVersion}`,
          headers: {
            accept: 'application/json',
            'content-type': 'application/json; charset=utf-8',
            'user-agent': agent,
            ...(credentials.sasToken === undefined ? {} : { authorization: credentials.sasToken }),
          },
          body: JSON.stringify(json),
          signal: signal ?? null,
        });
        text = await response.body.text();
      } catch (error) {
        throw requestFailure(error, what, signal);
      }
      if (response.statusCode < 200 || response.statusCode >= 300) {
        throw errorFromResponse({ status: response.statusCode, headers: response.headers, body: text });
      }
      return { status: response.statusCode, text };
    } finally {
      await pool.destroy().catch(() => undefined);
    }
  }

  return {
    /**
     * `POST /devices/{id}/files` with `{"blobName"}`: the hub's target (correlation id, store host, container, the
     * blob's full name, a SAS starting with `?`).
     * @throws ArgumentError for an empty blob name; UnsupportedFeatureError for a module; AuthenticationError;
     * ThrottledError (`DeviceMaximumActiveFileUploadLimitExceeded`, 429); ConnectionError; AbortError; HubError
     * `ServerError` when the answer is no valid target.
     */
    async createUpload(credentials, blobName, hubOptions = {}) {
      if (typeof blobName !== 'string' || blobName === '') {
        throw new ArgumentError('blobName must be a non-empty string', { field: 'blobName' });
      }
      const { text } = await hubRequest(credentials, `${identityPath(credentials)}/files`, { blobName }, hubOptions);
      return uploadTarget(text);
    },

    /** See {@link uploadBlob}. */
    async putBlob(target: FileUploadTarget, data: FileUploadData, putOptions: PutBlobOptions = {}) {
      await uploadBlob(target, data, putOptions, {
        userAgent: agent,
        timeoutMs: (options.blobTimeoutSeconds ?? defaults.blobTimeoutSeconds) * 1000,
        concurrency: options.blockConcurrency ?? defaults.blockConcurrency,
        blockSize,
      });
    },

    /**
     * `POST /devices/{id}/files/notifications` with `{correlationId, isSuccess, statusCode, statusDescription}`
     * (the documented form; protocol-device.md §4.3); the hub answers 204 and notifies the service.
     * @throws as `createUpload`; ArgumentError for an empty correlation id or a correlation id the hub does not know.
     */
    async notify(credentials, correlationId, outcome: FileUploadOutcome, hubOptions = {}) {
      if (typeof correlationId !== 'string' || correlationId === '') {
        throw new ArgumentError('correlationId must be a non-empty string', { field: 'correlationId' });
      }
      await hubRequest(
        credentials,
        `${identityPath(credentials)}/files/notifications`,
        {
          correlationId,
          isSuccess: outcome.isSuccess,
          statusCode: outcome.statusCode,
          statusDescription: outcome.statusDescription,
        },
        hubOptions,
      );
    },
  };
}

/**
 * Reads the hub's answer to `POST /devices/{id}/files`.
 * @throws HubError `ServerError` when it is not JSON, lacks a field, or its `sasToken` does not start with `?` (the
 * blob URL is `https://{hostName}/{containerName}/{blobName}{sasToken}`).
 */
export function uploadTarget(text: string): FileUploadTarget {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HubError('ServerError', 'the hub answered the file-upload request with invalid JSON', { cause: error });
  }
  const record = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const field = (name: string): string => {
    const found = record[name];
    if (typeof found !== 'string' || found === '') {
      throw new HubError('ServerError', `the hub's file-upload target has no ${name}`);
    }
    return found;
  };
  const target: FileUploadTarget = {
    correlationId: field('correlationId'),
    hostName: field('hostName'),
    containerName: field('containerName'),
    blobName: field('blobName'),
    sasToken: field('sasToken'),
  };
  if (!target.sasToken.startsWith('?')) {
    throw new HubError('ServerError', "the hub's file-upload SAS token does not start with '?'");
  }
  return target;
}
