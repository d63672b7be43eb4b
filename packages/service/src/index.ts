/**
 * @fieldhub/service: the back-end SDK of a Fieldhub (or Azure IoT Hub) hub: the identity registry (devices,
 * modules, bulk, statistics), twins, queries, direct methods, cloud-to-device messages with feedback, reading
 * telemetry from the built-in endpoint, and file-upload notifications.
 *
 * It speaks the hub's REST API (Azure's routes with `api-version=2021-04-12`, on undici) and, for cloud-to-device
 * send, feedback, reading telemetry and file-upload notifications, AMQP as Azure's own service clients do (on
 * rhea-promise): `/messages/devicebound`, `/messages/serviceBound/feedback`,
 * `/messages/serviceBound/filenotifications`, and the built-in endpoint as Event Hubs speaks it; so all of it works
 * against Azure IoT Hub too. Depends on @fieldhub/protocol, @fieldhub/auth, undici and rhea-promise; never on the device SDK
 * or the hub (ARCHITECTURE.md).
 * Errors are the HubError family of @fieldhub/protocol.
 *
 * @example
 * ```ts
 * import { createServiceClient } from '@fieldhub/service';
 * await using service = createServiceClient({ connectionString, ca });
 * await service.devices.create('d1');
 * await service.twins.patch('d1', { tags: { site: 'plant-1' } });
 * for await (const twin of service.query("SELECT * FROM devices WHERE tags.site = 'plant-1'")) console.log(twin);
 * ```
 * @packageDocumentation
 */
export type {
  CloudToDevice,
  CloudToDeviceAck,
  CloudToDeviceMessage,
  FeedbackOptions,
  FeedbackRecord,
  PurgeResult,
  SendOptions,
  SendResult,
} from './cloud-to-device';
export {
  type DeleteOptions,
  type Devices,
  type ListDevicesOptions,
  type Modules,
  maxBulkOperations,
  type UpdateOptions,
} from './devices';
export type { DirectMethodRequest, DirectMethodResponse, DirectMethods } from './direct-methods';
export type { FileUploadNotification, FileUploadNotificationOptions, FileUploads } from './file-uploads';
export { apiVersion } from './http-client';
export type { CallOptions } from './options';
export type { QueryOptions, QueryPage, QueryResult } from './query';
export { errorFromResponse, type FailedResponse } from './response-error';
export { createServiceClient, type ServiceClient, type ServiceClientOptions } from './service-client';
export { type SseEvent, SseParser, type SseParserOptions } from './sse-parser';
export type { EventPosition, ReadTelemetryOptions, Telemetry, TelemetryEvent } from './telemetry';
export type { TwinOptions, Twins, TwinWriteOptions } from './twins';
export type * from './types';
