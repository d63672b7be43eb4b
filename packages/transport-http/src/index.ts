/**
 * @fieldhub/transport-http: HTTPS for the Fieldhub device SDK, on undici 7. It implements the Transport spec of
 * `@fieldhub/device-core/transport` over IoT Hub's device REST API as the official Azure SDK calls it (reference:
 * protocol-device.md §4): telemetry (single and batched), cloud-to-device messages by polling (complete, reject,
 * abandon), SAS tokens per request; and device-core's FileUploadService (`httpFileUpload()`): upload targets from
 * the hub, blobs put to Azure Storage (or the hub's blob endpoint), upload notifications.
 *
 * Depends on @fieldhub/device-core (the spec), @fieldhub/protocol and undici; never on @fieldhub/auth or another
 * transport: credentials arrive through the spec's credential provider (ARCHITECTURE.md).
 *
 * @example
 * ```ts
 * import { http } from '@fieldhub/transport-http';
 * // createDeviceClient from @fieldhub/device:
 * const client = await createDeviceClient({ connectionString, transport: http() });
 * await client.sendTelemetry({ body: JSON.stringify({ temperature: 21.5 }) });
 * ```
 * @packageDocumentation
 */
export { type HttpFileUploadOptions, httpFileUpload } from './file-upload';
export { http } from './http';
export { apiVersion, HttpTransport, type HttpTransportOptions, httpCapabilities } from './http-transport';
