import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import rhea, {
  type AmqpError,
  type Connection,
  type Container,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  type Sender,
} from 'rhea';

// Test helpers for the hub's AMQP head (protocol-device.md §3): a device connection on rhea 3 the way the Node SDK
// makes it (TLS to 127.0.0.1 with SNI `localhost`, no SASL layer, CBS put-token), with every link refusal and delivery
// outcome surfaced as a promise, and a raw TLS socket for writing bytes no AMQP library would write.

/** The AMQP 1.0 protocol header without SASL (protocol id 0), as the Node SDK sends it [AMQP 2.2]. */
export const amqpHeader = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x01, 0x00, 0x00]);

/** A link the hub refused or detached with an error (the AMQP `error` of its detach). */
export class LinkRefusedError extends Error {
  constructor(
    readonly address: string,
    readonly condition: string | undefined,
    readonly description: string | undefined,
  ) {
    super(`the hub detached ${address} with ${condition ?? 'no condition'}: ${description ?? ''}`);
    this.name = 'LinkRefusedError';
  }
}

/** A delivery the hub settled with anything but `accepted`, or never settled because the link or connection went. */
export class DeliveryFailedError extends Error {
  constructor(
    /** `rejected`, `released`, `modified`, `detached` (the link went with an error) or `disconnected`. */
    readonly outcome: string,
    readonly condition: string | undefined,
    readonly description: string | undefined,
  ) {
    super(
      `the delivery ended ${outcome}${condition ? ` with ${condition}` : ''}${description ? `: ${description}` : ''}`,
    );
    this.name = 'DeliveryFailedError';
  }
}

/** The answer to a CBS put-token (protocol-device.md §3.2). */
export interface PutTokenResponse {
  statusCode: unknown;
  statusDescription: unknown;
}

/** Options of {@link AmqpDevicePeer.connect}. */
export interface AmqpPeerOptions {
  port: number;
  /** The hub's CA (PEM). */
  ca: string;
  /** A TLS client certificate and key (X.509 devices skip CBS). */
  cert?: string;
  key?: string;
  /**
   * A SASL layer (default none, as the Node SDK): ANONYMOUS (then CBS, as .NET and Java), or PLAIN with
   * `{deviceId}@sas.{hubName}` and a SAS token (protocol-device.md §3.1).
   */
  sasl?: { mechanism: 'ANONYMOUS' } | { mechanism: 'PLAIN'; username: string; password: string };
}

function errorOf(link: Sender | Receiver): AmqpError | undefined {
  const error = (link as unknown as { remote?: { detach?: { error?: AmqpError } } }).remote?.detach?.error;
  return error ?? undefined;
}

/**
 * One AMQP connection to the hub, as a device (or a misbehaving one) would open it. Links are opened with promises
 * that reject with {@link LinkRefusedError} when the hub detaches them with an error; sends resolve on `accepted` and
 * reject with {@link DeliveryFailedError} otherwise.
 */
export class AmqpDevicePeer {
  /** Resolves when the transport went (socket closed or errored), for whatever reason. */
  readonly disconnected: Promise<void>;
  /** The error of the hub's `close`, if it closed the connection with one. */
  closeError: AmqpError | undefined;
  /** Errors rhea raised on the container (unhandled link errors), kept for failure messages. */
  readonly containerErrors: Error[] = [];
  private isDisconnected = false;
  private cbsSender: Sender | undefined;
  private cbsReceiver: Receiver | undefined;
  private readonly cbsWaiters = new Map<string, (response: PutTokenResponse) => void>();

