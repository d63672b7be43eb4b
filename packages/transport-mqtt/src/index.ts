/**
 * @fieldhub/transport-mqtt: MQTT 3.1.1 and MQTT over WebSockets for the Fieldhub device SDK, on MQTT.js 5. It
 * implements the Transport spec of `@fieldhub/device-core/transport` and speaks IoT Hub's MQTT dialect as the
 * official Azure SDK does (reference: protocol-device.md §2).
 *
 * Depends on @fieldhub/device-core (the spec), @fieldhub/protocol and mqtt; never on @fieldhub/auth or another
 * transport: credentials arrive through the spec's credential provider (ARCHITECTURE.md).
 *
 * @example
 * ```ts
 * import { mqtt } from '@fieldhub/transport-mqtt';
 * // createDeviceClient from @fieldhub/device (which uses mqtt() by default):
 * const client = await createDeviceClient({ connectionString, transport: mqtt({ webSockets: true }) });
 * await client.sendTelemetry({ body: JSON.stringify({ temperature: 21.5 }) });
 * ```
 * @packageDocumentation
 */
export { mqtt } from './mqtt';
export { MqttTransport, type MqttTransportOptions, mqttCapabilities } from './mqtt-transport';
