/**
 * One serial port that stays open: opens `path` with serialport 13, and when the port closes or fails (a cable
 * pull: a USB adapter or a PTY vanishes) opens it again with backoff (100 ms doubling to 2 s) until it is back or
 * the gateway closes. Each (re)open is reported so that the session sends `RESET` (PROTOCOL.md §4.1).
 */
import type { Logger } from '@fieldhub/device';
import { SerialPort } from 'serialport';

/** What a {@link SerialConnection} reports. Handlers must not throw. */
export interface SerialConnectionEvents {
  opened(): void;
  data(bytes: Uint8Array): void;
  closed(): void;
}

/** Options of {@link SerialConnection}. */
export interface SerialConnectionOptions {
  readonly path: string;
  readonly baudRate: number;
  readonly events: SerialConnectionEvents;
  readonly logger: Logger;
  /** First reopen delay. Default 100 ms. */
  readonly minBackoffMs?: number;
  /** Reopen delay cap. Default 2000 ms. */
  readonly maxBackoffMs?: number;
}

/** A serial port kept open; see the file comment. */
export class SerialConnection {
  readonly #options: SerialConnectionOptions;
  #port: SerialPort | undefined;
  #stopped = false;
  #backoffMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failures = 0;

  constructor(options: SerialConnectionOptions) {
    this.#options = options;
    this.#backoffMs = options.minBackoffMs ?? 100;
  }

  /** Whether the port is open now. */
  get isOpen(): boolean {
    return this.#port?.isOpen === true;
  }

  /** Starts opening the port (and keeps it open). */
  start(): void {
    this.#open();
  }

  /** Writes bytes when the port is open; dropped otherwise (the link layer retransmits what matters). */
  write(bytes: Uint8Array): void {
    const port = this.#port;
    if (port?.isOpen !== true) return;
    port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), (error) => {
      if (error)
        this.#options.logger.debug?.('serial write failed', { path: this.#options.path, error: error.message });
    });
  }

  /** Closes the port and stops reopening it. Idempotent. */
  async close(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const port = this.#port;
    this.#port = undefined;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  #open(): void {
    if (this.#stopped) return;
    const { path, baudRate, logger } = this.#options;
    const port = new SerialPort({ path, baudRate, autoOpen: false });
    port.open((error) => {
      if (this.#stopped) {
        if (!error) port.close();
        return;
      }
      if (error) {
        // Logged once per outage, then quietly retried: a missing adapter is a state, not news every 2 s.
        if (this.#failures++ === 0) logger.warn?.('cannot open serial port; retrying', { path, error: error.message });
        this.#retry();
        return;
      }
      this.#failures = 0;
      this.#backoffMs = this.#options.minBackoffMs ?? 100;
      this.#port = port;
      logger.info?.('serial port open', { path, baudRate });
      port.on('data', (chunk: Buffer) =>
        this.#options.events.data(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)),
      );
      let gone = false;
      const lost = (reason: string): void => {
        if (gone) return;
        gone = true;
        if (this.#port === port) this.#port = undefined;
        if (port.isOpen) port.close(() => undefined);
        if (this.#stopped) return;
        logger.warn?.('serial port lost; reopening', { path, reason });
        this.#options.events.closed();
        this.#retry();
      };
      port.on('close', (closeError?: Error) => lost(closeError?.message ?? 'closed'));
      port.on('error', (portError: Error) => lost(portError.message));
      this.#options.events.opened();
    });
  }

  #retry(): void {
    if (this.#stopped) return;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#options.maxBackoffMs ?? 2000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#open();
    }, delay);
  }
}
