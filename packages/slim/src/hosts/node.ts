/**
 * The Node host: `node:net` / `node:tls` sockets, Node timers, `node:crypto` HMAC, `Date.now()`. For tests and
 * for trying the slim client on a PC; the only file of the package that may import Node APIs.
 *
 * @example
 * ```ts
 * import { createClient } from '@fieldhub/slim';
 * import { createNodeHost } from '@fieldhub/slim/node';
 * const client = createClient(createNodeHost(), { connectionString, onConnect: () => console.log('up') });
 * client.open();
 * ```
 * @packageDocumentation
 */
import { createHmac } from 'node:crypto';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import type { Host, HostConnectOptions, HostLogLevel, HostSocket, HostSocketEvents } from '../host';

/** Options of {@link createNodeHost}. */
export interface NodeHostOptions {
  /** Receives the client's diagnostics (never secrets); without it nothing is logged. */
  log?: (level: HostLogLevel, message: string) => void;
}

// Node hands out Buffers; the client is written for plain Uint8Arrays, so it gets a view of the same memory.
function view(chunk: Buffer): Uint8Array {
  return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

function openSocket(options: HostConnectOptions, events: HostSocketEvents): HostSocket {
  const tls = options.tls;
  let socket: Socket;
  if (tls === undefined) {
    socket = connectTcp({ host: options.host, port: options.port });
    socket.once('connect', () => events.onConnect());
  } else {
    const serverName = tls.servername ?? options.host;
    socket = connectTls({
      host: options.host,
      port: options.port,
      // SNI carries host names only (RFC 6066 §3; Node warns on an address): the server name the client gives, else
      // the host dialled, unless either is an address.
      ...(isIP(serverName) === 0 ? { servername: serverName } : {}),
      ...(tls.ca === undefined ? {} : { ca: tls.ca as string | Buffer | Array<string | Buffer> }),
      ...(tls.cert === undefined ? {} : { cert: tls.cert as string | Buffer }),
      ...(tls.key === undefined ? {} : { key: tls.key as string | Buffer }),
      rejectUnauthorized: tls.verify !== false,
    });
    socket.once('secureConnect', () => events.onConnect());
  }
  socket.setNoDelay(true);
  let failure: unknown;
  socket.on('data', (chunk: Buffer) => events.onData(view(chunk)));
  socket.on('error', (error) => {
    failure = error;
  });
  // 'close' comes exactly once, after 'error' when there was one: the host contract's single onClose.
  socket.once('close', () => events.onClose(failure));
  return {
    write(bytes) {
      if (!socket.destroyed) socket.write(bytes);
    },
    close() {
      // destroy() rather than end(): the client has sent DISCONNECT when it wanted a clean close, and a peer that
      // never closes its side must not keep the socket half-open.
      socket.destroy();
    },
  };
}

/**
 * Creates a {@link Host} on Node: TCP or TLS sockets (TLS `ca`, `cert`, `key`, `servername`, and
 * `rejectUnauthorized` from `verify`), `setTimeout` / `clearTimeout`, `Date.now()`, HMAC-SHA256 from
 * `node:crypto`, and logging to `options.log` when given.
 */
export function createNodeHost(options: NodeHostOptions = {}): Host {
  const host: Host = {
    connect: openSocket,
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    now: () => Date.now(),
    hmacSha256: (key, message) => view(createHmac('sha256', key).update(message).digest()),
  };
  const log = options.log;
  if (log !== undefined) host.log = (level, message) => log(level, message);
  return host;
}
