/**
 * `DeviceClient`: the one client class for device and module identities (a module is a device identity with a
 * `moduleId`; every feature works the same, so there is no separate class: `ModuleClient` is an alias). Built from
 * feature objects (telemetry, twin, direct methods, cloud-to-device) over one {@link ConnectionManager}. Make one
 * with `createDeviceClient()`.
 */
import { CloudToDevice, type CloudToDeviceMessage, type CloudToDeviceOptions } from './cloud-to-device';
import type { ConnectionManager, ConnectionState } from './connection-manager';
import type { DeviceIdentity } from './credentials';
import { type DirectMethodHandler, DirectMethods } from './direct-methods';
import type { DeviceClientEvents, Listener } from './events';
import { FileUpload, type UploadFileOptions, type UploadFileResult } from './file-upload';
import { Telemetry, type TelemetryMessage } from './telemetry';
import type { FileUploadData, FileUploadService } from './transport/file-upload';
import type { OperationOptions, TransportCapabilities } from './transport/transport';
import { type DesiredPropertiesPatch, type Twin, TwinFeature, type TwinOptions } from './twin';

/** Options of the features (part of `createDeviceClient`'s options). */
export interface DeviceClientFeatureOptions {
  readonly cloudToDevice?: CloudToDeviceOptions;
  readonly twin?: TwinOptions;
  /**
   * How `uploadFile` reaches the hub and the store (HTTPS, beside the transport). `@fieldhub/device` passes
   * `httpFileUpload()`; without one, `uploadFile` rejects with UnsupportedFeatureError.
   */
  readonly fileUpload?: FileUploadService;
}

/**
 * A connected device (or module) client. Every async method takes `{ signal }`; every operation settles exactly
 * once: resolved, rejected with a HubError, or AbortError.
 *
 * What settles how:
 * - Offline: telemetry waits in the bounded offline queue and resolves once the hub accepted it after the
 *   reconnect; twin operations wait for the connection. Telemetry and twin operations interrupted by a connection
 *   loss are sent again after the reconnect (at least once: the hub may have the first copy). Settling a
 *   cloud-to-device message and answering a method belong to the connection they arrived on and reject with
 *   ConnectionError once it is gone (the hub redelivers the message; the method caller times out).
 * - `signal` aborts: an operation not yet sent rejects with AbortError and leaves the queue; one in flight rejects
 *   with AbortError at once, though the hub may still receive it.
 * - `close()`: everything pending rejects with ConnectionError `client closed` (`isRetryable: false`), as do
 *   later calls; iterators end (`done`); timers stop.
 */
export class DeviceClient implements AsyncDisposable {
  readonly #manager: ConnectionManager;
  readonly #telemetry: Telemetry;
  readonly #twin: TwinFeature;
  readonly #methods: DirectMethods;
  readonly #cloudToDevice: CloudToDevice;
  readonly #fileUpload: FileUpload;

  /**
   * Use `createDeviceClient()`, which connects; this constructor does not.
   * @throws ArgumentError when feature options are out of range.
   */
  constructor(manager: ConnectionManager, options: DeviceClientFeatureOptions = {}) {
    this.#manager = manager;
    this.#telemetry = new Telemetry(manager);
    this.#twin = new TwinFeature(manager, options.twin);
    this.#methods = new DirectMethods(manager);
    this.#cloudToDevice = new CloudToDevice(manager, options.cloudToDevice);
    this.#fileUpload = new FileUpload(manager, { service: options.fileUpload });
  }

  /** Who this client is: hub, device id, module id (for a module), gateway. */
  get identity(): DeviceIdentity {
    const provider = this.#manager.credentialProvider;
    return {
      hostName: provider.hostName,
      deviceId: provider.deviceId,
      ...(provider.moduleId !== undefined ? { moduleId: provider.moduleId } : {}),
      ...(provider.gatewayHostName !== undefined ? { gatewayHostName: provider.gatewayHostName } : {}),
    };
  }

  /** What the transport can do. */
  get capabilities(): TransportCapabilities {
    return this.#manager.capabilities;
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.#manager.state;
  }

  /** Telemetry messages waiting in the offline queue. */
  get queuedTelemetry(): number {
    return this.#manager.queuedMessages;
  }

  /**
   * Sends one telemetry message; resolves once the hub accepted it (MQTT PUBACK), after a reconnect if the client
   * is offline.
   *
   * @throws ArgumentError for a malformed message (or one the hub refused); ThrottledError (code
   * `ThrottleBacklogLimitExceeded`) when the offline queue overflowed; ConnectionError `client closed`, or the
   * last error when the retry policy gave up; AbortError.
   */
  sendTelemetry(message: TelemetryMessage, options?: OperationOptions): Promise<void> {
    return this.#telemetry.send(message, options);
  }

  /**
   * Sends several messages as one operation (one transport batch where the transport can, else one by one, in
   * order); resolves once the hub accepted all. The batch counts as that many messages in the offline queue.
   *
   * @throws as {@link DeviceClient.sendTelemetry}.
   */
  sendTelemetryBatch(messages: readonly TelemetryMessage[], options?: OperationOptions): Promise<void> {
    return this.#telemetry.sendBatch(messages, options);
  }

