/**
 * The Espruino host: sockets from Espruino's `net` and `tls` modules, HMAC-SHA256 from the EspruinoDocs `hmac`
 * module over `crypto.SHA256` when given, Espruino's `setTimeout` / `clearTimeout` and `Date.now()`. The modules are
 * injected by the caller (the glue on the board loads them), so this file loads none of them
 * (reference: embedded-runtimes.md §1.2).
 *
 * Espruino sockets are Node-like (`on('data')`, `on('drain')`, `on('error')` then `on('close')`, `write()`,
 * `end()`), but binary data travels as strings of char codes 0..255: `write` converts its argument with
 * `toString()`, which would turn a Uint8Array into "1,2,3". Writes wait for `drain` before the next one, so that
 * Espruino's send buffer (JS variables, the scarcest memory on the board) holds one batch at a time. Espruino
 * never checks the server certificate, even with `ca` (§1.2): `verify` cannot be honoured there.
 *
 * @example
 * The glue loads Espruino's `net`, `tls` and `crypto` modules and the EspruinoDocs `hmac` module, and passes them in:
 * ```js
 * const host = createEspruinoHost({ net: net, tls: tls, crypto: crypto, hmac: hmac });
 * ```
 */
import type { Host, HostConnectOptions, HostLogLevel, HostSocket, HostSocketEvents } from '../host';

// Espruino's globals, used when the caller injects no timers (the dialect check allows globals in host adapters).
declare const setTimeout: (callback: () => void, ms: number) => unknown;
declare const clearTimeout: (handle: unknown) => void;

/** An Espruino socket, as `net.connect` and `tls.connect` return it. */
export interface EspruinoSocket {
  /** Events used here: `data` (a binary string, or an ArrayBuffer), `drain`, `error` (`{code, message}`), `close`. */
  on(event: string, listener: (value?: unknown) => void): unknown;
  /** Appends `data` (a binary string) to the send buffer; throws once the socket is closed. */
  write(data: string): unknown;
  /** Closes after the send buffer is out; `close` follows. */
  end(): unknown;
}

/** What Espruino's `net.connect` and `tls.connect` take. */
export interface EspruinoConnectOptions {
  host: string;
  port: number;
  /** TLS only, passed as given (PEM text on Espruino). */
  ca?: unknown;
  key?: unknown;
  cert?: unknown;
  /** The server name; Espruino itself sends a fixed SNI (reference §1.2), other runtimes of this shape may not. */
  servername?: string;
}

/** Espruino's `net` or `tls` module: `connect(options, onConnected)`. */
export interface EspruinoNetModule {
  connect(options: EspruinoConnectOptions, onConnected: () => void): EspruinoSocket;
}

/** Espruino's `crypto` module (the part used here). */
export interface EspruinoCryptoModule {
  SHA256(data: ArrayBuffer): ArrayBuffer;
}

/** The EspruinoDocs `hmac` module: `new HMAC(keyBuffer, crypto.SHA256, 64, 32).digest(messageBuffer)`. */
export interface EspruinoHmacModule {
  HMAC: new (
    key: ArrayBuffer,
    hash: (data: ArrayBuffer) => ArrayBuffer,
    blockSize: number,
    outputSize: number,
  ) => { digest(message: ArrayBuffer): ArrayBuffer | Uint8Array | string };
}

/** Options of {@link createEspruinoHost}: Espruino's modules, injected. */
export interface EspruinoHostOptions {
  /** Espruino's `net` module. */
  net: EspruinoNetModule;
  /** Espruino's `tls` module; required to dial with TLS options (boards without TLS, like ESP8266, have none). */
  tls?: EspruinoNetModule;
  /** Espruino's `crypto` module; with `hmac`, gives the host `hmacSha256` (ESP8266 builds lack SHA256). */
  crypto?: EspruinoCryptoModule;
  /** The EspruinoDocs `hmac` module; with `crypto`, gives the host `hmacSha256`. */
  hmac?: EspruinoHmacModule;
  /** Timers; default Espruino's global `setTimeout` / `clearTimeout`. */
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  /** Wall-clock milliseconds; default `Date.now()` (set the board's clock first, e.g. by SNTP or `setTime`). */
  now?: () => number;
  /** Receives diagnostics (never secrets). */
  log?: (level: HostLogLevel, message: string) => void;
}

/** An error passed to `onClose` or thrown: a plain `Error` with a string `code`. */
function hostError(code: string, message: string): Error {
  const error = new Error(message) as Error & { code: string };
  error.code = code;
  return error;
}

// Espruino's binary strings: one char per byte.
function binaryString(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i] as number);
  return out;
}

// Bytes from what Espruino hands out: a binary string, or an ArrayBuffer or typed array (which the Uint8Array
// constructor wraps or copies).
function bytesOf(data: unknown): Uint8Array {
  if (typeof data !== 'string') return new Uint8Array(data as ArrayBuffer);
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data.charCodeAt(i) & 255;
  return out;
}

