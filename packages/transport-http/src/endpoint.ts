/**
 * Where HTTPS requests go: `https://{gatewayHostName ?? hostName}`, port 443 unless the host name or the transport's
 * `port` option says otherwise (protocol-device.md §4).
 */
import { isIP } from 'node:net';
import { ArgumentError, splitHostPort } from '@fieldhub/protocol';

/** Where to dial. */
export interface Endpoint {
  /** Host name or address, without port or brackets. */
  readonly host: string;
  readonly port: number;
  /** `https://host:port`: the origin of the undici pool. */
  readonly origin: string;
  /** The TLS SNI name; absent for an IP address, which SNI cannot carry (RFC 6066 §3). */
  readonly servername?: string;
}

/** HTTPS's port. */
export const defaultPort = 443;

/** `host[:port]` splitting is `@fieldhub/protocol`'s, shared by every transport. */
export { splitHostPort };

/**
 * Where requests go: the gateway or hub host, with the transport's `port` option, else the host name's port, else
 * 443. The option wins over a port in the host name, as in the other transports: it is the more specific setting
 * (a test, a port-forwarded hub).
 *
 * @throws ArgumentError for a malformed host name or port.
 */
export function endpoint(hostName: string, port?: number): Endpoint {
  const split = splitHostPort(hostName);
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new ArgumentError(`port ${port} is not 1..65535`, { field: 'port' });
  }
  const chosen = port ?? split.port ?? defaultPort;
  const urlHost = isIP(split.host) === 6 ? `[${split.host}]` : split.host;
  const origin = `https://${urlHost}:${chosen}`;
  return isIP(split.host) === 0
    ? { host: split.host, port: chosen, origin, servername: split.host }
    : { host: split.host, port: chosen, origin };
}
