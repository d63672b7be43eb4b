/**
 * @fieldhub/device: the Fieldhub / Azure IoT Hub device SDK for Node.js, the package applications install.
 * `createDeviceClient()` connects a device or module over MQTT by default (`@fieldhub/transport-mqtt`), over AMQP
 * (`amqp()`, `@fieldhub/transport-amqp`) or over HTTPS (`http()`, `@fieldhub/transport-http`), uploads files over
 * HTTPS whichever transport it uses (`client.uploadFile()` on `httpFileUpload()`), signs SAS tokens with node:crypto
 * through `@fieldhub/auth`, and offers `fileQueue()`, a durable offline queue on disk.
 * Everything else (the client, credential providers, errors, the Transport spec types) is `@fieldhub/device-core`'s,
 * re-exported here.
 *
 * Depends on device-core, transport-mqtt, transport-amqp, transport-http, auth and protocol only (ARCHITECTURE.md);
 * nothing depends on it but applications.
 *
 * @example
 * ```ts
 * import { createDeviceClient, fileQueue } from '@fieldhub/device';
 * await using client = await createDeviceClient({
 *   connectionString: process.env.DEVICE_CONNECTION_STRING,
 *   offlineQueue: { durable: fileQueue('./telemetry-queue.jsonl') },
 * });
 * await client.sendTelemetry({ body: { temperature: 21.5 } });
 * await client.uploadFile('logs/today.txt', createReadStream('./today.txt'));
 * ```
 * @packageDocumentation
 */
export * from '@fieldhub/device-core';
export { type AmqpTransportOptions, amqp } from '@fieldhub/transport-amqp';
export {
  type HttpFileUploadOptions,
  type HttpTransportOptions,
  http,
  httpFileUpload,
} from '@fieldhub/transport-http';
export { type MqttTransportOptions, mqtt } from '@fieldhub/transport-mqtt';
export { createDeviceClient, type DeviceClientOptions, type Pem } from './create-device-client';
export { type FileQueueOptions, fileQueue } from './file-queue';
