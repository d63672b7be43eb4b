/**
 * A hub sender link whose messages the peer may be slow to take (twin responses, desired-property pushes,
 * direct-method requests). rhea queues a message sent without credit until the peer grants some, without bound,
 * and throws once its session's delivery buffer is full. Overflow policy, as the MQTT head's for desired patches:
 * at most `limit` messages wait for credit; one more detaches the link with `amqp:resource-limit-exceeded` (the
 * device re-attaches and re-reads its twin, as after any reconnect).
 */
import type { Message, Sender } from 'rhea';
import { AmqpErrorConditions } from '../contract';

/** Messages that may wait for credit on one link (the MQTT head's `maxQueuedDesiredPatches` default). */
export const maxQueuedMessages = 100;

/** A sender link with a bounded queue of messages waiting for credit. */
export class OutgoingLink {
  private sent = 0;

  constructor(
    readonly sender: Sender,
    private readonly limit = maxQueuedMessages,
  ) {}

  /** Messages sent but not yet transferred (rhea counts transfers in the link's delivery count). */
  get waiting(): number {
    const transferred = (this.sender as unknown as { delivery_count?: unknown }).delivery_count;
    return typeof transferred === 'number' ? Math.max(0, this.sent - transferred) : 0;
  }

  /**
   * Sends `message`, or detaches the link when too many wait for credit or rhea refuses it. Returns whether it was
   * sent.
   */
  send(message: Message): boolean {
    if (!this.sender.is_open()) return false;
    if (this.waiting >= this.limit) {
      this.detach(`more than ${this.limit} messages waiting for link credit`);
      return false;
    }
    try {
      this.sender.send(message);
    } catch (error) {
      this.detach(`the message could not be sent: ${error instanceof Error ? error.message : String(error)}`);
      return false;
    }
    this.sent++;
    return true;
  }

  private detach(description: string): void {
    this.sender.close({ condition: AmqpErrorConditions.resourceLimitExceeded, description });
  }
}
