/**
 * Test support (not exported): an in-memory, hub-like fake that implements the real Transport spec. It records
 * telemetry, keeps a twin with versions, holds cloud-to-device messages for a persistent session, answers direct
 * methods through the device, and can be told to drop the connection, refuse credentials, or hold acks.
 * @internal
 */
import { applyTwinPatch, type TwinObject } from '@fieldhub/protocol';
import { AbortError, AuthenticationError, ConnectionError, type HubError, UnsupportedFeatureError } from './errors';
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
  TransportFactory,
  TwinProperties,
} from './transport/transport';

/** MQTT's capabilities. */
export const mqttLikeCapabilities: TransportCapabilities = {
  twin: true,
  directMethods: true,
  cloudToDevice: 'push',
  cloudToDeviceSettlements: ['complete'],
  telemetryBatch: false,
  credentialRenewal: 'reconnect',
};

/** AMQP's capabilities. */
export const amqpLikeCapabilities: TransportCapabilities = {
  twin: true,
  directMethods: true,
  cloudToDevice: 'push',
  cloudToDeviceSettlements: ['complete', 'reject', 'abandon'],
  telemetryBatch: true,
  credentialRenewal: 'inPlace',
};

type Feature = 'cloudToDevice' | 'twin' | 'directMethods';

interface HeldAck {
  readonly message: OutgoingMessage;
  resolve(): void;
  reject(error: HubError): void;
}

/** What happens to the next connection attempts. */
export type ConnectOutcome = 'accept' | 'refuse' | 'unreachable' | 'hold';

/** The fake hub and its transport factory. */
export class FakeHub {
  /** Telemetry the hub accepted, in order. */
  readonly telemetry: OutgoingMessage[] = [];
  /** Every connection attempt's options, in order. */
  readonly connectAttempts: TransportConnectOptions[] = [];
  /** Settlements received. */
  readonly settlements: { lockToken: string; settlement: CloudToDeviceSettlement }[] = [];
  /** Method responses received, by request id. */
  readonly methodResponses = new Map<string, { status: number; payload: unknown }>();
  /** Credentials handed over in place. */
  readonly updatedCredentials: TransportCredentials[] = [];
  /** Feature enables per connection number. */
  readonly enables: { connection: number; feature: Feature }[] = [];
  /** Transports made. */
  readonly transports: FakeTransport[] = [];
  /** Outcomes of the next attempts, consumed in order; then `defaultOutcome`. */
  readonly nextOutcomes: ConnectOutcome[] = [];
  defaultOutcome: ConnectOutcome = 'accept';
  /** Hold telemetry acks until `releaseAcks()`. */
  holdAcks = false;
  readonly heldAcks: HeldAck[] = [];
  /** Desired properties and reported properties, with versions. */
  desired: TwinObject = {};
  desiredVersion = 1;
  reported: TwinObject = {};
  reportedVersion = 1;
  /** Pending cloud-to-device messages (a persistent session keeps them while offline). */
  readonly cloudToDeviceQueue: IncomingCloudToDeviceMessage[] = [];
  getTwinCalls = 0;
  #lockCounter = 0;
  #requestCounter = 0;
  #heldConnects: (() => void)[] = [];
  readonly capabilities: TransportCapabilities;

  constructor(capabilities: TransportCapabilities = mqttLikeCapabilities) {
    this.capabilities = capabilities;
  }

  /** The factory to give createDeviceClient. */
  factory(): TransportFactory {
    return {
      name: 'fake',
      capabilities: this.capabilities,
      create: () => {
        const transport = new FakeTransport(this);
        this.transports.push(transport);
        return transport;
      },
    };
  }

  /** The transport (the client makes one). */
  get transport(): FakeTransport {
    const transport = this.transports[this.transports.length - 1];
    if (!transport) throw new Error('no transport yet');
    return transport;
  }

  /** Successful connections so far. */
  get connections(): number {
    return this.transport.connectionCount;
  }

  /** Drops the live connection as a network failure would. */
  dropConnection(error: HubError = new ConnectionError('network down')): void {
    this.transport.drop(error);
  }

