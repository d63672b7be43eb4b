/**
 * One MQTT 3.1.1 connection to IoT Hub, over TLS or WebSockets, implementing the Transport spec of
 * `@fieldhub/device-core/transport`. Wire behaviour follows protocol-device.md §2 and the official Node SDK's
 * captures (captures/mqtt-mqtt.txt, mqtt-mqttws.txt, mqtt-x509.txt). Policy (reconnects, renewal, queueing) is the
 * connection manager's: this class opens one connection, reports its loss once, and never retries.
 */
import { randomUUID } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import type {
  CloudToDeviceSettlement,
  OperationOptions,
  OutgoingMessage,
  Transport,
  TransportCapabilities,
  TransportConnectOptions,
  TransportEvents,
  TwinProperties,
} from '@fieldhub/device-core/transport';
import {
  AbortError,
  ArgumentError,
  buildMqttUsername,
  ConnectionError,
  cloudToDeviceTopicFilter,
  HubError,
  methodResponseTopic,
  mqttClientId,
  type ParsedDeviceTopic,
  parseDeviceTopic,
  TimeoutError,
  TopicFilters,
  twinGetTopic,
  twinReportedPatchTopic,
  UnsupportedFeatureError,
} from '@fieldhub/protocol';
import { connect as connectMqtt, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { cloudToDeviceMessage } from './cloud-to-device-message';
import { connackError } from './connack-error';
import { endpoint } from './endpoint';
import { statusError } from './status-error';
import { telemetryPublish } from './telemetry-publish';
import { userAgent } from './user-agent';

/** Options of the MQTT transport; see {@link mqtt}. */
export interface MqttTransportOptions {
  /** MQTT over WebSockets (`wss://<host>[:port]/$iothub/websocket`, subprotocol `mqtt`) instead of TLS on 8883. */
  readonly webSockets?: boolean;
  /** The port to dial; default 8883, or 443 with WebSockets. Wins over a port in the host name. */
  readonly port?: number;
  /** MQTT keep-alive, seconds; default 180 as the Node SDK. The client's `keepAliveSeconds` wins when set. */
  readonly keepAliveSeconds?: number;
  /**
   * MQTT clean session; default `false` as the official SDK, so that cloud-to-device messages sent while the
   * device was away are delivered after it reconnects (protocol-device.md §2.3).
   */
  readonly clean?: boolean;
  /** How long a twin request or a telemetry PUBACK may take, seconds; default 60. */
  readonly operationTimeoutSeconds?: number;
  /** Appended to the `DeviceClientType` of the CONNECT username (the official SDK's `productInfo`). */
  readonly productInfo?: string;
}

/** What the MQTT transport can do (protocol-device.md §2): everything but reject/abandon and batches. */
export const mqttCapabilities: TransportCapabilities = Object.freeze({
  twin: true,
  directMethods: true,
  cloudToDevice: 'push',
  cloudToDeviceSettlements: Object.freeze(['complete'] as const),
  telemetryBatch: false,
  credentialRenewal: 'reconnect',
});

/** Defaults of the official Node SDK (protocol-device.md §2.2). */
const defaults = { keepAliveSeconds: 180, connectTimeoutMs: 60_000, operationTimeoutSeconds: 60 } as const;

/** Graceful DISCONNECT gets this long before the socket is destroyed. */
const disconnectGraceMs = 3_000;

interface Settle<T> {
  resolve(value: T): void;
  reject(error: HubError): void;
  /** Runs `cleanup` once the operation is settled, however. */
  onSettled(cleanup: () => void): void;
}

interface TwinResponse {
  readonly status: number;
  readonly version: number | undefined;
  readonly payload: Uint8Array;
}

/** The state of one network connection; a reconnect makes a new one. */
interface Connection {
  readonly client: MqttClient;
  readonly events: TransportEvents;
  readonly deviceId: string;
  readonly moduleId: string | undefined;
  /** Distinguishes lock tokens of earlier connections. */
  readonly epoch: number;
  state: 'connecting' | 'open' | 'closed';
  /** `disconnect()` asked for the close: no `disconnected` event. */
  closeRequested: boolean;
  /** The last error MQTT.js reported, the cause of a loss. */
  lastError: Error | undefined;
  /** Called with the loss error to reject every operation in flight. */
  readonly inFlight: Set<(error: HubError) => void>;
  /** Twin requests by `$rid`. */
  readonly twinRequests: Map<string, (response: TwinResponse) => void>;
  /** Subscriptions made (or being made) on this connection, by filter. */
  readonly subscriptions: Map<string, Promise<void>>;
  /** Unacknowledged QoS 1 cloud-to-device PUBLISH packet ids, by lock token. */
  readonly unacknowledged: Map<string, number>;
  /** Packets whose PUBACK waits for `settleCloudToDevice`. */
  readonly deferredAcks: WeakSet<IPublishPacket>;
  lockSequence: number;
  readonly closed: Promise<void>;
  markClosed(): void;
}

/** The part of MQTT.js's client this transport uses beyond its public API; see `#acknowledge`. */
interface PacketWriter {
  _sendPacket(packet: { cmd: 'puback'; messageId: number }, callback: (error?: Error) => void): void;
}

let epochs = 0;

function toHubError(error: unknown, fallback: (cause: unknown) => HubError): HubError {
  return HubError.is(error) ? error : fallback(error);
}

function numericReasonCode(error: Error | undefined): number | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

function decodeJson(payload: Uint8Array): unknown {
  const text = new TextDecoder().decode(payload);
  if (text.trim() === '') return null;
  return JSON.parse(text) as unknown;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function twinSection(value: unknown): (Record<string, unknown> & { $version: number }) | undefined {
  return isRecord(value) && typeof value.$version === 'number'
    ? (value as Record<string, unknown> & { $version: number })
    : undefined;
}

/**
 * The MQTT transport: one connection at a time, made by {@link mqtt}. Use it through `createDeviceClient`; the
 * conformance suite of `@fieldhub/transport-testing` drives it directly.
 */
export class MqttTransport implements Transport {
  readonly name: string;
  readonly capabilities: TransportCapabilities = mqttCapabilities;
  readonly #options: MqttTransportOptions;
  #connection: Connection | undefined;

  constructor(options: MqttTransportOptions = {}) {
    this.#options = options;
    this.name = options.webSockets ? 'mqtt-ws' : 'mqtt';
  }

  /** Whether a connection is open now. */
  get connected(): boolean {
    return this.#connection?.state === 'open';
  }

  /**
   * Opens the connection: CONNECT with client id `{deviceId}[/{moduleId}]`, the official SDK's username with
   * `api-version` and `DeviceClientType`, the SAS token as password or the X.509 certificate in the TLS handshake
   * (protocol-device.md §2.2). MQTT.js never reconnects by itself (`reconnectPeriod: 0`).
   *
   * @throws AuthenticationError when the hub refuses the credentials (CONNACK 2, 4, 5); ConnectionError when the
   * hub cannot be reached, the TLS handshake fails, `timeoutMs` passes or `disconnect()` is called meanwhile;
   * AbortError when `signal` aborts; ArgumentError for a malformed host name, id or port; HubError
   * `InvalidOperation` when a connection is already open or opening.
   */
  async connect(options: TransportConnectOptions, events: TransportEvents): Promise<void> {
    if (this.#connection !== undefined) {
      throw new HubError('InvalidOperation', `the ${this.name} transport is already ${this.#connection.state}`);
    }
    if (options.signal?.aborted) throw new AbortError();
    const { credentials } = options;
    const target = endpoint(credentials.gatewayHostName ?? credentials.hostName, {
      webSockets: this.#options.webSockets === true,
      port: this.#options.port,
    });
    const clientId = mqttClientId(credentials.deviceId, credentials.moduleId);
    const username = buildMqttUsername({
      hostName: credentials.hostName,
      deviceId: credentials.deviceId,
      ...(credentials.moduleId === undefined ? {} : { moduleId: credentials.moduleId }),
      deviceClientType: userAgent(this.#options.productInfo),
    });
    if (credentials.sasToken === undefined && credentials.x509 === undefined) {
      throw new ArgumentError('credentials carry neither a SAS token nor an X.509 certificate', {
        field: 'credentials',
      });
    }
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
    const clientOptions: IClientOptions = {
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId,
      username,
      ...(credentials.sasToken === undefined ? {} : { password: credentials.sasToken }),
      clean: this.#options.clean ?? false,
      keepalive: options.keepAliveSeconds ?? this.#options.keepAliveSeconds ?? defaults.keepAliveSeconds,
      // The connection manager owns reconnects (transport.ts; protocol-device.md §2.2: the SDK sets 0 too).
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
      resubscribe: false,
      queueQoSZero: false,
      manualConnect: true,
      ...tlsOptions,
      ...(this.#options.webSockets ? { wsOptions: tlsOptions } : {}),
    };

    const client = connectMqtt(target.url, clientOptions);
    let markClosed = (): void => {};
    const connection: Connection = {
      client,
      events,
      deviceId: credentials.deviceId,
      moduleId: credentials.moduleId,
      epoch: ++epochs,
      state: 'connecting',
      closeRequested: false,
      lastError: undefined,
      inFlight: new Set(),
      twinRequests: new Map(),
      subscriptions: new Map(),
      unacknowledged: new Map(),
      deferredAcks: new WeakSet(),
      lockSequence: 0,
      closed: new Promise<void>((resolve) => {
        markClosed = resolve;
      }),
      markClosed: () => markClosed(),
    };
    this.#connection = connection;
    this.#wire(connection);

    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (error?: HubError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        client.off('connect', onConnect);
        client.off('close', onClose);
        if (error === undefined) {
          resolve();
          return;
        }
        // The socket may still be open (timeout, abort): close it without a `disconnected` event.
        connection.closeRequested = true;
        client.stream?.destroy();
        this.#closed(connection);
        reject(error);
      };
      const onConnect = (): void => {
        connection.state = 'open';
        finish();
      };
      const onClose = (): void => {
        const code = numericReasonCode(connection.lastError);
        if (connection.closeRequested) {
          finish(new ConnectionError('disconnect() was called while connecting'));
        } else if (code !== undefined) {
          finish(connackError(code, connection.lastError));
        } else {
          finish(
            new ConnectionError(
              `could not connect to ${target.url}: ${connection.lastError?.message ?? 'the connection closed'}`,
              { cause: connection.lastError },
            ),
          );
        }
      };
      const onAbort = (): void => finish(new AbortError());
      const timer = setTimeout(
        () => finish(new ConnectionError(`no CONNACK from ${target.url} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      options.signal?.addEventListener('abort', onAbort, { once: true });
      client.on('connect', onConnect);
      client.on('close', onClose);
      client.connect();
    });
  }

  /**
   * Closes the connection with a DISCONNECT and resolves once the socket is closed; operations in flight reject
   * with ConnectionError. Idempotent; no `disconnected` event follows.
   */
  async disconnect(): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) return;
    connection.closeRequested = true;
    if (connection.state === 'connecting') {
      connection.client.stream?.destroy();
    } else if (connection.state === 'open') {
      this.#rejectInFlight(connection, new ConnectionError('the transport was disconnected'));
      // MQTT.js sends DISCONNECT only once nothing awaits a PUBACK; what is in flight was just rejected.
      for (const messageId of Object.keys(connection.client.outgoing)) {
        connection.client.removeOutgoingMessage(Number(messageId));
      }
      const force = setTimeout(() => connection.client.stream?.destroy(), disconnectGraceMs);
      connection.client.end(false);
      await connection.closed;
      clearTimeout(force);
    }
    await connection.closed;
  }

  /**
   * Publishes telemetry at QoS 1 and resolves on the hub's PUBACK, which it sends once the message is durably
   * appended (ARCHITECTURE.md invariants).
   *
   * @throws ArgumentError coded `MessageTooLarge` over 256 KB, checked locally; ArgumentError for properties
   * that cannot be encoded; ConnectionError when not connected or the connection is lost before the PUBACK;
   * TimeoutError after `operationTimeoutSeconds`; AbortError when `signal` aborts (the message may still arrive).
   */
  sendTelemetry(message: OutgoingMessage, options: OperationOptions = {}): Promise<void> {
    return this.#operation<void>(options.signal, this.#operationTimeoutMs(), (connection, settle) => {
      const publish = telemetryPublish(connection, message);
      connection.client.publish(publish.topic, toBuffer(publish.payload), { qos: 1 }, (error) => {
        if (error)
          settle.reject(new ConnectionError(`telemetry was not acknowledged: ${error.message}`, { cause: error }));
        else settle.resolve();
      });
    });
  }

  /**
   * Subscribes to `devices/{deviceId}/messages/devicebound/#` at QoS 1 (protocol-device.md §2.4). Messages stay
   * unacknowledged until {@link MqttTransport.settleCloudToDevice} completes them.
   *
   * @throws UnsupportedFeatureError for a module identity (IoT Hub delivers no cloud-to-device messages to
   * modules) or when the hub refuses the subscription; ConnectionError; AbortError.
   */
  enableCloudToDevice(options: OperationOptions = {}): Promise<void> {
    const connection = this.#connection;
    if (connection?.moduleId !== undefined) {
      return Promise.reject(new UnsupportedFeatureError('IoT Hub delivers no cloud-to-device messages to modules'));
    }
    return this.#subscribe(connection === undefined ? '' : cloudToDeviceTopicFilter(connection.deviceId), 1, options);
  }

  /**
   * Completes a cloud-to-device message by sending the PUBACK of its PUBLISH, the only settlement MQTT has
   * (protocol-device.md §2.8).
   *
   * The PUBACK is deferred, not sent on receipt as MQTT.js does by default: the transport overrides MQTT.js's
   * documented `handleMessage` hook to withhold it, and writes it later through MQTT.js's internal
   * `_sendPacket`. A message the application never completes is redelivered by the hub after its lock expires or
   * after a reconnect.
   *
   * @throws UnsupportedFeatureError for `reject` and `abandon`; HubError `DeviceMessageLockLost` for a lock token
   * of an earlier connection or one already completed; ConnectionError when not connected; AbortError.
   */
  settleCloudToDevice(
    lockToken: string,
    settlement: CloudToDeviceSettlement,
    options: OperationOptions = {},
  ): Promise<void> {
    if (settlement !== 'complete') {
      return Promise.reject(
        new UnsupportedFeatureError(`MQTT cannot ${settlement} a cloud-to-device message; only complete (PUBACK)`),
      );
    }
    return this.#operation<void>(options.signal, undefined, (connection, settle) => {
      const messageId = connection.unacknowledged.get(lockToken);
      if (messageId === undefined) {
        settle.reject(
          new HubError(
            'DeviceMessageLockLost',
            'unknown lock token: completed already, or received on an earlier connection (the hub redelivers it)',
          ),
        );
        return;
      }
      connection.unacknowledged.delete(lockToken);
      if (messageId === 0) {
        // QoS 0 delivery: nothing to acknowledge.
        settle.resolve();
        return;
      }
      this.#acknowledge(connection, messageId, (error) => {
        if (error) settle.reject(new ConnectionError(`PUBACK not sent: ${error.message}`, { cause: error }));
        else settle.resolve();
      });
    });
  }

  /**
   * Subscribes to twin responses (`$iothub/twin/res/#`) and desired-property patches
   * (`$iothub/twin/PATCH/properties/desired/#`) at QoS 0, as the official SDK (protocol-device.md §2.3, §2.6).
   *
   * @throws ConnectionError; UnsupportedFeatureError when the hub refuses a subscription; AbortError.
   */
  async enableTwin(options: OperationOptions = {}): Promise<void> {
    await this.#subscribe(TopicFilters.twinResponses, 0, options);
    await this.#subscribe(TopicFilters.desiredProperties, 0, options);
  }

  /**
   * Reads the twin: `$iothub/twin/GET/?$rid=` with a one-space body as the Node SDK sends, answered on
   * `$iothub/twin/res/200/?$rid=` (protocol-device.md §2.6). Subscribes to twin responses first if
   * `enableTwin` has not.
   *
   * @throws HubError from the response's `errorCode` or status when the status is 300 or more; TimeoutError
   * after `operationTimeoutSeconds`; ConnectionError; AbortError.
   */
  async getTwin(options: OperationOptions = {}): Promise<TwinProperties> {
    await this.#subscribe(TopicFilters.twinResponses, 0, options);
    const rid = randomUUID();
    const response = await this.#twinRequest(twinGetTopic(rid), ' ', rid, options.signal);
    let body: unknown;
    try {
      body = decodeJson(response.payload);
    } catch (error) {
      throw new HubError('ServerError', 'the twin the hub sent is not JSON', { cause: error });
    }
    const desired = isRecord(body) ? twinSection(body.desired) : undefined;
    const reported = isRecord(body) ? twinSection(body.reported) : undefined;
    if (desired === undefined || reported === undefined) {
      throw new HubError('ServerError', 'the twin the hub sent lacks desired or reported properties with $version');
    }
    return { desired, reported };
  }

  /**
   * Patches reported properties: `$iothub/twin/PATCH/properties/reported/?$rid=` with the JSON patch, answered
   * by `204` and the new `$version` in the response topic (protocol-device.md §2.6).
   *
   * @throws ArgumentError when the patch is not JSON-serialisable; HubError from the response's `errorCode` or
   * status when the status is 300 or more; TimeoutError; ConnectionError; AbortError.
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
    await this.#subscribe(TopicFilters.twinResponses, 0, options);
    const rid = randomUUID();
    const response = await this.#twinRequest(twinReportedPatchTopic({ rid }), body, rid, options.signal);
    if (response.version === undefined) {
      throw new HubError('ServerError', 'the hub acknowledged the reported properties without a $version');
    }
    return response.version;
  }

  /**
   * Subscribes to direct-method requests (`$iothub/methods/POST/#`) at QoS 0 (protocol-device.md §2.7).
   *
   * @throws ConnectionError; UnsupportedFeatureError when the hub refuses the subscription; AbortError.
   */
  enableDirectMethods(options: OperationOptions = {}): Promise<void> {
    return this.#subscribe(TopicFilters.methods, 0, options);
  }

  /**
   * Answers a direct method: `$iothub/methods/res/{status}/?$rid={requestId}` at QoS 0 with the JSON payload
   * (protocol-device.md §2.7). Resolves once the answer is written to the connection.
   *
   * @throws ArgumentError for a status that is not a 32-bit integer, a request id that cannot be echoed, or a
   * payload that is not JSON-serialisable; ConnectionError; AbortError.
   */
  sendMethodResponse(
    requestId: string,
    status: number,
    payload: unknown,
    options: OperationOptions = {},
  ): Promise<void> {
    return this.#operation<void>(options.signal, this.#operationTimeoutMs(), (connection, settle) => {
      const topic = methodResponseTopic({ status, rid: requestId });
      let body: string | undefined;
      try {
        body = JSON.stringify(payload === undefined ? null : payload);
      } catch (error) {
        throw new ArgumentError('the method response payload is not JSON-serialisable', {
          field: 'payload',
          cause: error,
        });
      }
      connection.client.publish(topic, body ?? 'null', { qos: 0 }, (error) => {
        if (error) settle.reject(new ConnectionError(`method response not sent: ${error.message}`, { cause: error }));
        else settle.resolve();
      });
    });
  }

  // -------------------------------------------------------------------------------------------------------------

  #operationTimeoutMs(): number {
    return (this.#options.operationTimeoutSeconds ?? defaults.operationTimeoutSeconds) * 1000;
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

  /** Subscribes once per connection and filter; later calls share the first SUBACK. */
  #subscribe(filter: string, qos: 0 | 1, options: OperationOptions): Promise<void> {
    const connection = this.#connection;
    const existing = connection?.state === 'open' ? connection.subscriptions.get(filter) : undefined;
    const subscription =
      existing ??
      this.#operation<void>(undefined, this.#operationTimeoutMs(), (open, settle) => {
        open.client.subscribe(filter, { qos }, (error, granted) => {
          // MQTT.js reports a SUBACK failure code (0x80, [MQTT-3.9.3]) as an error carrying the SUBACK packet.
          const suback = (error as { packet?: { granted?: unknown[] } } | null)?.packet;
          const refused = granted?.[0]?.qos === 0x80 || suback?.granted?.[0] === 0x80;
          if (refused) {
            settle.reject(new UnsupportedFeatureError(`the hub refused the subscription to ${filter}`));
          } else if (error) {
            settle.reject(new ConnectionError(`SUBSCRIBE ${filter} failed: ${error.message}`, { cause: error }));
          } else {
            settle.resolve();
          }
        });
      });
    if (existing === undefined && connection?.state === 'open') {
      connection.subscriptions.set(filter, subscription);
      // A failed subscription may be tried again.
      subscription.catch(() => {
        if (connection.subscriptions.get(filter) === subscription) connection.subscriptions.delete(filter);
      });
    }
    return withSignal(subscription, options.signal);
  }

  #twinRequest(topic: string, body: string, rid: string, signal: AbortSignal | undefined): Promise<TwinResponse> {
    return this.#operation<TwinResponse>(signal, this.#operationTimeoutMs(), (connection, settle) => {
      settle.onSettled(() => connection.twinRequests.delete(rid));
      connection.twinRequests.set(rid, (response) => {
        if (response.status >= 300) settle.reject(statusError(response.status, response.payload));
        else settle.resolve(response);
      });
      // Twin requests go at QoS 0, as the Node SDK sends them (protocol-device.md §2.3).
      connection.client.publish(topic, body, { qos: 0 }, (error) => {
        if (error) settle.reject(new ConnectionError(`twin request not sent: ${error.message}`, { cause: error }));
      });
    });
  }

  /** Writes the PUBACK of a cloud-to-device PUBLISH that `handleMessage` withheld. */
  #acknowledge(connection: Connection, messageId: number, callback: (error?: Error) => void): void {
    (connection.client as unknown as PacketWriter)._sendPacket({ cmd: 'puback', messageId }, callback);
  }

  #wire(connection: Connection): void {
    const { client } = connection;
    client.on('error', (error) => {
      connection.lastError = error;
    });
    client.on('close', () => this.#closed(connection));
    client.on('message', (topic, payload, packet) => this.#route(connection, topic, payload, packet));
    // MQTT.js acknowledges a QoS 1 PUBLISH after `handleMessage` calls back; calling back with an error makes it
    // skip the PUBACK and go on with the next packet (handlers/publish.js), which `settleCloudToDevice` then sends.
    // Holding the callback instead would stall every later packet (twin responses, PUBACKs) behind the app.
    client.handleMessage = (packet, callback) => {
      if (connection.deferredAcks.has(packet)) callback(new Error('PUBACK deferred until the message is completed'));
      else callback();
    };
  }

  #route(connection: Connection, topic: string, payload: Uint8Array, packet: IPublishPacket): void {
    if (connection.state !== 'open') return;
    let parsed: ParsedDeviceTopic;
    try {
      parsed = parseDeviceTopic(topic);
    } catch {
      // A malformed topic of a known family: nothing to deliver. A QoS 1 one is acknowledged (dropped) so that
      // the hub does not redeliver it forever.
      return;
    }
    try {
      switch (parsed.kind) {
        case 'cloudToDevice': {
          if (parsed.deviceId !== connection.deviceId) return;
          const lockToken = `${connection.epoch}.${++connection.lockSequence}`;
          if (packet.qos === 1 && packet.messageId !== undefined) {
            connection.deferredAcks.add(packet);
            connection.unacknowledged.set(lockToken, packet.messageId);
          } else {
            connection.unacknowledged.set(lockToken, 0);
          }
          connection.events.cloudToDeviceMessage(cloudToDeviceMessage(parsed, payload, lockToken));
          return;
        }
        case 'twinResponse': {
          const handler = connection.twinRequests.get(parsed.rid);
          connection.twinRequests.delete(parsed.rid);
          handler?.({ status: parsed.status, version: parsed.version, payload });
          return;
        }
        case 'twinDesiredPatch': {
          const body = decodeJson(payload);
          if (!isRecord(body)) return;
          const { $version: _version, ...patch } = body;
          connection.events.desiredPropertiesPatch(patch, parsed.version);
          return;
        }
        case 'methodRequest': {
          let request: unknown;
          try {
            request = decodeJson(payload);
          } catch {
            // Not JSON: hand over the text rather than dropping a request the service waits for.
            request = new TextDecoder().decode(payload);
          }
          connection.events.methodRequest({ requestId: parsed.rid, methodName: parsed.methodName, payload: request });
          return;
        }
        default:
          return;
      }
    } catch {
      // Handlers must not throw (transport.ts); a bad desired-patch body is dropped, as the Node SDK drops it.
    }
  }

  #rejectInFlight(connection: Connection, error: HubError): void {
    for (const reject of [...connection.inFlight]) reject(error);
    connection.inFlight.clear();
  }

  /** The socket is closed: settle what is in flight, and report a loss nobody asked for, once. */
  #closed(connection: Connection): void {
    if (connection.state === 'closed') return;
    const wasOpen = connection.state === 'open';
    connection.state = 'closed';
    if (this.#connection === connection) this.#connection = undefined;
    const error = connection.closeRequested
      ? new ConnectionError('the transport was disconnected')
      : new ConnectionError(
          `the connection to the hub was lost${connection.lastError ? `: ${connection.lastError.message}` : ''}`,
          {
            cause: connection.lastError,
          },
        );
    this.#rejectInFlight(connection, error);
    connection.twinRequests.clear();
    connection.unacknowledged.clear();
    connection.markClosed();
    // Stop MQTT.js from emitting into a dead connection (and from keep-alive timers).
    connection.client.removeAllListeners('message');
    connection.client.end(true);
    if (wasOpen && !connection.closeRequested) {
      try {
        connection.events.disconnected(error);
      } catch {
        // Handlers must not throw (transport.ts).
      }
    }
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

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
