/**
 * The AMQP plumbing under cloud-to-device send, feedback and telemetry reading (protocol-service.md §3.1, §4.2):
 * one `rhea-promise` connection per host, opened on first use, over TLS (`{host}:{amqpPort}`, 5671 by default) or
 * over WebSockets (`wss://{host}:{httpsPort}/$iothub/websocket`, subprotocol `AMQPWSB10`). Like azure-iothub it
 * sends no SASL layer and authorizes with CBS `put-token` on `$cbs` (a service SAS token), renewed before expiry on
 * the same links. A dropped connection is forgotten; the next operation dials a new one (the features decide what
 * to retry). Internal: not exported from the package.
 *
 * The Event Hubs-compatible endpoint is reached through {@link AmqpClient.eventHubs}: Fieldhub serves it on its own
 * host; Azure IoT Hub answers the first attach with `amqp:link:redirect` to an Event Hubs namespace (§4.1), which
 * this client follows with a second connection and per-link CBS tokens, as the Event Hubs clients do.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { createSasToken } from '@fieldhub/auth';
import {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  HubError,
  type ServiceConnectionString,
  TimeoutError,
} from '@fieldhub/protocol';
import {
  type AwaitableSender,
  Connection,
  ConnectionEvents,
  type ConnectionOptions,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  ReceiverEvents,
  type ReceiverOptions,
  SenderEvents,
  type Session,
} from 'rhea-promise';
import { Agent, WebSocket as UndiciWebSocket } from 'undici';
import { type AmqpErrorContext, errorFromAmqp } from './amqp-error';
import { idKey } from './amqp-message';
import { closedError, splitHost, userAgent } from './http-client';

/** Settings of the AMQP client, resolved from the service client's options. */
export interface AmqpClientSettings {
  readonly connectionString: ServiceConnectionString;
  readonly ca: string | Buffer | readonly (string | Buffer)[] | undefined;
  /** The AMQP-over-TLS port (5671 unless configured). */
  readonly amqpPort: number;
  /** The HTTPS port, where AMQP over WebSockets is served. */
  readonly httpsPort: number;
  readonly webSockets: boolean;
  readonly tokenTtlSeconds: number;
  readonly timeoutMs: number;
  /** Aborts when the service client closes. */
  readonly closedSignal: AbortSignal;
}

/** Where one connection goes and how its links are authorized. */
interface EndpointTarget {
  /** Host name without port (TLS server name, AMQP open `hostname`). */
  readonly host: string;
  readonly port: number;
  /** The WebSocket URL when WebSockets are in use. */
  readonly webSocketUrl: string | undefined;
  /** The CBS audience (`name`) covering a link address. */
  audience(address: string): string;
  /** Signs a token for an audience; undefined when the connection string carries a ready-made token. */
  sign(audience: string): Promise<string>;
  /** The token's lifetime in seconds (renewal is scheduled from it); undefined for a ready-made token. */
  readonly ttlSeconds: number | undefined;
}

// Every link attach names the client, as azure-iothub does (`azure-iothub/1.16.6`, captures/service-amqp.txt).
const linkProperties = { 'com.microsoft:client-version': userAgent };

// Renew once less than a quarter of the lifetime (at most 5 min) is left, as the HTTPS client does.
const renewMarginSeconds = (ttl: number) => Math.min(ttl / 4, 300);

/**
 * A receiver whose messages wait in a queue until pulled (the owner bounds it with link credit); fails with a
 * HubError when the link or connection goes.
 */
export class ReceiverQueue {
  private readonly items: EventContext[] = [];
  private failure: HubError | undefined;
  private readonly waiters = new Set<() => void>();

  /** @internal */
  constructor(
    readonly receiver: Receiver,
    private readonly errorContext: AmqpErrorContext,
  ) {}

  /** Called by the link's handlers. */
  push(context: EventContext): void {
    this.items.push(context);
    this.notify();
  }

  /** Marks the queue failed (link detached, connection lost); pulls reject once the buffered items are taken. */
  fail(error: HubError): void {
    this.failure ??= error;
    this.notify();
  }