  /** Lets held connection attempts proceed. */
  releaseConnects(): void {
    for (const release of this.#heldConnects.splice(0)) release();
  }

  /** @internal */
  holdConnect(release: () => void): void {
    this.#heldConnects.push(release);
  }

  /** Acknowledges held telemetry. */
  releaseAcks(): void {
    for (const ack of this.heldAcks.splice(0)) {
      this.telemetry.push(ack.message);
      ack.resolve();
    }
  }

  /** A service-side desired patch: bumps the version, notifies a subscribed connection. */
  patchDesired(patch: TwinObject): number {
    this.desired = applyTwinPatch(this.desired, patch);
    this.desiredVersion++;
    this.transport.notifyDesired({ ...patch, $version: this.desiredVersion }, this.desiredVersion);
    return this.desiredVersion;
  }

  /** Sends a cloud-to-device message (kept while the device is offline or unsubscribed). */
  sendCloudToDevice(body: string, properties: Record<string, string> = {}): string {
    const lockToken = `lock-${++this.#lockCounter}`;
    const message: IncomingCloudToDeviceMessage = {
      body: new TextEncoder().encode(body),
      properties,
      messageId: lockToken,
      lockToken,
    };
    if (!this.transport.deliverCloudToDevice(message)) this.cloudToDeviceQueue.push(message);
    return lockToken;
  }

  /** Invokes a direct method; resolves with the device's response. */
  invokeMethod(methodName: string, payload: unknown = null): Promise<{ status: number; payload: unknown }> {
    const requestId = `${++this.#requestCounter}`;
    this.transport.deliverMethod({ requestId, methodName, payload });
    return new Promise((resolve) => {
      const poll = (): void => {
        const response = this.methodResponses.get(requestId);
        if (response) resolve(response);
        else queueMicrotask(poll);
      };
      poll();
    });
  }
}

/** The fake transport: one connection at a time, as the spec says. */
export class FakeTransport implements Transport {
  readonly name = 'fake';
  readonly capabilities: TransportCapabilities;
  connectionCount = 0;
  #hub: FakeHub;
  #events: TransportEvents | undefined;
  #enabled = new Set<Feature>();
  #connected = false;

  constructor(hub: FakeHub) {
    this.#hub = hub;
    this.capabilities = hub.capabilities;
    if (hub.capabilities.credentialRenewal !== 'reconnect') {
      this.updateCredentials = async (credentials) => {
        this.#requireConnected();
        hub.updatedCredentials.push(credentials);
      };
    }
    if (hub.capabilities.telemetryBatch) {
      this.sendTelemetryBatch = async (messages, options) => {
        for (const message of messages) await this.sendTelemetry(message, options);
      };
    }
  }

  // Present only when the capabilities say so, as a real transport would be.
  declare updateCredentials?: NonNullable<Transport['updateCredentials']>;
  declare sendTelemetryBatch?: NonNullable<Transport['sendTelemetryBatch']>;

  get connected(): boolean {
    return this.#connected;
  }