  private constructor(
    readonly container: Container,
    readonly connection: Connection,
  ) {
    container.on('error', (error: Error) => {
      this.containerErrors.push(error);
    });
    connection.on('connection_error', (context: EventContext) => {
      // The hub's close error, or rhea's own for a failed SASL outcome (condition amqp:unauthorized-access).
      const error = (context.error ?? context.connection.get_error()) as (AmqpError & { message?: string }) | undefined;
      if (error) {
        this.closeError = {
          ...(error.condition !== undefined ? { condition: error.condition } : {}),
          ...((error.description ?? error.message) !== undefined
            ? { description: error.description ?? error.message }
            : {}),
        };
      }
    });
    connection.on('connection_close', () => {
      // Handled: the `disconnected` event follows when the socket goes.
    });
    connection.on('error', () => {
      // Socket errors: `disconnected` follows.
    });
    this.disconnected = new Promise((resolve) => {
      const gone = () => {
        if (this.isDisconnected) return;
        this.isDisconnected = true;
        for (const waiter of this.cbsWaiters.values()) waiter({ statusCode: undefined, statusDescription: 'closed' });
        this.cbsWaiters.clear();
        resolve();
      };
      // rhea reports `disconnected` only for a connection that was not closed by both sides: the socket's own
      // close covers a hub that closes politely (AMQP close, then the socket).
      connection.once('disconnected', gone);
      connection.get_tls_socket()?.once('close', gone);
    });
  }

  /** Opens TLS to 127.0.0.1 (SNI `localhost`) and the AMQP connection (no SASL), and waits for the hub's `open`. */
  static connect(options: AmqpPeerOptions): Promise<AmqpDevicePeer> {
    const container = rhea.create_container();
    const connection = container.connect({
      transport: 'tls',
      host: '127.0.0.1',
      port: options.port,
      servername: 'localhost',
      hostname: 'localhost',
      ca: options.ca,
      reconnect: false,
      ...(options.cert ? { cert: options.cert, key: options.key } : {}),
      ...(options.sasl?.mechanism === 'ANONYMOUS' ? { username: 'anonymous' } : {}),
      ...(options.sasl?.mechanism === 'PLAIN'
        ? { username: options.sasl.username, password: options.sasl.password }
        : {}),
    });
    const peer = new AmqpDevicePeer(container, connection);
    return new Promise((resolve, reject) => {
      const onOpen = () => {
        connection.off('connection_open', onOpen);
        resolve(peer);
      };
      connection.on('connection_open', onOpen);
      void peer.disconnected.then(() =>
        reject(new Error(`the connection went before the hub's open: ${JSON.stringify(peer.closeError ?? null)}`)),
      );
    });
  }

  /** True until the transport went. */
  get isOpen(): boolean {
    return !this.isDisconnected;
  }

  /** The TLS socket under the connection. */
  get socket(): TLSSocket {
    const socket = this.connection.get_tls_socket();
    if (!socket) throw new Error('the connection has no TLS socket');
    return socket as TLSSocket;
  }

