import { isIP } from 'node:net';
import { ArgumentError, splitHostPort } from '@fieldhub/protocol';

/** Where to dial: host without port, port, and the URL MQTT.js connects to. */
export interface Endpoint {
  /** Host name or address, without port or brackets: also the TLS server name. */
  readonly host: string;
  readonly port: number;
  /** `mqtts://host:port` or `wss://host:port/$iothub/websocket`. */
  readonly url: string;
  /** The TLS SNI name; absent for an IP address, which SNI cannot carry (RFC 6066 §3). */
  readonly servername?: string;
}

/** The WebSocket path of IoT Hub's MQTT head (protocol-device.md §2.1). */
export const webSocketPath = '/$iothub/websocket';

/** The default ports: MQTT over TLS 8883, WebSockets 443 (protocol-device.md §2.1). */
export const defaultPorts = { mqtt: 8883, webSockets: 443 } as const;

/** `host[:port]` splitting is `@fieldhub/protocol`'s, shared by every transport. */
export { splitHostPort };

/**
 * Where a connection goes: the gateway or hub host (with its port, else the transport's `port`, else 8883 or
 * 443), over TLS or WebSockets.
 *
 * The transport's `port` option wins over a port in the host name: it is the more specific setting (a test or a
 * port-forwarded hub), while the host name also names the hub in the SAS token and username.
 *
 * @throws ArgumentError for a malformed host name or port.
 */
export function endpoint(hostName: string, options: { webSockets: boolean; port?: number | undefined }): Endpoint {
  const split = splitHostPort(hostName);
  if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 1 && options.port <= 65535)) {
    throw new ArgumentError(`port ${options.port} is not 1..65535`, { field: 'port' });
  }
  const port = options.port ?? split.port ?? (options.webSockets ? defaultPorts.webSockets : defaultPorts.mqtt);
  const urlHost = isIP(split.host) === 6 ? `[${split.host}]` : split.host;
  const url = options.webSockets ? `wss://${urlHost}:${port}${webSocketPath}` : `mqtts://${urlHost}:${port}`;
  return isIP(split.host) === 0
    ? { host: split.host, port, url, servername: split.host }
    : { host: split.host, port, url };
}
