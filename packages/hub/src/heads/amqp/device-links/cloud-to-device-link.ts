/**
 * Cloud-to-device delivery over AMQP (protocol-device.md §3.3, §3.4, §7): the device's receiver link on
 * `/devices/{d}/messages/devicebound` (or `deviceBound`). The queue, locks, delivery counts and feedback are the
 * core's (core/cloud-to-device.ts); this class keeps only what is in flight on this link.
 *
 * - Each delivery's tag is its lock token as a 16-byte GUID (§0.3); the device's outcome settles it:
 *   `accepted` = complete, `rejected` = reject (dead-lettered, feedback `Rejected`), `released` / `modified` =
 *   abandon (delivered again with delivery count + 1). A settlement without an outcome counts as `released`.
 * - At most `settings.cloudToDeviceWindow` deliveries are unsettled, and never more than the link's credit.
 * - When the link opens, messages a previous link or connection of the device received but never settled are
 *   delivered again first (`pending`, as the MQTT head does on a new subscription).
 * - A delivery whose lock lapses leaves the window; the core delivers that message again (new lock, new tag).
 *
 * Message shape (§3.4): properties `message_id`, `to`, `correlation_id`, `user_id` (binary), `content_type`,
 * `content_encoding`, `absolute_expiry_time`; application properties = the message's, plus `iothub-ack` when
 * feedback was asked for; annotations `iothub-enqueuedtime` (timestamp), `iothub-deliverycount` (ubyte),
 * `x-opt-sequence-number` (ulong), `x-opt-lock-token` (the lock token text), body = one data section. The types
 * are the .NET device SDK's: it reads exactly `byte` and `ulong` and sees 0 for any other numeric type.
 */
import rhea, { type Delivery, type EventContext, type Message, type Sender } from 'rhea';
import { type CloudToDeviceDelivery, cloudToDeviceSubject } from '../../../core/cloud-to-device';
import type { SessionIdentity } from '../../mqtt/session';
import type { AmqpConnectionContext } from '../contract';
import { lockTokenTag } from './amqp-values';

interface InFlight {
  readonly lockToken: string;
  readonly lockedUntil: number;
}

/** Settlements of a delivery, by the outcome the device sent. */
type Outcome = 'complete' | 'reject' | 'abandon';

/** The AMQP message of a cloud-to-device delivery. */
export function cloudToDeviceMessage(delivery: CloudToDeviceDelivery): Message {
  const { message } = delivery;
  const applicationProperties: Record<string, string> = { ...message.properties };
  if (message.ack !== 'none') applicationProperties['iothub-ack'] = message.ack;
  const amqpMessage: Message = {
    message_id: message.messageId,
    to: message.to,
    absolute_expiry_time: new Date(message.expiryTimeUtc),
    application_properties: applicationProperties,
    message_annotations: {
      'iothub-enqueuedtime': new Date(message.enqueuedTimeUtc),
      'iothub-deliverycount': rhea.types.wrap_ubyte(Math.min(delivery.deliveryCount, 255)),
      'x-opt-sequence-number': rhea.types.wrap_ulong(message.sequenceNumber),
      'x-opt-lock-token': delivery.lockToken,
    },
    body: rhea.message.data_section(Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength)),
  };
  if (message.correlationId !== undefined) amqpMessage.correlation_id = message.correlationId;
  if (message.userId !== undefined) amqpMessage.user_id = Buffer.from(message.userId, 'utf8') as unknown as string;
  if (message.contentType !== undefined) amqpMessage.content_type = message.contentType;
  if (message.contentEncoding !== undefined) amqpMessage.content_encoding = message.contentEncoding;
  return amqpMessage;
}

