import type { TransportFactory } from '@fieldhub/device-core/transport';
import { ArgumentError } from '@fieldhub/protocol';
import { HttpTransport, type HttpTransportOptions, httpCapabilities } from './http-transport';

function checkRange(value: number | undefined, field: string, minimum: number, maximum: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new ArgumentError(`${field} must be an integer from ${minimum} to ${maximum}, not ${value}`, { field });
  }
}

/**
 * The HTTPS transport factory: `createDeviceClient({ transport: http() })` sends telemetry (also batched) and polls
 * for cloud-to-device messages over IoT Hub's device REST API on port 443, where only HTTPS leaves the network or a
 * device wakes up rarely. No twin and no direct methods (the client refuses them with UnsupportedFeatureError).
 *
 * How often the client polls is the client's option: `createDeviceClient({ transport: http(), cloudToDevice: {
 * pollIntervalMs } })` (default 10 s; Azure asks HTTPS devices to poll at most every 25 minutes in production).
 *
 * @example
 * ```ts
 * import { http } from '@fieldhub/transport-http';
 * // createDeviceClient from @fieldhub/device (which re-exports `http` too):
 * const client = await createDeviceClient({ connectionString, transport: http() });
 * await client.sendTelemetry({ body: JSON.stringify({ temperature: 21.5 }) });
 * ```
 * @throws ArgumentError when `port` is not 1..65535, `operationTimeoutSeconds` not 1..3600 or `connections` not
 * 1..64.
 */
export function http(options: HttpTransportOptions = {}): TransportFactory {
  checkRange(options.port, 'port', 1, 65535);
  checkRange(options.operationTimeoutSeconds, 'operationTimeoutSeconds', 1, 3600);
  checkRange(options.connections, 'connections', 1, 64);
  const frozen: HttpTransportOptions = Object.freeze({ ...options });
  return Object.freeze({
    name: 'https',
    capabilities: httpCapabilities,
    create: () => new HttpTransport(frozen),
  });
}
