import type { TransportFactory } from '@fieldhub/device-core/transport';
import { ArgumentError } from '@fieldhub/protocol';
import { MqttTransport, type MqttTransportOptions, mqttCapabilities } from './mqtt-transport';

function checkRange(value: number | undefined, field: string, minimum: number, maximum: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new ArgumentError(`${field} must be an integer from ${minimum} to ${maximum}, not ${value}`, { field });
  }
}

/**
 * The MQTT transport factory: `createDeviceClient({ transport: mqtt() })`, or `mqtt({ webSockets: true })` for MQTT
 * over WebSockets on port 443 where only HTTPS leaves the network.
 *
 * @example
 * ```ts
 * import { mqtt } from '@fieldhub/transport-mqtt';
 * const client = await createDeviceClient({ connectionString, transport: mqtt({ webSockets: true }) });
 * ```
 * @throws ArgumentError when `port` is not 1..65535, `keepAliveSeconds` not 0..1177 (the longest keep-alive the
 * hub honours, protocol-device.md §2.2) or `operationTimeoutSeconds` not 1..3600.
 */
export function mqtt(options: MqttTransportOptions = {}): TransportFactory {
  checkRange(options.port, 'port', 1, 65535);
  checkRange(options.keepAliveSeconds, 'keepAliveSeconds', 0, 1177);
  checkRange(options.operationTimeoutSeconds, 'operationTimeoutSeconds', 1, 3600);
  const frozen: MqttTransportOptions = Object.freeze({ ...options });
  return Object.freeze({
    name: frozen.webSockets ? 'mqtt-ws' : 'mqtt',
    capabilities: mqttCapabilities,
    create: () => new MqttTransport(frozen),
  });
}
