/**
 * A scripted AMQP 1.0 peer on rhea for unit tests, over TLS and over WebSockets (`ws` + rhea's
 * `websocket_accept`): it answers CBS put-token with a chosen status, accepts (or rejects) telemetry, answers twin
 * requests, and lets a test push cloud-to-device messages, method requests and desired-property patches and
 * detach links. It records what the transport sent, frame fields included. The real hub is exercised by
 * @fieldhub/transport-testing.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import {
  type AmqpError,
  type Connection,
  create_container,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  message as rheaMessage,
  type Sender,
} from 'rhea';
import { WebSocketServer } from 'ws';

const fixture = (name: string): string => readFileSync(new URL(`../__fixtures__/${name}`, import.meta.url), 'utf8');

/** The fake hub's certificate (CN=localhost, SAN localhost and 127.0.0.1): pass it as `ca`. */
export const fakeHubCa = fixture('broker-cert.pem');
const key = fixture('broker-key.pem');

/** One link the client attached, as the fake hub saw it. */
export interface AttachedLink {
  /** The client's role: `sender` (target address) or `receiver` (source address). */
  readonly role: 'sender' | 'receiver';
  readonly address: string;
  readonly properties: Record<string, unknown>;
  readonly sndSettleMode: number | undefined;
  readonly rcvSettleMode: number | undefined;
}

/** A message the client sent, with the address of the link it came on. */
export interface ReceivedMessage {
  readonly address: string;
  readonly message: Message;
  readonly delivery: Delivery;
}

/** What the fake hub does; tests change these between steps. */
export interface FakeHubBehaviour {
  /** CBS `status-code` answered to put-token. */
  cbsStatus: number;
  /** When set, telemetry is rejected with this error instead of accepted. */
  telemetryError: AmqpError | undefined;
  /** When set, attaches to addresses matching it are refused (detached at once) with this error. */
  refuseAttach: { readonly match: RegExp; readonly error: AmqpError } | undefined;
  /** The twin GET answer's body. */
  twin: { desired: Record<string, unknown>; reported: Record<string, unknown> };
  /** The status answered to twin PATCH (204 by default) and the body with it. */
  patchStatus: number;
  patchBody: string | undefined;
}

/** A fake hub; {@link startFakeHub}. */
export interface FakeHub {
  readonly port: number;
  /** TLS (`amqps`) or WebSockets (`wss`, path `/$iothub/websocket`). */
  readonly kind: 'tls' | 'ws';
  readonly behaviour: FakeHubBehaviour;
  readonly links: AttachedLink[];
  readonly messages: ReceivedMessage[];
  /** The settlement outcome of every cloud-to-device delivery, by message id. */
  readonly dispositions: Map<string, string>;
  /** Connections seen: whether the client negotiated SASL, the open's hostname. */
  readonly connections: { sasl: boolean; hostname: string | undefined }[];
  /** WebSocket upgrades: path and subprotocol requested. */
  readonly upgrades: { path: string | undefined; protocol: string | undefined }[];
  /** Resolves with the next message sent to an address matching `address`. */
  nextMessage(address: RegExp): Promise<ReceivedMessage>;
  /** Sends on the hub's sender serving the client's receiver at an address matching `address`. */
  send(address: RegExp, message: Message, tag?: Buffer): void;
  /** Detaches the hub's side of every link matching `address` with `error`. */
  detach(address: RegExp, error: AmqpError): void;
  /** Drops every connection (socket destroyed, no AMQP close). */
  dropConnections(): void;
  close(): Promise<void>;
}

function addressOf(link: Sender | Receiver): string {
  // The hub serves the client's receiver with a sender (its source) and the client's sender with a receiver.
  const terminus = link.is_sender() ? link.source : link.target;
  return (terminus as { address?: string } | undefined)?.address ?? '';
}

