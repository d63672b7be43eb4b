/**
 * The sending side shared by the service links that hand out a core queue's locked items, one per AMQP message:
 * feedback batches (`feedback.ts`) and file-upload notifications (`file-notifications.ts`). The route says how to
 * lock, encode and settle an item ({@link LockedQueue}); this link decides when to send and what a disposition means:
 * - It sends only while the peer's credit has room. rhea takes the credit when it transmits, on the next tick, so
 *   `sendable()` still counts a credit just spent: the link waits that tick after each send, or the next item would
 *   be locked into its send buffer, beyond the credit, instead of going to another receiver with room.
 * - Deliveries stay unsettled until the peer disposes: `accepted` completes, `rejected` completes too (dead-letters:
 *   there is no queue a service could read dead letters from), `released` / `modified` abandon (delivered again),
 *   settled without an outcome completes (AMQP 1.0 §3.4: the sender decides; Azure completes). A peer asking for
 *   pre-settled deliveries (`snd-settle-mode` settled) gets at-most-once: the item is completed when sent.
 * - When the link closes, each unsettled item is settled by what the peer said so far, at once: rhea records a
 *   disposition read together with the detach on its delivery but dispatches it a tick later, after the close, so
 *   an item the peer accepted right before detaching is completed, not abandoned; what it did not settle is
 *   abandoned (delivered again at once instead of when its lock lapses).
 * - It wakes on the queue's bus notice and, for locks that lapsed elsewhere (a receiver that vanished without
 *   settling, a restart), every 15 s.
 */
// rhea is CommonJS: its values come through the default import (Node's ESM loader finds no named exports).
import rhea, { type Delivery, type EventContext, type Message, type Sender } from 'rhea';
import type { AmqpConnectionContext, LinkHandle } from '../contract';

/** How a settlement ends an item: deleted from the queue, or given back to it. */
export type Settlement = 'complete' | 'abandon';

/** A core queue of items handed out under a lock token, as a {@link openLockedQueueLink} sends them. */
export interface LockedQueue<Item> {
  /** Names the item in logs, e.g. `feedback batch`. */
  readonly itemName: string;
  /** The bus subject whose notices mean an item may be waiting. */
  readonly subject: string;
  /** Locks the next item, or resolves undefined when none waits. */
  receive(): Promise<Item | undefined>;
  /** The item's lock token (a UUID: also its message id and, as 16 bytes, its delivery tag). */
  lockToken(item: Item): string;
  /** The AMQP message that carries the item. */
  message(item: Item): Message;
  /** Log fields describing a sent item (never secrets). */
  describe(item: Item): Record<string, unknown>;
  /**
   * Completes or abandons the item locked under `lockToken`.
   * @throws HubError DeviceMessageLockLost when the lock lapsed (logged at debug: the item is another receiver's).
   */
  settle(lockToken: string, settlement: Settlement): Promise<void>;
}

const rescanIntervalMs = 15_000;

/**
 * Serves one attached link (the peer's receiver) from `queue`: starts sending at once.
 * @returns the handle the connection layer closes on detach, connection close or principal expiry.
 */
export function openLockedQueueLink<Item>(
  link: Sender,
  context: AmqpConnectionContext,
  queue: LockedQueue<Item>,
): LinkHandle {
  return new LockedQueueLink(link, context, queue).start();
}

/** What the peer's disposition of `delivery` says so far; none yet (or `released` / `modified`) abandons. */
export function settlementOf(delivery: Delivery): Settlement {
  const state = delivery.remote_state;
  if (state === undefined) return delivery.remote_settled ? 'complete' : 'abandon';
  // rhea keeps the outcome unwrapped: its class names it (as rhea's own dispatch of the outcome event reads it).
  const name = (state.constructor as { composite_type?: unknown }).composite_type;
  return name === 'accepted' || name === 'rejected' ? 'complete' : 'abandon';
}

