/**
 * The Bus seam: how hub parts (and, with scale-out, hub processes) reach each other. `local/` is in-process;
 * a NATS JetStream bus comes with scale-out. Subjects are scoped by hub name.
 *
 * - presence: which session currently holds a device identity (for "is it online", eviction, routing).
 * - request/reply: a direct method call to whichever session holds the device.
 * - fan-out: notifications (a cloud-to-device message was queued, the desired properties changed, evict).
 */

/** A message on the bus: a subject-specific JSON value. */
export type BusPayload = unknown;

/** Unsubscribes a handler. Idempotent. */
export type Unsubscribe = () => void;

/** Options for a request. */
export interface RequestOptions {
  /** Give up after this many ms. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export interface Bus {
  /** Fire-and-forget to every subscriber of `subject` (none is fine). */
  publish(hub: string, subject: string, payload: BusPayload): void;
  /** Receives every publish on `subject`. */
  subscribe(hub: string, subject: string, handler: (payload: BusPayload) => void): Unsubscribe;
  /**
   * Registers the responder for a subject (one per subject; a second registration replaces the first, which is
   * how a new session of the same device takes over). The handler's result is the reply.
   */
  respond(hub: string, subject: string, handler: (payload: BusPayload) => Promise<BusPayload>): Unsubscribe;
  /** Sends to the responder of `subject` and awaits its reply. @throws BusNoResponder, BusTimeout, AbortError */
  request(hub: string, subject: string, payload: BusPayload, options: RequestOptions): Promise<BusPayload>;
  /** Whether a responder is registered for `subject` now. */
  hasResponder(hub: string, subject: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Nobody responds on the subject. */
export class BusNoResponder extends Error {
  constructor(readonly subject: string) {
    super(`no responder on ${subject}`);
    this.name = 'BusNoResponder';
  }
}

/** The responder did not answer in time. */
export class BusTimeout extends Error {
  constructor(readonly subject: string) {
    super(`no reply on ${subject} in time`);
    this.name = 'BusTimeout';
  }
}

/** The bus was closed: pending requests are rejected with this, and new ones too. */
export class BusClosed extends Error {
  constructor() {
    super('the bus is closed');
    this.name = 'BusClosed';
  }
}
