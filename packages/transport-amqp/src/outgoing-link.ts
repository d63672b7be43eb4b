/**
 * A sending link that waits for credit itself. rhea queues a delivery without credit in its session-wide
 * outgoing queue, where it holds up every later delivery of the session (twin requests behind telemetry); here
 * each link keeps its own queue and hands rhea a delivery only when the link can send it, and each delivery
 * learns its outcome (AMQP 1.0 §3.4: accepted, rejected, released, modified).
 */
import {
  type AmqpError,
  type Delivery,
  type EventContext,
  type Message,
  type Sender,
  SenderEvents,
} from 'rhea-promise';

/** How the hub settled a delivery; `settled` for a link that sends pre-settled (the twin sender). */
export type DeliveryOutcome =
  | { readonly kind: 'accepted' | 'released' | 'modified' | 'settled' }
  | { readonly kind: 'rejected'; readonly error: AmqpError | undefined };

interface Queued {
  readonly message: Message;
  readonly onOutcome: (outcome: DeliveryOutcome) => void;
  cancelled: boolean;
}

/** A sender with a per-link queue for credit and a callback per delivery. */
export class OutgoingLink {
  readonly sender: Sender;
  readonly #queue: Queued[] = [];
  readonly #outcomes = new Map<number, (outcome: DeliveryOutcome) => void>();

  constructor(sender: Sender) {
    this.sender = sender;
    sender.on(SenderEvents.sendable, () => this.#drain());
    const settle = (kind: 'accepted' | 'released' | 'modified' | 'rejected') => (context: EventContext) => {
      const delivery = context.delivery;
      if (delivery === undefined) return;
      const onOutcome = this.#outcomes.get(delivery.id);
      if (onOutcome === undefined) return;
      this.#outcomes.delete(delivery.id);
      if (kind === 'rejected') {
        const error = (delivery.remote_state as { error?: AmqpError } | undefined)?.error;
        onOutcome({ kind, error });
      } else {
        onOutcome({ kind });
      }
    };
    sender.on(SenderEvents.accepted, settle('accepted'));
    sender.on(SenderEvents.rejected, settle('rejected'));
    sender.on(SenderEvents.released, settle('released'));
    sender.on(SenderEvents.modified, settle('modified'));
  }

  /**
   * Sends `message` as soon as the link has credit; `onOutcome` runs once with the hub's outcome (or `settled` right
   * after sending on a pre-settled link). Returns a function that withdraws the message if it is still queued.
   */
  send(message: Message, onOutcome: (outcome: DeliveryOutcome) => void): () => void {
    const queued: Queued = { message, onOutcome, cancelled: false };
    this.#queue.push(queued);
    this.#drain();
    return () => {
      queued.cancelled = true;
    };
  }

  /** Forgets every delivery that waits for credit or an outcome (the link or connection is gone). */
  clear(): void {
    this.#queue.length = 0;
    this.#outcomes.clear();
  }

  #drain(): void {
    while (this.#queue.length > 0 && this.sender.isOpen() && this.sender.sendable()) {
      const queued = this.#queue.shift() as Queued;
      if (queued.cancelled) continue;
      const delivery: Delivery = this.sender.send(queued.message);
      if (this.sender.sendSettleMode === 1) queued.onOutcome({ kind: 'settled' });
      else this.#outcomes.set(delivery.id, queued.onOutcome);
    }
  }
}
