/**
 * Where HTTPS requests go: `https://{gatewayHostName ?? hostName}`, port 443 unless the host name or the transport's
 * `port` option says otherwise (protocol-device.md §4). The host-name parsing mirrors transport-amqp's `endpoint.ts`
 * (transports do not import each other).
 */
import { isIP } from 'node:net';
import { ArgumentError } from '@fieldhub/protocol';

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

/**
 * Splits `host`, `host:port`, `[v6]` or `[v6]:port`. Connection strings may carry a port in `HostName`
 * (`localhost:8443`).
 *
 * @throws ArgumentError (field `hostName`) when the text is empty or the port is not 1..65535.
 */
export function splitHostPort(text: string): { host: string; port?: number } {
  let host = text;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new ArgumentError(`host name '${text}' has an unclosed '['`, { field: 'hostName' });
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest.startsWith(':')) portText = rest.slice(1);
    else if (rest !== '') throw new ArgumentError(`host name '${text}' is malformed`, { field: 'hostName' });
  } else {
    const colon = text.lastIndexOf(':');
    // A bare IPv6 address has several colons and no port.
    if (colon >= 0 && text.indexOf(':') === colon) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
  }
  if (host === '') throw new ArgumentError('host name must not be empty', { field: 'hostName' });
  if (portText === undefined) return { host };
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new ArgumentError(`port '${portText}' in host name '${text}' is not 1..65535`, { field: 'hostName' });
  }
  return { host, port };
}

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