  async connect(options: TransportConnectOptions, events: TransportEvents): Promise<void> {
    if (this.#connected) throw new ConnectionError('already connected (the manager must not connect twice)');
    const hub = this.#hub;
    hub.connectAttempts.push(options);
    const outcome = hub.nextOutcomes.shift() ?? hub.defaultOutcome;
    if (outcome === 'hold') {
      await new Promise<void>((resolve, reject) => {
        options.signal?.addEventListener('abort', () => reject(new AbortError()), { once: true });
        hub.holdConnect(resolve);
      });
    }
    options.signal?.throwIfAborted();
    if (outcome === 'refuse') throw new AuthenticationError('bad credentials');
    if (outcome === 'unreachable') throw new ConnectionError('hub unreachable');
    this.#connected = true;
    this.#events = events;
    this.#enabled.clear();
    this.connectionCount++;
  }

  async disconnect(): Promise<void> {
    this.#connected = false;
    this.#events = undefined;
    this.#enabled.clear();
    this.#failHeldAcks();
  }

  /** The network dropped: tells the manager once. */
  drop(error: HubError): void {
    if (!this.#connected) return;
    const events = this.#events;
    this.#connected = false;
    this.#events = undefined;
    this.#enabled.clear();
    this.#failHeldAcks();
    events?.disconnected(error);
  }

  #failHeldAcks(): void {
    for (const ack of this.#hub.heldAcks.splice(0)) ack.reject(new ConnectionError('connection lost'));
  }

  #requireConnected(): void {
    if (!this.#connected) throw new ConnectionError('not connected');
  }

  sendTelemetry(message: OutgoingMessage, options: OperationOptions = {}): Promise<void> {
    if (!this.#connected) return Promise.reject(new ConnectionError('not connected'));
    if (options.signal?.aborted) return Promise.reject(new AbortError());
    if (!this.#hub.holdAcks) {
      this.#hub.telemetry.push(message);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const ack: HeldAck = { message, resolve, reject };
      this.#hub.heldAcks.push(ack);
      options.signal?.addEventListener(
        'abort',
        () => {
          // The publish went out: the hub keeps it even though the caller stopped waiting.
          reject(new AbortError());
        },
        { once: true },
      );
    });
  }

  #enable(feature: Feature): void {
    this.#requireConnected();
    this.#enabled.add(feature);
    this.#hub.enables.push({ connection: this.connectionCount, feature });
  }

  async enableCloudToDevice(): Promise<void> {
    this.#enable('cloudToDevice');
    const queued = this.#hub.cloudToDeviceQueue.splice(0);
    for (const message of queued) this.deliverCloudToDevice(message);
  }

  async settleCloudToDevice(lockToken: string, settlement: CloudToDeviceSettlement): Promise<void> {
    if (!this.capabilities.cloudToDeviceSettlements.includes(settlement)) {
      throw new UnsupportedFeatureError(`cannot ${settlement}`);
    }
    this.#requireConnected();
    this.#hub.settlements.push({ lockToken, settlement });
  }

  /** Polling transports: the next pending message, if any. */
  async receiveCloudToDevice(): Promise<IncomingCloudToDeviceMessage | undefined> {
    this.#requireConnected();
    return this.#hub.cloudToDeviceQueue.shift();
  }

  async enableTwin(): Promise<void> {
    this.#enable('twin');
  }

  async getTwin(): Promise<TwinProperties> {
    this.#requireConnected();
    if (!this.#enabled.has('twin')) throw new ConnectionError('twin responses not subscribed');
    this.#hub.getTwinCalls++;
    return {
      desired: { ...this.#hub.desired, $version: this.#hub.desiredVersion },
      reported: { ...this.#hub.reported, $version: this.#hub.reportedVersion },
    };
  }

  async updateReportedProperties(patch: Readonly<Record<string, unknown>>): Promise<number> {
    this.#requireConnected();
    if (!this.#enabled.has('twin')) throw new ConnectionError('twin responses not subscribed');
    this.#hub.reported = applyTwinPatch(this.#hub.reported, patch as TwinObject);
    return ++this.#hub.reportedVersion;
  }

  async enableDirectMethods(): Promise<void> {
    this.#enable('directMethods');
  }

  async sendMethodResponse(requestId: string, status: number, payload: unknown): Promise<void> {
    this.#requireConnected();
    this.#hub.methodResponses.set(requestId, { status, payload });
  }

  /** @internal */
  deliverCloudToDevice(message: IncomingCloudToDeviceMessage): boolean {
    if (!this.#connected || !this.#enabled.has('cloudToDevice')) return false;
    this.#events?.cloudToDeviceMessage(message);
    return true;
  }

  /** @internal */
  notifyDesired(patch: Record<string, unknown>, version: number): void {
    if (this.#connected && this.#enabled.has('twin')) this.#events?.desiredPropertiesPatch(patch, version);
  }

  /** @internal */
  deliverMethod(request: { requestId: string; methodName: string; payload: unknown }): void {
    if (this.#connected && this.#enabled.has('directMethods')) this.#events?.methodRequest(request);
  }
}
