import type { IncomingCloudToDeviceMessage } from '@fieldhub/device-core/transport';
import { type ParsedCloudToDeviceTopic, SystemPropertyKeys } from '@fieldhub/protocol';

/**
 * A cloud-to-device message from its parsed topic and payload (protocol-device.md §2.4, §2.5). `iothub-ack`
 * stays among the application properties, where the Node SDK shows it (captures/mqtt-mqtt.txt); `$.to` is dropped.
 * MQTT does not say how often the hub delivered the message, so `deliveryCount` is absent.
 */
export function cloudToDeviceMessage(
  parsed: ParsedCloudToDeviceTopic,
  payload: Uint8Array,
  lockToken: string,
): IncomingCloudToDeviceMessage {
  const system = parsed.systemProperties;
  const properties: Record<string, string> = {};
  if (system.ack !== undefined) properties[SystemPropertyKeys.ack] = system.ack;
  for (const [name, value] of Object.entries(parsed.properties)) {
    Object.defineProperty(properties, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return {
    body: payload,
    properties,
    lockToken,
    ...(system.messageId === undefined ? {} : { messageId: system.messageId }),
    ...(system.correlationId === undefined ? {} : { correlationId: system.correlationId }),
    ...(system.contentType === undefined ? {} : { contentType: system.contentType }),
    ...(system.contentEncoding === undefined ? {} : { contentEncoding: system.contentEncoding }),
    ...(system.userId === undefined ? {} : { userId: system.userId }),
    ...(system.expiryTimeUtc === undefined ? {} : { expiryTimeUtc: system.expiryTimeUtc }),
  };
}
