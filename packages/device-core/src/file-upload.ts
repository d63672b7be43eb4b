/**
 * File upload (`DeviceClient.uploadFile`, protocol-device.md §4.3): the three steps of an upload over the
 * {@link FileUploadService} seam, whichever transport carries the device's other traffic. Uploads make their own
 * HTTPS requests, as Azure's SDKs do, so they neither wait for the connection manager's connection nor fail while
 * it reconnects; they share its credential provider, CA, retry policy, clock and logger.
 *
 * 1. `createUpload`: the hub answers with a target and a SAS for one blob (refused credentials are refreshed once
 *    and tried again; retryable failures are tried again under the retry policy, a few times).
 * 2. `putBlob`: the body goes to the store, with progress.
 * 3. `notify`: the hub learns the outcome, on failure and abort too (best effort, bounded in time), so that it frees
 *    the upload slot at once instead of when the SAS expires.
 */
import { sleep } from './clock';
import { type ConnectionManager, clientClosedError } from './connection-manager';
import { AbortError, ArgumentError, AuthenticationError, type HubError, UnsupportedFeatureError } from './errors';
import { PendingOperation, toHubError } from './pending-operation';
import type {
  FileUploadData,
  FileUploadHubOptions,
  FileUploadOutcome,
  FileUploadProgress,
  FileUploadService,
  FileUploadTarget,
} from './transport/file-upload';
import type { OperationOptions, TransportCredentials } from './transport/transport';

/** Options of `DeviceClient.uploadFile`. */
export interface UploadFileOptions extends OperationOptions {
  /**
   * Called as the store acknowledges parts of the blob: `bytesUploaded` only grows and ends at the blob's size;
   * `totalBytes` is there when the size is known (bytes, or a stream with `length`). Must not block; what it throws
   * is logged and ignored.
   */
  readonly onProgress?: (progress: FileUploadProgress) => void;
  /**
   * The size of a streamed `data`, when known: progress then has `totalBytes`, and a stream that ends shorter or
   * runs longer fails the upload with ArgumentError instead of storing a blob of the wrong size.
   */
  readonly length?: number;
}

/** What `DeviceClient.uploadFile` resolves with: where the blob is (without its SAS) and how big. */
export interface UploadFileResult {
  /** The hub's id of this upload, as in the file-upload notification the service receives. */
  readonly correlationId: string;
  /** The store's host (possibly with a port). */
  readonly hostName: string;
  readonly containerName: string;
  /** The blob's full name in the container: the hub prefixes the device id (`{deviceId}/{blobName}`). */
  readonly blobName: string;
  /** Bytes stored. */
  readonly size: number;
}

/** The defaults of file uploads. */
export const defaultFileUpload = {
  /** Tries of `createUpload` and `notify` on retryable failures (the hub is down, 5xx, throttled). */
  hubAttempts: 3,
  /** How long the notification of a failed or aborted upload may take before the client gives up on it. */
  failureNotificationTimeoutMs: 10_000,
} as const;

/** Options of {@link FileUpload}. */
export interface FileUploadFeatureOptions {
  /** The uploader; `undefined` makes `upload` reject with UnsupportedFeatureError. */
  readonly service?: FileUploadService | undefined;
  /** Default {@link defaultFileUpload}.hubAttempts. */
  readonly hubAttempts?: number;
  /** Default {@link defaultFileUpload}.failureNotificationTimeoutMs. */
  readonly failureNotificationTimeoutMs?: number;
}

/** Counts the bytes of a streamed body and checks its chunks (and `length`) as the uploader reads them. */
class CountedStream implements AsyncIterable<Uint8Array> {
  bytes = 0;
  readonly #source: AsyncIterable<Uint8Array>;
  readonly #length: number | undefined;
  #iterator: AsyncGenerator<Uint8Array> | undefined;

  constructor(source: AsyncIterable<Uint8Array>, length: number | undefined) {
    this.#source = source;
    this.#length = length;
  }

  [Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    this.#iterator ??= this.#read();
    return this.#iterator;
  }

  /** Whether the uploader started reading (a stream never read from is left to its owner). */
  get started(): boolean {
    return this.#iterator !== undefined;
  }

  /**
   * Ends the iteration of the source (a Node Readable is destroyed, a web stream cancelled) when the upload failed
   * while reading it: the rest of it is of no use, and an open file would leak.
   */
  close(): void {
    this.#iterator?.return(undefined).catch(() => undefined);
  }

  async *#read(): AsyncGenerator<Uint8Array> {
    for await (const chunk of this.#source as AsyncIterable<unknown>) {
      if (!(chunk instanceof Uint8Array)) {
        // A Node Readable with an encoding set, or in object mode, yields strings or objects.
        throw new ArgumentError(`data must yield Uint8Array chunks (Buffers), not ${typeof chunk}`, { field: 'data' });
      }
      this.bytes += chunk.byteLength;
      if (this.#length !== undefined && this.bytes > this.#length) {
        throw new ArgumentError(`data is longer than length (${this.#length} bytes)`, { field: 'length' });
      }
      yield chunk;
    }
    if (this.#length !== undefined && this.bytes !== this.#length) {
      throw new ArgumentError(`data ended after ${this.bytes} bytes, but length is ${this.#length}`, {
        field: 'length',
      });
    }
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

/** The file-upload feature of a client. @internal */
export class FileUpload {
  readonly #manager: ConnectionManager;
  readonly #service: FileUploadService | undefined;
  readonly #hubAttempts: number;
  readonly #failureNotificationTimeoutMs: number;

