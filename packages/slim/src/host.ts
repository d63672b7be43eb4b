/**
 * The host: everything the slim client needs from the runtime it runs on, injected so that the client itself is
 * plain ECMAScript (reference: embedded-runtimes.md §4). Adapters: `hosts/ecma419.ts` (Moddable XS),
 * `hosts/espruino.ts` (Espruino `net` / `tls` / `crypto` + the `hmac` module), `hosts/node.ts` (Node, for tests),
 * and the bridge host the engine tests use (QuickJS, XS) to reach real sockets through the test process.
 *
 * Adapters close over their socket objects and never rely on `this` inside callbacks: Moddable's sample TLS socket
 * calls `onReadable` with `this` bound to a private object (embedded-runtimes.md §2.1).
 */

/** TLS options of {@link HostConnectOptions}. Every field is optional; adapters map them onto their own names. */
export interface HostTlsOptions {
  /** Server name for SNI and certificate checks; defaults to the host dialled. */
  servername?: string;
  /** Trusted CA certificates, PEM text or DER bytes, as the runtime accepts them. */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** Client certificate and key, for hosts that support X.509 (PEM or DER). */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Whether to check the server certificate (default true; Espruino cannot, see the reference §1.2). */
  verify?: boolean;
}

/** Where {@link Host.connect} dials. */
export interface HostConnectOptions {
  /** Host name or address. */
  host: string;
  port: number;
  /** TLS options; absent means plain TCP (tests against a local broker only: IoT Hub needs TLS). */
  tls?: HostTlsOptions;
}

/**
 * What a socket reports. `onConnect` once when the connection (and TLS handshake) is up; `onData` for every chunk
 * received, in order, possibly splitting or joining MQTT packets anyhow; `onClose` exactly once, whatever the
 * reason (refused, reset, closed by either side), with the error when there was one. No callback runs after
 * `onClose`.
 */
export interface HostSocketEvents {
  onConnect(): void;
  onData(bytes: Uint8Array): void;
  onClose(error?: unknown): void;
}

/** A connected (or connecting) socket. `write` queues the bytes; `close` is idempotent and ends in `onClose`. */
export interface HostSocket {
  write(bytes: Uint8Array): void;
  close(): void;
}

/** Log levels of {@link Host.log}. */
export type HostLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The injected host. */
export interface Host {
  /** Opens a TCP (or TLS) connection. May call `events.onClose` later instead of `onConnect`; never throws for
   * network failures (only for invalid options). */
  connect(options: HostConnectOptions, events: HostSocketEvents): HostSocket;
  /** One-shot timer; the handle is opaque to the client. */
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Wall-clock milliseconds since the Unix epoch (SAS expiry needs real time; a board syncs it by SNTP or the
   * bridge's time sync). */
  now(): number;
  /** HMAC-SHA256; optional: without it the client needs `options.sign` or `options.sasToken`, or the portable
   * `hmacSha256` of `@fieldhub/protocol` passed in by the glue. */
  hmacSha256?(key: Uint8Array, message: Uint8Array): Uint8Array;
  /** Diagnostics; optional. Secrets (keys, signatures, tokens) are never passed here. */
  log?(level: HostLogLevel, message: string): void;
}
