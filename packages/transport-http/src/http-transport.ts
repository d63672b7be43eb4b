/**
 * The HTTPS transport: IoT Hub's device REST API (protocol-device.md §4; captures/http.txt) behind the Transport spec
 * of `@fieldhub/device-core/transport`, on one undici `Pool` per connection.
 *
 * HTTPS has no connection for the spec to open, so this transport defines one (README "Connection"):
 * - `connect` checks that the hub (or gateway) answers TLS on its port, with a certificate that chains to a trusted
 *   CA and names the host, and that the client certificate and key are usable; it sends no request, as the official
 *   SDK's `open()` does not, so refused credentials surface with the first operation (AuthenticationError).
 * - The connection is lost, reported once through `disconnected`, when a request cannot reach the hub or gets no
 *   answer in time (ConnectionError), when the hub answers 503 (ConnectionError), or when it refuses the
 *   credentials (401, AuthenticationError). The operation that found out rejects with that error, and later
 *   operations with ConnectionError until the connection manager connects again (and replays what it queued).
 * - SAS tokens travel in each request's `Authorization` header: `updateCredentials` swaps the token in place
 *   (`credentialRenewal: 'perRequest'`); X.509 identities present their certificate in every TLS handshake.
 */
import type {
  CloudToDeviceSettlement,
  IncomingCloudToDeviceMessage,
  OperationOptions,
  OutgoingMessage,
  Transport,
  TransportCapabilities,
  TransportConnectOptions,
  TransportCredentials,
  TransportEvents,
  TwinProperties,
} from '@fieldhub/device-core/transport';
import {
  AbortError,
  ArgumentError,
  ConnectionError,
  type HubError,
  HubError as HubErrorClass,
  UnsupportedFeatureError,
} from '@fieldhub/protocol';
import { type Dispatcher, Pool } from 'undici';
import { type Endpoint, endpoint } from './endpoint';
import { endsConnection, errorFromResponse, requestFailure } from './http-error';
import {
  batchContentType,
  cloudToDeviceMessage,
  encodeSegment,
  identityPath,
  telemetryBatchBody,
  telemetryHeaders,
} from './messages';
import { probeTls, tlsConnector } from './tls-options';
import { userAgent } from './user-agent';

/** Options of the HTTPS transport; see {@link http}. */
export interface HttpTransportOptions {
  /** The port to dial; default the host name's, else 443. Wins over a port in the host name. */
  readonly port?: number;
  /**
   * How long a request may wait for the hub's answer (and between parts of it), seconds; default 60. A request that
   * times out ends the connection (the hub stopped answering).
   */
  readonly operationTimeoutSeconds?: number;
  /** Sockets kept open to the hub at most (requests beyond wait for one); default 4. */
  readonly connections?: number;
  /** Appended to the `User-Agent` header (the official SDK's `productInfo`). */
  readonly productInfo?: string;
}

/**
 * What the HTTPS transport can do (protocol-device.md §4): telemetry, also batched; cloud-to-device messages by
 * polling, with every settlement; a SAS token with each request. No twin, no direct methods: IoT Hub's device REST
 * API has neither.
 */
export const httpCapabilities: TransportCapabilities = Object.freeze({
  twin: false,
  directMethods: false,
  cloudToDevice: 'poll',
  cloudToDeviceSettlements: Object.freeze(['complete', 'reject', 'abandon'] as const),
  telemetryBatch: true,
  credentialRenewal: 'perRequest',
});

/** The API version the official Node SDK puts on every request (protocol-device.md §8). */
export const apiVersion = '2021-04-12';

const defaults = { connectTimeoutMs: 60_000, operationTimeoutSeconds: 60, connections: 4 } as const;

/** A graceful close lets requests in flight finish for this long before the sockets are destroyed. */
const disconnectGraceMs = 3_000;

/** How long idle sockets stay open (the hub's own keep-alive hint, when shorter, wins: undici reads it). */
const keepAliveTimeoutMs = 30_000;

/** One "connection": the pool and what the requests need. A reconnect makes a new one. */
interface Connection {
  readonly pool: Pool;
  readonly target: Endpoint;
  readonly events: TransportEvents;
  readonly deviceId: string;
  readonly moduleId: string | undefined;
  /** `/devices/{d}` or `/devices/{d}/modules/{m}`, percent-encoded. */
  readonly path: string;
  /** The token of the next request (X.509: none). `updateCredentials` replaces it. */
  sasToken: string | undefined;
  state: 'connecting' | 'open' | 'closed';
  closing: Promise<void> | undefined;
}

