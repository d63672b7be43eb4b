/**
 * @fieldhub/firmware-bridge: the gateway side of the firmware bridge (PROTOCOL.md). Microcontrollers on serial
 * ports (UART, no TCP/IP, no JS) become IoT Hub devices: the gateway speaks the framed serial protocol (COBS,
 * CRC-16, sequence numbers, ACKs, retransmission) to each MCU and holds one `@fieldhub/device` client per MCU
 * identity, over AMQP (default) or MQTT. An MCU may sign its own SAS tokens so that its key never leaves it.
 *
 * A leaf: it may depend on anything published (`@fieldhub/device`, `@fieldhub/protocol`, serialport); nothing
 * depends on it. The `fieldhub bridge` command loads it on demand.
 *
 * @example
 * ```ts
 * import { createGateway, loadGatewayConfig } from '@fieldhub/firmware-bridge';
 * const gateway = createGateway(await loadGatewayConfig('/etc/fieldhub/bridge.json'));
 * await gateway.start();
 * process.once('SIGTERM', () => void gateway.close());
 * ```
 * @packageDocumentation
 */
export {
  type DeviceEntry,
  type GatewayConfig,
  type HubSettings,
  type LogLevel,
  loadGatewayConfig,
  type PortSettings,
  validateGatewayConfig,
} from './config';
export * from './frame/index';
export { createGateway, type Gateway, type GatewayOptions } from './gateway';
export {
  defaultLinkSettings,
  Link,
  type LinkDownReason,
  type LinkEvents,
  type LinkSettings,
  type LinkTimers,
  nextSeq,
  type SendResult,
  systemTimers,
} from './link';
export { createJsonLogger, redact } from './logger';
export {
  cloudToDeviceProperties,
  McuSession,
  type McuSessionEvents,
  type McuSessionOptions,
  telemetryDedupSize,
  toTelemetryMessage,
} from './mcu-session';
export { SerialConnection, type SerialConnectionEvents, type SerialConnectionOptions } from './serial-port';