  /** Fails from the link's own error, if it has one. */
  failFromLink(fallback: string): void {
    const remote = this.receiver.error;
    this.fail(
      remote && typeof remote === 'object' && 'condition' in remote
        ? errorFromAmqp(remote, this.errorContext)
        : new ConnectionError(fallback, { cause: remote }),
    );
  }

  /** Messages buffered, not yet pulled. */
  get buffered(): number {
    return this.items.length;
  }

  /** The oldest buffered message, left in place. */
  peek(): EventContext | undefined {
    return this.items[0];
  }

  /** Takes the oldest buffered message, or throws the failure when none is buffered and the link failed. */
  take(): EventContext | undefined {
    const item = this.items.shift();
    if (item) return item;
    if (this.failure) throw this.failure;
    return undefined;
  }

  /** Whether the queue failed (buffered items may remain). */
  get failed(): HubError | undefined {
    return this.failure;
  }

  /** Resolves on the next push or failure, or when `signal` aborts. */
  changed(signal: AbortSignal): Promise<void> {
    if (this.items.length > 0 || this.failure || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * The next message (waiting for it), or rejects with the link's failure, or AbortError when `signal` aborts.
   */
  async next(signal: AbortSignal): Promise<EventContext> {
    for (;;) {
      const item = this.take();
      if (item) return item;
      if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason });
      await this.changed(signal);
    }
  }

