/**
 * The one connection manager every transport runs under. It owns all connection policy (ARCHITECTURE.md "The
 * device SDK"): connect on demand, reconnect with backoff and full jitter, renew SAS tokens before they expire,
 * queue telemetry while offline (bounded, optionally durable), re-enable features and re-read the twin after every
 * reconnect, and settle every operation exactly once.
 *
 * Lifecycle: `idle` -> `connecting` -> `connected` <-> (`renewing` | `reconnecting`) ... -> `closed`; `disconnected`
 * when the retry policy gave up (the next operation connects again, on demand).
 */
import { type Clock, sleep, systemClock } from './clock';
import {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  type HubError,
  ThrottledError,
  UnsupportedFeatureError,
} from './errors';
import { type DeviceClientEvents, TypedEmitter } from './events';
import type { Logger } from './logger';
import {
  type DurableQueue,
  defaultOfflineQueue,
  OfflineQueue,
  type OfflineQueueOptions,
  type QueueItem,
} from './offline-queue';
import { PendingOperation, toHubError } from './pending-operation';
import { exponentialBackoffWithJitter, type RetryPolicy } from './retry-policy';
import type {
  CredentialProvider,
  IncomingCloudToDeviceMessage,
  IncomingMethodRequest,
  OperationOptions,
  OutgoingMessage,
  Transport,
  TransportCapabilities,
  TransportCredentials,
  TransportEvents,
  TransportFactory,
} from './transport/transport';

/** Where the connection stands. */
export type ConnectionState =
  | 'idle'
  | 'connecting'
  | 'connected'
  | 'renewing'
  | 'reconnecting'
  | 'disconnected'
  | 'closed';

/**
 * A feature (twin, direct methods, cloud-to-device) as the connection manager sees it: its per-connection state is
 * set up again after every (re)connection, before operations resume.
 */
export interface ConnectionFeature {
  /**
   * Called after every successful `transport.connect` (first connect, reconnect, renewal), before waiting
   * operations run and before `connected` is emitted: re-enable subscriptions, re-read what may have been missed.
   * Throwing fails this connection attempt (the manager disconnects and retries).
   */
  onConnected(transport: Transport, signal: AbortSignal): Promise<void>;
  /** The connection is gone (lost, being renewed, or closed): per-connection state is void. */
  onDisconnected?(): void;
  /** The client is closing: end iterators, drop handlers. */
  onClose?(): void;
}

/** Receivers of what the hub pushes; set by the features. */
export interface IncomingHandlers {
  cloudToDeviceMessage(message: IncomingCloudToDeviceMessage): void;
  desiredPropertiesPatch(patch: Readonly<Record<string, unknown>>, version: number): void;
  methodRequest(request: IncomingMethodRequest): void;
}

/** Options of {@link ConnectionManager}. */
export interface ConnectionManagerOptions {
  readonly transport: TransportFactory;
  readonly credentialProvider: CredentialProvider;
  /** Extra trusted CA certificates (PEM). */
  readonly ca?: string;
  /** Passed to the transport. */
  readonly keepAliveSeconds?: number;
  /** Per connection attempt, passed to the transport. */
  readonly connectTimeoutMs?: number;
  /** Default: {@link exponentialBackoffWithJitter} with its defaults. */
  readonly retryPolicy?: RetryPolicy;
  readonly offlineQueue?: OfflineQueueOptions;
  /**
   * During a renewal by reconnect, how long to let in-flight operations finish before disconnecting (those still
   * running then fail with ConnectionError, and queued telemetry among them is re-sent). Default 10 000 ms.
   */
  readonly renewalDrainTimeoutMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/** The defaults of {@link ConnectionManagerOptions}. */
export const defaultConnectionManager = {
  renewalDrainTimeoutMs: 10_000,
  renewalMarginSeconds: 900,
  renewalRetryMs: 30_000,
} as const;

/** The error pending and later operations reject with once the client is closed. */
export function clientClosedError(): ConnectionError {
  return new ConnectionError('client closed', { retryable: false });
}

function overflowError(message: string): ThrottledError {
  return new ThrottledError(message, { code: 'ThrottleBacklogLimitExceeded' });
}

const noop = (): void => {};

// setTimeout takes a signed 32-bit delay; longer ones fire at once.
const maxTimerDelayMs = 0x7fffffff;

interface TelemetryItem extends QueueItem {
  readonly messages: readonly OutgoingMessage[];
  readonly batch: boolean;
  readonly op: PendingOperation<void>;
  durableKeys: Promise<readonly string[]> | undefined;
}

interface WaitingOperation {
  readonly op: PendingOperation<unknown>;
  readonly run: (transport: Transport, signal: AbortSignal) => Promise<unknown>;
}

/**
 * Owns one transport and all policy around it. Features and the client call it; applications normally do not
 * (it is exported for transports' tests and for @fieldhub/device).
 */
export class ConnectionManager {
  /** Lifecycle events (`connected`, `disconnected`, `reconnecting`, `error`). */
  readonly events: TypedEmitter<DeviceClientEvents>;
  readonly transport: Transport;
  readonly capabilities: TransportCapabilities;
  readonly credentialProvider: CredentialProvider;