/**
 * Creates a {@link Host} over Espruino's `net` / `tls` sockets. TLS options map onto `tls.connect({host, port, ca,
 * key, cert})` (and `servername`); Espruino resolves host names itself. Every connection reports `onClose` once,
 * when Espruino's `close` event comes (after `close()` too, once the send buffer is out), with a plain `Error` of
 * code `SocketError` when it failed or the peer closed, and nothing when the client closed it. Without `crypto` and
 * `hmac` the host has no
 * `hmacSha256`: give the client `sign`, a SAS token, or the portable `hmacSha256` of `@fieldhub/protocol`.
 *
 * @throws {Error} (code `ArgumentError`) when only one of `crypto` and `hmac` is given; a `ReferenceError` when no
 * timers are given and the runtime has no global `setTimeout` / `clearTimeout`.
 */
export function createEspruinoHost(options: EspruinoHostOptions): Host {
  const net = options.net;
  const tlsModule = options.tls;
  const crypto = options.crypto;
  const hmac = options.hmac;
  const log = options.log;
  const invalid = (message: string): Error => hostError('ArgumentError', 'createEspruinoHost: ' + message);
  if (!crypto !== !hmac) throw invalid('crypto and hmac go together');
  // Espruino's globals unless injected (passed as they are: Espruino's natives need no `this`).
  const later = options.setTimeout || setTimeout;
  const cancel = options.clearTimeout || clearTimeout;

  const connect = (target: HostConnectOptions, events: HostSocketEvents): HostSocket => {
    const tls = target.tls;
    if (tls && !tlsModule) throw invalid('no tls');
    // 0 connecting, 1 connected, 2 closing (close() called: no more data), 3 closed: nothing after onClose.
    let state = 0;
    // A batch is in Espruino's send buffer: the next waits for `drain`.
    let busy = false;
    let queue: Uint8Array[] = [];
    let failure: unknown;
    let socket: EspruinoSocket | undefined;

    const finish = (error?: unknown): void => {
      if (state === 3) return;
      state = 3;
      queue = [];
      events.onClose(error);
    };
    const pump = (): void => {
      if (state !== 1 || busy || !queue.length || !socket) return;
      let data = '';
      for (let i = 0; i < queue.length; i++) data += binaryString(queue[i] as Uint8Array);
      queue = [];
      busy = true;
      try {
        socket.write(data);
      } catch (_) {
        // "This socket is closed": its error and close events are on their way.
      }
    };
    const connectOptions: EspruinoConnectOptions = { host: target.host, port: target.port };
    if (tls) {
      if (tls.ca !== undefined) connectOptions.ca = tls.ca;
      if (tls.key !== undefined) connectOptions.key = tls.key;
      if (tls.cert !== undefined) connectOptions.cert = tls.cert;
      connectOptions.servername = tls.servername !== undefined ? tls.servername : target.host;
    }
    try {
      const opened = (tls ? (tlsModule as EspruinoNetModule) : net).connect(connectOptions, () => {
        if (state !== 0) return;
        state = 1;
        events.onConnect();
        pump();
      });
      opened.on('data', (data?: unknown) => {
        if (state === 1) events.onData(bytesOf(data));
      });
      opened.on('drain', () => {
        busy = false;
        pump();
      });
      opened.on('error', (error?: unknown) => {
        failure = error;
      });
      // Espruino emits `close` once per socket, after `error` when there was one.
      opened.on('close', () => {
        const error = failure as { message?: unknown } | undefined;
        finish(
          error
            ? hostError('SocketError', typeof error.message === 'string' ? error.message : 'socket error')
            : state === 2
              ? undefined
              : hostError('SocketError', 'connection closed'),
        );
      });
      socket = opened;
    } catch (error) {
      // Espruino throws from connect when it cannot find the host; no socket events follow for this connection.
      const failed = hostError('SocketError', 'cannot connect to ' + target.host + ': ' + error);
      later(() => finish(failed), 0);
    }
    return {
      write: (bytes: Uint8Array): void => {
        if (state > 1 || !bytes.length) return;
        queue.push(bytes);
        pump();
      },
      close: (): void => {
        if (state > 1) return;
        state = 2;
        queue = [];
        try {
          if (socket) socket.end();
        } catch (_) {
          // Closed already: its close event is on its way.
        }
      },
    };
  };

  const host: Host = {
    connect: connect,
    setTimeout: later,
    clearTimeout: cancel,
    now: options.now || (() => Date.now()),
  };
  if (crypto && hmac) {
    host.hmacSha256 = (key: Uint8Array, message: Uint8Array): Uint8Array =>
      bytesOf(new hmac.HMAC(new Uint8Array(key).buffer, crypto.SHA256, 64, 32).digest(new Uint8Array(message).buffer));
  }
  if (log) host.log = log;
  return host;
}