  /** Detaches the link (best effort, bounded). */
  async close(): Promise<void> {
    this.fail(new AbortError('The receiver is closed'));
    await closeQuietly(() => this.receiver.close({ closeSession: true }));
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** One live connection with its CBS links and the token renewals it keeps. */
interface Generation {
  readonly connection: Connection;
  readonly lost: AbortController;
  cbs: Promise<RequestLink> | undefined;
  readonly tokens: Map<string, { ready: Promise<void>; timer: NodeJS.Timeout | undefined }>;
  readonly senders: Map<string, Promise<AwaitableSender>>;
  readonly requestLinks: Map<string, Promise<RequestLink>>;
}

/** An AMQP connection to one host (the IoT hub, or an Event Hubs namespace it redirected to). */
export class AmqpEndpoint {
  private generation: Generation | undefined;
  private opening: Promise<Generation> | undefined;
  private readonly receivers = new Set<ReceiverQueue>();

  /** @internal */
  constructor(
    private readonly settings: AmqpClientSettings,
    readonly target: EndpointTarget,
  ) {}

  /**
   * Opens (or reuses) a sender to `address`, authorized with CBS.
   * @throws HubError from the hub; ConnectionError when it cannot be reached; AbortError.
   */
  async sender(address: string, signal: AbortSignal | undefined): Promise<AwaitableSender> {
    const generation = await this.open(signal);
    let sender = generation.senders.get(address);
    if (!sender) {
      // Shared by every caller: not bound to this caller's signal (each caller races its own below).
      sender = (async () => {
        await this.authorize(generation, address, undefined);
        const link = await withSignal(
          generation.connection.createAwaitableSender({
            target: { address },
            name: `fieldhub-sender-${randomUUID()}`,
            properties: linkProperties,
          }),
          undefined,
          this.settings,
        );
        const forget = () => {
          if (generation.senders.get(address) === sender) generation.senders.delete(address);
        };
        link.on(SenderEvents.senderClose, forget);
        link.on(SenderEvents.senderError, forget);
        return link;
      })();
      generation.senders.set(address, sender);
      sender.catch(() => {
        if (generation.senders.get(address) === sender) generation.senders.delete(address);
      });
    }
    const link = await mapAttach(withSignal(sender, signal, this.settings), {});
    if (link.isOpen()) return link;
    // Detached without telling (its session ended): attach a new one.
    if (generation.senders.get(address) === sender) generation.senders.delete(address);
    return this.sender(address, signal);
  }

  /**
   * Attaches a receiver whose messages are queued until pulled. `credit` is the initial credit; the caller adds
   * more (`receiver.addCredit`) as it consumes (pull-based flow control).
   * @throws HubError from the hub (mapped with `errorContext`); ConnectionError; AbortError.
   */
  async receiver(
    options: ReceiverOptions & { source: { address: string } },
    errorContext: AmqpErrorContext,
    signal: AbortSignal | undefined,
  ): Promise<ReceiverQueue> {
    const generation = await this.open(signal);
    await this.authorize(generation, options.source.address, signal);
    let queue: ReceiverQueue | undefined;
    const pending: EventContext[] = [];
    const attach = generation.connection.createReceiver({
      name: `fieldhub-receiver-${randomUUID()}`,
      credit_window: 0,
      autoaccept: false,
      properties: linkProperties,
      ...options,
      onMessage: (context) => {
        if (queue) queue.push(context);
        else pending.push(context);
      },
      onError: () => queue?.failFromLink('The receiver link failed'),
      onClose: () => queue?.failFromLink('The hub detached the receiver link'),
      onSessionError: () => queue?.failFromLink('The receiver session failed'),
      onSessionClose: () => queue?.failFromLink('The hub ended the receiver session'),
    });
    let receiver: Receiver;
    try {
      receiver = await mapAttach(withSignal(attach, signal, this.settings), errorContext);
    } catch (error) {
      // Aborted while attaching: the link may still open; detach it then.
      attach.then(
        (opened) => closeQuietly(() => opened.close({ closeSession: true })),
        () => undefined,
      );
      throw error;
    }
    queue = new ReceiverQueue(receiver, errorContext);
    for (const context of pending) queue.push(context);
    const created = queue;
    this.receivers.add(created);
    const onLost = () => created.fail(new ConnectionError('The AMQP connection to the hub was lost'));
    generation.lost.signal.addEventListener('abort', onLost, { once: true });
    receiver.once(ReceiverEvents.receiverClose, () => {
      this.receivers.delete(created);
      generation.lost.signal.removeEventListener('abort', onLost);
    });
    return created;
  }

  /**
   * A request/response exchange on `address` (e.g. `$management`): sends `message` with a fresh `message_id` and
   * the link's `reply_to`, resolves with the answer whose `correlation_id` matches.
   * @throws HubError from the hub; TimeoutError after `timeoutMs`; ConnectionError; AbortError.
   */
  async request(address: string, message: Message, signal: AbortSignal | undefined): Promise<Message> {
    const generation = await this.open(signal);
    let link = generation.requestLinks.get(address);
    if (link && !(await isOpenLink(link))) {
      // Its links were detached (the connection lives on): attach new ones.
      if (generation.requestLinks.get(address) === link) generation.requestLinks.delete(address);
      link = generation.requestLinks.get(address);
    }
    if (!link) {
      // Shared by every caller, like senders.
      link = (async () => {
        await this.authorize(generation, address, undefined);
        return openRequestLink(generation.connection, address, this.settings, undefined);
      })();
      generation.requestLinks.set(address, link);
      link.catch(() => generation.requestLinks.delete(address));
    }
    return (await mapAttach(withSignal(link, signal, this.settings), {})).call(
      message,
      signal,
      this.settings.timeoutMs,
    );
  }

  /** Signs a token for a link address (for `security_token` in management requests). */
  async tokenFor(address: string): Promise<string> {
    return this.target.sign(this.target.audience(address));
  }

  /** Closes the connection and every receiver. Idempotent. */
  async close(): Promise<void> {
    for (const queue of [...this.receivers]) queue.fail(closedError());
    this.receivers.clear();
    const generation = this.generation ?? (await this.opening?.catch(() => undefined));
    this.generation = undefined;
    this.opening = undefined;
    if (!generation) return;
    this.forget(generation);
    await closeQuietly(() => generation.connection.close());
    destroySocket(generation.connection);
  }

  private async open(signal: AbortSignal | undefined): Promise<Generation> {
    if (this.settings.closedSignal.aborted) throw closedError();
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
    const current = this.generation;
    if (current && !current.lost.signal.aborted && current.connection.isOpen()) return current;
    this.opening ??= this.dial().finally(() => {
      this.opening = undefined;
    });
    return withSignal(this.opening, signal, this.settings);
  }

  private async dial(): Promise<Generation> {
    const { target, settings } = this;
    const ca = settings.ca === undefined ? undefined : Array.isArray(settings.ca) ? [...settings.ca] : settings.ca;
    const options: ConnectionOptions = {
      host: target.host,
      hostname: target.host,
      port: target.port,
      reconnect: false,
      container_id: randomUUID(),
      operationTimeoutInSeconds: Math.max(1, Math.ceil(settings.timeoutMs / 1000)),
      // No idle timeout of our own (as azure-iothub): rhea still sends empty frames at half the hub's, and a local
      // one would leave rhea's input timer armed after the close, holding the process open for twice its length.
    };
    if (target.webSocketUrl !== undefined) {
      options.webSocketOptions = {
        webSocket: webSocketClass(target.host, ca as string | Buffer | (string | Buffer)[] | undefined),
        url: target.webSocketUrl,
        protocol: ['AMQPWSB10'],
      };
    } else {
      Object.assign(options, {
        transport: 'tls',
        ...(ca === undefined ? {} : { ca }),
        // SNI must be a name, never an IP.
        ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
      });
    }
    const connection = new Connection(options);
    const lost = new AbortController();
    const generation: Generation = {
      connection,
      lost,
      cbs: undefined,
      tokens: new Map(),
      senders: new Map(),
      requestLinks: new Map(),
    };
    const onLost = () => {
      if (lost.signal.aborted) return;
      lost.abort(new ConnectionError('The AMQP connection to the hub was lost'));
      this.forget(generation);
      if (this.generation === generation) this.generation = undefined;
    };
    connection.on(ConnectionEvents.disconnected, onLost);
    connection.on(ConnectionEvents.connectionClose, onLost);
    connection.on(ConnectionEvents.connectionError, onLost);
    try {
      await connection.open({ abortSignal: settings.closedSignal });
    } catch (error) {
      onLost();
      destroySocket(connection);
      throw mapConnectError(error, target, settings);
    }
    if (settings.closedSignal.aborted) {
      await closeQuietly(() => connection.close());
      throw closedError();
    }
    this.generation = generation;
    return generation;
  }

  private forget(generation: Generation): void {
    for (const token of generation.tokens.values()) clearTimeout(token.timer);
    generation.tokens.clear();
  }

  // CBS put-token for the audience covering `address`, once per connection and audience; renewed on a timer.
  private async authorize(generation: Generation, address: string, signal: AbortSignal | undefined): Promise<void> {
    const audience = this.target.audience(address);
    let token = generation.tokens.get(audience);
    if (!token) {
      const entry: { ready: Promise<void>; timer: NodeJS.Timeout | undefined } = {
        ready: this.putToken(generation, audience, undefined),
        timer: undefined,
      };
      token = entry;
      generation.tokens.set(audience, entry);
      entry.ready.then(
        () => this.scheduleRenewal(generation, audience, entry),
        () => {
          if (generation.tokens.get(audience) === entry) generation.tokens.delete(audience);
        },
      );
    }
    await withSignal(token.ready, signal, this.settings);
  }

  private scheduleRenewal(
    generation: Generation,
    audience: string,
    entry: { ready: Promise<void>; timer: NodeJS.Timeout | undefined },
  ): void {
    const ttl = this.target.ttlSeconds;
    if (ttl === undefined || generation.lost.signal.aborted) return;
    entry.timer = setTimeout(
      () => {
        // A failed renewal is retried by the next operation (the entry is dropped); links the old token covered
        // are detached by the hub when it expires, and the features reattach them.
        this.putToken(generation, audience, undefined).then(
          () => this.scheduleRenewal(generation, audience, entry),
          () => {
            if (generation.tokens.get(audience) === entry) generation.tokens.delete(audience);
          },
        );
      },
      (ttl - renewMarginSeconds(ttl)) * 1000,
    );
    entry.timer.unref();
  }

  private async putToken(generation: Generation, audience: string, signal: AbortSignal | undefined): Promise<void> {
    const previous = generation.cbs;
    if (previous && !(await isOpenLink(previous))) {
      // The $cbs links were detached (or never opened): attach new ones for this and later renewals.
      if (generation.cbs === previous) generation.cbs = undefined;
    }
    generation.cbs ??= openRequestLink(generation.connection, '$cbs', this.settings, signal, 'cbs');
    const cbs = await mapAttach(generation.cbs, {});
    const token = await this.target.sign(audience);
    await cbs.call(
      {
        to: '$cbs',
        body: token,
        application_properties: {
          operation: 'put-token',
          type: 'servicebus.windows.net:sastoken',
          name: audience,
        },
      },
      signal,
      this.settings.timeoutMs,
    );
  }
}

/** The service client's AMQP side: the IoT hub connection, and the Event Hubs-compatible endpoint. */
export class AmqpClient {
  /** The IoT hub host (`/messages/devicebound`, feedback, and Fieldhub's built-in endpoint). */
  readonly hub: AmqpEndpoint;
  /** The host name from the connection string, with its port when it has one. */
  readonly hostName: string;
  /** The hub name: the first label of the host name (Fieldhub's default entity path). */
  readonly hubName: string;
  private readonly redirected = new Map<string, AmqpEndpoint>();

  constructor(readonly settings: AmqpClientSettings) {
    const { hostName } = settings.connectionString;
    this.hostName = hostName;
    const { host } = splitHost(hostName);
    this.hubName = host.split('.')[0] ?? host;
    const webSocketUrl = settings.webSockets
      ? `wss://${bracket(host)}:${settings.httpsPort}/$iothub/websocket`
      : undefined;
    this.hub = new AmqpEndpoint(settings, {
      host,
      port: settings.amqpPort,
      webSocketUrl,
      // azure-iothub's audience: the host name as in the connection string, port included (§1.3, §3.1).
      // With a ready-made token, its own `sr` (the hub checks the token against the audience it is put for).
      audience: () => tokenResource(readyMadeToken(settings.connectionString)) ?? hostName,
      sign: (audience) => this.sign(audience, false),
      ttlSeconds: readyMadeToken(settings.connectionString) ? undefined : settings.tokenTtlSeconds,
    });
  }

  /**
   * The endpoint an `amqp:link:redirect` points at (Azure's Event Hubs namespace behind the built-in endpoint),
   * one connection per host. Tokens are scoped to each link (`sb://{host}/{address}`), as Event Hubs clients do.
   * @throws AuthenticationError when the connection string carries a ready-made token (it cannot be re-scoped).
   */
  redirect(host: string, port: number): AmqpEndpoint {
    if (readyMadeToken(this.settings.connectionString)) {
      throw new AuthenticationError(
        'The hub redirected to an Event Hubs namespace; a SharedAccessSignature connection string cannot sign tokens for it',
      );
    }
    const key = `${host}:${port}`;
    let endpoint = this.redirected.get(key);
    if (!endpoint) {
      endpoint = new AmqpEndpoint(this.settings, {
        host,
        port,
        webSocketUrl: this.settings.webSockets ? `wss://${bracket(host)}:443/$servicebus/websocket` : undefined,
        audience: (address) => `sb://${host}/${address.replace(/^\//, '')}`,
        sign: (audience) => this.sign(audience, true),
        ttlSeconds: this.settings.tokenTtlSeconds,
      });
      this.redirected.set(key, endpoint);
    }
    return endpoint;
  }

  /** Closes every connection. Idempotent. */
  async close(): Promise<void> {
    await Promise.all([this.hub.close(), ...[...this.redirected.values()].map((endpoint) => endpoint.close())]);
  }

  private async sign(audience: string, encode: boolean): Promise<string> {
    const cs = this.settings.connectionString;
    const readyMade = readyMadeToken(cs);
    if (readyMade !== undefined) return readyMade;
    if (cs.sharedAccessKey === undefined || cs.sharedAccessKeyName === undefined) {
      throw new ArgumentError('the connection string has no SharedAccessKey', { field: 'connectionString' });
    }
    return createSasToken({
      resourceUri: audience,
      key: cs.sharedAccessKey,
      keyName: cs.sharedAccessKeyName,
      ttlSeconds: this.settings.tokenTtlSeconds,
      // Node's service SDK writes the host name raw (§1.3); Event Hubs clients encode their sb:// URIs.
      encodeResourceUri: encode,
    });
  }
}

/** Whether a request link (being) opened is attached; false when its attach failed. */
function isOpenLink(link: Promise<RequestLink>): Promise<boolean> {
  return link.then(
    (opened) => opened.isOpen(),
    () => false,
  );
}

/** A sender and a receiver on one address, matching answers to requests by `correlation_id`. */
interface RequestLink {
  call(message: Message, signal: AbortSignal | undefined, timeoutMs: number): Promise<Message>;
  /** Whether both links are still attached. */
  isOpen(): boolean;
}

async function openRequestLink(
  connection: Connection,
  address: string,
  settings: AmqpClientSettings,
  signal: AbortSignal | undefined,
  replyTo = `fieldhub-reply-${randomUUID()}`,
): Promise<RequestLink> {
  const pending = new Map<string, { resolve: (message: Message) => void; reject: (error: HubError) => void }>();
  const failAll = (error: HubError) => {
    for (const waiter of pending.values()) waiter.reject(error);
    pending.clear();
  };
  let session: Session | undefined;
  try {
    session = await withSignal(connection.createSession(), signal, settings);
    const sender = await withSignal(
      session.createAwaitableSender({
        target: { address },
        name: `fieldhub-${address}-sender-${randomUUID()}`,
        properties: linkProperties,
      }),
      signal,
      settings,
    );
    const receiver = await withSignal(
      session.createReceiver({
        name: `fieldhub-${address}-receiver-${randomUUID()}`,
        source: { address },
        target: { address: replyTo },
        properties: linkProperties,
        credit_window: 50,
        autoaccept: true,
        onMessage: (context) => {
          const id = context.message?.correlation_id;
          const key = id === undefined ? undefined : idKey(id);
          const waiter = key === undefined ? undefined : pending.get(key);
          if (key !== undefined && waiter && context.message) {
            pending.delete(key);
            waiter.resolve(context.message);
          }
        },
        onClose: () => failAll(new ConnectionError(`The hub detached the ${address} link`)),
        onError: () => failAll(new ConnectionError(`The ${address} link failed`)),
        onSessionClose: () => failAll(new ConnectionError(`The hub ended the ${address} session`)),
      }),
      signal,
      settings,
    );
    connection.once(ConnectionEvents.disconnected, () =>
      failAll(new ConnectionError('The AMQP connection to the hub was lost')),
    );
    return {
      isOpen: () => receiver.isOpen() && sender.isOpen(),
      async call(message, callSignal, timeoutMs) {
        if (!receiver.isOpen() || !sender.isOpen()) throw new ConnectionError(`The ${address} link is closed`);
        const messageId = randomUUID();
        const answer = new Promise<Message>((resolve, reject) => {
          pending.set(messageId, { resolve, reject });
        });
        await sendWithCredit(sender, { ...message, message_id: messageId, reply_to: replyTo }, callSignal, settings);
        const timer = setTimeout(() => {
          pending.get(messageId)?.reject(new TimeoutError(`The hub did not answer on ${address} in time`));
          pending.delete(messageId);
        }, timeoutMs);
        try {
          const response = await withSignal(answer, callSignal, settings);
          const properties = response.application_properties ?? {};
          const status = Number(properties['status-code'] ?? properties.statusCode);
          if (status >= 200 && status < 300) return response;
          const description = String(properties['status-description'] ?? properties.statusDescription ?? '');
          throw statusError(status, description || `The hub answered ${address} with status ${status}`);
        } finally {
          clearTimeout(timer);
          pending.delete(messageId);
        }
      },
    };
  } catch (error) {
    await closeQuietly(() => session?.close() ?? Promise.resolve());
    throw error;
  }
}

/** The HubError for a CBS or management status code. */
export function statusError(status: number, description: string): HubError {
  if (status === 401 || status === 403) return new AuthenticationError(description);
  if (status === 404) return new HubError('ResourceNotFound', description);
  if (status === 400) return new ArgumentError(description);
  if (status === 429) return HubError.fromCode('ThrottlingException', description);
  if (status === 503) return new ConnectionError(description);
  return new HubError('ServerError', description);
}

/**
 * Sends once the link has credit (the hub grants it right after the attach), resolving when the hub settles the
 * delivery as accepted.
 * @throws HubError mapped from a `rejected` outcome (with `errorContext`); ConnectionError; TimeoutError; AbortError.
 */
export async function sendWithCredit(
  sender: AwaitableSender,
  message: Message,
  signal: AbortSignal | undefined,
  settings: Pick<AmqpClientSettings, 'timeoutMs' | 'closedSignal'>,
  errorContext: AmqpErrorContext = {},
): Promise<Delivery> {
  const combined = signal ? AbortSignal.any([signal, settings.closedSignal]) : settings.closedSignal;
  // Many sends may wait for credit at once (each listens once); rhea sends in order as credit arrives.
  sender.setMaxListeners(0);
  while (!sender.sendable()) {
    if (!sender.isOpen()) throw new ConnectionError('The link to the hub is closed');
    await new Promise<void>((resolve, reject) => {
      const finish = (error?: HubError) => {
        clearTimeout(timer);
        sender.removeListener(SenderEvents.sendable, onSendable);
        sender.removeListener(SenderEvents.senderClose, onClosed);
        sender.removeListener(SenderEvents.senderError, onClosed);
        combined.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve();
      };
      const onSendable = () => finish();
      const onClosed = () => finish(new ConnectionError('The hub detached the link before it could send'));
      const onAbort = () =>
        finish(signal?.aborted ? new AbortError(undefined, { cause: signal.reason }) : closedError());
      const timer = setTimeout(
        () => finish(new TimeoutError('The hub granted no credit on the link in time', { retryable: true })),
        settings.timeoutMs,
      );
      if (combined.aborted) {
        onAbort();
        return;
      }
      sender.on(SenderEvents.sendable, onSendable);
      sender.on(SenderEvents.senderClose, onClosed);
      sender.on(SenderEvents.senderError, onClosed);
      combined.addEventListener('abort', onAbort, { once: true });
    });
  }
  try {
    return await sender.send(message, {
      timeoutInSeconds: Math.max(1, Math.ceil(settings.timeoutMs / 1000)),
      abortSignal: combined,
    });
  } catch (error) {
    throw mapSendError(error, signal, settings.closedSignal, errorContext);
  }
}

function mapSendError(
  error: unknown,
  signal: AbortSignal | undefined,
  closedSignal: AbortSignal,
  errorContext: AmqpErrorContext,
): HubError {
  if (HubError.is(error)) return error;
  if (signal?.aborted) return new AbortError(undefined, { cause: signal.reason ?? error });
  if (closedSignal.aborted) return new AbortError('The service client is closed', { cause: error });
  const failed = error as { name?: unknown; code?: unknown; innerError?: unknown } | null;
  if (failed?.name === 'SendOperationFailedError') {
    if (failed.code === 'rejected') {
      const mapped = errorFromAmqp(failed.innerError as { condition?: unknown } | undefined, errorContext);
      (mapped as { cause?: unknown }).cause ??= error;
      return mapped;
    }
    if (failed.code === 'released' || failed.code === 'modified') {
      return new HubError('ServiceUnavailable', 'The hub released the message without taking it', { cause: error });
    }
    return new ConnectionError('The link to the hub was lost while sending', { cause: error });
  }
  if (failed?.name === 'OperationTimeoutError') {
    return new TimeoutError('The hub did not settle the message in time', { cause: error, retryable: true });
  }
  if (failed?.name === 'InsufficientCreditError') {
    return new ConnectionError('The hub granted no credit on the link', { cause: error });
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new ConnectionError(`Sending to the hub failed: ${reason}`, { cause: error });
}

/** The redirect an attach was refused with (`amqp:link:redirect`, §4.1), if it was. */
export interface LinkRedirect {
  readonly host: string;
  readonly port: number;
  /** The entity address, e.g. `amqps://ns.servicebus.windows.net:5671/iothub-ehub-x/$management`. */
  readonly address: string | undefined;
}

/** Thrown by {@link mapAttach} for an `amqp:link:redirect` refusal. */
export class RedirectError extends Error {
  constructor(readonly redirect: LinkRedirect) {
    super(`The hub redirected the link to ${redirect.host}:${redirect.port}`);
    this.name = 'RedirectError';
  }
}

/** Reads an `amqp:link:redirect` error's info (`hostname`, `network-host`, `port`, `address`). */
export function redirectOf(error: unknown): LinkRedirect | undefined {
  const amqp = amqpErrorOf(error);
  if (amqp?.condition !== 'amqp:link:redirect') return undefined;
  const info = (amqp.info ?? {}) as Record<string, unknown>;
  const host = info.hostname ?? info['network-host'];
  if (typeof host !== 'string' || host === '') return undefined;
  const port = Number(info.port ?? 5671);
  return {
    host,
    port: Number.isInteger(port) && port > 0 ? port : 5671,
    address: typeof info.address === 'string' ? info.address : undefined,
  };
}

/** Awaits a link attach; maps a refusal (the hub's AMQP error) to a HubError, or a redirect to RedirectError. */
async function mapAttach<T>(attach: Promise<T>, errorContext: AmqpErrorContext): Promise<T> {
  try {
    return await attach;
  } catch (error) {
    if (HubError.is(error)) throw error;
    const redirect = redirectOf(error);
    if (redirect) throw new RedirectError(redirect);
    const amqp = amqpErrorOf(error);
    if (amqp) throw errorFromAmqp(amqp, errorContext);
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConnectionError(`The hub did not open the link: ${reason}`, { cause: error });
  }
}

function amqpErrorOf(error: unknown): { condition: string; description?: unknown; info?: unknown } | undefined {
  for (let current = error, depth = 0; current && depth < 4; depth++) {
    const candidate = current as { condition?: unknown; innerError?: unknown; cause?: unknown; error?: unknown };
    if (typeof candidate.condition === 'string') return candidate as { condition: string };
    current = candidate.innerError ?? candidate.error ?? candidate.cause;
  }
  return undefined;
}

function mapConnectError(error: unknown, target: EndpointTarget, settings: AmqpClientSettings): HubError {
  if (HubError.is(error)) return error;
  if (settings.closedSignal.aborted) return closedError();
  const amqp = amqpErrorOf(error);
  if (amqp && amqp.condition !== 'amqp:connection:forced') return errorFromAmqp(amqp);
  const reason = error instanceof Error ? error.message : String(error);
  const where = target.webSocketUrl ?? `${target.host}:${target.port}`;
  return new ConnectionError(`Cannot reach the hub over AMQP at ${where}: ${reason}`, { cause: error });
}

/** Races a promise against an abort signal and the client closing. */
export async function withSignal<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  settings: Pick<AmqpClientSettings, 'closedSignal'>,
): Promise<T> {
  const signals = signal ? [signal, settings.closedSignal] : [settings.closedSignal];
  const aborted = signals.find((s) => s.aborted);
  if (aborted) {
    promise.catch(() => undefined);
    throw aborted === signal ? new AbortError(undefined, { cause: signal.reason }) : closedError();
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      cleanup();
      promise.catch(() => undefined);
      reject(signal?.aborted ? new AbortError(undefined, { cause: signal.reason }) : closedError());
    };
    const cleanup = () => {
      for (const s of signals) s.removeEventListener('abort', onAbort);
    };
    for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (error: unknown) => {
        cleanup();
        reject(error);
      },
    );
  });
}

