/**
 * `@fieldhub/device-core`: the portable heart of the device SDK. `DeviceClient` (devices and modules alike) is
 * built from feature objects (telemetry, twin, direct methods, cloud-to-device) over one connection manager that
 * owns all policy: connect on demand, reconnect with exponential backoff and full jitter, SAS renewal before
 * expiry, a bounded (optionally durable) offline queue, re-subscribing and re-reading the twin after every
 * reconnect, and settling every operation exactly once. Transports implement the spec at
 * `@fieldhub/device-core/transport`.
 *
 * It imports only `@fieldhub/protocol`: no Node APIs (`node:*`, `Buffer`, `process`), no transport, no auth
 * package, so it runs on any ES2022 runtime. Applications usually install `@fieldhub/device` (MQTT by default).
 *
 * @example
 * ```ts
 * import { createDeviceClient } from '@fieldhub/device-core';
 * // mqtt(): the MQTT transport factory of @fieldhub/transport-mqtt
 * await using client = await createDeviceClient({ connectionString, transport: mqtt() });
 * await client.sendTelemetry({ body: { temperature: 21.5 } });
 * const stop = client.onDirectMethod('reboot', async () => ({ status: 200, payload: { ok: true } }));
 * ```
 * @packageDocumentation
 */

export { type Clock, systemClock } from './clock';
export * from './cloud-to-device';
export {
  type ConnectionFeature,
  ConnectionManager,
  type ConnectionManagerOptions,
  type ConnectionState,
  clientClosedError,
  defaultConnectionManager,
  type IncomingHandlers,
} from './connection-manager';
export * from './create-client';
export * from './credentials';
export * from './device-client';
export * from './direct-methods';
export * from './errors';
export * from './events';
export {
  defaultFileUpload,
  type UploadFileOptions,
  type UploadFileResult,
} from './file-upload';
export * from './logger';
export * from './offline-queue';
export * from './retry-policy';
export * from './telemetry';
export type * from './transport/file-upload';
export { blobUrlOf } from './transport/file-upload';
export type * from './transport/transport';
export * from './twin';
