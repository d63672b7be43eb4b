/**
 * One AMQP 1.0 connection to IoT Hub, over TLS or WebSockets, implementing the Transport spec of
 * `@fieldhub/device-core/transport`. Wire behaviour follows protocol-device.md §3 and the official Node SDK's
 * captures (captures/amqp-amqp.txt, amqp-amqpws.txt): no SASL layer, CBS put-token with the token's `sr` as
 * audience (renewed in place on the same links), then one link (pair) per feature. Policy (reconnects, when to
 * renew, queueing) is the connection manager's: this class opens one connection, reports its loss once, and never
 * retries.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { rootCertificates } from 'node:tls';
import type {
  CloudToDeviceSettlement,
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
  HubError,
  parseSasToken,
  TimeoutError,
  UnsupportedFeatureError,
} from '@fieldhub/protocol';
import {
  Connection as AmqpConnection,
  type ConnectionOptions as AmqpConnectionOptions,
  ConnectionEvents,
  type Delivery,
  type EventContext,
  type Message,
  Receiver,
  ReceiverEvents,
  type Sender,
  SenderEvents,
  type Session,
  SessionEvents,
} from 'rhea-promise';
import { conditionError, isAmqpError, twinStatusError } from './amqp-error';
import { cbsAddress, putTokenOutcome, putTokenRequest } from './cbs';
import { endpoint, webSocketPath, webSocketSubprotocol } from './endpoint';
import { cloudToDeviceMessage, idString, lockTokenOf, telemetryMessage } from './messages';
import { methodResponse, readMethodRequest } from './methods';
import { type DeliveryOutcome, OutgoingLink } from './outgoing-link';
import { readTwinMessage, type TwinOperation, TwinResources, twinProperties, twinRequest } from './twin';
import { userAgent } from './user-agent';
import { WebSocketStream } from './web-socket';

/** Options of the AMQP transport; see {@link amqp}. */
export interface AmqpTransportOptions {
  /** AMQP over WebSockets (`wss://<host>[:port]/$iothub/websocket`, subprotocol `AMQPWSB10`) instead of TLS on 5671. */
  readonly webSockets?: boolean;
  /** The port to dial; default 5671, or 443 with WebSockets. Wins over a port in the host name. */
  readonly port?: number;
  /**
   * The AMQP idle timeout this side announces, seconds: the hub sends an empty frame at least every half of it,
   * and a connection silent for longer is treated as lost. Default 240 (IoT Edge's 4 minutes, protocol-device.md
   * §3.1); 0 turns it off. The client's `keepAliveSeconds` wins when set.
   */
  readonly keepAliveSeconds?: number;
  /** How long a CBS put-token, a link attach, telemetry or a twin request may take, seconds; default 60. */
  readonly operationTimeoutSeconds?: number;
  /** Appended to the `com.microsoft:client-version` link property (the official SDK's `productInfo`). */
  readonly productInfo?: string;
}

/**
 * What the AMQP transport can do (protocol-device.md §3): every settlement, in-place token renewal. No telemetry
 * batches: Azure's batched message format (0x80013700) is not in the reference and the hub's telemetry link takes
 * one message per delivery, so the connection manager sends a batch's messages one by one (pipelined on the link).
 */
export const amqpCapabilities: TransportCapabilities = Object.freeze({
  twin: true,
  directMethods: true,
  cloudToDevice: 'push',
  cloudToDeviceSettlements: Object.freeze(['complete', 'reject', 'abandon'] as const),
  telemetryBatch: false,
  credentialRenewal: 'inPlace',
});

const defaults = { keepAliveSeconds: 240, connectTimeoutMs: 60_000, operationTimeoutSeconds: 60 } as const;

/** A graceful close (the AMQP close exchange, then the hub ending the socket) gets this long before it is forced. */
const disconnectGraceMs = 3_000;

/** The API version the Node SDK puts on twin and method links (protocol-device.md §3.3). */
const apiVersion = '2021-04-12';

/** Credit the cloud-to-device receiver grants: the hub's queue holds at most 50 messages per device. */
const cloudToDeviceCredit = 50;

interface Settle<T> {
  resolve(value: T): void;
  reject(error: HubError): void;
  /** Runs `cleanup` once the operation is settled, however. */
  onSettled(cleanup: () => void): void;
}

/** A request-response pair of links: CBS, twin, direct methods. */
interface Channel {
  readonly sender: OutgoingLink;
  readonly receiver: Receiver;
}

interface TwinResponse {
  readonly status: number;
  readonly version: number | undefined;
  readonly body: Uint8Array;
}

