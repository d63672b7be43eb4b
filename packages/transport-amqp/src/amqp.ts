import type { TransportFactory } from '@fieldhub/device-core/transport';
import { ArgumentError } from '@fieldhub/protocol';
import { AmqpTransport, type AmqpTransportOptions, amqpCapabilities } from './amqp-transport';

function checkRange(value: number | undefined, field: string, minimum: number, maximum: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new ArgumentError(`${field} must be an integer from ${minimum} to ${maximum}, not ${value}`, { field });
  }
}

/**
 * The AMQP transport factory: `createDeviceClient({ transport: amqp() })` for AMQP 1.0 over TLS on 5671, or
 * `amqp({ webSockets: true })` for AMQP over WebSockets on port 443 where only HTTPS leaves the network.
 *
 * @example
 * ```ts
 * import { amqp } from '@fieldhub/transport-amqp';
 * const client = await createDeviceClient({ connectionString, transport: amqp({ webSockets: true }) });
 * ```
 * @throws ArgumentError when `port` is not 1..65535, `keepAliveSeconds` not 0..86400 or
 * `operationTimeoutSeconds` not 1..3600.
 */
export function amqp(options: AmqpTransportOptions = {}): TransportFactory {
  checkRange(options.port, 'port', 1, 65535);
  checkRange(options.keepAliveSeconds, 'keepAliveSeconds', 0, 86400);
  checkRange(options.operationTimeoutSeconds, 'operationTimeoutSeconds', 1, 3600);
  const frozen: AmqpTransportOptions = Object.freeze({ ...options });
  return Object.freeze({
    name: frozen.webSockets ? 'amqp-ws' : 'amqp',
    capabilities: amqpCapabilities,
    create: () => new AmqpTransport(frozen),
  });
}
