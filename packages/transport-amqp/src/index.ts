/**
 * @fieldhub/transport-amqp: AMQP 1.0 and AMQP over WebSockets for the Fieldhub device SDK, on rhea-promise 3. It
 * implements the Transport spec of `@fieldhub/device-core/transport` and speaks IoT Hub's AMQP dialect as the
 * official Azure SDK does (reference: protocol-device.md §3): CBS put-token, renewed in place; telemetry,
 * cloud-to-device (complete, reject, abandon), twin and direct-method links.
 *
 * Depends on @fieldhub/device-core (the spec), @fieldhub/protocol and rhea-promise; never on @fieldhub/auth or
 * another transport: credentials arrive through the spec's credential provider (ARCHITECTURE.md).
 *
 * @example
 * ```ts
 * import { amqp } from '@fieldhub/transport-amqp';
 * // createDeviceClient from @fieldhub/device:
 * const client = await createDeviceClient({ connectionString, transport: amqp() });
 * await client.sendTelemetry({ body: JSON.stringify({ temperature: 21.5 }) });
 * ```
 * @packageDocumentation
 */
export { amqp } from './amqp';
export { AmqpTransport, type AmqpTransportOptions, amqpCapabilities } from './amqp-transport';