/** The state of one network connection; a reconnect makes a new one. */
interface Connection {
  readonly amqp: AmqpConnection;
  readonly events: TransportEvents;
  readonly deviceId: string;
  readonly moduleId: string | undefined;
  /** `/devices/{d}` or `/devices/{d}/modules/{m}`: the prefix of every link address. */
  readonly path: string;
  state: 'connecting' | 'open' | 'closed';
  /** `disconnect()` asked for the close: no `disconnected` event. */
  closeRequested: boolean;
  /** Why the connection is gone, once it is. */
  lossError: HubError | undefined;
  session: Session | undefined;
  /** Called with the loss error to reject every operation in flight. */
  readonly inFlight: Set<(error: HubError) => void>;
  /** Links attached (or being attached) on this connection, by feature. */
  readonly links: Map<string, Promise<unknown>>;
  /** Every link opened, to forget their queues on loss. */
  readonly outgoing: Set<OutgoingLink>;
  /** CBS put-token responses awaited, by request `message_id`. */
  readonly cbsRequests: Map<string, (message: Message) => void>;
  /** Twin responses awaited, by request `correlation_id`. */
  readonly twinRequests: Map<string, (response: TwinResponse) => void>;
  /** Unsettled cloud-to-device deliveries, by lock token. */
  readonly deliveries: Map<string, Delivery>;
  /** The last disposition written (see `settleCloudToDevice`). */
  settling: Promise<void>;
  /** Method requests not answered yet: their `correlation_id` exactly as it came (string or uuid), by request id. */
  readonly methodRequests: Map<string, NonNullable<Message['correlation_id']>>;
  /** The socket rhea reads and writes: the TLS socket, or the WebSocket stream standing in for it. */
  socket(): Duplex | undefined;
  readonly closed: Promise<void>;
  markClosed(): void;
}

function toHubError(error: unknown, fallback: (cause: unknown) => HubError): HubError {
  return HubError.is(error) ? error : fallback(error);
}

/** The error of a failed attach or a lost link/connection, from what rhea reports. */
function amqpFailure(error: unknown, what: string): HubError {
  if (HubError.is(error)) return error;
  if (isAmqpError(error)) return conditionError(error, what);
  const message = error instanceof Error ? error.message : String(error ?? 'the connection closed');
  return new ConnectionError(`${what} failed: ${message}`, { cause: error });
}

/**
 * The AMQP transport: one connection at a time, made by {@link amqp}. Use it through `createDeviceClient`; the
 * conformance suite of `@fieldhub/transport-testing` drives it directly.
 */
export class AmqpTransport implements Transport {
  readonly name: string;
  readonly capabilities: TransportCapabilities = amqpCapabilities;
  readonly #options: AmqpTransportOptions;
  readonly #userAgent: string;
  #connection: Connection | undefined;

  constructor(options: AmqpTransportOptions = {}) {
    this.#options = options;
    this.name = options.webSockets ? 'amqp-ws' : 'amqp';
    this.#userAgent = userAgent(options.productInfo);
  }

  /** Whether a connection is open now. */
  get connected(): boolean {
    return this.#connection?.state === 'open';
  }

