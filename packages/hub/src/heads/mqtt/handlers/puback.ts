/**
 * PUBACK from the device: acknowledges a QoS 1 cloud-to-device message, which COMPLETES it (protocol-device.md
 * §2.8: over MQTT, PUBACK == complete; reject and abandon do not exist).
 */
import type { IPubackPacket } from 'mqtt-packet';
import type { MqttSession } from '../session';

/** Handles a PUBACK. */
export function handlePuback(session: MqttSession, packet: IPubackPacket): void {
  if (packet.messageId === undefined) return;
  // A PUBACK for nothing in flight (late, duplicate) is harmless: ignore it rather than drop the device.
  session.cloudToDevice?.acknowledged(packet.messageId);
}