/** Serves one cloud-to-device link of a device. */
export class CloudToDeviceLink {
  private readonly inFlight = new Map<Delivery, InFlight>();
  private unsubscribe: (() => void) | undefined;
  private pumping = false;
  private again = false;
  private redelivered = false;
  private stopped = false;
  private lockTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly sender: Sender,
    private readonly identity: SessionIdentity,
    private readonly context: AmqpConnectionContext,
  ) {
    sender.on('sendable', this.onSendable);
    sender.on('accepted', this.onAccepted);
    sender.on('rejected', this.onRejected);
    sender.on('released', this.onReleased);
    sender.on('modified', this.onReleased);
    sender.on('settled', this.onSettled);
    const { bus, hubName } = context.core.context;
    this.unsubscribe = bus.subscribe(hubName, cloudToDeviceSubject(identity.deviceId), () => this.pump());
    this.pump();
  }

  /** Stops delivering; what is in flight stays locked and is redelivered by the core. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    clearTimeout(this.lockTimer);
    this.sender.removeListener('sendable', this.onSendable);
    this.sender.removeListener('accepted', this.onAccepted);
    this.sender.removeListener('rejected', this.onRejected);
    this.sender.removeListener('released', this.onReleased);
    this.sender.removeListener('modified', this.onReleased);
    this.sender.removeListener('settled', this.onSettled);
    this.inFlight.clear();
  }

  private get active(): boolean {
    return !this.stopped && this.sender.is_open();
  }

  private readonly onSendable = (): void => this.pump();
  private readonly onAccepted = (event: EventContext): void => this.settle(event, 'complete');
  private readonly onRejected = (event: EventContext): void => this.settle(event, 'reject');
  private readonly onReleased = (event: EventContext): void => this.settle(event, 'abandon');
  // Settled with no outcome (the default outcome is the receiver's choice): give the message back.
  private readonly onSettled = (event: EventContext): void => this.settle(event, 'abandon');

  private settle(event: EventContext, outcome: Outcome): void {
    const delivery = event.delivery;
    if (!delivery) return;
    const entry = this.inFlight.get(delivery);
    if (!entry) return;
    this.inFlight.delete(delivery);
    // The device sent an outcome without settling (rcv-settle-mode second): settle it on our side.
    if (!delivery.settled) delivery.update(true);
    const { cloudToDevice } = this.context.core;
    const { deviceId } = this.identity;
    if (this.context.logger.isLevelEnabled('debug')) {
      this.context.logger.debug(
        { ...this.context.describe(), deviceId, outcome, lockToken: entry.lockToken },
        'cloud-to-device delivery settled',
      );
    }
    const operation =
      outcome === 'complete'
        ? cloudToDevice.complete(deviceId, entry.lockToken)
        : outcome === 'reject'
          ? cloudToDevice.reject(deviceId, entry.lockToken)
          : cloudToDevice.abandon(deviceId, entry.lockToken);
    operation
      .catch((error: unknown) =>
        // Typically 412002: the lock lapsed and another delivery took the message.
        this.context.logger.debug(
          { err: error, ...this.context.describe(), deviceId, outcome },
          'cloud-to-device settlement failed',
        ),
      )
      .finally(() => this.pump());
  }

  /** Delivers until the window or the credit is used up, or nothing is deliverable. Re-entrant calls coalesce. */
  private pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    this.run()
      .catch((error: unknown) =>
        this.context.logger.error(
          { err: error, ...this.context.describe(), deviceId: this.identity.deviceId },
          'cloud-to-device delivery failed',
        ),
      )
      .finally(() => {
        this.pumping = false;
        this.armLockTimer();
      });
  }

  private async run(): Promise<void> {
    const { cloudToDevice } = this.context.core;
    const { deviceId } = this.identity;
    do {
      this.again = false;
      if (!this.redelivered) {
        this.redelivered = true;
        // What a previous link left locked goes out first, whatever the credit: rhea holds a delivery until the
        // peer grants credit, and its lock lapses (the core delivers it again) if that takes too long.
        for (const delivery of await cloudToDevice.pending(deviceId)) {
          if (!this.active) return;
          this.deliver(delivery);
        }
      }
      this.forgetLapsed();
      while (this.active && this.hasRoom()) {
        const delivery = await cloudToDevice.receive(deviceId);
        if (!delivery) break;
        if (!this.active) return;
        this.deliver(delivery);
      }
    } while (this.again && this.active);
  }

  /** Whether another delivery fits: under the window and within the credit the device granted. */
  private hasRoom(): boolean {
    if (this.inFlight.size >= this.context.settings.cloudToDeviceWindow || !this.sender.sendable()) return false;
    // rhea takes credit off when a delivery is transferred, which happens after this turn: deliveries sent but
    // not yet transferred still use credit up.
    const credit = (this.sender as unknown as { credit?: number }).credit ?? 0;
    return credit - this.untransferred() > 0;
  }

  /** In-flight deliveries rhea has not yet transferred (rhea 3: ids from the session's next pending delivery). */
  private untransferred(): number {
    const outgoing = (this.sender.session as unknown as { outgoing?: { next_pending_delivery?: unknown } }).outgoing;
    const next = outgoing?.next_pending_delivery;
    if (typeof next !== 'number') return 0;
    let count = 0;
    for (const delivery of this.inFlight.keys()) if (delivery.id >= next) count++;
    return count;
  }

  private deliver(delivery: CloudToDeviceDelivery): void {
    const sent = this.sender.send(cloudToDeviceMessage(delivery), lockTokenTag(delivery.lockToken));
    this.inFlight.set(sent, { lockToken: delivery.lockToken, lockedUntil: delivery.lockedUntil });
  }

  private forgetLapsed(): void {
    const now = this.context.core.context.now();
    for (const [delivery, entry] of this.inFlight) if (entry.lockedUntil <= now) this.inFlight.delete(delivery);
  }

  /** Wakes the pump when the earliest in-flight lock lapses, so the core can deliver that message again. */
  private armLockTimer(): void {
    clearTimeout(this.lockTimer);
    if (!this.active || this.inFlight.size === 0) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const entry of this.inFlight.values()) earliest = Math.min(earliest, entry.lockedUntil);
    const delay = Math.max(0, earliest - this.context.core.context.now()) + 50;
    this.lockTimer = setTimeout(() => this.pump(), delay);
    this.lockTimer.unref?.();
  }
}
