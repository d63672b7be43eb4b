/**
 * The ECMA-419 host (Moddable XS): sockets from `embedded:io/socket/tcp` and `embedded:io/socket/tcp/tls`, a DNS
 * resolver class for host names, timers from Moddable's `timer` module (or `setTimeout`), HMAC-SHA256 from
 * Moddable's `crypt` `Digest` and `hmac` modules when given. The runtime's modules are injected by the caller, so
 * this file imports none of them (reference: embedded-runtimes.md §2, §4).
 *
 * ECMA-419 socket semantics it relies on: the first `onWritable(count)` means connected; `onWritable` reports how
 * many bytes `write()` accepts now, and `write()` throws beyond that, so writes queue here and go out in pieces that
 * fit; `onReadable` means `read()` returns an `ArrayBuffer` (or `undefined` when drained); `onError` means the
 * connection is gone, whatever the reason. Moddable's sample TLS socket calls its callbacks with `this` bound to a
 * private object (§2.1), so nothing here uses `this`: every callback closes over its connection.
 *
 * @example
 * The app imports the classes from their modules (`TCP` from `embedded:io/socket/tcp`, `TLSSocket` from
 * `embedded:io/socket/tcp/tls`, `Resolver` from `embedded:network/dns/resolver/udp`, `UDP` from
 * `embedded:io/socket/udp`, `Timer` from `timer`, `Digest` from `crypt`, `HMAC` from `hmac`) and passes them in:
 * ```js
 * const host = createEcma419Host({ TCP, TLSSocket, dns: { io: Resolver, servers: ["1.1.1.1"], socket: { io: UDP } },
 *   Timer, Digest, HMAC });
 * ```
 */
import type { Host, HostConnectOptions, HostLogLevel, HostSocket, HostSocketEvents } from '../host';

/** The options an ECMA-419 socket constructor receives from this host. */
export interface Ecma419SocketOptions {
  /** IP address (ECMA-419 sockets do not resolve names). */
  address: string;
  port: number;
  format: 'buffer';
  noDelay: boolean;
  onReadable(count: number): void;
  onWritable(count: number): void;
  onError(error?: unknown): void;
  /** TLS, ECMA-419 spelling: server name (SNI), CA and client credentials. */
  tls?: Ecma419TlsOptions;
  /** TLS, Moddable sample spelling: the server name for SNI. */
  host?: string;
  /** TLS, Moddable sample spelling: the TLS session options. */
  secure?: Ecma419SecureOptions;
  /** TLS, Moddable sample spelling: the TCP socket class under the TLS socket. */
  TCP?: { io: Ecma419SocketClass };
}

/** The `tls` object of an ECMA-419 TLS socket (only the fields this host sets). */
export interface Ecma419TlsOptions {
  host?: string;
  ca?: unknown;
  clientCertificate?: unknown;
  clientKey?: unknown;
}

/**
 * The `secure` object of Moddable's sample TLS socket, passed on to its TLS session (`ssl/session`, whose
 * certificate manager reads `verify`, `certificate`, `clientCertificates` and `clientKey`).
 */
export interface Ecma419SecureOptions {
  verify: boolean;
  /** SNI; the session renames it `tls_server_name`. */
  serverName?: string;
  /** One trusted CA certificate (DER). */
  certificate?: unknown;
  clientKey?: unknown;
  clientCertificates?: unknown[];
}

/** An ECMA-419 socket instance: what this host calls. */
export interface Ecma419Socket {
  /** All bytes available, or `undefined` when there are none. */
  read(): ArrayBuffer | undefined;
  /** Throws when `data` does not fit in what `onWritable` last reported (or when the socket is closed). */
  write(data: Uint8Array): unknown;
  close(): void;
}

/** An ECMA-419 socket class: `embedded:io/socket/tcp` or `embedded:io/socket/tcp/tls`. */
export type Ecma419SocketClass = new (options: Ecma419SocketOptions) => Ecma419Socket;

