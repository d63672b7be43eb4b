/**
 * The slim client's public shapes: options with callbacks (the Moddable style, STYLE.md), a client with
 * callback-taking methods. No promises in the API: Espruino has them, but callbacks cost less memory and work the
 * same on every runtime.
 */
import type { HostTlsOptions } from './host';

/**
 * Error passed to callbacks: a stable string `code` and, where the hub gave one, `status`. Codes: refused
 * connections `Unauthorized` (CONNACK 2, 4, 5, or a refused subscription), `ServerUnavailable` (3),
 * `UnacceptableProtocolVersion` (1); twin answers `ThrottlingException` (429), `ServerError` (5xx),
 * `ArgumentInvalid` (other 4xx; also options `createClient` refuses); `Timeout` (no answer within
 * `operationTimeoutMs`, or no PINGRESP), `NotConnected`, `BufferFull`, `Closed`, `TokenExpired` (a fixed SAS token
 * ran out), `ConnectionLost`, `ProtocolError` (bytes that are not MQTT 3.1.1 as the hub speaks it),
 * `SigningFailed` (`options.sign` called back with an error), `CallbackFailed` (an application callback threw),
 * `MessageTooLarge` (telemetry over IoT Hub's 256 KB, or properties over MQTT's 64 KB topic).
 */
export interface SlimError extends Error {
  code: string;
  status?: number;
}

/** A node-style callback: `error` is null on success. */
export type SlimCallback<T> = (error: SlimError | null, result?: T) => void;

/** Message properties: application properties plus the system ones the protocol names (`$.mid`, `$.cid`, `$.ct`,
 * `$.ce`, ... as on the MQTT topic), all strings. */
export interface SlimProperties {
  [name: string]: string;
}

/** A cloud-to-device message. It is completed (PUBACK) when `onMessage` returns. */
export interface SlimMessage {
  payload: Uint8Array;
  /** The payload as UTF-8 text. */
  text: string;
  /** Application properties. */
  properties: SlimProperties;
  messageId?: string;
  correlationId?: string;
  contentType?: string;
  contentEncoding?: string;
}

/** A direct-method call. Answer it once with `respond(status, payload)`. */
export interface SlimMethodRequest {
  name: string;
  /** The payload parsed as JSON (null when empty). */
  payload: unknown;
}

/** The device twin as the device sees it. */
export interface SlimTwin {
  desired: { [key: string]: unknown; $version: number };
  reported: { [key: string]: unknown; $version: number };
}

/** Options of `createClient`. Give a connection string, or `hostName` + `deviceId` with one credential. */
export interface SlimClientOptions {
  /** `HostName=...;DeviceId=...;SharedAccessKey=...` (or `SharedAccessSignature=...`, which cannot be renewed;
   * `GatewayHostName` is dialled when present). Device identities only: a `ModuleId` is not read (the client would
   * connect as the device, and be refused). `HostName` without a port: give a port other than 8883 as `port`. */
  connectionString?: string;
  hostName?: string;
  deviceId?: string;
  /** base64 device key; signing then needs `host.hmacSha256`. */
  sharedAccessKey?: string;
  /** A complete SAS token (not renewable: the client reports `TokenExpired` when it runs out). */
  sasToken?: string;
  /** Sign the string-to-sign yourself (a secure element, a bridge): call back once with the base64 signature. An
   * error, or a throw, fails the attempt with `SigningFailed` (through `onError`), and the client tries again. */
  sign?: (stringToSign: string, callback: (error: Error | null, signature?: string) => void) => void;
  /** Where to dial when it differs from `hostName` and from the connection string's `GatewayHostName` (an
   * address, 127.0.0.1 in tests); the server certificate is still checked against `hostName` (or the gateway's
   * name), unless `tls.servername` says otherwise. */
  connectHost?: string;
  /** Default 8883. */
  port?: number;
  /** TLS options handed to the host; default `{}` (TLS on, verify on). */
  tls?: HostTlsOptions;
  /** SAS token lifetime, seconds; default 3600. Renewed at 80 % of it (at the latest after 23 days, the longest
   * timer delay hosts hold) by reconnecting with a fresh token. */
  tokenLifetimeSeconds?: number;
  /** MQTT keep-alive, seconds; default 60 (IoT Hub allows up to 1177). */
  keepAliveSeconds?: number;
  /** Reconnect backoff, milliseconds (defaults 1000 and 60000): attempt n waits between half and all of
   * `reconnectMinMs * 2^n`, at most `reconnectMaxMs`; n starts again at 0 once a session is up. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** QoS 1 telemetry kept for retry while unacknowledged or offline, twin requests in flight counted; default 8.
   * Beyond it: `BufferFull`. Twin requests may fill the list to twice that, so that a GET in `onConnect` does not
   * fail behind telemetry sent offline. */
  maxPendingTelemetry?: number;
  /** How long a request (twin get / patch, PUBACK) or a PINGRESP may take, milliseconds; default 30000. A request
   * that times out fails with `Timeout` and makes the client ping: a connection that stays silent is dropped. */
  operationTimeoutMs?: number;
  /** The largest MQTT packet accepted from the hub, bytes; default 135168 (a 128 KB method payload and its topic).
   * A larger one is a protocol error: the client drops the connection and reconnects. */
  maxPacketBytes?: number;
  /** The client is connected and subscribed. */
  onConnect?: () => void;
  /** The connection is gone; the client reconnects by itself unless closed. */
  onDisconnect?: (error?: SlimError) => void;
  /** Failures with no callback to carry them (refused credentials, protocol errors). */
  onError?: (error: SlimError) => void;
  onMessage?: (message: SlimMessage) => void;
  /** A desired-properties patch, with its `$version`. Only patches made while the client is subscribed arrive
   * (sessions are clean): get the twin in `onConnect` to catch up, and ignore patches whose version is not above
   * the twin's `desired.$version` (protocol-device.md §2.6; the examples do this). */
  onDesired?: (patch: { [key: string]: unknown }, version: number) => void;
  /** A direct-method call: `respond` once, now or later (an answer after the connection dropped is not sent). A
   * handler that throws before responding (also by responding with a payload JSON cannot carry) has 500 answered
   * for it. */
  onMethod?: (request: SlimMethodRequest, respond: (status: number, payload?: unknown) => void) => void;
}

/** What `createClient` returns. */
export interface SlimClient {
  /** Connects, and keeps reconnecting until `close`. */
  open(): void;
  /** Telemetry with properties, QoS 1; the callback runs on PUBACK (or fails with `BufferFull`, `MessageTooLarge`
   * over IoT Hub's 256 KB or with properties over MQTT's 64 KB topic, `Timeout`, `Closed`, `TokenExpired`). Sent at once when connected, else on the next
   * connection. */
  sendTelemetry(
    payload: string | Uint8Array,
    properties: SlimProperties | null,
    callback?: SlimCallback<undefined>,
  ): void;
  /** The twin. Needs a connection: fails with `NotConnected` offline or when the connection drops before the
   * answer, `Timeout` after `operationTimeoutMs`. */
  getTwin(callback: SlimCallback<SlimTwin>): void;
  /** Patches reported properties; the callback gets the new reported `$version`. Fails as {@link SlimClient.getTwin}. */
  updateReported(patch: { [key: string]: unknown }, callback?: SlimCallback<number>): void;
  /** Whether the MQTT session is up. */
  readonly connected: boolean;
  /** Sends DISCONNECT, closes the socket, fails what is pending with `Closed`, then calls back (before it
   * returns); idempotent. */
  close(callback?: () => void): void;
}
