/**
 * Where an AMQP connection goes: TLS on 5671, or WebSockets on 443 at `/$iothub/websocket` (protocol-device.md
 * §3.1).
 */
import { isIP } from 'node:net';
import { ArgumentError, splitHostPort } from '@fieldhub/protocol';

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

/** `host[:port]` splitting is `@fieldhub/protocol`'s, shared by every transport. */
export { splitHostPort };

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