/** What an ECMA-419 DNS resolver's `resolve` takes. */
export interface Ecma419ResolveOptions {
  host: string;
  onResolved(host: string, address: string): void;
  onError(error?: unknown): void;
}

/** An ECMA-419 DNS resolver instance (`embedded:network/dns/resolver/udp`). */
export interface Ecma419Resolver {
  resolve(options: Ecma419ResolveOptions): void;
}

/**
 * The resolver as an ECMA-419 host provider describes it (`device.network.*.dns`): the class in `io`, and the
 * options it is constructed with (e.g. `servers`, `socket`) alongside. One resolver is made, on first use.
 */
export interface Ecma419DnsOptions {
  io: new (options: Ecma419DnsOptions) => Ecma419Resolver;
  [option: string]: unknown;
}

/** Moddable's `timer` module (its default export). */
export interface Ecma419TimerModule {
  set(callback: () => void, ms: number): unknown;
  clear(id: unknown): void;
}

/** A Moddable `crypt` `Digest` instance (only created and handed to `HMAC` here). */
export type Ecma419DigestClass = new (algorithm: string) => unknown;

/** Moddable's `hmac` module class: `new HMAC(digest, keyBuffer)`, `update(buffer)`, `close()` gives the MAC. */
export type Ecma419HmacClass = new (
  digest: unknown,
  key: ArrayBuffer,
) => { update(data: ArrayBuffer): unknown; close(): ArrayBuffer };

/** Options of {@link createEcma419Host}: the runtime's modules, injected. */
export interface Ecma419HostOptions {
  /** `embedded:io/socket/tcp`: plain TCP, and the transport under Moddable's sample TLS socket (passed to it as
   * `TCP: {io: TCP}`). Required to dial without TLS. */
  TCP?: Ecma419SocketClass;
  /** `embedded:io/socket/tcp/tls`; required to dial with TLS options. */
  TLSSocket?: Ecma419SocketClass;
  /** A DNS resolver for host names; without it only IP addresses can be dialled. */
  dns?: Ecma419DnsOptions;
  /** `Digest` from Moddable's `crypt` module; with `HMAC`, gives the host `hmacSha256`. */
  Digest?: Ecma419DigestClass;
  /** `HMAC` from Moddable's `hmac` module; with `Digest`, gives the host `hmacSha256`. */
  HMAC?: Ecma419HmacClass;
  /** Moddable's `timer` module; used when `setTimeout` is not given. */
  Timer?: Ecma419TimerModule;
  /** A `setTimeout` (xst has one); preferred over `Timer`. Give `clearTimeout` with it. */
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  /** Wall-clock milliseconds; default `Date.now()`. */
  now?: () => number;
  /** Receives diagnostics (never secrets). */
  log?: (level: HostLogLevel, message: string) => void;
}

/** An error passed to `onClose`: a plain `Error` with a string `code` (`DnsFailed`, `SocketError`). */
function hostError(code: string, message: string, cause?: unknown): Error {
  const error = new Error(message) as Error & { code: string; cause?: unknown };
  error.code = code;
  if (cause !== undefined) error.cause = cause;
  return error;
}

// Moddable's TLS session silently drops a write over one record (2^14 bytes): larger writes go out in pieces.
const MAX_WRITE = 16384;

// An exact-size ArrayBuffer holding the bytes (Moddable's HMAC and Digest take buffers).
function bufferOf(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? (bytes.buffer as ArrayBuffer)
    : new Uint8Array(bytes).buffer;
}