  /**
   * Opens the connection: AMQP over TLS (or WebSockets) without a SASL layer, as the Node SDK connects
   * (protocol-device.md §3.1); then, for a SAS token, CBS put-token on `$cbs` with the token's `sr` as audience
   * (§3.2), or the X.509 certificate in the TLS handshake; then the telemetry sender, whose attach is where the
   * hub checks an X.509 device against its registry.
   *
   * @throws AuthenticationError when the hub refuses the token (CBS status) or the identity (an
   * `amqp:unauthorized-access` attach); ConnectionError when the hub cannot be reached, TLS or the WebSocket
   * upgrade fails, `timeoutMs` passes or `disconnect()` is called meanwhile; AbortError when `signal` aborts;
   * ArgumentError for a malformed host name or port or credentials without token or certificate; HubError
   * `InvalidOperation` when a connection is already open or opening.
   */
  async connect(options: TransportConnectOptions, events: TransportEvents): Promise<void> {
    if (this.#connection !== undefined) {
      throw new HubError('InvalidOperation', `the ${this.name} transport is already ${this.#connection.state}`);
    }
    if (options.signal?.aborted) throw new AbortError();
    const { credentials } = options;
    if (credentials.sasToken === undefined && credentials.x509 === undefined) {
      throw new ArgumentError('credentials carry neither a SAS token nor an X.509 certificate', {
        field: 'credentials',
      });
    }
    const audience = credentials.sasToken === undefined ? undefined : parseSasToken(credentials.sasToken).sr;
    const webSockets = this.#options.webSockets === true;
    const target = endpoint(credentials.gatewayHostName ?? credentials.hostName, {
      webSockets,
      port: this.#options.port,
    });
    const timeoutMs = options.timeoutMs ?? defaults.connectTimeoutMs;
    const tlsOptions = {
      rejectUnauthorized: true,
      // `ca` replaces Node's trust store; the spec's `ca` adds to it.
      ...(options.ca === undefined ? {} : { ca: [...rootCertificates, options.ca] }),
      ...(credentials.x509 === undefined
        ? {}
        : {
            cert: credentials.x509.certificate,
            key: credentials.x509.privateKey,
            ...(credentials.x509.passphrase === undefined ? {} : { passphrase: credentials.x509.passphrase }),
          }),
      ...(target.servername === undefined ? {} : { servername: target.servername }),
    };
    const idleSeconds = options.keepAliveSeconds ?? this.#options.keepAliveSeconds ?? defaults.keepAliveSeconds;
    const hostName = target.servername ?? target.host;
    let webSocket: WebSocketStream | undefined;
    const amqpOptions: AmqpConnectionOptions = {
      host: target.host,
      port: target.port,
      // The AMQP open's hostname: the hub's name, as the Node SDK sends it (captures/amqp-amqp.txt).
      hostname: hostName,
      container_id: randomUUID(),
      // The connection manager owns reconnects (transport.ts).
      reconnect: false,
      ...(idleSeconds > 0 ? { idle_time_out: idleSeconds * 1000 } : {}),
      operationTimeoutInSeconds: Math.ceil(timeoutMs / 1000),
      ...(webSockets
        ? {
            // rhea dials through `connect`: the WebSocket stream stands in for the TLS socket.
            connect: (_port: number, _host: string, _options: unknown, callback: () => void) => {
              webSocket = new WebSocketStream(
                {
                  host: target.host,
                  port: target.port,
                  path: webSocketPath,
                  subprotocol: webSocketSubprotocol,
                  hostHeader: hostName,
                  tls: tlsOptions,
                },
                callback,
              );
              return webSocket;
            },
          }
        : { transport: 'tls' as const, ...tlsOptions }),
    };

    const amqp = new AmqpConnection(amqpOptions);
    let markClosed = (): void => {};
    const connection: Connection = {
      amqp,
      events,
      deviceId: credentials.deviceId,
      moduleId: credentials.moduleId,
      path:
        credentials.moduleId === undefined
          ? `/devices/${credentials.deviceId}`
          : `/devices/${credentials.deviceId}/modules/${credentials.moduleId}`,
      state: 'connecting',
      closeRequested: false,
      lossError: undefined,
      session: undefined,
      inFlight: new Set(),
      links: new Map(),
      outgoing: new Set(),
      cbsRequests: new Map(),
      twinRequests: new Map(),
      deliveries: new Map(),
      settling: Promise.resolve(),
      methodRequests: new Map(),
      socket: () => amqp.getTlsSocket() ?? webSocket,
      closed: new Promise<void>((resolve) => {
        markClosed = resolve;
      }),
      markClosed: () => markClosed(),
    };
    this.#connection = connection;
    this.#wire(connection);

    const controller = new AbortController();
    const onAbort = (): void => controller.abort(new AbortError());
    const timer = setTimeout(
      () => controller.abort(new ConnectionError(`could not connect to ${target.url} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // A loss while connecting settles the attempt too.
    const lost = new Promise<never>((_resolve, reject) => {
      connection.inFlight.add(reject);
    });
    lost.catch(() => {});
    const aborted = new Promise<never>((_resolve, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    aborted.catch(() => {});
    try {
      await Promise.race([
        (async () => {
          await amqp.open();
          await this.#session(connection);
          if (credentials.sasToken !== undefined && audience !== undefined) {
            await this.#putToken(connection, credentials.sasToken, audience, undefined);
          }
          await this.#telemetryLink(connection);
        })(),
        lost,
        aborted,
      ]);
    } catch (caught) {
      const error =
        controller.signal.aborted && HubError.is(controller.signal.reason)
          ? controller.signal.reason
          : connection.closeRequested
            ? new ConnectionError('disconnect() was called while connecting')
            : amqpFailure(caught, `connecting to ${target.url}`);
      connection.closeRequested = true;
      this.#closed(connection, error);
      await this.#closeSocket(connection);
      throw error;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
    // Lost in the tick the last attach completed in: the loss was already settled as a failed attempt.
    if (connection.state !== 'connecting') {
      throw connection.lossError ?? new ConnectionError('the connection closed while connecting');
    }
    connection.state = 'open';
  }

  /**
   * Closes the connection (detaching the links, then an AMQP close) and resolves once the socket is closed;
   * operations in flight reject with ConnectionError. Idempotent; no `disconnected` event follows.
   */
  async disconnect(): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) return;
    connection.closeRequested = true;
    if (connection.state !== 'closed') {
      this.#closed(connection, new ConnectionError('the transport was disconnected'));
      await this.#closeSocket(connection);
    }
    await connection.closed;
  }

  /**
   * Hands a renewed SAS token to the open connection: a new CBS put-token on the same `$cbs` links, as IoT Hub
   * renews AMQP connections (protocol-device.md §3.2; `credentialRenewal: 'inPlace'`). The links stay attached.
   *
   * @throws ArgumentError when the credentials carry no SAS token or name another device or hub;
   * AuthenticationError when the hub refuses the token; TimeoutError; ConnectionError; AbortError.
   */
  async updateCredentials(credentials: TransportCredentials, options: OperationOptions = {}): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined || connection.state !== 'open') {
      throw new ConnectionError(`the ${this.name} transport is not connected`);
    }
    if (credentials.sasToken === undefined) {
      throw new ArgumentError('renewing in place needs a SAS token', { field: 'sasToken' });
    }
    if (credentials.deviceId !== connection.deviceId || credentials.moduleId !== connection.moduleId) {
      throw new ArgumentError('renewed credentials must name the connected device or module', { field: 'deviceId' });
    }
    const audience = parseSasToken(credentials.sasToken).sr;
    await this.#putToken(connection, credentials.sasToken, audience, options.signal);
  }

  /**
   * Sends telemetry on the `/devices/{d}/messages/events` sender (module form for modules) and resolves when the
   * hub accepts it, which it does once the message is durably appended (ARCHITECTURE.md invariants).
   *
   * @throws ArgumentError coded `MessageTooLarge` over 256 KB, checked locally; ArgumentError for an expiry that
   * is no date; the mapped HubError when the hub rejects the message (e.g. `amqp:link:message-size-exceeded`,
   * throttling); ConnectionError when not connected or the connection is lost first; TimeoutError after
   * `operationTimeoutSeconds`; AbortError when `signal` aborts (the message may still arrive).
   */
  async sendTelemetry(message: OutgoingMessage, options: OperationOptions = {}): Promise<void> {
    const connection = this.#open();
    const address = `${connection.path}/messages/events`;
    const amqpMessage = telemetryMessage(address, message);
    const link = await this.#telemetryLink(connection, options.signal);
    await this.#within<void>(connection, options.signal, this.#operationTimeoutMs(), (_connection, settle) => {
      const withdraw = link.send(amqpMessage, (outcome) => {
        if (outcome.kind === 'accepted' || outcome.kind === 'settled') settle.resolve();
        else settle.reject(this.#outcomeError(outcome, 'telemetry'));
      });
      settle.onSettled(withdraw);
    });
  }

  /**
   * Attaches the cloud-to-device receiver on `/devices/{deviceId}/messages/devicebound` with manual settlement
   * (protocol-device.md §3.3, §3.4). Messages stay unsettled until {@link AmqpTransport.settleCloudToDevice}.
   *
   * @throws UnsupportedFeatureError for a module identity (IoT Hub delivers no cloud-to-device messages to
   * modules); the mapped HubError when the hub refuses the attach; ConnectionError; TimeoutError; AbortError.
   */
  async enableCloudToDevice(options: OperationOptions = {}): Promise<void> {
    const connection = this.#open();
    if (connection.moduleId !== undefined) {
      throw new UnsupportedFeatureError('IoT Hub delivers no cloud-to-device messages to modules');
    }
    await this.#shared(connection, 'cloudToDevice', options.signal, async () => {
      const address = `${connection.path}/messages/devicebound`;
      const receiver = await this.#receiver(connection, address, {
        autoaccept: false,
        credit_window: cloudToDeviceCredit,
        rcv_settle_mode: 0,
      });
      receiver.on(ReceiverEvents.message, (context: EventContext) => this.#cloudToDevice(connection, context));
      return receiver;
    });
  }

  /**
   * Settles a cloud-to-device message with the disposition IoT Hub reads (protocol-device.md §3.4): complete =
   * `accepted`, reject = `rejected` (dead-lettered, feedback `Rejected`), abandon = `released` (delivered again,
   * delivery count + 1). Resolves once the disposition is written.
   *
   * @throws HubError `DeviceMessageLockLost` for a lock token of an earlier connection or one already settled;
   * ConnectionError when not connected; AbortError.
   */
  async settleCloudToDevice(
    lockToken: string,
    settlement: CloudToDeviceSettlement,
    options: OperationOptions = {},
  ): Promise<void> {
    await this.#operation<void>(options.signal, undefined, (connection, settle) => {
      const delivery = connection.deliveries.get(lockToken);
      if (delivery === undefined) {
        settle.reject(
          new HubError(
            'DeviceMessageLockLost',
            'unknown lock token: settled already, or received on an earlier connection (the hub redelivers it)',
          ),
        );
        return;
      }
      connection.deliveries.delete(lockToken);
      // One disposition at a time, each written before the next is made: rhea 3.0.5 writes dispositions of
      // consecutive deliveries made in the same tick as one range with the first one's outcome
      // (session.js write_dispositions), which would turn `complete(a); reject(b)` into two completes.
      const previous = connection.settling;
      const written = previous.then(
        () =>
          new Promise<void>((resolve) => {
            if (settlement === 'complete') delivery.accept();
            else if (settlement === 'reject') delivery.reject();
            else delivery.release();
            // rhea writes on process.nextTick after the update; setImmediate runs after it.
            setImmediate(resolve);
          }),
      );
      connection.settling = written;
      written.then(() => settle.resolve());
    });
  }

  /**
   * Attaches the twin links and subscribes to desired-property pushes with a PUT on
   * `/notifications/twin/properties/desired` (protocol-device.md §3.5).
   *
   * @throws the mapped HubError when the hub refuses the attach or the subscription; ConnectionError;
   * TimeoutError; AbortError.
   */
  async enableTwin(options: OperationOptions = {}): Promise<void> {
    const connection = this.#open();
    await this.#shared(connection, 'desired', options.signal, async () => {
      await this.#twinRequest(connection, 'PUT', TwinResources.desiredNotifications, ' ', undefined);
    });
  }

  /**
   * Reads the twin: a GET on the twin sender with a one-space body, as the Node SDK sends it, answered on the twin
   * receiver with the same `correlation_id` (protocol-device.md §3.5).
   *
   * @throws HubError from the response's `status` when it is 300 or more; TimeoutError; ConnectionError;
   * AbortError.
   */
  async getTwin(options: OperationOptions = {}): Promise<TwinProperties> {
    const connection = this.#open();
    const response = await this.#twinRequest(connection, 'GET', undefined, ' ', options.signal);
    return twinProperties(response.body);
  }

  /**
   * Patches reported properties: a PATCH on `/properties/reported` with the JSON patch, answered with the new
   * reported version in the `version` annotation (protocol-device.md §3.5).
   *
   * @throws ArgumentError when the patch is not JSON-serialisable; HubError from the response's `status` when it
   * is 300 or more; TimeoutError; ConnectionError; AbortError.
   */
  async updateReportedProperties(
    patch: Readonly<Record<string, unknown>>,
    options: OperationOptions = {},
  ): Promise<number> {
    let body: string;
    try {
      body = JSON.stringify(patch);
    } catch (error) {
      throw new ArgumentError('the reported-properties patch is not JSON-serialisable', {
        field: 'patch',
        cause: error,
      });
    }
    const connection = this.#open();
    const response = await this.#twinRequest(connection, 'PATCH', TwinResources.reported, body, options.signal);
    if (response.version === undefined) {
      throw new HubError('ServerError', 'the hub acknowledged the reported properties without a version');
    }
    return response.version;
  }

  /**
   * Attaches the method links on `/devices/{d}/methods/devicebound` (module form for modules) with a shared
   * `methods:<uuid>` channel correlation id (protocol-device.md §3.6).
   *
   * @throws the mapped HubError when the hub refuses the attach; ConnectionError; TimeoutError; AbortError.
   */
  async enableDirectMethods(options: OperationOptions = {}): Promise<void> {
    const connection = this.#open();
    await this.#methodChannel(connection, options.signal);
  }

  /**
   * Answers a direct method on the method sender: the request's `correlation_id` exactly as it came (string or
   * uuid), `IoThub-status` as an AMQP int, the JSON payload as one data section (protocol-device.md §3.6).
   * Resolves once the hub accepted the response.
   *
   * @throws ArgumentError for a status that is not a 32-bit integer or a payload that is not JSON-serialisable;
   * HubError `InvalidOperation` for a request id this connection did not receive (or answered already);
   * ConnectionError; TimeoutError; AbortError.
   */
  async sendMethodResponse(
    requestId: string,
    status: number,
    payload: unknown,
    options: OperationOptions = {},
  ): Promise<void> {
    if (!Number.isInteger(status) || status < -2147483648 || status > 2147483647) {
      throw new ArgumentError(`method status ${status} is not a 32-bit integer`, { field: 'status' });
    }
    let body: string;
    try {
      body = JSON.stringify(payload === undefined ? null : payload) ?? 'null';
    } catch (error) {
      throw new ArgumentError('the method response payload is not JSON-serialisable', {
        field: 'payload',
        cause: error,
      });
    }
    const connection = this.#open();
    if (!connection.methodRequests.has(requestId)) {
      throw new HubError('InvalidOperation', `no direct-method request ${requestId} waits for an answer here`);
    }
    const channel = await this.#methodChannel(connection, options.signal);
    const correlationId = connection.methodRequests.get(requestId);
    if (correlationId === undefined) {
      throw new HubError('InvalidOperation', `no direct-method request ${requestId} waits for an answer here`);
    }
    connection.methodRequests.delete(requestId);
    await this.#within<void>(connection, options.signal, this.#operationTimeoutMs(), (_connection, settle) => {
      settle.onSettled(
        channel.sender.send(methodResponse(correlationId, status, body), (outcome) => {
          if (outcome.kind === 'accepted' || outcome.kind === 'settled') settle.resolve();
          else settle.reject(this.#outcomeError(outcome, 'the method response'));
        }),
      );
    });
  }

  // -------------------------------------------------------------------------------------------------------------

  #operationTimeoutMs(): number {
    return (this.#options.operationTimeoutSeconds ?? defaults.operationTimeoutSeconds) * 1000;
  }

  /** The open connection. @throws ConnectionError when there is none. */
  #open(): Connection {
    const connection = this.#connection;
    if (connection === undefined || connection.state !== 'open') {
      throw new ConnectionError(`the ${this.name} transport is not connected`);
    }
    return connection;
  }

  /**
   * Runs one operation on the open connection and settles it exactly once: by `work`, by the loss of the
   * connection, by the timeout, or by the signal.
   */
  #operation<T>(
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    work: (connection: Connection, settle: Settle<T>) => void,
  ): Promise<T> {
    const connection = this.#connection;
    if (connection === undefined || connection.state !== 'open') {
      return Promise.reject(new ConnectionError(`the ${this.name} transport is not connected`));
    }
    return this.#within(connection, signal, timeoutMs, work);
  }

  /** As {@link AmqpTransport.#operation}, on a given connection that is open or still connecting. */
  #within<T>(
    connection: Connection,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    work: (connection: Connection, settle: Settle<T>) => void,
  ): Promise<T> {
    if (connection.state === 'closed') {
      return Promise.reject(connection.lossError ?? new ConnectionError(`the ${this.name} transport is not connected`));
    }
    if (signal?.aborted) return Promise.reject(new AbortError());
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const cleanups: (() => void)[] = [];
      const finish = (error: HubError | undefined, value?: T): void => {
        if (done) return;
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        connection.inFlight.delete(onLost);
        for (const cleanup of cleanups) cleanup();
        if (error === undefined) resolve(value as T);
        else reject(error);
      };
      const onAbort = (): void => finish(new AbortError());
      const onLost = (error: HubError): void => finish(error);
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => finish(new TimeoutError(`no answer from the hub within ${timeoutMs} ms`)), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      connection.inFlight.add(onLost);
      try {
        work(connection, {
          resolve: (value) => finish(undefined, value),
          reject: (error) => finish(error),
          onSettled: (cleanup) => {
            if (done) cleanup();
            else cleanups.push(cleanup);
          },
        });
      } catch (error) {
        finish(toHubError(error, (cause) => new ConnectionError(String(cause), { cause })));
      }
    });
  }

  /**
   * Runs `attach` once per connection and key; later calls share its outcome. A failed attach may be tried again.
   * The caller's signal stops the caller waiting, not the attach others share.
   */
  #shared<T>(
    connection: Connection,
    key: string,
    signal: AbortSignal | undefined,
    attach: () => Promise<T>,
  ): Promise<T> {
    let shared = connection.links.get(key) as Promise<T> | undefined;
    if (shared === undefined) {
      shared = this.#within<T>(connection, undefined, this.#operationTimeoutMs(), (_connection, settle) => {
        attach().then(settle.resolve, (error: unknown) => settle.reject(amqpFailure(error, `attaching ${key}`)));
      });
      connection.links.set(key, shared);
      const created = shared;
      created.catch(() => {
        if (connection.links.get(key) === created) connection.links.delete(key);
      });
    }
    return withSignal(shared, signal);
  }

  /** Properties every link carries: the client version, and the channel's ids for twin and method links. */
  #linkProperties(channel?: string): Record<string, string> {
    return {
      'com.microsoft:client-version': this.#userAgent,
      ...(channel === undefined
        ? {}
        : { 'com.microsoft:channel-correlation-id': channel, 'com.microsoft:api-version': apiVersion }),
    };
  }

  /** Watches a link this connection opened: a detach or error from the hub after the attach is a loss. */
  #watch(connection: Connection, link: Sender | Receiver): void {
    const onGone = (context: EventContext): void => {
      if (connection.state === 'closed') return;
      const detached = context.sender ?? context.receiver;
      const error = detached?.error;
      this.#lost(
        connection,
        error === undefined
          ? new ConnectionError(`the hub detached the link ${detached?.address ?? ''}`)
          : amqpFailure(error, 'the link'),
      );
    };
    if (link instanceof Receiver) {
      link.on(ReceiverEvents.receiverClose, onGone);
      link.on(ReceiverEvents.receiverError, onGone);
    } else {
      link.on(SenderEvents.senderClose, onGone);
      link.on(SenderEvents.senderError, onGone);
    }
  }

  async #sender(
    connection: Connection,
    address: string,
    options: { channel?: string; snd_settle_mode?: 0 | 1 | 2; rcv_settle_mode?: 0 | 1 } = {},
  ): Promise<OutgoingLink> {
    const session = connection.session;
    if (session === undefined) throw new ConnectionError('no AMQP session');
    const sender = await session.createSender({
      name: `sender-${randomUUID()}`,
      target: { address },
      properties: this.#linkProperties(options.channel),
      ...(options.snd_settle_mode === undefined ? {} : { snd_settle_mode: options.snd_settle_mode }),
      ...(options.rcv_settle_mode === undefined ? {} : { rcv_settle_mode: options.rcv_settle_mode }),
    });
    if (connection.state === 'closed') {
      await sender.close().catch(() => {});
      throw connection.lossError ?? new ConnectionError('the connection closed while attaching');
    }
    this.#watch(connection, sender);
    const link = new OutgoingLink(sender);
    connection.outgoing.add(link);
    return link;
  }

  async #receiver(
    connection: Connection,
    address: string,
    options: {
      channel?: string;
      autoaccept?: boolean;
      credit_window?: number;
      snd_settle_mode?: 0 | 1 | 2;
      rcv_settle_mode?: 0 | 1;
    } = {},
  ): Promise<Receiver> {
    const session = connection.session;
    if (session === undefined) throw new ConnectionError('no AMQP session');
    const receiver = await session.createReceiver({
      name: `receiver-${randomUUID()}`,
      source: { address },
      properties: this.#linkProperties(options.channel),
      ...(options.autoaccept === undefined ? {} : { autoaccept: options.autoaccept }),
      ...(options.credit_window === undefined ? {} : { credit_window: options.credit_window }),
      ...(options.snd_settle_mode === undefined ? {} : { snd_settle_mode: options.snd_settle_mode }),
      ...(options.rcv_settle_mode === undefined ? {} : { rcv_settle_mode: options.rcv_settle_mode }),
    });
    if (connection.state === 'closed') {
      await receiver.close().catch(() => {});
      throw connection.lossError ?? new ConnectionError('the connection closed while attaching');
    }
    this.#watch(connection, receiver);
    return receiver;
  }

  #telemetryLink(connection: Connection, signal?: AbortSignal): Promise<OutgoingLink> {
    return this.#shared(connection, 'telemetry', signal, () =>
      this.#sender(connection, `${connection.path}/messages/events`),
    );
  }

  /** The CBS links (`$cbs` sender and receiver, protocol-device.md §3.2), attached on first use. */
  #cbsChannel(connection: Connection, signal: AbortSignal | undefined): Promise<Channel> {
    return this.#shared(connection, 'cbs', signal, async () => {
      const sender = await this.#sender(connection, cbsAddress);
      const receiver = await this.#receiver(connection, cbsAddress);
      receiver.on(ReceiverEvents.message, (context: EventContext) => {
        const message = context.message;
        const id = idString(message?.correlation_id);
        if (message === undefined || id === undefined) return;
        const handler = connection.cbsRequests.get(id);
        connection.cbsRequests.delete(id);
        handler?.(message);
      });
      return { sender, receiver };
    });
  }

  /** CBS put-token (protocol-device.md §3.2; `cbs.ts`), answered on the `$cbs` receiver by `correlation_id`. */
  async #putToken(
    connection: Connection,
    token: string,
    audience: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const channel = await this.#cbsChannel(connection, signal);
    await this.#within<void>(connection, signal, this.#operationTimeoutMs(), (_connection, settle) => {
      const id = randomUUID();
      settle.onSettled(() => connection.cbsRequests.delete(id));
      connection.cbsRequests.set(id, (response) => {
        const refused = putTokenOutcome(response);
        if (refused === undefined) settle.resolve();
        else settle.reject(refused);
      });
      settle.onSettled(
        channel.sender.send(putTokenRequest(id, token, audience), (outcome) => {
          if (outcome.kind !== 'accepted' && outcome.kind !== 'settled') {
            settle.reject(this.#outcomeError(outcome, 'the CBS put-token'));
          }
        }),
      );
    });
  }

  /**
   * The twin links (`/devices/{d}/twin`, sender pre-settled and receiver, protocol-device.md §3.3, §3.5) with a
   * shared `twin:<uuid>` channel id, attached on first use.
   */
  #twinChannel(connection: Connection, signal: AbortSignal | undefined): Promise<Channel> {
    return this.#shared(connection, 'twin', signal, async () => {
      const address = `${connection.path}/twin`;
      const channel = `twin:${randomUUID()}`;
      const sender = await this.#sender(connection, address, { channel, snd_settle_mode: 1, rcv_settle_mode: 0 });
      // Both twin links ask for pre-settled transfers, as the Node SDK attaches them (captures/amqp-amqp.txt).
      const receiver = await this.#receiver(connection, address, { channel, snd_settle_mode: 1, rcv_settle_mode: 0 });
      receiver.on(ReceiverEvents.message, (context: EventContext) => this.#twinMessage(connection, context.message));
      return { sender, receiver };
    });
  }

  /** One twin request, answered on the twin receiver by `correlation_id` (protocol-device.md §3.5; `twin.ts`). */
  #twinRequest(
    connection: Connection,
    operation: TwinOperation,
    resource: string | undefined,
    body: string,
    signal: AbortSignal | undefined,
  ): Promise<TwinResponse> {
    return this.#twinChannel(connection, signal).then((channel) =>
      this.#within<TwinResponse>(connection, signal, this.#operationTimeoutMs(), (_connection, settle) => {
        const correlationId = randomUUID();
        settle.onSettled(() => connection.twinRequests.delete(correlationId));
        connection.twinRequests.set(correlationId, (response) => {
          if (response.status >= 300) settle.reject(twinStatusError(response.status, response.body));
          else settle.resolve(response);
        });
        settle.onSettled(
          channel.sender.send(twinRequest(correlationId, operation, resource, body), (outcome) => {
            if (outcome.kind === 'rejected') settle.reject(this.#outcomeError(outcome, `the twin ${operation}`));
          }),
        );
      }),
    );
  }

  /** A twin response (by `correlation_id`) or a desired-properties push (none), protocol-device.md §3.5. */
  #twinMessage(connection: Connection, message: Message | undefined): void {
    if (message === undefined || connection.state === 'closed') return;
    const read = readTwinMessage(message);
    if (read?.kind === 'response') {
      const handler = connection.twinRequests.get(read.correlationId);
      connection.twinRequests.delete(read.correlationId);
      handler?.(read);
    } else if (read?.kind === 'desired') {
      try {
        connection.events.desiredPropertiesPatch(read.patch, read.version);
      } catch {
        // Handlers must not throw (transport.ts).
      }
    }
  }

  /** The method links (protocol-device.md §3.6), attached on first use. */
  #methodChannel(connection: Connection, signal: AbortSignal | undefined): Promise<Channel> {
    return this.#shared(connection, 'methods', signal, async () => {
      const address = `${connection.path}/methods/devicebound`;
      const channel = `methods:${randomUUID()}`;
      const sender = await this.#sender(connection, address, { channel, rcv_settle_mode: 0 });
      const receiver = await this.#receiver(connection, address, { channel, rcv_settle_mode: 0 });
      receiver.on(ReceiverEvents.message, (context: EventContext) => this.#methodRequest(connection, context.message));
      return { sender, receiver };
    });
  }

  #methodRequest(connection: Connection, message: Message | undefined): void {
    if (message === undefined || connection.state === 'closed') return;
    const read = readMethodRequest(message);
    if (read === undefined) return;
    connection.methodRequests.set(read.request.requestId, read.correlationId);
    try {
      connection.events.methodRequest(read.request);
    } catch {
      // Handlers must not throw (transport.ts).
    }
  }

  #cloudToDevice(connection: Connection, context: EventContext): void {
    const { message, delivery } = context;
    if (message === undefined || delivery === undefined || connection.state === 'closed') return;
    const lockToken = lockTokenOf(delivery.tag, delivery.id);
    connection.deliveries.set(lockToken, delivery);
    try {
      connection.events.cloudToDeviceMessage(cloudToDeviceMessage(message, lockToken));
    } catch {
      // Handlers must not throw (transport.ts).
    }
  }

  #outcomeError(outcome: DeliveryOutcome, what: string): HubError {
    if (outcome.kind === 'rejected') {
      return outcome.error === undefined
        ? new HubError('ServerError', `the hub rejected ${what} without an error`)
        : conditionError(outcome.error, `sending ${what}`);
    }
    // released / modified: the hub did not take it, and may on another try.
    return new ConnectionError(`the hub did not take ${what} (${outcome.kind})`);
  }

  #wire(connection: Connection): void {
    const { amqp } = connection;
    const onGone = (context: EventContext): void => {
      if (connection.state === 'closed') return;
      const error = context.error ?? amqp.error;
      this.#lost(
        connection,
        error === undefined || error === null
          ? new ConnectionError('the connection to the hub was lost')
          : amqpFailure(error, 'the connection'),
      );
    };
    amqp.on(ConnectionEvents.disconnected, onGone);
    amqp.on(ConnectionEvents.connectionClose, onGone);
    amqp.on(ConnectionEvents.connectionError, onGone);
  }

  /** The one session every link shares: the hub ending it ends every link. */
  async #session(connection: Connection): Promise<void> {
    const session = await connection.amqp.createSession();
    connection.session = session;
    const onGone = (context: EventContext): void => {
      if (connection.state === 'closed') return;
      const error = context.session?.error;
      this.#lost(
        connection,
        error === undefined ? new ConnectionError('the hub ended the AMQP session') : amqpFailure(error, 'the session'),
      );
    };
    session.on(SessionEvents.sessionClose, onGone);
    session.on(SessionEvents.sessionError, onGone);
  }

  /** The hub dropped the connection or a link: close what is left and report the loss. */
  #lost(connection: Connection, error: HubError): void {
    if (connection.state === 'closed') return;
    // A refused identity while connected (an expired token detaches its links) is still a loss to reconnect from.
    const reported =
      error.name === 'ConnectionError' || connection.state === 'connecting'
        ? error
        : new ConnectionError(`the hub ended the connection: ${error.message}`, { cause: error, code: error.code });
    this.#closed(connection, reported);
    void this.#closeSocket(connection);
  }

  /** Settles what is in flight, and reports a loss nobody asked for, once. */
  #closed(connection: Connection, error: HubError): void {
    if (connection.state === 'closed') return;
    const wasOpen = connection.state === 'open';
    connection.state = 'closed';
    connection.lossError = connection.closeRequested
      ? new ConnectionError(`the ${this.name} transport is not connected`)
      : error;
    if (this.#connection === connection) this.#connection = undefined;
    for (const reject of [...connection.inFlight]) reject(error);
    connection.inFlight.clear();
    for (const link of connection.outgoing) link.clear();
    connection.cbsRequests.clear();
    connection.twinRequests.clear();
    connection.deliveries.clear();
    connection.methodRequests.clear();
    if (wasOpen && !connection.closeRequested) {
      try {
        connection.events.disconnected(error);
      } catch {
        // Handlers must not throw (transport.ts).
      }
    }
  }

  /**
   * Closes the AMQP connection gracefully (the close exchange, then the hub ends the socket), forcing it after
   * {@link disconnectGraceMs}; resolves once the socket is closed and rhea knows it. rhea stops its timers only when
   * it sees its socket go (`end` or `error`): its idle-timeout check (twice the keep-alive, 8 minutes by default,
   * re-armed by every frame read, the hub's close included) and rhea-promise's attach and close timeouts
   * (`operationTimeoutInSeconds`). A bare `destroy()` emits neither, and those timers kept the process alive for
   * minutes after a clean `disconnect()`.
   */
  async #closeSocket(connection: Connection): Promise<void> {
    const { amqp } = connection;
    const socket = connection.socket();
    const socketClosed =
      socket === undefined || socket.destroyed ? Promise.resolve() : once(socket, 'close').then(noop, noop);
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((resolve) => {
      graceTimer = setTimeout(resolve, disconnectGraceMs);
    });
    try {
      if (amqp.isOpen()) {
        // rhea-promise's close() never settles when the socket drops meanwhile (only its own timeout ends it).
        await Promise.race([amqp.close().then(noop, noop), grace]);
        // rhea ends its side after the close exchange; the hub then ends its own, and rhea reads that `end`.
        await Promise.race([socketClosed, grace]);
      }
    } finally {
      clearTimeout(graceTimer);
      if (socket !== undefined && !socket.destroyed) {
        // Not open yet, or too slow: destroyed with an error, which rhea's socket `error` handler sees.
        socket.on('error', noop);
        socket.destroy(new ConnectionError('the transport closed the socket'));
        await socketClosed;
      }
      amqp.removeAllSessions();
      connection.markClosed();
    }
  }
}

function noop(): void {}

/** Lets a caller stop waiting for a shared promise without cancelling it for others. */
function withSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(new AbortError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
