/**
 * The parts of rhea 3's objects the connection layer reaches that its typings do not declare. rhea is written for
 * clients first; a server that authorizes links asynchronously, refuses oversize messages before buffering them
 * and closes the socket itself needs a few of its internals. Each use is explained where it happens; all of them
 * are confined to the AMQP head's connection layer (`connection.ts`), never used by routes.
 */
import type { Duplex } from 'node:stream';
import type { Connection, Container, Receiver, Sender, Session } from 'rhea';

/** The module as imported (CommonJS: the container instance, with `create_container` and `types`). */
export type RheaModule = typeof import('rhea');

/** A SASL server mechanism (rhea's `sasl.js`: `start` resolves, then `outcome` and `username` are read). */
export interface SaslServerMechanism {
  outcome: boolean | undefined;
  username: string | undefined;
  start(response: Buffer | undefined, hostname: string | undefined): Promise<void> | void;
}

/** A container's server mechanisms: name -> factory. */
export type SaslServerMechanisms = Record<string, () => SaslServerMechanism>;

/** A container as the connection layer configures it. */
export type ServerContainer = Container & { sasl_server_mechanisms: SaslServerMechanisms };

/** Open, close, and the endpoint state of rhea's `EndpointState`. */
interface EndpointState {
  local_open: boolean;
  remote_open: boolean;
  open_requests: number;
}

/** A connection with what `accept` and the frame handlers need. */
export type ServerConnection = Connection & {
  accept(socket: Duplex): ServerConnection;
  /** Writes pending frames now (rhea writes on the next tick otherwise). */
  _process(): void;
  /** Flushes what the transport encoded (a SASL outcome rhea encoded without writing). */
  output(): void;
  /** rhea's begin handler, wrapped to refuse a begin before open. */
  on_begin(frame: unknown): void;
  remote: { open?: unknown; close?: unknown };
  sasl_transport?: { transports?: Record<number, { outcome?: number }>; outcome?: number };
};

/** A link with its local attach and endpoint state. */
export type LinkInternals = (Sender | Receiver) & {
  state: EndpointState;
  local: { attach: { source?: unknown; target?: unknown; max_message_size?: number } };
  remote: { attach?: { source?: unknown; target?: unknown } };
  set_source(fields: unknown): void;
  set_target(fields: unknown): void;
  dispatch(name: string, ...args: unknown[]): boolean;
  _incomplete?: { settled?: boolean; frames?: unknown[] } | undefined;
  /** Credit granted (receiver) or received (sender). */
  credit: number;
};

/** A transfer frame as the session's incoming side sees it. */
export interface TransferFrame {
  payload?: Buffer | undefined;
  performative: { more?: boolean; handle?: number };
}

/** A session with its incoming side. */
export type SessionInternals = Session & {
  incoming: {
    next_transfer_id: number;
    on_transfer(frame: TransferFrame, receiver: LinkInternals): void;
  };
};