/** Starts a fake hub on 127.0.0.1 with an ephemeral port. */
export async function startFakeHub(kind: 'tls' | 'ws' = 'tls'): Promise<FakeHub> {
  const container = create_container({ id: 'fake-hub' });
  const links: AttachedLink[] = [];
  const messages: ReceivedMessage[] = [];
  const waiters: { address: RegExp; resolve: (message: ReceivedMessage) => void }[] = [];
  const dispositions = new Map<string, string>();
  const connections: FakeHub['connections'] = [];
  const upgrades: FakeHub['upgrades'] = [];
  const senders: Sender[] = [];
  const receivers: Receiver[] = [];
  const sockets = new Set<{ destroy(): void }>();
  const rheaConnections = new Set<Connection>();
  const behaviour: FakeHubBehaviour = {
    cbsStatus: 200,
    telemetryError: undefined,
    refuseAttach: undefined,
    twin: { desired: { $version: 1 }, reported: { $version: 1 } },
    patchStatus: 204,
    patchBody: undefined,
  };
  let reportedVersion = 1;

  const record = (link: Sender | Receiver, role: 'sender' | 'receiver'): boolean => {
    const address = addressOf(link);
    links.push({
      role,
      address,
      properties: (link.properties ?? {}) as Record<string, unknown>,
      sndSettleMode: link.snd_settle_mode,
      rcvSettleMode: link.rcv_settle_mode,
    });
    if (behaviour.refuseAttach?.match.test(address)) {
      link.close(behaviour.refuseAttach.error);
      return false;
    }
    return true;
  };

  // rhea's `Message` type requires a body; the hub's answers often have none.
  const answer = (fields: Record<string, unknown>): Message => fields as unknown as Message;

  const replyOn = (connection: Connection, address: string): Sender | undefined =>
    senders.find((sender) => sender.connection === connection && addressOf(sender) === address && sender.is_open());

  container.on('connection_open', (context: EventContext) => {
    const connection = context.connection;
    rheaConnections.add(connection);
    connections.push({
      // rhea's SelectiveServer picks the transport by the protocol id of the client's header: 0 = AMQP, 3 = SASL.
      sasl:
        (connection as unknown as { sasl_transport?: { header_received?: { protocol_id?: number } } }).sasl_transport
          ?.header_received?.protocol_id === 3,
      hostname: connection.hostname,
    });
  });
  container.on('sender_open', (context: EventContext) => {
    const sender = context.sender as Sender;
    if (record(sender, 'receiver')) senders.push(sender);
  });
  container.on('receiver_open', (context: EventContext) => {
    const receiver = context.receiver as Receiver;
    if (record(receiver, 'sender')) receivers.push(receiver);
  });
  container.on('accepted', (context: EventContext) => note(context, 'accepted'));
  container.on('rejected', (context: EventContext) => note(context, 'rejected'));
  container.on('released', (context: EventContext) => note(context, 'released'));
  container.on('modified', (context: EventContext) => note(context, 'modified'));
  const note = (context: EventContext, outcome: string): void => {
    const id = (context.delivery as unknown as { fieldhubMessageId?: string }).fieldhubMessageId;
    if (id !== undefined) dispositions.set(id, outcome);
  };
  container.on('disconnected', () => {});
  container.on('error', () => {});

  container.on('message', (context: EventContext) => {
    const receiver = context.receiver as Receiver;
    const message = context.message as Message;
    const delivery = context.delivery as Delivery;
    const address = addressOf(receiver);
    const received = { address, message, delivery };
    messages.push(received);
    for (const waiter of [...waiters]) {
      if (waiter.address.test(address)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(received);
        break;
      }
    }
    if (address === '$cbs') {
      delivery.accept();
      replyOn(context.connection, '$cbs')?.send(
        answer({
          correlation_id: message.message_id,
          application_properties: { 'status-code': behaviour.cbsStatus, 'status-description': 'fake' },
        }),
      );
      return;
    }
    if (/\/messages\/events$/.test(address)) {
      if (behaviour.telemetryError) delivery.reject(behaviour.telemetryError);
      else delivery.accept();
      return;
    }
    if (/\/twin$/.test(address)) {
      const operation = message.message_annotations?.operation;
      const reply = replyOn(context.connection, address);
      if (operation === 'GET') {
        reply?.send(
          answer({
            correlation_id: message.correlation_id,
            message_annotations: { status: 200, version: 0 },
            body: rheaMessage.data_section(Buffer.from(JSON.stringify(behaviour.twin))),
          }),
        );
      } else if (operation === 'PATCH') {
        reportedVersion++;
        reply?.send(
          answer({
            correlation_id: message.correlation_id,
            message_annotations: { status: behaviour.patchStatus, version: reportedVersion },
            ...(behaviour.patchBody === undefined
              ? {}
              : { body: rheaMessage.data_section(Buffer.from(behaviour.patchBody)) }),
          }),
        );
      } else {
        reply?.send(answer({ correlation_id: message.correlation_id, message_annotations: { status: 200 } }));
      }
      return;
    }
    if (!delivery.remote_settled) delivery.accept();
  });

  const listeners: (TlsServer | HttpsServer)[] = [];
  let port: number;
  if (kind === 'tls') {
    const server = container.listen({ port: 0, host: '127.0.0.1', transport: 'tls', cert: fakeHubCa, key });
    server.on('secureConnection', (socket: { destroy(): void }) => sockets.add(socket));
    listeners.push(server);
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  } else {
    const server = createHttpsServer({ cert: fakeHubCa, key });
    const webSockets = new WebSocketServer({
      server,
      handleProtocols: (protocols) => (protocols.has('AMQPWSB10') ? 'AMQPWSB10' : false),
    });
    webSockets.on('connection', (socket, request) => {
      upgrades.push({ path: request.url, protocol: socket.protocol });
      sockets.add({ destroy: () => socket.terminate() });
      container.websocket_accept(socket as never, {});
    });
    server.listen(0, '127.0.0.1');
    listeners.push(server);
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  }

  return {
    port,
    kind,
    behaviour,
    links,
    messages,
    dispositions,
    connections,
    upgrades,
    nextMessage(address) {
      return new Promise((resolve) => waiters.push({ address, resolve }));
    },
    send(address, message, tag) {
      const sender = senders.find((candidate) => candidate.is_open() && address.test(addressOf(candidate)));
      if (sender === undefined) throw new Error(`no open link matches ${address}`);
      const delivery = sender.send(message, tag);
      if (typeof message.message_id === 'string') {
        (delivery as unknown as { fieldhubMessageId?: string }).fieldhubMessageId = message.message_id;
      }
    },
    detach(address, error) {
      for (const link of [...senders, ...receivers]) {
        if (link.is_open() && address.test(addressOf(link))) link.close(error);
      }
    },
    dropConnections() {
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      for (const connection of rheaConnections) connection.removeAllListeners();
      await Promise.all(
        listeners.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              (server as { closeAllConnections?: () => void }).closeAllConnections?.();
            }),
        ),
      );
    },
  };
}