  /** @throws ArgumentError when an option is out of range. */
  constructor(manager: ConnectionManager, options: FileUploadFeatureOptions = {}) {
    this.#manager = manager;
    this.#service = options.service;
    this.#hubAttempts = options.hubAttempts ?? defaultFileUpload.hubAttempts;
    this.#failureNotificationTimeoutMs =
      options.failureNotificationTimeoutMs ?? defaultFileUpload.failureNotificationTimeoutMs;
    if (!Number.isInteger(this.#hubAttempts) || this.#hubAttempts < 1) {
      throw new ArgumentError('hubAttempts must be a positive integer', { field: 'hubAttempts' });
    }
    if (!(this.#failureNotificationTimeoutMs >= 0)) {
      throw new ArgumentError('failureNotificationTimeoutMs must be >= 0', { field: 'failureNotificationTimeoutMs' });
    }
    if (
      options.service !== undefined &&
      (typeof options.service !== 'object' ||
        typeof options.service.createUpload !== 'function' ||
        typeof options.service.putBlob !== 'function' ||
        typeof options.service.notify !== 'function')
    ) {
      throw new ArgumentError('fileUpload must be a FileUploadService (createUpload, putBlob, notify)', {
        field: 'fileUpload',
      });
    }
  }

  /** See `DeviceClient.uploadFile`. */
  upload(blobName: string, data: FileUploadData, options: UploadFileOptions = {}): Promise<UploadFileResult> {
    const manager = this.#manager;
    if (manager.state === 'closed') return Promise.reject(clientClosedError());
    let body: Uint8Array | CountedStream;
    try {
      body = this.#check(blobName, data, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const service = this.#service as FileUploadService;
    const op = new PendingOperation<UploadFileResult>(options.signal);
    if (op.settled) return op.promise;
    // close() settles an upload in flight like every other operation; op.signal then stops its requests.
    const closed = manager.closedSignal;
    const onClose = (): void => {
      op.reject(clientClosedError());
    };
    closed.addEventListener('abort', onClose, { once: true });
    const detach = (): void => closed.removeEventListener('abort', onClose);
    op.promise.then(detach, detach);
    this.#run(service, op, blobName, body, options).then(
      (result) => op.resolve(result),
      (error: unknown) => op.reject(error),
    );
    return op.promise;
  }

  #check(blobName: string, data: FileUploadData, options: UploadFileOptions): Uint8Array | CountedStream {
    if (this.#service === undefined) {
      throw new UnsupportedFeatureError(
        'file upload needs a FileUploadService: pass createDeviceClient({ fileUpload }) (@fieldhub/device passes httpFileUpload())',
      );
    }
    if (this.#manager.credentialProvider.moduleId !== undefined) {
      // Azure IoT Hub offers file upload to device identities only (there is no /modules/{id}/files).
      throw new UnsupportedFeatureError('modules cannot upload files: file upload is for device identities');
    }
    if (typeof blobName !== 'string' || blobName === '') {
      throw new ArgumentError('blobName must be a non-empty string', { field: 'blobName' });
    }
    const { length } = options;
    if (length !== undefined && !(Number.isSafeInteger(length) && length >= 0)) {
      throw new ArgumentError('length must be a non-negative integer', { field: 'length' });
    }
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
      throw new ArgumentError('onProgress must be a function', { field: 'onProgress' });
    }
    if (data instanceof Uint8Array) {
      if (length !== undefined && length !== data.byteLength) {
        throw new ArgumentError(`length (${length}) differs from the size of data (${data.byteLength} bytes)`, {
          field: 'length',
        });
      }
      return data;
    }
    if (!isAsyncIterable(data)) {
      throw new ArgumentError('data must be a Uint8Array (a Buffer) or an AsyncIterable of them (a stream)', {
        field: 'data',
      });
    }
    return new CountedStream(data, length);
  }

  async #run(
    service: FileUploadService,
    op: PendingOperation<UploadFileResult>,
    blobName: string,
    body: Uint8Array | CountedStream,
    options: UploadFileOptions,
  ): Promise<UploadFileResult> {
    const signal = op.signal;
    const logger = this.#manager.logger;
    const ca = this.#manager.ca;
    const hubOptions: FileUploadHubOptions = { signal, ...(ca !== undefined ? { ca } : {}) };
    const target = await this.#hubStep('create the upload', signal, (credentials) =>
      service.createUpload(credentials, blobName, hubOptions),
    );
    logger.debug?.('uploading a file', { blobName: target.blobName, correlationId: target.correlationId });