/**
 * Creates a {@link Host} over ECMA-419 IO (Moddable XS). TLS options map onto both the spec's `tls: {host, ca,
 * clientCertificate, clientKey}` and Moddable's sample `host`, `secure: {verify, serverName, certificate,
 * clientKey, clientCertificates}`, `TCP: {io: TCP}`; the server name (SNI) defaults to the host name dialled, and
 * is left out when an IP address is dialled without `servername`. `ca`, `cert` and `key` are passed as given
 * (Moddable wants DER bytes; its session takes one CA, the first). Writes go out in pieces of at most one TLS record
 * (16384 bytes). Every connection reports `onClose` once, never from inside `connect()` or `close()`, with a plain
 * `Error` whose `code` is `DnsFailed` or `SocketError` when the connection failed or dropped (ECMA-419 does not
 * tell a clean close by the peer from a failure). Without `Digest` and `HMAC` the host has no
 * `hmacSha256`: give the client `sign`, a SAS token, or the portable `hmacSha256` of `@fieldhub/protocol`.
 *
 * @throws {Error} (code `ArgumentError`) when neither `TCP` nor `TLSSocket` is given, when neither `setTimeout` / `clearTimeout` nor
 * `Timer` is given, or when only one of `Digest` and `HMAC` is.
 */
