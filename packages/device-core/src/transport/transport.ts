/**
 * The Transport spec: what a protocol adapter (MQTT, AMQP, HTTPS, the firmware bridge) implements for the device
 * SDK. A transport is thin and holds ONE connection at a time; all policy (when to connect, retries with
 * backoff, SAS renewal, the offline queue, re-subscribing and re-reading the twin after a reconnect, settling
 * every operation exactly once) lives in device-core's connection manager, once for every transport.
 *
 * Rules for implementers:
 * - Every method that talks to the hub rejects with a `HubError` from @fieldhub/protocol: `ConnectionError` when
 *   the connection is gone or could not be made (retryable), `AuthenticationError` when credentials were refused,
 *   `TimeoutError`, `ThrottledError`, `ArgumentError` for input the hub would refuse, `UnsupportedFeatureError`
 *   for operations outside the declared capabilities, `AbortError` when the caller's signal aborted. Map
 *   structured fields (CONNACK codes, topic status, AMQP conditions, HTTP status + error code), never message text.
 * - After `connect` resolves, the transport reports the loss of its connection exactly once through
 *   `TransportEvents.disconnected`, and does not reconnect by itself.
 * - Operations while disconnected reject with `ConnectionError` immediately; they are never queued here.
 * - No Node APIs in the spec: transports for constrained runtimes implement it too.
 */
import type { HubError } from '@fieldhub/protocol';

/** What a transport can do; the client refuses (UnsupportedFeatureError) what the transport cannot. */
export interface TransportCapabilities {
  /** Twin GET, reported PATCH and desired-property pushes. */
  readonly twin: boolean;
  /** Direct methods (HTTPS: no). */
  readonly directMethods: boolean;
  /** How cloud-to-device messages arrive: pushed on a subscription, polled (HTTPS), or not at all. */
  readonly cloudToDevice: 'push' | 'poll' | 'none';
  /** Settlements the transport can express (MQTT: only complete, by PUBACK). */
  readonly cloudToDeviceSettlements: readonly CloudToDeviceSettlement[];
  /** Several telemetry messages in one operation (AMQP, HTTPS batch). */
  readonly telemetryBatch: boolean;
  /**
   * How a renewed SAS token reaches the hub: by reconnecting with it (MQTT: a new CONNECT password), in place
   * on the open connection (AMQP CBS put-token), or with each request (HTTPS).
   */
  readonly credentialRenewal: 'reconnect' | 'inPlace' | 'perRequest';
}

/** How a cloud-to-device message is settled. */
export type CloudToDeviceSettlement = 'complete' | 'reject' | 'abandon';

/** Who the device is and how it proves it, for one connection attempt. */
export interface TransportCredentials {
  /** The hub's host name as in the connection string (may carry a port). */
  readonly hostName: string;
  /** Where to dial instead of `hostName` (a gateway: `GatewayHostName`). */
  readonly gatewayHostName?: string;
  readonly deviceId: string;
  readonly moduleId?: string;
  /** A SAS token (`SharedAccessSignature sr=...`), when authenticating with SAS. */
  readonly sasToken?: string;
  /** When `sasToken` expires, ms since epoch. */
  readonly sasTokenExpiresAt?: number;
  /** PEM client certificate (chain) and key, when authenticating with X.509. */
  readonly x509?: { readonly certificate: string; readonly privateKey: string; readonly passphrase?: string };
}

/**
 * Supplies credentials: a device key signing tokens locally, an external signer (TPM, firmware bridge), or X.509.
 * The connection manager asks for credentials before every connection attempt and before a token expires.
 */
export interface CredentialProvider {
  readonly hostName: string;
  readonly deviceId: string;
  readonly moduleId?: string;
  readonly gatewayHostName?: string;
  /** 'sas' providers produce tokens that expire; 'x509' providers do not. */
  readonly kind: 'sas' | 'x509';
  /**
   * How many seconds before `sasTokenExpiresAt` the connection manager asks for a new token (and a caching
   * provider stops handing out the old one). Default 900 (reference §1.3). Optional; 'x509' providers omit it.
   */
  readonly renewalMarginSeconds?: number;
  /**
   * Credentials valid for at least a while; a SAS provider makes a fresh token when the last one nears expiry
   * (within `renewalMarginSeconds`), or when `refresh` is set (the hub refused the last one).
   */
  getCredentials(options?: {
    readonly signal?: AbortSignal;
    readonly refresh?: boolean;
  }): Promise<TransportCredentials>;
}