/** An answer, read whole (the device API's answers are small: at most a 64 KB cloud-to-device message). */
interface Answer {
  readonly status: number;
  readonly headers: Dispatcher.ResponseData['headers'];
  readonly body: Uint8Array;
}

/**
 * The HTTPS transport: one connection (an undici pool) at a time, made by {@link http}. Use it through
 * `createDeviceClient`; the conformance suite of `@fieldhub/transport-testing` drives it directly.
 */
export class HttpTransport implements Transport {
  readonly name = 'https';
  readonly capabilities: TransportCapabilities = httpCapabilities;
  readonly #options: HttpTransportOptions;
  readonly #userAgent: string;
  #connection: Connection | undefined;

  constructor(options: HttpTransportOptions = {}) {
    this.#options = options;
    this.#userAgent = userAgent(options.productInfo);
  }

  /** Whether a connection is open now (connected and not lost since). */
  get connected(): boolean {
    return this.#connection?.state === 'open';
  }

  /**
   * Opens the connection: a new pool for `https://{gatewayHostName ?? hostName}`, after one TLS handshake with the
   * hub (certificate chain and host name checked against Node's roots plus `ca`, the client certificate presented
   * for X.509 identities). Sends no request: the hub sees the credentials with the first operation, which rejects
   * with AuthenticationError when they are refused.
   *
   * @throws ConnectionError when the hub cannot be reached, TLS fails, or `timeoutMs` passes; AbortError when
   * `signal` aborts; ArgumentError for a malformed host name or port, credentials without token or certificate, or a
   * certificate, key or CA TLS cannot use; HubError `InvalidOperation` when a connection is already open or opening.
   */
  async connect(options: TransportConnectOptions, events: TransportEvents): Promise<void> {
    const current = this.#connection;
    if (current !== undefined && current.state !== 'closed') {
      throw new HubErrorClass('InvalidOperation', `the ${this.name} transport is already ${current.state}`);
    }
    if (options.signal?.aborted) throw new AbortError(undefined, { cause: options.signal.reason });
    const { credentials } = options;
    if (credentials.sasToken === undefined && credentials.x509 === undefined) {
      throw new ArgumentError('credentials carry neither a SAS token nor an X.509 certificate', {
        field: 'credentials',
      });
    }
    const target = endpoint(credentials.gatewayHostName ?? credentials.hostName, this.#options.port);
    const timeoutMs = options.timeoutMs ?? defaults.connectTimeoutMs;
    const connector = tlsConnector(target, { ca: options.ca, x509: credentials.x509, timeoutMs });
    const operationTimeoutMs = (this.#options.operationTimeoutSeconds ?? defaults.operationTimeoutSeconds) * 1000;
    const pool = new Pool(target.origin, {
      connect: connector,
      connections: this.#options.connections ?? defaults.connections,
      keepAliveTimeout: keepAliveTimeoutMs,
      headersTimeout: operationTimeoutMs,
      bodyTimeout: operationTimeoutMs,
    });
    const connection: Connection = {
      pool,
      target,
      events,
      deviceId: credentials.deviceId,
      moduleId: credentials.moduleId,
      path: identityPath(credentials),
      sasToken: credentials.sasToken,
      state: 'connecting',
      closing: undefined,
    };
    this.#connection = connection;
    try {
      await probeTls(target, connector, options.signal);
    } catch (error) {
      connection.state = 'closed';
      await pool.destroy().catch(() => undefined);
      throw error;
    }
    // disconnect() was called while the handshake ran.
    if (connection.state !== 'connecting') throw new ConnectionError('disconnect() was called while connecting');
    connection.state = 'open';
  }

  /**
   * Closes the connection: requests in flight may finish for a few seconds, then the sockets are destroyed (those
   * requests reject with ConnectionError). Idempotent; no `disconnected` event follows.
   */
  async disconnect(): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) return;
    connection.state = 'closed';
    await this.#close(connection);
  }

  /**
   * Takes a renewed SAS token for the requests that follow (`credentialRenewal: 'perRequest'`; the connection
   * manager calls it before the token in use expires). Nothing is sent.
   *
   * @throws ConnectionError when not connected; ArgumentError when the credentials carry no SAS token or name
   * another device or module.
   */
  async updateCredentials(credentials: TransportCredentials, _options: OperationOptions = {}): Promise<void> {
    const connection = this.#open();
    if (credentials.sasToken === undefined) {
      throw new ArgumentError('renewing needs a SAS token', { field: 'sasToken' });
    }
    if (credentials.deviceId !== connection.deviceId || credentials.moduleId !== connection.moduleId) {
      throw new ArgumentError('renewed credentials must name the connected device or module', { field: 'deviceId' });
    }
    connection.sasToken = credentials.sasToken;
  }