export function createEcma419Host(options: Ecma419HostOptions): Host {
  const TCP = options.TCP;
  const TLSSocket = options.TLSSocket;
  const dns = options.dns;
  const Timer = options.Timer;
  const Digest = options.Digest;
  const HMAC = options.HMAC;
  const setTimer = options.setTimeout;
  const clearTimer = options.clearTimeout;
  if (!TCP && !TLSSocket) throw hostError('ArgumentError', 'createEcma419Host: give TCP or TLSSocket');
  if (!(setTimer && clearTimer) && !Timer) {
    throw hostError('ArgumentError', 'createEcma419Host: give setTimeout and clearTimeout, or Timer');
  }
  if (!Digest !== !HMAC) throw hostError('ArgumentError', 'createEcma419Host: give Digest and HMAC together');
  const later = (callback: () => void, ms: number): unknown =>
    setTimer ? setTimer(callback, ms) : (Timer as Ecma419TimerModule).set(callback, ms);
  const cancel = (handle: unknown): void => {
    if (clearTimer) clearTimer(handle);
    else (Timer as Ecma419TimerModule).clear(handle);
  };
  let resolver: Ecma419Resolver | undefined;

  const connect = (target: HostConnectOptions, events: HostSocketEvents): HostSocket => {
    const tls = target.tls;
    const Socket = tls ? TLSSocket : TCP;
    if (!Socket)
      throw hostError(
        'ArgumentError',
        tls ? 'createEcma419Host: TLS needs TLSSocket' : 'createEcma419Host: plain TCP needs TCP',
      );
    let socket: Ecma419Socket | undefined;
    // 0 connecting, 1 connected, 2 closed: no callback reaches the client after 2.
    let state = 0;
    // What write() accepts now (the last onWritable count, less what was written since).
    let writable = 0;
    // Bytes the client wrote that the socket could not take yet; the head may be the rest of a split write.
    const queue: Uint8Array[] = [];

    // Ends the connection once. ECMA-419 close() calls no callback, so onClose comes from here; `deferred` when
    // the client is still inside connect() or close(), so that it hears onClose after they return.
    const finish = (error: unknown, deferred?: boolean): void => {
      if (state === 2) return;
      state = 2;
      queue.length = 0;
      const current = socket;
      socket = undefined;
      if (current) {
        try {
          current.close();
        } catch (_) {
          // Already closed by the runtime (after onError): nothing left to release.
        }
      }
      if (deferred) later(() => events.onClose(error), 0);
      else events.onClose(error);
    };
    const flush = (): void => {
      while (socket && state === 1 && queue.length && writable > 0) {
        const head = queue[0] as Uint8Array;
        const n = Math.min(head.length, writable, MAX_WRITE);
        try {
          socket.write(n === head.length ? head : head.subarray(0, n));
        } catch (_) {
          // It did not fit after all (a TLS socket spends some of its count on record overhead): wait for the
          // next onWritable. A closed socket throws too, and its onError follows.
          writable = 0;
          return;
        }
        writable -= n;
        if (n === head.length) queue.shift();
        else queue[0] = head.subarray(n);
      }
    };
    const connected = (): void => {
      if (state !== 0) return;
      state = 1;
      events.onConnect();
    };
    const open = (address: string): void => {
      if (state === 2) return;
      const socketOptions: Ecma419SocketOptions = {
        address: address,
        port: target.port,
        format: 'buffer',
        noDelay: true,
        onReadable: () => {
          // Data implies a connection, should a runtime report it before the first onWritable.
          connected();
          while (socket && state === 1) {
            const buffer = socket.read();
            if (buffer === undefined || buffer.byteLength === 0) return;
            events.onData(new Uint8Array(buffer));
          }
        },
        onWritable: (count: number) => {
          writable = count;
          connected();
          flush();
        },
        onError: (error?: unknown) => {
          finish(hostError('SocketError', 'connection closed', error));
        },
      };
      if (tls) {
        // SNI carries names only (RFC 6066 §3): a dialled address gets none unless the caller names the server.
        const serverName = tls.servername !== undefined ? tls.servername : address === target.host ? '' : target.host;
        const spec: Ecma419TlsOptions = {};
        const secure: Ecma419SecureOptions = { verify: tls.verify !== false };
        const ca = tls.ca;
        if (serverName) spec.host = socketOptions.host = secure.serverName = serverName;
        if (ca !== undefined) {
          spec.ca = ca;
          // Moddable's session registers one CA.
          secure.certificate = Array.isArray(ca) ? ca[0] : ca;
        }
        if (tls.key !== undefined) spec.clientKey = secure.clientKey = tls.key;
        if (tls.cert !== undefined) {
          spec.clientCertificate = tls.cert;
          secure.clientCertificates = [tls.cert];
        }
        socketOptions.tls = spec;
        socketOptions.secure = secure;
        if (TCP) socketOptions.TCP = { io: TCP };
      }
      try {
        socket = new Socket(socketOptions);
      } catch (error) {
        // The constructor throws when the resource is busy or the options are refused (ECMA-419 IO class
        // pattern): a failed connection, reported as such.
        finish(hostError('SocketError', 'socket refused', error), true);
        return;
      }
      // A runtime that reported writable space from inside the constructor left writes waiting for `socket`.
      flush();
    };

    const host = target.host;
    // IPv4 dotted quads and IPv6 literals need no resolver.
    if (/^[\d.]+$/.test(host) || host.indexOf(':') >= 0) {
      // Deferred so that connect returns before any callback, as with a name to resolve.
      later(() => open(host), 0);
    } else if (!dns) {
      finish(hostError('DnsFailed', 'no DNS resolver to find ' + host), true);
    } else {
      let answered = false;
      try {
        if (!resolver) resolver = new dns.io(dns);
        resolver.resolve({
          host: host,
          onResolved: (_name: string, address: string) => {
            if (answered) return;
            answered = true;
            open(address);
          },
          onError: (error?: unknown) => {
            if (answered) return;
            answered = true;
            finish(hostError('DnsFailed', 'cannot resolve ' + host, error));
          },
        });
      } catch (error) {
        answered = true;
        finish(hostError('DnsFailed', 'cannot resolve ' + host, error), true);
      }
    }
    return {
      write: (bytes: Uint8Array): void => {
        if (state === 2 || !bytes.length) return;
        queue.push(bytes);
        flush();
      },
      close: (): void => finish(undefined, true),
    };
  };

  const host: Host = {
    connect: connect,
    setTimeout: later,
    clearTimeout: cancel,
    now: options.now || (() => Date.now()),
  };
  if (Digest && HMAC) {
    host.hmacSha256 = (key: Uint8Array, message: Uint8Array): Uint8Array => {
      const mac = new HMAC(new Digest('SHA256'), bufferOf(key));
      mac.update(bufferOf(message));
      return new Uint8Array(mac.close());
    };
  }
  const log = options.log;
  if (log) host.log = log;
  return host;
}
