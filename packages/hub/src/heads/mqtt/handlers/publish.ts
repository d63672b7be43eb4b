/**
 * PUBLISH from the device (protocol-device.md §2.3, §2.4, §2.9): telemetry, twin requests and direct-method
 * responses. QoS 2 and any topic the device may not publish on close the connection, as IoT Hub does.
 */
import type { IPublishPacket } from 'mqtt-packet';
import type { MqttSession } from '../session';
import { ingestTelemetry } from '../telemetry-ingest';
import { routePublish } from '../topic-authorization';
import { handleReportedPatch, handleTwinGet } from '../twin-requests';

const emptyPayload = Buffer.alloc(0);

/** Handles a PUBLISH from a connected device. */
export function handlePublish(session: MqttSession, packet: IPublishPacket): void {
  const identity = session.identity;
  if (!identity) {
    session.provisioning?.publish(packet);
    return;
  }
  if (packet.qos === 2) {
    session.close('QoS 2 PUBLISH (IoT Hub supports QoS 0 and 1, §2.3)', 'warn');
    return;
  }
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : (packet.payload ?? emptyPayload);
  const route = routePublish(packet.topic, identity);
  switch (route.kind) {
    case 'telemetry':
      ingestTelemetry(session, packet, payload, route.properties, route.systemProperties);
      return;
    case 'twinGet':
      handleTwinGet(session, route.rid);
      return;
    case 'twinReportedPatch':
      handleReportedPatch(session, route.rid, payload);
      return;
    case 'methodResponse':
      session.methods?.answer(route.rid, route.status, payload);
      return;
    case 'refused':
      session.close(`PUBLISH refused on '${packet.topic.slice(0, 200)}': ${route.reason}`, 'warn');
  }
}
