/**
 * SUBSCRIBE (protocol-device.md §2.3, §2.4): only the documented filters of the session's own identity. QoS 2
 * is granted as 1 (§2.3); another identity's filter or an unknown one closes the connection (§2.9); a module
 * asking for cloud-to-device messages gets a failure code (0x80) for that filter. SUBACK goes out before any
 * message the subscription starts ([MQTT-3.8.4-1..5]).
 */
import type { ISubscribePacket } from 'mqtt-packet';
import { CloudToDeviceDeliveries } from '../cloud-to-device-deliveries';
import { DesiredPropertiesForwarder } from '../desired-properties';
import { MethodResponder } from '../method-responder';
import type { MqttSession } from '../session';
import { routeSubscription } from '../topic-authorization';

/** Handles a SUBSCRIBE. */
export function handleSubscribe(session: MqttSession, packet: ISubscribePacket): void {
  const identity = session.identity;
  if (!identity) {
    session.provisioning?.subscribe(packet);
    return;
  }
  const granted: number[] = [];
  const starts: (() => void)[] = [];
  for (const subscription of packet.subscriptions) {
    const route = routeSubscription(subscription.topic, identity);
    const qos: 0 | 1 = subscription.qos >= 1 ? 1 : 0;
    switch (route.kind) {
      case 'refused':
        session.close(`SUBSCRIBE refused: ${route.reason}`, 'warn');
        return;
      case 'failure':
        session.logger.debug({ ...session.describe(), filter: subscription.topic }, route.reason);
        granted.push(0x80);
        continue;
      case 'cloudToDevice':
        session.cloudToDevice ??= new CloudToDeviceDeliveries(session, qos);
        starts.push(() => session.cloudToDevice?.start(qos));
        break;
      case 'twinResponses':
        session.twinResponses = true;
        break;
      case 'desiredProperties':
        session.desired ??= new DesiredPropertiesForwarder(session);
        starts.push(() => session.desired?.start());
        break;
      case 'methods':
        session.methods ??= new MethodResponder(session);
        starts.push(() => session.methods?.start());
        break;
      case 'moduleInputs':
        // Module inputs come from IoT Edge routing, which this hub does not do: granted, nothing arrives.
        break;
    }
    // The hub publishes twin responses, desired patches and method requests at QoS 0 and C2D at the QoS asked
    // for, at most 1 (§2.3): granting the requested QoS up to 1 is truthful for every filter.
    granted.push(qos);
  }
  session.send({ cmd: 'suback', messageId: packet.messageId ?? 0, granted });
  for (const start of starts) start();
}