  /**
   * Sends a CBS put-token (the Node SDK's message: `operation`, `type`, `name` application properties; the token as an
   * AMQP string value) on `$cbs` and resolves with the response's `status-code` and `status-description`.
   */
  async putToken(audience: string, token: string): Promise<PutTokenResponse> {
    if (!this.cbsSender || !this.cbsReceiver) {
      this.cbsReceiver = await this.openReceiver('$cbs');
      this.cbsSender = await this.openSender('$cbs');
      this.cbsReceiver.on('message', (context: EventContext) => {
        const message = context.message;
        const correlationId = String(message?.correlation_id ?? '');
        const waiter = this.cbsWaiters.get(correlationId);
        if (!waiter) return;
        this.cbsWaiters.delete(correlationId);
        waiter({
          statusCode: message?.application_properties?.['status-code'],
          statusDescription: message?.application_properties?.['status-description'],
        });
      });
    }
    const messageId = rhea.generate_uuid();
    const answered = new Promise<PutTokenResponse>((resolve) => this.cbsWaiters.set(messageId, resolve));
    await this.credit(this.cbsSender);
    this.cbsSender.send({
      message_id: messageId,
      to: '$cbs',
      reply_to: 'cbs',
      application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience },
      body: token,
    });
    return answered;
  }

  /**
   * Attaches a sender (the hub receives on it) to `address`. Resolves once the hub attached it with a target; rejects
   * with {@link LinkRefusedError} when the hub detaches it with an error first.
   */
  openSender(address: string): Promise<Sender> {
    const sender = this.connection.open_sender({ target: { address }, autosettle: true });
    return this.whenAttached(sender, address);
  }

  /** Attaches a receiver (the hub sends on it) to `address`; as {@link openSender}. */
  openReceiver(address: string, options: { credit?: number; autoaccept?: boolean } = {}): Promise<Receiver> {
    const receiver = this.connection.open_receiver({
      source: { address },
      credit_window: options.credit ?? 10,
      autoaccept: options.autoaccept ?? true,
    });
    return this.whenAttached(receiver, address);
  }

  /**
   * Attaches a link and waits for the hub's verdict only: resolves with the error the hub detached it with, or
   * `undefined` if the hub served it instead (a sender got credit). For refusal tests.
   */
  refusalOf(address: string, role: 'sender' | 'receiver'): Promise<LinkRefusedError | undefined> {
    const opened = role === 'sender' ? this.openSender(address) : this.openReceiver(address);
    return opened.then(
      (link) =>
        new Promise<LinkRefusedError | undefined>((resolve) => {
          // A hub may echo the address and detach at once (rather than attach with a null terminus): wait for the
          // detach, or for credit on a sender, which only a served link gets.
          const onError = () =>
            resolve(new LinkRefusedError(address, errorOf(link)?.condition, errorOf(link)?.description));
          // The detach may have been read in the same chunk as the attach, before this ran.
          if (errorOf(link)) onError();
          link.once(role === 'sender' ? 'sender_error' : 'receiver_error', onError);
          if (role === 'sender' && (link as Sender).sendable()) resolve(undefined);
          link.once('sendable', () => resolve(undefined));
          void this.disconnected.then(() => resolve(new LinkRefusedError(address, 'disconnected', undefined)));
        }),
      (error: unknown) => {
        if (error instanceof LinkRefusedError) return error;
        throw error;
      },
    );
  }

  /** Resolves with the error of the hub's detach of an attached link (or `disconnected` if the connection goes). */
  whenDetached(link: Sender | Receiver): Promise<LinkRefusedError> {
    const address = (link.is_receiver() ? link.source?.address : link.target?.address) ?? '';
    const prefix = link.is_receiver() ? 'receiver' : 'sender';
    return new Promise((resolve) => {
      const onDetach = () =>
        resolve(new LinkRefusedError(address, errorOf(link)?.condition, errorOf(link)?.description));
      if (errorOf(link)) onDetach();
      link.once(`${prefix}_error`, onDetach);
      link.once(`${prefix}_close`, onDetach);
      void this.disconnected.then(() => resolve(new LinkRefusedError(address, 'disconnected', undefined)));
    });
  }

  private whenAttached<T extends Sender | Receiver>(link: T, address: string): Promise<T> {
    const prefix = link.is_receiver() ? 'receiver' : 'sender';
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const refuse = () => {
        if (settled) return;
        settled = true;
        const error = errorOf(link);
        reject(new LinkRefusedError(address, error?.condition, error?.description));
      };
      link.once(`${prefix}_error`, refuse);
      link.once(`${prefix}_close`, refuse);
      link.once(`${prefix}_open`, () => {
        // A refused attach carries a null terminus and is followed by the detach with the error [AMQP 2.6.3].
        const remote = (link as unknown as { remote?: { attach?: { source?: unknown; target?: unknown } } }).remote
          ?.attach;
        const terminus = prefix === 'sender' ? remote?.target : remote?.source;
        // rhea hands a described null as a typed value whose JSON is null, not as JS null.
        if (terminus === null || terminus === undefined || JSON.stringify(terminus) === 'null') return;
        if (settled) return;
        settled = true;
        link.off(`${prefix}_error`, refuse);
        link.off(`${prefix}_close`, refuse);
        link.on(`${prefix}_error`, () => {
          // Later errors surface through send() or refusalOf().
        });
        resolve(link);
      });
      void this.disconnected.then(() => {
        if (settled) return;
        settled = true;
        reject(new LinkRefusedError(address, 'disconnected', JSON.stringify(this.closeError ?? null)));
      });
    });
  }

  /** Resolves once the hub granted the sender credit (rejects if the connection goes first). */
  credit(sender: Sender): Promise<void> {
    if (sender.sendable()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onSendable = () => {
        if (!sender.sendable()) return;
        sender.off('sendable', onSendable);
        resolve();
      };
      sender.on('sendable', onSendable);
      void this.disconnected.then(() => reject(new DeliveryFailedError('disconnected', undefined, 'no credit')));
    });
  }

  /**
   * Sends one message and waits for its outcome: resolves on `accepted`; rejects with {@link DeliveryFailedError} on
   * any other outcome, or when the link or the connection goes before the hub settled it.
   */
  async send(sender: Sender, message: Message): Promise<void> {
    await this.credit(sender);
    const delivery: Delivery = sender.send(message);
    return new Promise<void>((resolve, reject) => {
      const finish = (context: EventContext, outcome: string) => {
        if (context.delivery !== delivery) return;
        cleanup();
        if (outcome === 'accepted') resolve();
        else {
          const state = (context.delivery as unknown as { remote_state?: { error?: AmqpError } }).remote_state;
          reject(new DeliveryFailedError(outcome, state?.error?.condition, state?.error?.description));
        }
      };
      const onAccepted = (context: EventContext) => finish(context, 'accepted');
      const onRejected = (context: EventContext) => finish(context, 'rejected');
      const onReleased = (context: EventContext) => finish(context, 'released');
      const onModified = (context: EventContext) => finish(context, 'modified');
      const onDetached = () => {
        cleanup();
        const error = errorOf(sender);
        reject(new DeliveryFailedError('detached', error?.condition, error?.description));
      };
      const cleanup = () => {
        sender.off('accepted', onAccepted);
        sender.off('rejected', onRejected);
        sender.off('released', onReleased);
        sender.off('modified', onModified);
        sender.off('sender_error', onDetached);
        sender.off('sender_close', onDetached);
      };
      sender.on('accepted', onAccepted);
      sender.on('rejected', onRejected);
      sender.on('released', onReleased);
      sender.on('modified', onModified);
      sender.on('sender_error', onDetached);
      sender.on('sender_close', onDetached);
      void this.disconnected.then(() => {
        cleanup();
        reject(new DeliveryFailedError('disconnected', this.closeError?.condition, this.closeError?.description));
      });
    });
  }

  /** Closes the connection politely and waits for the transport to go (destroying it if the hub never closes). */
  async close(): Promise<void> {
    if (this.isDisconnected) return;
    this.connection.once('connection_close', () => this.destroy());
    this.connection.close();
    await this.disconnected;
  }

  /** Drops the transport without an AMQP close. */
  destroy(): void {
    const socket = this.connection.get_tls_socket();
    socket?.destroy();
  }
}

