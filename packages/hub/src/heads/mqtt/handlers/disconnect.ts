/** DISCONNECT: a clean close [MQTT-3.14.4-1]; a will message, if any, is discarded [MQTT-3.1.2-10]. */
import type { MqttSession } from '../session';

/** Handles a DISCONNECT from the device. */
export function handleDisconnect(session: MqttSession): void {
  session.cleanDisconnect = true;
  session.close('client disconnected', 'debug');
}
