/**
 * Where an AMQP connection goes: TLS on 5671, or WebSockets on 443 at `/$iothub/websocket` (protocol-device.md
 * §3.1). The host-name parsing mirrors transport-mqtt's `endpoint.ts` (transports do not import each other).
 */
import { isIP } from 'node:net';
import { ArgumentError } from '@fieldhub/protocol';

/** Where to dial. */
export interface Endpoint {
  /** Host name or address, without port or brackets. */
  readonly host: string;
  readonly port: number;
  /** `amqps://host:port` or `wss://host:port/$iothub/websocket`: for messages and the WebSocket upgrade. */
  readonly url: string;
  /** The TLS SNI name; absent for an IP address, which SNI cannot carry (RFC 6066 §3). */
  readonly servername?: string;
}

/** The WebSocket path of IoT Hub's AMQP head and its subprotocol (protocol-device.md §3.1). */
export const webSocketPath = '/$iothub/websocket';
export const webSocketSubprotocol = 'AMQPWSB10';

/** The default ports: AMQP over TLS 5671, WebSockets 443 (protocol-device.md §3.1). */
export const defaultPorts = { amqp: 5671, webSockets: 443 } as const;

/**
 * Splits `host`, `host:port`, `[v6]` or `[v6]:port`. Connection strings may carry a port in `HostName`
 * (captures/README.md: `localhost:41671`).
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
 * Where a connection goes: the gateway or hub host (with its port, else the transport's `port`, else 5671 or
 * 443), over TLS or WebSockets. The transport's `port` option wins over a port in the host name, as in
 * transport-mqtt: it is the more specific setting (a test, a port-forwarded hub).
 *
 * @throws ArgumentError for a malformed host name or port.
 */
export function endpoint(hostName: string, options: { webSockets: boolean; port?: number | undefined }): Endpoint {
  const split = splitHostPort(hostName);
  if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 1 && options.port <= 65535)) {
    throw new ArgumentError(`port ${options.port} is not 1..65535`, { field: 'port' });
  }
  const port = options.port ?? split.port ?? (options.webSockets ? defaultPorts.webSockets : defaultPorts.amqp);
  const urlHost = isIP(split.host) === 6 ? `[${split.host}]` : split.host;
  const url = options.webSockets ? `wss://${urlHost}:${port}${webSocketPath}` : `amqps://${urlHost}:${port}`;
  return isIP(split.host) === 0
    ? { host: split.host, port, url, servername: split.host }
    : { host: split.host, port, url };
}