  /**
   * Received cloud-to-device messages. The first call subscribes (and the client re-subscribes after every
   * reconnect). Messages go into one shared bounded buffer (see `CloudToDeviceOptions`); concurrent iterators
   * share them. Aborting `signal` makes a pending `next()` reject with AbortError; `close()` ends iteration.
   *
   * @throws UnsupportedFeatureError when the transport receives none.
   */
  cloudToDeviceMessages(options?: OperationOptions): AsyncIterableIterator<CloudToDeviceMessage> {
    return this.#cloudToDevice.messages(options);
  }

  /**
   * Reads the twin (`desired` and `reported`, each with `$version`).
   * @throws UnsupportedFeatureError without twin support; ConnectionError; TimeoutError; AbortError.
   */
  getTwin(options?: OperationOptions): Promise<Twin> {
    return this.#twin.getTwin(options);
  }

  /**
   * Patches reported properties (JSON merge patch: `null` deletes); resolves with the new reported `$version`.
   * @throws ArgumentError for an invalid patch; as {@link DeviceClient.getTwin}.
   */
  updateReportedProperties(patch: Readonly<Record<string, unknown>>, options?: OperationOptions): Promise<number> {
    return this.#twin.updateReportedProperties(patch, options);
  }

  /**
   * Desired-property patches, each with the `$version` it brings the twin to, from the moment of this call. After a
   * reconnect the client re-reads the twin and yields the changes missed meanwhile as one synthesized patch (the
   * difference between the last desired properties yielded and the fresh ones) with the fresh `$version`;
   * notifications with a `$version` not above the last one are skipped (reference §2.6). Each iterator has its
   * own bounded buffer that coalesces patches when full (see `TwinOptions`).
   *
   * @throws UnsupportedFeatureError without twin support.
   */
  desiredPropertyUpdates(options?: OperationOptions): AsyncIterableIterator<DesiredPropertiesPatch> {
    return this.#twin.desiredPropertyUpdates(options);
  }

  /**
   * Handles direct method `methodName`; returns a function that removes the handler. A request for a method with
   * no handler is answered 501; a handler that throws is answered 500.
   *
   * @throws UnsupportedFeatureError when the transport has no direct methods; ArgumentError when a handler for
   * the name exists already.
   */
  onDirectMethod(methodName: string, handler: DirectMethodHandler): () => void {
    return this.#methods.on(methodName, handler);
  }

  /**
   * Handles every direct method that has no handler of its own (a handler registered with
   * {@link DeviceClient.onDirectMethod} takes its name first); returns a function that removes it. For code that
   * learns method names at run time, such as a gateway forwarding methods to the devices behind it. Like C#'s
   * `SetMethodDefaultHandlerAsync`. The handler reads the name from `request.methodName`; a handler that throws is
   * answered 500, and without one an unknown name is answered 501.
   *
   * @throws UnsupportedFeatureError when the transport has no direct methods; ArgumentError when a default handler
   * is registered already.
   * @example
   * ```ts
   * client.onDefaultDirectMethod(async ({ methodName, payload }) => ({ status: 200, payload: { methodName, payload } }));
   * ```
   */
  onDefaultDirectMethod(handler: DirectMethodHandler): () => void {
    return this.#methods.onDefault(handler);
  }

  /**
   * Uploads `data` as blob `blobName` (the hub stores it as `{deviceId}/{blobName}`) and tells the hub, which
   * notifies the service (protocol-device.md §4.3). Uploads make their own HTTPS requests whichever transport the
   * client uses, so they work while it reconnects. `data` is bytes (a Buffer) or an AsyncIterable of them (a Node
   * Readable, a web ReadableStream); large and streamed bodies go in blocks, with `onProgress` called as the store
   * acknowledges them. A failed or aborted upload is reported to the hub too (best effort), so that it frees the
   * upload slot. A stream the upload read from is closed when it fails.
   *
   * @throws UnsupportedFeatureError for a module identity (modules cannot upload files) or without a
   * `fileUpload` service; ArgumentError for a bad `blobName`, `data` or `length` (also a stream that yields
   * strings, or ends shorter than `length`), or a request the hub or store refused; AuthenticationError when the
   * hub refused the device's credentials (after one fresh token) or the store refused the SAS (tampered, expired);
   * ThrottledError when the device has too many uploads in progress; ConnectionError when the hub or the store
   * could not be reached, or `client closed`; AbortError.
   * @example
   * ```ts
   * const { blobName } = await client.uploadFile('logs/today.txt', createReadStream(path), {
   *   length: (await stat(path)).size,
   *   onProgress: ({ bytesUploaded, totalBytes }) => console.log(`${bytesUploaded} / ${totalBytes}`),
   * });
   * ```
   */
  uploadFile(blobName: string, data: FileUploadData, options?: UploadFileOptions): Promise<UploadFileResult> {
    return this.#fileUpload.upload(blobName, data, options);
  }

  /** Listens to a lifecycle event; returns the function that stops listening. */
  on<K extends keyof DeviceClientEvents>(name: K, listener: Listener<DeviceClientEvents, K>): () => void {
    return this.#manager.events.on(name, listener);
  }

  /** Closes the client (see the class comment for what settles how). Idempotent. */
  close(): Promise<void> {
    return this.#manager.close();
  }

  /** `await using client = await createDeviceClient(...)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A module identity's client: the same class (see the file comment). */
export type ModuleClient = DeviceClient;
