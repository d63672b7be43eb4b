/**
 * Desired-property patches to the device (protocol-device.md §2.6): while subscribed to
 * `$iothub/twin/PATCH/properties/desired/#`, each bus notification `{ version, patch }` on `desiredSubject()` is
 * published on `$iothub/twin/PATCH/properties/desired/?$version=<v>` with the patch plus `$version` (as the
 * captures show). Overflow policy for a slow reader: patches wait for 'drain' in a bounded queue; one more than
 * the bound closes the connection, and the device re-reads the whole twin after reconnecting (§2.6).
 */
import { twinDesiredPatchTopic } from '@fieldhub/protocol';
import { type DesiredChangeNotification, desiredSubject } from '../../core/twins';
import type { MqttSession } from './session';

/** Forwards desired-property patches of one identity to its session. */
export class DesiredPropertiesForwarder {
  private readonly queue: DesiredChangeNotification[] = [];
  private unsubscribe: (() => void) | undefined;
  private draining = false;

  constructor(private readonly session: MqttSession) {}

  /** Subscribes on the bus. Idempotent. */
  start(): void {
    const identity = this.session.identity;
    if (this.unsubscribe || !identity) return;
    const { bus, hubName } = this.session.core.context;
    this.unsubscribe = bus.subscribe(hubName, desiredSubject(identity.deviceId, identity.moduleId), (payload) =>
      this.enqueue(payload as DesiredChangeNotification),
    );
  }

  /** Unsubscribes and drops what waits. Idempotent. */
  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.queue.length = 0;
  }

  private enqueue(notification: DesiredChangeNotification): void {
    if (!this.unsubscribe) return;
    if (this.queue.length >= this.session.head.settings.maxQueuedDesiredPatches) {
      this.session.close('desired-property patches piled up behind a slow reader', 'warn');
      return;
    }
    this.queue.push(notification);
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length > 0 && this.session.state === 'connected') {
        if (this.session.congested) await this.session.whenWritable();
        const next = this.queue.shift();
        if (!next || !this.unsubscribe) break;
        const body = { ...next.patch, $version: next.version };
        this.session.publish(twinDesiredPatchTopic(next.version), JSON.stringify(body));
      }
    } finally {
      this.draining = false;
    }
  }
}
