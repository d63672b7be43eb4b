/**
 * UNSUBSCRIBE: stops what the filter started (cloud-to-device deliveries, desired patches, the method
 * responder) and answers UNSUBACK [MQTT-3.10.4-4]. Unknown filters are acknowledged too: unsubscribing from
 * something never subscribed is not an error in MQTT.
 */
import type { IUnsubscribePacket } from 'mqtt-packet';
import type { MqttSession } from '../session';
import { routeSubscription } from '../topic-authorization';

/** Handles an UNSUBSCRIBE. */
export function handleUnsubscribe(session: MqttSession, packet: IUnsubscribePacket): void {
  const identity = session.identity;
  if (!identity) {
    session.provisioning?.unsubscribe(packet);
    return;
  }
  for (const filter of packet.unsubscriptions) {
    switch (routeSubscription(filter, identity).kind) {
      case 'cloudToDevice':
        session.cloudToDevice?.stop();
        break;
      case 'twinResponses':
        session.twinResponses = false;
        break;
      case 'desiredProperties':
        session.desired?.stop();
        break;
      case 'methods':
        session.methods?.stop();
        break;
      default:
        break;
    }
  }
  // Written by hand: mqtt-packet's typing wants MQTT 5 reason codes on UNSUBACK.
  const unsuback = Buffer.from([0xb0, 0x02, 0, 0]);
  unsuback.writeUInt16BE(packet.messageId ?? 0, 2);
  session.write(unsuback);
}