/** A telemetry message as the Node SDK builds it: one data section, `message_id`, application properties. */
export function telemetryMessage(messageId: string, body: Buffer | string, properties: Record<string, string> = {}) {
  return {
    message_id: messageId,
    body: rhea.message.data_section(Buffer.isBuffer(body) ? body : Buffer.from(body)),
    application_properties: properties,
  } satisfies Message;
}

/** A raw TLS socket to the hub's AMQP port: writes any bytes, collects every byte the hub sends. */
export class RawAmqpSocket {
  /** Resolves when the socket closed (for whatever reason). */
  readonly closed: Promise<void>;
  private readonly chunks: Buffer[] = [];
  private isClosed = false;

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (chunk: Buffer) => this.chunks.push(chunk));
    socket.on('error', () => {
      // A reset: `close` follows.
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  /** Opens TLS to 127.0.0.1 with SNI `localhost`. */
  static open(options: { port: number; ca: string }): Promise<RawAmqpSocket> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: options.port, servername: 'localhost', ca: options.ca });
      const onError = (error: Error) => reject(error);
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        socket.off('error', onError);
        resolve(new RawAmqpSocket(socket));
      });
    });
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Every byte received so far. */
  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Resolves once at least `count` bytes arrived (or the socket closed). */
  async receivedAtLeast(count: number): Promise<Buffer> {
    while (this.received().length < count && !this.isClosed) {
      await Promise.race([new Promise((resolve) => this.socket.once('data', resolve)), this.closed]);
    }
    return this.received();
  }

  write(bytes: Buffer): void {
    if (!this.isClosed) this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