class LockedQueueLink<Item> implements LinkHandle {
  /** Lock tokens of the items sent and not yet settled, by delivery. */
  private readonly unsettled = new Map<Delivery, string>();
  private closed = false;
  private pumping = false;
  private again = false;
  private unsubscribe: (() => void) | undefined;
  private rescanTimer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> = Promise.resolve();
  private closing: Promise<void> = Promise.resolve();
  private readonly listeners: [string, (event: EventContext) => void][] = [
    ['sendable', () => this.pump()],
    ['accepted', (event) => this.disposed(event, 'complete')],
    ['rejected', (event) => this.disposed(event, 'complete')],
    // rhea reports `modified` as `released` unless told otherwise; both are listened to for either setting.
    ['released', (event) => this.disposed(event, 'abandon')],
    ['modified', (event) => this.disposed(event, 'abandon')],
    ['settled', (event) => this.disposed(event, 'complete')],
  ];

  constructor(
    private readonly link: Sender,
    private readonly context: AmqpConnectionContext,
    private readonly queue: LockedQueue<Item>,
  ) {}

  start(): this {
    const { bus, hubName } = this.context.core.context;
    for (const [name, listener] of this.listeners) this.link.on(name, listener);
    this.unsubscribe = bus.subscribe(hubName, this.queue.subject, () => this.pump());
    this.rescanTimer = setInterval(() => this.pump(), rescanIntervalMs);
    this.rescanTimer.unref?.();
    this.pump();
    return this;
  }

  /** Stops sending and settles what it holds by the peer's word; resolves when the queue has it back. */
  close(): Promise<void> {
    if (this.closed) return this.closing;
    this.closed = true;
    this.unsubscribe?.();
    clearInterval(this.rescanTimer);
    for (const [name, listener] of this.listeners) this.link.removeListener(name, listener);
    // A disposition read together with the detach is on its delivery already, but its event would come after this.
    const settlements = [...this.unsettled].map(([delivery, lockToken]) =>
      this.settle(lockToken, settlementOf(delivery)),
    );
    this.unsettled.clear();
    // An item being locked right now is abandoned by `run` when it sees the link closed.
    this.closing = Promise.all([...settlements, this.running]).then(() => undefined);
    return this.closing;
  }

  /** Sends items until credit runs out or nothing waits. Re-entrant calls coalesce. */
  private pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    this.running = this.run()
      .catch((error: unknown) =>
        this.context.logger.error({ err: error, ...this.context.describe() }, `${this.queue.itemName} delivery failed`),
      )
      .finally(() => {
        this.pumping = false;
      });
  }

  private async run(): Promise<void> {
    do {
      this.again = false;
      while (!this.closed && this.link.sendable()) {
        const item = await this.queue.receive();
        if (item === undefined) break;
        const lockToken = this.queue.lockToken(item);
        if (this.closed || !this.link.sendable()) {
          // The link went away (or lost its credit) while the item was being locked: give it back.
          await this.settle(lockToken, 'abandon');
          break;
        }
        const delivery = this.link.send(this.queue.message(item), rhea.string_to_uuid(lockToken));
        this.context.logger.debug(
          { ...this.context.describe(), ...this.queue.describe(item), lockToken },
          `${this.queue.itemName} sent`,
        );
        if (delivery.settled) await this.settle(lockToken, 'complete');
        else this.unsettled.set(delivery, lockToken);
        // rhea spends the credit when it transmits, on the next tick: until then `sendable()` still counts it.
        await new Promise<void>((resolve) => process.nextTick(resolve));
      }
    } while (this.again && !this.closed);
  }

  private disposed(event: EventContext, settlement: Settlement): void {
    const delivery = event.delivery;
    if (!delivery) return;
    const lockToken = this.unsettled.get(delivery);
    if (lockToken === undefined) return;
    this.unsettled.delete(delivery);
    void this.settle(lockToken, settlement);
  }

  private settle(lockToken: string, settlement: Settlement): Promise<void> {
    // DeviceMessageLockLost: the lock lapsed and another receive took the item; it is that receiver's now.
    return this.queue
      .settle(lockToken, settlement)
      .catch((error: unknown) =>
        this.context.logger.debug(
          { err: error, ...this.context.describe(), lockToken, settlement },
          `${this.queue.itemName} settlement failed`,
        ),
      );
  }
}
