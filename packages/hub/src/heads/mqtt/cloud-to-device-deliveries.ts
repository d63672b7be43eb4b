/**
 * Cloud-to-device delivery over MQTT (protocol-device.md §2.4, §2.5, §2.8): while the device is subscribed to
 * `devices/{id}/messages/devicebound/#`, queued messages are published on `devices/{id}/messages/devicebound/{bag}`
 * with the QoS granted; the device's PUBACK COMPLETES the message. The queue, locks, delivery counts and feedback
 * are the core's (core/cloud-to-device.ts); this class only keeps what is in flight on this connection.
 *
 * - At most `cloudToDeviceWindow` messages are unacknowledged at a time; deliveries wait for 'drain'.
 * - On the first subscription of a session, messages a previous session received but never acknowledged are
 *   delivered again (`pending`: new lock, delivery count + 1).
 * - A message whose lock lapses while in flight (no PUBACK within the lock timeout) leaves the window; the core
 *   delivers it again (with a new packet id) when its lock has lapsed.
 * - QoS 0 subscription: delivered and completed at once (at most once).
 */
import { cloudToDeviceTopic, isSystemPropertyKey, type MessageSystemProperties } from '@fieldhub/protocol';
import { type CloudToDeviceDelivery, cloudToDeviceSubject } from '../../core/cloud-to-device';
import type { MqttSession } from './session';

interface InFlight {
  readonly lockToken: string;
  readonly lockedUntil: number;
}

/** Builds the topic of a delivery (system properties first, in Node's order, then application properties). */
export function deliveryTopic(delivery: CloudToDeviceDelivery): string {
  const { message } = delivery;
  const system: MessageSystemProperties = {
    messageId: message.messageId,
    to: message.to,
    expiryTimeUtc: new Date(message.expiryTimeUtc).toISOString(),
  };
  if (message.correlationId !== undefined) system.correlationId = message.correlationId;
  if (message.userId !== undefined) system.userId = message.userId;
  if (message.contentType !== undefined) system.contentType = message.contentType;
  if (message.contentEncoding !== undefined) system.contentEncoding = message.contentEncoding;
  if (message.ack !== 'none') system.ack = message.ack;
  // An application property spelled like a system key (`$.mid`) would come back as that system property.
  const properties: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.properties)) {
    if (name !== '' && !isSystemPropertyKey(name)) properties[name] = value;
  }
  return cloudToDeviceTopic({ deviceId: message.deviceId, systemProperties: system, properties });
}

/** The cloud-to-device deliveries of one session. */
export class CloudToDeviceDeliveries {
  private readonly inFlight = new Map<number, InFlight>();
  private unsubscribe: (() => void) | undefined;
  private pumping = false;
  private again = false;
  private redelivered = false;
  private lastPacketId = 0;
  private lockTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly session: MqttSession,
    private qos: 0 | 1,
  ) {}

  /** Starts (or, on a repeated SUBSCRIBE, keeps) delivering with the granted QoS. */
  start(qos: 0 | 1): void {
    this.qos = qos;
    const identity = this.session.identity;
    if (!identity) return;
    if (!this.unsubscribe) {
      const { bus, hubName } = this.session.core.context;
      this.unsubscribe = bus.subscribe(hubName, cloudToDeviceSubject(identity.deviceId), () => this.pump());
    }
    this.pump();
  }

  /** Stops delivering; what is in flight stays locked and is redelivered by the core. Idempotent. */
  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    clearTimeout(this.lockTimer);
  }

  /** The device acknowledged `packetId`: complete the message. */
  acknowledged(packetId: number): void {
    const entry = this.inFlight.get(packetId);
    const identity = this.session.identity;
    if (!entry || !identity) return;
    this.inFlight.delete(packetId);
    this.session.core.cloudToDevice
      .complete(identity.deviceId, entry.lockToken)
      .catch((error: unknown) =>
        this.session.logger.debug({ err: error, ...this.session.describe() }, 'cloud-to-device completion failed'),
      )
      .finally(() => this.pump());
  }

  private get active(): boolean {
    return this.unsubscribe !== undefined && this.session.state === 'connected';
  }

  /** Delivers until the window is full or the queue has nothing deliverable. Re-entrant calls coalesce. */
  pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    this.run()
      .catch((error: unknown) =>
        this.session.logger.error({ err: error, ...this.session.describe() }, 'cloud-to-device delivery failed'),
      )
      .finally(() => {
        this.pumping = false;
        this.armLockTimer();
      });
  }

  private async run(): Promise<void> {
    const identity = this.session.identity;
    if (!identity) return;
    const { cloudToDevice } = this.session.core;
    do {
      this.again = false;
      if (!this.redelivered) {
        this.redelivered = true;
        for (const delivery of await cloudToDevice.pending(identity.deviceId)) {
          if (!this.active) return;
          await this.deliver(delivery);
        }
      }
      this.forgetLapsed();
      while (this.active && this.inFlight.size < this.session.head.settings.cloudToDeviceWindow) {
        if (this.session.congested) await this.session.whenWritable();
        if (!this.active) return;
        const delivery = await cloudToDevice.receive(identity.deviceId);
        if (!delivery) break;
        await this.deliver(delivery);
      }
    } while (this.again && this.active);
  }

  private async deliver(delivery: CloudToDeviceDelivery): Promise<void> {
    const identity = this.session.identity;
    if (!identity) return;
    let topic: string;
    try {
      topic = deliveryTopic(delivery);
    } catch (error) {
      // Cannot be expressed as a topic (e.g. an unpaired surrogate): leave it to lock expiry and dead-lettering.
      this.session.logger.warn(
        { err: error, messageId: delivery.message.messageId },
        'undeliverable cloud-to-device message',
      );
      return;
    }
    const body = Buffer.from(
      delivery.message.body.buffer,
      delivery.message.body.byteOffset,
      delivery.message.body.byteLength,
    );
    if (this.qos === 0) {
      this.session.publish(topic, body);
      await this.session.core.cloudToDevice.complete(identity.deviceId, delivery.lockToken);
      return;
    }
    const packetId = this.allocatePacketId();
    this.inFlight.set(packetId, { lockToken: delivery.lockToken, lockedUntil: delivery.lockedUntil });
    this.session.publish(topic, body, packetId);
  }

  private allocatePacketId(): number {
    do this.lastPacketId = (this.lastPacketId % 0xffff) + 1;
    while (this.inFlight.has(this.lastPacketId));
    return this.lastPacketId;
  }

  private forgetLapsed(): void {
    const now = this.session.core.context.now();
    for (const [packetId, entry] of this.inFlight) if (entry.lockedUntil <= now) this.inFlight.delete(packetId);
  }

  /** Wakes the pump when the earliest in-flight lock lapses, so the core can deliver that message again. */
  private armLockTimer(): void {
    clearTimeout(this.lockTimer);
    if (!this.active || this.inFlight.size === 0) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const entry of this.inFlight.values()) earliest = Math.min(earliest, entry.lockedUntil);
    const delay = Math.max(0, earliest - this.session.core.context.now()) + 50;
    this.lockTimer = setTimeout(() => this.pump(), delay);
    this.lockTimer.unref?.();
  }
}
