// Who connects: the hub needs registered devices with SAS tokens; Mosquitto runs without authentication.
import { createSasToken } from '@fieldhub/auth';

/** The API version the official SDKs put in the MQTT username. */
export const apiVersion = '2021-04-12';

/** The key every benchmark device is registered with (base64 of 32 bytes). */
export const deviceKey = Buffer.alloc(32, 7).toString('base64');

/** Device ids of a workload: `<prefix>-0` ... */
export function deviceIds(prefix, count, first = 0) {
  return Array.from({ length: count }, (_, index) => `${prefix}-${first + index}`);
}

/** CONNECT fields for `deviceId`: IoT Hub's username and a SAS token for the hub; plain client ids for the peer. */
export async function connectFields(target, deviceId) {
  if (target.kind !== 'hub') return { clientId: deviceId };
  const password = await createSasToken({
    resourceUri: `${target.hostName}/devices/${deviceId}`,
    key: deviceKey,
    ttlSeconds: 4 * 3600,
  });
  return { clientId: deviceId, username: `${target.hostName}/${deviceId}/?api-version=${apiVersion}`, password };
}

/** The telemetry topic of `deviceId` (the peer's publishers use the same topic, for the same bytes on the wire). */
export function telemetryTopic(deviceId) {
  return `devices/${deviceId}/messages/events/`;
}