/** Options of one connection attempt. */
export interface TransportConnectOptions {
  readonly credentials: TransportCredentials;
  /** Extra trusted CA certificates (PEM), for hubs with a private CA. */
  readonly ca?: string;
  /** MQTT keep-alive / AMQP idle timeout, seconds. */
  readonly keepAliveSeconds?: number;
  /** Give up after this many ms (rejects with ConnectionError). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Options every operation accepts. */
export interface OperationOptions {
  readonly signal?: AbortSignal;
}

/** A telemetry message as the transport sends it. */
export interface OutgoingMessage {
  readonly body: Uint8Array;
  /** Application properties. */
  readonly properties?: Readonly<Record<string, string>>;
  readonly messageId?: string;
  readonly correlationId?: string;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly userId?: string;
  /** Absolute expiry, ISO 8601. */
  readonly expiryTimeUtc?: string;
}

/** A cloud-to-device message as the transport received it. */
export interface IncomingCloudToDeviceMessage {
  readonly body: Uint8Array;
  readonly properties: Readonly<Record<string, string>>;
  readonly messageId?: string;
  readonly correlationId?: string;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly userId?: string;
  readonly expiryTimeUtc?: string;
  /** How many times the hub delivered it, when the protocol says. */
  readonly deliveryCount?: number;
  /** The handle to settle it with (`settleCloudToDevice`). */
  readonly lockToken: string;
}

/** A direct-method request as the transport received it. */
export interface IncomingMethodRequest {
  /** The request id to answer with (`sendMethodResponse`). */
  readonly requestId: string;
  readonly methodName: string;
  /** The JSON payload, parsed; `null` when the hub sent none. */
  readonly payload: unknown;
}

/** The twin sections a device sees. Each carries `$version` (and may carry `$metadata`). */
export interface TwinProperties {
  readonly desired: Readonly<Record<string, unknown>> & { readonly $version: number };
  readonly reported: Readonly<Record<string, unknown>> & { readonly $version: number };
}

/** What a transport reports while connected. Handlers must not throw. */
export interface TransportEvents {
  cloudToDeviceMessage(message: IncomingCloudToDeviceMessage): void;
  /** A desired-properties patch (`null` deletes) and the new desired `$version`. */
  desiredPropertiesPatch(patch: Readonly<Record<string, unknown>>, version: number): void;
  methodRequest(request: IncomingMethodRequest): void;
  /** The connection is gone (exactly once per successful connect); `error` says why when it was not asked for. */
  disconnected(error?: HubError): void;
}

/**
 * A protocol adapter, one connection at a time. `connect` may be called again after the connection was lost or
 * closed. Feature switches (`enable*`) are per connection: the connection manager calls them again after every
 * reconnect.
 */
export interface Transport {
  /** e.g. `mqtt`, `mqtt-ws`, `amqp`, `https`. */
  readonly name: string;
  readonly capabilities: TransportCapabilities;

  /** Opens the connection. @throws AuthenticationError, ConnectionError, AbortError */
  connect(options: TransportConnectOptions, events: TransportEvents): Promise<void>;
  /** Closes the connection gracefully; resolves once it is closed. Idempotent. No `disconnected` event follows. */
  disconnect(): Promise<void>;
  /** Whether a connection is open now. */
  readonly connected: boolean;

  /** Resolves once the hub has durably accepted the message (MQTT PUBACK, AMQP accepted, HTTP 204). */
  sendTelemetry(message: OutgoingMessage, options?: OperationOptions): Promise<void>;
  /** Only when `capabilities.telemetryBatch`. */
  sendTelemetryBatch?(messages: readonly OutgoingMessage[], options?: OperationOptions): Promise<void>;

  /** Starts cloud-to-device delivery (subscribe / attach) for this connection. */
  enableCloudToDevice(options?: OperationOptions): Promise<void>;
  /** Settles a received message. @throws UnsupportedFeatureError for a settlement outside the capabilities */
  settleCloudToDevice(
    lockToken: string,
    settlement: CloudToDeviceSettlement,
    options?: OperationOptions,
  ): Promise<void>;
  /** Polls for one message (`cloudToDevice: 'poll'` transports); `undefined` when none waits. */
  receiveCloudToDevice?(options?: OperationOptions): Promise<IncomingCloudToDeviceMessage | undefined>;

  /** Starts twin responses and desired-property pushes for this connection. */
  enableTwin(options?: OperationOptions): Promise<void>;
  getTwin(options?: OperationOptions): Promise<TwinProperties>;
  /** Returns the new reported `$version`. */
  updateReportedProperties(patch: Readonly<Record<string, unknown>>, options?: OperationOptions): Promise<number>;

  /** Starts direct-method requests for this connection. */
  enableDirectMethods(options?: OperationOptions): Promise<void>;
  sendMethodResponse(requestId: string, status: number, payload: unknown, options?: OperationOptions): Promise<void>;

  /**
   * Hands a renewed token to an open connection: `credentialRenewal: 'inPlace'` transports send it to the hub now,
   * `'perRequest'` ones use it from the next request. Not called for `'reconnect'` transports.
   */
  updateCredentials?(credentials: TransportCredentials, options?: OperationOptions): Promise<void>;
}

/** Makes transports: `createDeviceClient({ transport: mqtt() })` takes one of these. */
export interface TransportFactory {
  readonly name: string;
  readonly capabilities: TransportCapabilities;
  create(): Transport;
}