/** Runs a close, bounded to 2 s and never throwing (the peer may be gone). */
export async function closeQuietly(close: () => Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      close(),
      new Promise((resolve) => {
        timer = setTimeout(resolve, 2000);
        timer.unref();
      }),
    ]);
  } catch {
    // Already closed or the connection is gone: nothing left to release.
  } finally {
    clearTimeout(timer);
  }
}

function destroySocket(connection: Connection): void {
  try {
    connection.getTlsSocket()?.destroy();
  } catch {
    // No socket (WebSockets, or never connected).
  }
}

function readyMadeToken(cs: ServiceConnectionString): string | undefined {
  return 'sharedAccessSignature' in cs && typeof cs.sharedAccessSignature === 'string'
    ? cs.sharedAccessSignature
    : undefined;
}

/** The decoded `sr` of a SAS token, if it has one. */
export function tokenResource(token: string | undefined): string | undefined {
  const match = token === undefined ? null : /(?:^|[\s&])sr=([^&]*)/.exec(token);
  if (!match?.[1]) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

function bracket(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

// rhea constructs `new WebSocket(url, protocols)`: undici's browser-style WebSocket, given a dispatcher that trusts
// the caller's CA and sends the host name as SNI (Node 20 has no global WebSocket; undici is already a dependency).
function webSocketClass(host: string, ca: string | Buffer | (string | Buffer)[] | undefined): unknown {
  const dispatcher = new Agent({
    connect: {
      ...(ca === undefined ? {} : { ca }),
      ...(isIP(host) === 0 ? { servername: host } : {}),
    },
  });
  return class extends UndiciWebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, { protocols: protocols ?? [], dispatcher });
    }
  };
}
