/**
 * Telemetry from a device: property bag to message fields, the durable append to the built-in endpoint, and the
 * PUBACK only once the append resolved (ARCHITECTURE.md invariant; PERFORMANCE.md W1), in arrival order
 * [MQTT-4.6.0-2]. QoS 0 is appended without an acknowledgement.
 */
import { Limits, type MessageSystemProperties } from '@fieldhub/protocol';
import type { IPublishPacket } from 'mqtt-packet';
import type { EndpointMessageInput } from '../../core/telemetry';
import type { MqttSession, SessionIdentity } from './session';

// System properties with no field of their own in the endpoint travel as annotations: the names Azure stamps on
// the built-in endpoint where they exist (§2.5, protocol-service.md §4.3), else the wire key itself.
const annotationNames: Partial<Record<keyof MessageSystemProperties, string>> = {
  expiryTimeUtc: 'absolute-expiry-time',
  outputName: 'iothub-outputname',
  interfaceId: 'iothub-interface-id',
  componentName: 'dt-subject',
  creationTimeUtc: 'iothub-creation-time-utc',
  messageSchema: '$.schema',
  connectionDeviceId: '$.cdid',
  connectionModuleId: '$.cmid',
  diagnosticId: '$.diagid',
  diagnosticCorrelationContext: '$.diagctx',
  to: '$.to',
  ack: 'iothub-ack',
};

/** Size as IoT Hub counts it (§7): body + system property values + application property names and values. */
function messageSize(body: Buffer, properties: Record<string, string>, system: MessageSystemProperties): number {
  let size = body.length;
  for (const value of Object.values(system)) size += value === undefined ? 0 : value.length;
  for (const name in properties) size += name.length + (properties[name] as string).length;
  return size;
}

/** The built-in endpoint message for telemetry of `identity`, stamped with how it authenticated (§7). */
export function endpointInput(
  identity: SessionIdentity,
  body: Buffer,
  properties: Record<string, string>,
  system: MessageSystemProperties,
): EndpointMessageInput {
  let annotations: Record<string, string> | undefined;
  for (const key in system) {
    const name = annotationNames[key as keyof MessageSystemProperties];
    if (name === undefined) continue;
    annotations ??= {};
    annotations[name] = system[key as keyof MessageSystemProperties] as string;
  }
  return {
    deviceId: identity.deviceId,
    moduleId: identity.moduleId,
    body,
    properties,
    messageId: system.messageId,
    correlationId: system.correlationId,
    userId: system.userId,
    contentType: system.contentType,
    contentEncoding: system.contentEncoding,
    authMethod: identity.authMethod,
    authGenerationId: identity.generationId,
    annotations,
  };
}

/** Checks the size limit of a telemetry message (§7). */
export function withinTelemetryLimit(
  body: Buffer,
  properties: Record<string, string>,
  system: MessageSystemProperties,
): boolean {
  return messageSize(body, properties, system) <= Limits.telemetryMessageMaxBytes;
}

/** Appends one telemetry message and acknowledges it when durable. */
export function ingestTelemetry(
  session: MqttSession,
  packet: IPublishPacket,
  body: Buffer,
  properties: Record<string, string>,
  system: MessageSystemProperties,
): void {
  const identity = session.identity;
  if (!identity) return;
  if (!withinTelemetryLimit(body, properties, system)) {
    session.close('telemetry message over 256 KB (§7)', 'warn');
    return;
  }
  // §2.3: RETAIN is not stored; the hub marks the message instead.
  if (packet.retain) properties['mqtt-retain'] = 'true';
  const input = endpointInput(identity, body, properties, system);
  const ticket = packet.qos === 1 && packet.messageId !== undefined ? session.acks.push(packet.messageId) : -1;
  session.appendStarted();
  session.core.telemetry.append(input).then(
    () => {
      session.appendFinished();
      if (ticket >= 0) session.acknowledge(ticket);
    },
    (error: unknown) => {
      session.appendFinished();
      // Without a durable append there is no PUBACK; closing makes the device resend (it keeps QoS 1 messages).
      session.logger.error({ err: error, ...session.describe() }, 'telemetry append failed');
      session.close('telemetry append failed', 'error');
    },
  );
  session.core.registry
    .touchActivity(identity.deviceId, identity.moduleId)
    .catch((error: unknown) => session.logger.debug({ err: error }, 'activity update failed'));
}
