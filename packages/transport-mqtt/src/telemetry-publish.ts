import type { OutgoingMessage } from '@fieldhub/device-core/transport';
import { ArgumentError, Limits, type MessageSystemProperties, telemetryTopic } from '@fieldhub/protocol';

const encoder = new TextEncoder();

/** A telemetry PUBLISH: topic with its property bag, and the body. */
export interface TelemetryPublish {
  readonly topic: string;
  readonly payload: Uint8Array;
}

function utf8Length(text: string): number {
  return encoder.encode(text).byteLength;
}

/**
 * The size IoT Hub counts against its 256 KB limit: body, system property values, application property names
 * and values (protocol `Limits.telemetryMessageMaxBytes`).
 */
export function telemetrySize(message: OutgoingMessage): number {
  let size = message.body.byteLength;
  for (const value of [
    message.messageId,
    message.correlationId,
    message.contentType,
    message.contentEncoding,
    message.userId,
    message.expiryTimeUtc,
  ]) {
    if (value !== undefined) size += utf8Length(value);
  }
  for (const [name, value] of Object.entries(message.properties ?? {})) size += utf8Length(name) + utf8Length(value);
  return size;
}

/**
 * Builds the telemetry PUBLISH of a device or module: `devices/{id}/messages/events/{bag}` with `$.mid`, `$.cid`,
 * `$.uid`, `$.exp`, `$.ct`, `$.ce` first and the application properties after, as the official SDK writes them
 * (protocol-device.md §2.4, §2.5; captures/mqtt-mqtt.txt).
 *
 * @throws ArgumentError coded `MessageTooLarge` (413001) over 256 KB, refused locally as the Node SDK does
 * (§2.3); ArgumentError when an id or property cannot be put in a topic.
 */
export function telemetryPublish(
  identity: { readonly deviceId: string; readonly moduleId?: string | undefined },
  message: OutgoingMessage,
): TelemetryPublish {
  const size = telemetrySize(message);
  if (size > Limits.telemetryMessageMaxBytes) {
    throw new ArgumentError(
      `telemetry message is ${size} bytes, more than the hub's ${Limits.telemetryMessageMaxBytes}`,
      { code: 'MessageTooLarge', field: 'body' },
    );
  }
  const system: MessageSystemProperties = {};
  if (message.messageId !== undefined) system.messageId = message.messageId;
  if (message.correlationId !== undefined) system.correlationId = message.correlationId;
  if (message.userId !== undefined) system.userId = message.userId;
  if (message.expiryTimeUtc !== undefined) system.expiryTimeUtc = message.expiryTimeUtc;
  if (message.contentType !== undefined) system.contentType = message.contentType;
  if (message.contentEncoding !== undefined) system.contentEncoding = message.contentEncoding;
  const topic = telemetryTopic({
    deviceId: identity.deviceId,
    ...(identity.moduleId === undefined ? {} : { moduleId: identity.moduleId }),
    systemProperties: system,
    properties: { ...(message.properties ?? {}) },
  });
  return { topic, payload: message.body };
}
