/** PINGREQ: answer PINGRESP [MQTT-3.12.4-1]; the keep-alive clock was already reset when the bytes arrived. */
import type { MqttSession } from '../session';

const pingresp = Buffer.from([0xd0, 0x00]);

/** Answers a PINGREQ. */
export function handlePingreq(session: MqttSession): void {
  session.write(pingresp);
}