    const totalBytes = body instanceof Uint8Array ? body.byteLength : options.length;
    let reported = -1;
    const onProgress = (progress: FileUploadProgress): void => {
      // Monotonic whatever the uploader reports (retried blocks may report a smaller count again).
      if (op.settled || !(progress.bytesUploaded > reported)) return;
      reported = progress.bytesUploaded;
      try {
        options.onProgress?.({
          bytesUploaded: progress.bytesUploaded,
          ...(totalBytes !== undefined ? { totalBytes } : {}),
        });
      } catch (error) {
        logger.warn?.('an onProgress callback threw', { error });
      }
    };
    try {
      await service.putBlob(target, body, {
        signal,
        onProgress,
        ...(ca !== undefined ? { ca } : {}),
        ...(totalBytes !== undefined ? { length: totalBytes } : {}),
      });
    } catch (error) {
      if (body instanceof CountedStream) body.close();
      // Settled already when the caller aborted or the client closed: that is what stopped the upload.
      const aborted = op.settled;
      const failure = aborted ? new AbortError() : toHubError(error);
      const notifying = this.#notifyFailure(service, target, failure, aborted);
      if (!aborted) await notifying;
      throw failure;
    }
    const size = body instanceof Uint8Array ? body.byteLength : body.bytes;
    // The uploader reports the end at least once; make sure the caller sees it even if it did not.
    onProgress({ bytesUploaded: size });
    await this.#hubStep('notify the hub of the upload', signal, (credentials) =>
      service.notify(
        credentials,
        target.correlationId,
        { isSuccess: true, statusCode: 201, statusDescription: 'Created' },
        hubOptions,
      ),
    );
    logger.info?.('file uploaded', { blobName: target.blobName, correlationId: target.correlationId, size });
    return {
      correlationId: target.correlationId,
      hostName: target.hostName,
      containerName: target.containerName,
      blobName: target.blobName,
      size,
    };
  }

  /**
   * Tells the hub that the upload failed (with the store's status, or 499 when the device aborted it), bounded by
   * `failureNotificationTimeoutMs`; never rejects (a lost notification only keeps the slot until the SAS expires).
   */
  async #notifyFailure(
    service: FileUploadService,
    target: FileUploadTarget,
    failure: HubError,
    aborted: boolean,
  ): Promise<void> {
    const manager = this.#manager;
    const outcome: FileUploadOutcome = aborted
      ? { isSuccess: false, statusCode: 499, statusDescription: 'upload aborted by the device' }
      : { isSuccess: false, statusCode: failure.status, statusDescription: failure.message };
    // Not the operation's signal: it aborted already when the caller did.
    const controller = new AbortController();
    const timer = manager.clock.setTimeout(
      () => controller.abort(new AbortError('the failure notification took too long')),
      this.#failureNotificationTimeoutMs,
    );
    const ca = manager.ca;
    try {
      await this.#hubStep('notify the hub of the failed upload', controller.signal, (credentials) =>
        service.notify(credentials, target.correlationId, outcome, {
          signal: controller.signal,
          ...(ca !== undefined ? { ca } : {}),
        }),
      );
      manager.logger.debug?.('notified the hub of a failed upload', {
        correlationId: target.correlationId,
        statusCode: outcome.statusCode,
      });
    } catch (error) {
      manager.logger.warn?.('could not notify the hub of a failed upload; it frees the slot when the SAS expires', {
        correlationId: target.correlationId,
        error,
      });
    } finally {
      manager.clock.clearTimeout(timer);
    }
  }

  /**
   * One call to the hub with the client's credentials: refused credentials are refreshed once and tried again
   * (a SAS token may have expired during a long upload); retryable failures are tried again after the retry
   * policy's delay, up to `hubAttempts` tries.
   */
  async #hubStep<T>(
    what: string,
    signal: AbortSignal,
    call: (credentials: TransportCredentials) => Promise<T>,
  ): Promise<T> {
    const manager = this.#manager;
    const provider = manager.credentialProvider;
    let refresh = false;
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const credentials = await provider.getCredentials({ signal, ...(refresh ? { refresh: true } : {}) });
        refresh = false;
        return await call(credentials);
      } catch (error) {
        const failure = toHubError(error);
        if (signal.aborted) throw failure;
        if (failure instanceof AuthenticationError && provider.kind === 'sas' && !refreshed) {
          refresh = true;
          refreshed = true;
          manager.logger.debug?.(`the hub refused the credentials to ${what}; trying a fresh SAS token`);
          continue;
        }
        const delayMs =
          failure.isRetryable && attempt < this.#hubAttempts
            ? manager.retryPolicy.nextDelayMs(attempt, failure)
            : undefined;
        if (delayMs === undefined) throw failure;
        manager.logger.warn?.(`could not ${what}; trying again`, { attempt, delayMs, error: failure });
        await sleep(manager.clock, delayMs, signal);
      }
    }
  }
}