  /**
   * `POST /devices/{id}/messages/events` (module form for modules) with the body as is and the properties in
   * `iothub-*` headers; resolves on the hub's 2xx, which it sends once the message is durably appended.
   *
   * @throws ArgumentError coded `MessageTooLarge` over 256 KB (checked locally; the hub's 413 maps alike);
   * ArgumentError for properties HTTP headers cannot carry (see {@link telemetryHeaders}); AuthenticationError when
   * the hub refuses the credentials; ThrottledError; ConnectionError when not connected or the hub cannot be
   * reached; AbortError.
   */
  async sendTelemetry(message: OutgoingMessage, options: OperationOptions = {}): Promise<void> {
    const connection = this.#open();
    const headers = telemetryHeaders(message);
    await this.#request(connection, {
      method: 'POST',
      path: `${connection.path}/messages/events`,
      headers: { 'iothub-to': `${connection.path}/messages/events`, ...headers },
      body: message.body,
      signal: options.signal,
    });
  }

  /**
   * Several messages in one `POST .../messages/events` with `Content-Type: application/vnd.microsoft.iothub.json`
   * (protocol-device.md §4.1): all are accepted or none. Resolves at once for an empty list.
   *
   * @throws as {@link HttpTransport.sendTelemetry}; ArgumentError coded `MessageTooLarge` when the batch is over
   * 256 KB.
   */
  async sendTelemetryBatch(messages: readonly OutgoingMessage[], options: OperationOptions = {}): Promise<void> {
    const connection = this.#open();
    if (messages.length === 0) return;
    const body = telemetryBatchBody(messages);
    await this.#request(connection, {
      method: 'POST',
      path: `${connection.path}/messages/events`,
      headers: { 'iothub-to': `${connection.path}/messages/events`, 'content-type': batchContentType },
      body,
      signal: options.signal,
    });
  }

  /**
   * Nothing to start: cloud-to-device messages are polled (`receiveCloudToDevice`). Resolves when connected.
   * @throws ConnectionError when not connected; UnsupportedFeatureError for a module (IoT Hub sends modules none).
   */
  async enableCloudToDevice(_options: OperationOptions = {}): Promise<void> {
    this.#deviceOnly(this.#open());
  }

  /**
   * `GET /devices/{id}/messages/devicebound`: the oldest message waiting, locked for this device until settled (or
   * the hub's lock timeout), or `undefined` when none waits (204).
   *
   * @throws UnsupportedFeatureError for a module; AuthenticationError; ConnectionError; AbortError; HubError
   * `ServerError` for an answer without an ETag.
   */
  async receiveCloudToDevice(options: OperationOptions = {}): Promise<IncomingCloudToDeviceMessage | undefined> {
    const connection = this.#deviceOnly(this.#open());
    const path = `${connection.path}/messages/devicebound`;
    const answer = await this.#request(connection, {
      method: 'GET',
      path,
      headers: { 'iothub-to': path },
      signal: options.signal,
    });
    if (answer.status === 204) return undefined;
    return cloudToDeviceMessage(answer.headers, answer.body);
  }

  /**
   * Settles a polled message with `If-Match: <lockToken>` (protocol-device.md §4.2): complete
   * `DELETE .../devicebound/{lockToken}`, reject `DELETE ...?reject`, abandon `POST .../{lockToken}/abandon`.
   *
   * @throws ArgumentError for an empty lock token or an unknown settlement; HubError `DeviceMessageLockLost` (412)
   * when the lock expired or the message was settled already; ConnectionError; AuthenticationError; AbortError.
   */
  async settleCloudToDevice(
    lockToken: string,
    settlement: CloudToDeviceSettlement,
    options: OperationOptions = {},
  ): Promise<void> {
    if (!this.capabilities.cloudToDeviceSettlements.includes(settlement)) {
      throw new ArgumentError(`unknown settlement '${String(settlement)}'`, { field: 'settlement' });
    }
    const connection = this.#deviceOnly(this.#open());
    if (typeof lockToken !== 'string' || lockToken === '') {
      throw new ArgumentError('lockToken must be a non-empty string', { field: 'lockToken' });
    }
    const message = `${connection.path}/messages/devicebound/${encodeSegment(lockToken)}`;
    const request =
      settlement === 'complete'
        ? { method: 'DELETE' as const, path: message }
        : settlement === 'reject'
          ? { method: 'DELETE' as const, path: message, extraQuery: '&reject' }
          : { method: 'POST' as const, path: `${message}/abandon`, body: new Uint8Array(0) };
    // The Node SDK sends the lock token unquoted (captures/http.txt).
    await this.#request(connection, { ...request, headers: { 'if-match': lockToken }, signal: options.signal });
  }

  /** @throws UnsupportedFeatureError: IoT Hub's HTTPS API has no twin. */
  async enableTwin(_options?: OperationOptions): Promise<void> {
    throw this.#unsupported('device twins');
  }

  /** @throws UnsupportedFeatureError: IoT Hub's HTTPS API has no twin. */
  async getTwin(_options?: OperationOptions): Promise<TwinProperties> {
    throw this.#unsupported('device twins');
  }

  /** @throws UnsupportedFeatureError: IoT Hub's HTTPS API has no twin. */
  async updateReportedProperties(
    _patch: Readonly<Record<string, unknown>>,
    _options?: OperationOptions,
  ): Promise<number> {
    throw this.#unsupported('device twins');
  }

  /** @throws UnsupportedFeatureError: IoT Hub's HTTPS API has no direct methods. */
  async enableDirectMethods(_options?: OperationOptions): Promise<void> {
    throw this.#unsupported('direct methods');
  }

  /** @throws UnsupportedFeatureError: IoT Hub's HTTPS API has no direct methods. */
  async sendMethodResponse(
    _requestId: string,
    _status: number,
    _payload: unknown,
    _options?: OperationOptions,
  ): Promise<void> {
    throw this.#unsupported('direct methods');
  }

  // --- internals -------------------------------------------------------------------------------------------------

  #unsupported(what: string): UnsupportedFeatureError {
    return new UnsupportedFeatureError(`the ${this.name} transport has no ${what}: use MQTT or AMQP`);
  }

  #open(): Connection {
    const connection = this.#connection;
    if (connection === undefined || connection.state !== 'open') {
      throw new ConnectionError(`the ${this.name} transport is not connected`);
    }
    return connection;
  }

  #deviceOnly(connection: Connection): Connection {
    if (connection.moduleId !== undefined) {
      throw new UnsupportedFeatureError('IoT Hub delivers no cloud-to-device messages to modules');
    }
    return connection;
  }

  /**
   * One request with `api-version`, `User-Agent` and the current SAS token; the answer read whole. A failure that
   * ends the connection (see the file overview) is reported before the returned promise rejects, so that the
   * connection manager sees `connected === false` when it handles the rejection.
   */
  async #request(
    connection: Connection,
    request: {
      method: 'GET' | 'POST' | 'DELETE';
      path: string;
      extraQuery?: string;
      headers: Record<string, string>;
      body?: Uint8Array;
      signal: AbortSignal | undefined;
    },
  ): Promise<Answer> {
    if (request.signal?.aborted) throw new AbortError(undefined, { cause: request.signal.reason });
    const headers: Record<string, string> = {
      ...request.headers,
      'user-agent': this.#userAgent,
      ...(connection.sasToken === undefined ? {} : { authorization: connection.sasToken }),
    };
    const what = `${request.method} ${connection.target.origin}${request.path}`;
    let answer: Answer;
    try {
      const response = await connection.pool.request({
        method: request.method,
        path: `${request.path}?api-version=${apiVersion}${request.extraQuery ?? ''}`,
        headers,
        body: request.body ?? null,
        signal: request.signal ?? null,
      });
      const body = new Uint8Array(await response.body.arrayBuffer());
      answer = { status: response.statusCode, headers: response.headers, body };
    } catch (caught) {
      const error =
        connection.state === 'closed' && !HubErrorClass.is(caught) && !request.signal?.aborted
          ? new ConnectionError(`the ${this.name} transport was disconnected`, { cause: caught })
          : requestFailure(caught, what, request.signal);
      throw this.#checkLoss(connection, error);
    }
    if (answer.status >= 200 && answer.status < 300) return answer;
    const error = errorFromResponse({
      status: answer.status,
      headers: answer.headers,
      body: new TextDecoder().decode(answer.body),
    });
    throw this.#checkLoss(connection, error);
  }

  // Reports the loss once, when `error` ends the connection (and the connection was open: not while connecting,
  // not after disconnect()).
  #checkLoss(connection: Connection, error: HubError): HubError {
    if (connection.state === 'open' && endsConnection(error)) {
      connection.state = 'closed';
      void this.#close(connection);
      try {
        connection.events.disconnected(error);
      } catch {
        // Handlers must not throw (TransportEvents); one that does must not turn this failure into another.
      }
    }
    return error;
  }

  #close(connection: Connection): Promise<void> {
    connection.closing ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, disconnectGraceMs);
      });
      await Promise.race([connection.pool.close().catch(() => undefined), grace]);
      clearTimeout(timer);
      await connection.pool.destroy().catch(() => undefined);
    })();
    return connection.closing;
  }
}