  readonly #options: ConnectionManagerOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #retryPolicy: RetryPolicy;
  readonly #queue: OfflineQueue<TelemetryItem>;
  readonly #maxInFlight: number;
  readonly #durable: DurableQueue | undefined;
  readonly #features: ConnectionFeature[] = [];
  readonly #handlers: Partial<IncomingHandlers> = {};
  readonly #waiting: WaitingOperation[] = [];
  readonly #running = new Set<PendingOperation<unknown>>();
  readonly #lifecycle = new AbortController();

  #state: ConnectionState = 'idle';
  #generation = 0;
  #lostDuringConnect = false;
  #credentials: TransportCredentials | undefined;
  #telemetryInFlight = 0;
  #sequence = 0;
  #renewalTimer: unknown;
  #renewAt = 0;
  #closing: Promise<void> | undefined;

  /** @throws ArgumentError when the offline queue options are out of range. */
  constructor(options: ConnectionManagerOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? {};
    this.#retryPolicy = options.retryPolicy ?? exponentialBackoffWithJitter();
    this.credentialProvider = options.credentialProvider;
    this.transport = options.transport.create();
    this.capabilities = this.transport.capabilities;
    const queue = options.offlineQueue ?? {};
    const maxMessages = queue.maxMessages ?? defaultOfflineQueue.maxMessages;
    this.#maxInFlight = queue.maxInFlight ?? defaultOfflineQueue.maxInFlight;
    if (!Number.isInteger(maxMessages) || maxMessages < 1) {
      throw new ArgumentError('offlineQueue.maxMessages must be a positive integer', { field: 'maxMessages' });
    }
    if (!Number.isInteger(this.#maxInFlight) || this.#maxInFlight < 1) {
      throw new ArgumentError('offlineQueue.maxInFlight must be a positive integer', { field: 'maxInFlight' });
    }
    this.#queue = new OfflineQueue({ maxMessages, overflow: queue.overflow ?? defaultOfflineQueue.overflow });
    this.#durable = queue.durable;
    this.events = new TypedEmitter((error) => this.#logger.error?.('a lifecycle listener threw', { error }));
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Telemetry messages waiting in the offline queue (not counting those in flight). */
  get queuedMessages(): number {
    return this.#queue.weight;
  }

  /**
   * Increases with every connection: what arrived on one connection (a cloud-to-device lock token) is void on the
   * next.
   */
  get connectionId(): number {
    return this.#generation;
  }

  /** Aborts when the client closes. */
  get closedSignal(): AbortSignal {
    return this.#lifecycle.signal;
  }

  /** The clock timers run on. */
  get clock(): Clock {
    return this.#clock;
  }

  /** The logger (possibly one with no methods). */
  get logger(): Logger {
    return this.#logger;
  }

  /** The extra trusted CA certificates (PEM) given to the client, for requests made beside the transport. */
  get ca(): string | undefined {
    return this.#options.ca;
  }

  /** The retry policy, for operations that retry on their own (file uploads). */
  get retryPolicy(): RetryPolicy {
    return this.#retryPolicy;
  }

  /** Logs `error` and emits it as the `error` event (for failures no operation can report). */
  reportError(error: unknown, message: string): void {
    if (this.#state === 'closed') return;
    this.#reportError(toHubError(error), message);
  }

  /** The credentials of the current (or last) connection. */
  get credentials(): TransportCredentials | undefined {
    return this.#credentials;
  }

  /** Adds a feature; it takes part in every later connection (call `onConnected` yourself for the current one). */
  addFeature(feature: ConnectionFeature): void {
    this.#features.push(feature);
  }

  /** Sets receivers for what the hub pushes. */
  setIncomingHandlers(handlers: Partial<IncomingHandlers>): void {
    Object.assign(this.#handlers, handlers);
  }

  /**
   * The first connection, after loading what a durable queue kept from earlier runs. Retryable failures (the hub
   * is down or unreachable) are tried again under the retry policy, so a device started before its hub connects
   * once the hub comes up; refused credentials and bad options fail at once. Bound the wait with `signal` or a
   * retry policy that gives up.
   *
   * @throws AuthenticationError, ArgumentError (from the credential provider), AbortError, or the last
   * ConnectionError when the retry policy gave up.
   */
  async start(options: OperationOptions = {}): Promise<void> {
    if (this.#state !== 'idle') throw new ArgumentError('start() was called already', { field: 'state' });
    this.#state = 'connecting';
    const signal = linkSignals(this.#lifecycle.signal, options.signal);
    try {
      await this.#loadDurable();
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#connectOnce({ signal: signal.signal });
          break;
        } catch (error) {
          const failure = toHubError(error);
          if (signal.signal.aborted || !failure.isRetryable) throw failure;
          const delayMs = this.#retryPolicy.nextDelayMs(attempt, failure);
          if (delayMs === undefined) throw failure;
          this.#logger.warn?.('first connection attempt failed', { attempt, error: failure });
          this.events.emit('reconnecting', { attempt, delayMs, error: failure });
          await sleep(this.#clock, delayMs, signal.signal);
        }
      }
    } catch (error) {
      if (this.#state === 'connecting') this.#state = 'disconnected';
      throw options.signal?.aborted ? new AbortError() : toHubError(error);
    } finally {
      signal.dispose();
    }
    if (this.#state !== 'connecting') throw clientClosedError();
    this.#markConnected(true);
  }

  /**
   * Runs `run` on the transport once connected: now when connected, else after the (re)connection (connecting on
   * demand when the retry policy had given up). When the connection is lost under it (a retryable
   * ConnectionError while the transport is down), it runs again after the reconnect: use it for idempotent work.
   * Rejects when the caller aborts (AbortError), the client closes (`client closed`), the retry policy gives up
   * (its last error), or with what `run` throws otherwise.
   */
  whenConnected<T>(
    run: (transport: Transport, signal: AbortSignal) => Promise<T>,
    options: OperationOptions = {},
  ): Promise<T> {
    if (this.#state === 'closed') return Promise.reject(clientClosedError());
    const op = new PendingOperation<T>(options.signal);
    if (op.settled) return op.promise;
    if (this.#state === 'connected') {
      this.#execute(op, run, true);
    } else {
      const entry: WaitingOperation = { op: op as PendingOperation<unknown>, run };
      this.#waiting.push(entry);
      op.onAbort(() => removeFrom(this.#waiting, entry));
      this.#connectOnDemand();
    }
    return op.promise;
  }

  /**
   * Runs `run` on the transport only if a connection is open now (settling a cloud-to-device message and
   * answering a method request belong to the connection they arrived on).
   *
   * @throws ConnectionError when not connected or closed; whatever `run` throws.
   */
  ifConnected<T>(
    run: (transport: Transport, signal: AbortSignal) => Promise<T>,
    options: OperationOptions = {},
  ): Promise<T> {
    if (this.#state === 'closed') return Promise.reject(clientClosedError());
    if (!this.transport.connected) {
      return Promise.reject(new ConnectionError('not connected; the hub will deliver the request again'));
    }
    const op = new PendingOperation<T>(options.signal);
    if (!op.settled) this.#execute(op, run);
    return op.promise;
  }

  /**
   * Sends telemetry through the offline queue: resolves once the hub accepted every message (after a reconnect if
   * need be). A `batch` goes in one transport operation when the transport can, else message by message.
   *
   * @throws ThrottledError (code ThrottleBacklogLimitExceeded) when the queue is full (`'reject-new'`) or the
   * message was dropped for a newer one (`'drop-oldest'`); ConnectionError `client closed`; AbortError; what the
   * hub answered (ArgumentError for a message it refused, ThrottledError).
   */
  sendTelemetry(
    messages: readonly OutgoingMessage[],
    options: OperationOptions & { batch?: boolean } = {},
  ): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(clientClosedError());
    const op = new PendingOperation<void>(options.signal);
    if (op.settled) return op.promise;
    if (messages.length === 0) {
      op.resolve();
      return op.promise;
    }
    const item: TelemetryItem = {
      sequence: ++this.#sequence,
      weight: messages.length,
      messages,
      batch: options.batch === true,
      op,
      durableKeys: undefined,
    };
    const result = this.#queue.push(item);
    if (!result.accepted) {
      op.reject(overflowError(`offline queue full (${this.#queue.maxMessages} messages): message refused`));
      return op.promise;
    }
    for (const dropped of result.dropped) {
      dropped.op.reject(overflowError('offline queue full: the oldest message was dropped for a newer one'));
      this.#forgetDurable(dropped);
    }
    if (this.#durable) {
      const durable = this.#durable;
      item.durableKeys = Promise.all(messages.map((message) => durable.append(message))).catch((error: unknown) => {
        this.#reportError(toHubError(error), 'the durable queue failed to store a message');
        return [];
      });
    }
    op.onAbort(() => {
      this.#queue.remove(item);
      this.#forgetDurable(item);
    });
    this.#connectOnDemand();
    this.#pump();
    return op.promise;
  }

  /**
   * Closes the connection and settles everything: queued and waiting operations and those in flight reject with
   * ConnectionError `client closed` (isRetryable false); timers stop; iterators end. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closed';
    this.#lifecycle.abort(clientClosedError());
    this.#clearRenewal();
    const error = clientClosedError();
    for (const entry of this.#waiting.splice(0)) entry.op.reject(error);
    // Durable entries stay stored: a later run sends them.
    for (const item of this.#queue.drain()) item.op.reject(error);
    for (const op of [...this.#running]) op.reject(error);
    for (const feature of this.#features) {
      feature.onDisconnected?.();
      feature.onClose?.();
    }
    try {
      await this.transport.disconnect();
    } catch (disconnectError) {
      this.#logger.debug?.('transport disconnect failed while closing', { error: disconnectError });
    }
  }

  // --- connecting ----------------------------------------------------------------------------------------------

  async #connectOnce(options: {
    signal: AbortSignal;
    credentials?: TransportCredentials;
    refresh?: boolean;
  }): Promise<void> {
    const credentials =
      options.credentials ??
      (await this.credentialProvider.getCredentials({
        signal: options.signal,
        ...(options.refresh ? { refresh: true } : {}),
      }));
    options.signal.throwIfAborted();
    const generation = ++this.#generation;
    this.#lostDuringConnect = false;
    await this.transport.connect(
      {
        credentials,
        signal: options.signal,
        ...(this.#options.ca !== undefined ? { ca: this.#options.ca } : {}),
        ...(this.#options.keepAliveSeconds !== undefined ? { keepAliveSeconds: this.#options.keepAliveSeconds } : {}),
        ...(this.#options.connectTimeoutMs !== undefined ? { timeoutMs: this.#options.connectTimeoutMs } : {}),
      },
      this.#transportEvents(generation),
    );
    this.#credentials = credentials;
    try {
      options.signal.throwIfAborted();
      for (const feature of this.#features) {
        await feature.onConnected(this.transport, options.signal);
        if (this.#lostDuringConnect) break;
      }
      if (this.#lostDuringConnect) throw new ConnectionError('connection lost while re-enabling features');
      options.signal.throwIfAborted();
    } catch (error) {
      this.#generation++;
      for (const feature of this.#features) feature.onDisconnected?.();
      await this.transport.disconnect().catch(noop);
      throw error;
    }
  }

  #markConnected(emit: boolean): void {
    this.#state = 'connected';
    if (this.#credentials) this.#scheduleRenewal(this.#credentials);
    for (const entry of this.#waiting.splice(0)) {
      if (!entry.op.settled) this.#execute(entry.op, entry.run, true);
    }
    this.#pump();
    if (emit) this.events.emit('connected');
  }

  #transportEvents(generation: number): TransportEvents {
    const current = (): boolean => generation === this.#generation && this.#state !== 'closed';
    return {
      cloudToDeviceMessage: (message) => {
        if (current()) this.#handlers.cloudToDeviceMessage?.(message);
      },
      desiredPropertiesPatch: (patch, version) => {
        if (current()) this.#handlers.desiredPropertiesPatch?.(patch, version);
      },
      methodRequest: (request) => {
        if (current()) this.#handlers.methodRequest?.(request);
      },
      disconnected: (error) => {
        if (!current()) return;
        if (this.#state === 'connected') this.#connectionLost(error);
        else this.#lostDuringConnect = true;
      },
    };
  }

  #connectionLost(error: HubError | undefined): void {
    this.#logger.info?.('connection lost', { error });
    this.#state = 'reconnecting';
    this.#clearRenewal();
    for (const feature of this.#features) feature.onDisconnected?.();
    this.events.emit('disconnected', error);
    void this.#reconnect(error, false);
  }

  #connectOnDemand(): void {
    if (this.#state !== 'disconnected') return;
    this.#state = 'reconnecting';
    void this.#reconnect(undefined, true);
  }

  async #reconnect(firstError: HubError | undefined, immediately: boolean): Promise<void> {
    const signal = this.#lifecycle.signal;
    let lastError = firstError;
    // A connection lost to refused credentials (an HTTPS request answered 401, a token the hub stopped accepting)
    // reconnects with a fresh token: for 'perRequest' transports connect() itself checks no credentials.
    let refresh = firstError instanceof AuthenticationError;
    for (let attempt = 1; !signal.aborted; attempt++) {
      const onDemand = immediately && attempt === 1;
      const delayMs = onDemand ? 0 : this.#retryPolicy.nextDelayMs(attempt, lastError);
      if (delayMs === undefined) {
        this.#giveUp(lastError);
        return;
      }
      this.events.emit('reconnecting', { attempt, delayMs, ...(lastError ? { error: lastError } : {}) });
      try {
        // Even a zero delay goes through the timer (no tight loop); only an on-demand first attempt does not wait.
        if (!onDemand) await sleep(this.#clock, delayMs, signal);
        await this.#connectOnce({ signal, refresh });
      } catch (error) {
        if (signal.aborted) return;
        lastError = toHubError(error);
        refresh = lastError instanceof AuthenticationError;
        this.#logger.warn?.('reconnection attempt failed', { attempt, error: lastError });
        // Refused credentials are worth telling the application: nothing else will (operations just wait).
        if (refresh) this.events.emit('error', lastError);
        continue;
      }
      this.#markConnected(true);
      return;
    }
  }

  #giveUp(error: HubError | undefined): void {
    this.#state = 'disconnected';
    const reason = error ?? new ConnectionError('the retry policy gave up reconnecting');
    this.#logger.error?.('gave up reconnecting', { error: reason });
    for (const entry of this.#waiting.splice(0)) entry.op.reject(reason);
    for (const item of this.#queue.drain()) {
      item.op.reject(reason);
      this.#forgetDurable(item);
    }
    this.events.emit('error', reason);
  }

  // --- operations ----------------------------------------------------------------------------------------------

  // `again`: run it again after the reconnect when the connection is lost under it (idempotent operations).
  #execute<T>(
    op: PendingOperation<T>,
    run: (transport: Transport, signal: AbortSignal) => Promise<T>,
    again = false,
  ): void {
    const tracked = op as PendingOperation<unknown>;
    this.#running.add(tracked);
    let started: Promise<T>;
    try {
      started = run(this.transport, op.signal);
    } catch (error) {
      started = Promise.reject(error);
    }
    started.then(
      (value) => op.resolve(value),
      (error: unknown) => {
        if (op.settled) return;
        const hubError = toHubError(error);
        const lost = hubError instanceof ConnectionError && hubError.isRetryable && !this.transport.connected;
        if (again && lost && this.#state !== 'closed' && this.#state !== 'disconnected') {
          this.#running.delete(tracked);
          const entry: WaitingOperation = { op: tracked, run };
          this.#waiting.push(entry);
          op.onAbort(() => removeFrom(this.#waiting, entry));
          return;
        }
        op.reject(hubError);
      },
    );
    op.promise.then(
      () => this.#running.delete(tracked),
      () => this.#running.delete(tracked),
    );
  }

  #pump(): void {
    while (
      this.#state === 'connected' &&
      this.transport.connected &&
      this.#telemetryInFlight < this.#maxInFlight &&
      this.#queue.length > 0
    ) {
      const item = this.#queue.shift() as TelemetryItem;
      if (!item.op.settled) this.#sendItem(item);
    }
  }

  #sendItem(item: TelemetryItem): void {
    this.#telemetryInFlight++;
    const op = item.op as PendingOperation<unknown>;
    this.#running.add(op);
    const transport = this.transport;
    const signal = item.op.signal;
    const send = async (): Promise<void> => {
      if (item.messages.length > 1 && this.capabilities.telemetryBatch && transport.sendTelemetryBatch) {
        await transport.sendTelemetryBatch(item.messages, { signal });
      } else {
        await Promise.all(item.messages.map((message) => transport.sendTelemetry(message, { signal })));
      }
    };
    send().then(
      () => {
        this.#running.delete(op);
        this.#telemetryInFlight--;
        if (item.op.resolve()) this.#forgetDurable(item);
        this.#pump();
      },
      (error: unknown) => {
        this.#running.delete(op);
        this.#telemetryInFlight--;
        if (!item.op.settled) {
          const hubError = toHubError(error);
          // Lost with the connection: back to its place in the queue, sent again after the reconnect (at least
          // once: the hub may have it already).
          const lost = hubError instanceof ConnectionError && hubError.isRetryable && !transport.connected;
          if (lost && this.#state !== 'disconnected') {
            this.#queue.requeue(item);
          } else {
            item.op.reject(hubError);
            this.#forgetDurable(item);
          }
        }
        this.#pump();
      },
    );
  }

  // --- durable queue -------------------------------------------------------------------------------------------

  async #loadDurable(): Promise<void> {
    if (!this.#durable) return;
    const entries = await this.#durable.load();
    for (const entry of entries) {
      // Nobody awaits these: they belong to an earlier run.
      const op = new PendingOperation<void>();
      op.promise.catch(noop);
      this.#queue.requeue({
        sequence: ++this.#sequence,
        weight: 1,
        messages: [entry.message],
        batch: false,
        op,
        durableKeys: Promise.resolve([entry.key]),
      });
    }
  }

  #forgetDurable(item: TelemetryItem): void {
    const durable = this.#durable;
    const keys = item.durableKeys;
    if (!durable || !keys) return;
    item.durableKeys = undefined;
    keys
      .then((list) => Promise.all(list.map((key) => durable.remove(key))))
      .catch((error: unknown) => this.#reportError(toHubError(error), 'the durable queue failed to remove a message'));
  }

  // --- SAS renewal ---------------------------------------------------------------------------------------------

  #scheduleRenewal(credentials: TransportCredentials): void {
    this.#clearRenewal();
    const expiresAt = credentials.sasTokenExpiresAt;
    if (expiresAt === undefined) return;
    const marginMs =
      (this.credentialProvider.renewalMarginSeconds ?? defaultConnectionManager.renewalMarginSeconds) * 1000;
    const remaining = expiresAt - this.#clock.now();
    // Half the remaining life at least, so that a token shorter than the margin does not renew in a loop.
    this.#renewAt = this.#clock.now() + Math.max(remaining - marginMs, remaining / 2, 0);
    this.#armRenewalTimer();
  }

  #armRenewalTimer(): void {
    const delay = Math.min(Math.max(this.#renewAt - this.#clock.now(), 0), maxTimerDelayMs);
    this.#renewalTimer = this.#clock.setTimeout(() => {
      this.#renewalTimer = undefined;
      if (this.#clock.now() < this.#renewAt) this.#armRenewalTimer();
      else void this.#renew();
    }, delay);
  }

  #clearRenewal(): void {
    if (this.#renewalTimer !== undefined) this.#clock.clearTimeout(this.#renewalTimer);
    this.#renewalTimer = undefined;
  }

  async #renew(): Promise<void> {
    if (this.#state !== 'connected') return;
    const signal = this.#lifecycle.signal;
    let credentials: TransportCredentials;
    try {
      credentials = await this.credentialProvider.getCredentials({ signal });
    } catch (error) {
      if (this.#state !== 'connected') return;
      this.#reportError(toHubError(error), 'could not get a new SAS token; trying again later');
      this.#renewAt = this.#clock.now() + defaultConnectionManager.renewalRetryMs;
      this.#armRenewalTimer();
      return;
    }
    if (this.#state !== 'connected') return;
    if (credentials.sasToken === this.#credentials?.sasToken) {
      this.#logger.warn?.('the SAS token cannot be renewed; the hub will close the connection when it expires');
      return;
    }
    const mode = this.capabilities.credentialRenewal;
    if (mode !== 'reconnect' && this.transport.updateCredentials) {
      try {
        await this.transport.updateCredentials(credentials, { signal });
        this.#credentials = credentials;
        if (this.#state === 'connected') this.#scheduleRenewal(credentials);
        return;
      } catch (error) {
        if (this.#state !== 'connected') return;
        this.#logger.warn?.('renewing credentials in place failed; reconnecting instead', { error });
      }
    }
    await this.#renewByReconnect(credentials);
  }

  async #renewByReconnect(credentials: TransportCredentials): Promise<void> {
    this.#state = 'renewing';
    this.#logger.debug?.('renewing the SAS token by reconnecting');
    const signal = this.#lifecycle.signal;
    // New operations wait (telemetry in the queue, the rest in #waiting); those in flight may finish first.
    const drained = Promise.allSettled([...this.#running].map((op) => op.promise));
    const timeout = linkSignals(signal);
    const drainTimeoutMs = this.#options.renewalDrainTimeoutMs ?? defaultConnectionManager.renewalDrainTimeoutMs;
    await Promise.race([drained, sleep(this.#clock, drainTimeoutMs, timeout.signal)]).catch(noop);
    // Stops the drain timer when the operations finished first.
    timeout.abort();
    if (this.#state !== 'renewing') return;
    this.#generation++;
    for (const feature of this.#features) feature.onDisconnected?.();
    await this.transport.disconnect().catch(noop);
    try {
      await this.#connectOnce({ signal, credentials });
    } catch (error) {
      if (signal.aborted || this.#state !== 'renewing') return;
      const hubError = toHubError(error);
      this.#state = 'reconnecting';
      this.events.emit('disconnected', hubError);
      void this.#reconnect(hubError, false);
      return;
    }
    if (this.#state === 'renewing') this.#markConnected(false);
  }

  #reportError(error: HubError, message: string): void {
    this.#logger.error?.(message, { error });
    this.events.emit('error', error);
  }

  /** Throws UnsupportedFeatureError unless `supported`. @internal */
  requireCapability(supported: boolean, what: string): void {
    if (!supported) throw new UnsupportedFeatureError(`the ${this.transport.name} transport does not support ${what}`);
  }
}

function removeFrom<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}

/** An AbortSignal that aborts when any of `signals` does; `dispose()` detaches it. @internal */
export function linkSignals(...signals: (AbortSignal | undefined)[]): {
  signal: AbortSignal;
  dispose(): void;
  abort(): void;
} {
  const controller = new AbortController();
  const listeners: (() => void)[] = [];
  for (const signal of signals) {
    if (!signal) continue;
    if (signal.aborted) {
      controller.abort(signal.reason);
      break;
    }
    const onAbort = (): void => controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    listeners.push(() => signal.removeEventListener('abort', onAbort));
  }
  return {
    signal: controller.signal,
    dispose: () => {
      for (const remove of listeners) remove();
    },
    abort: () => {
      for (const remove of listeners) remove();
      controller.abort();
    },
  };
}
