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

/**
 * Queues one telemetry message of the session; {@link TelemetryBatch} appends it at the end of this turn and
 * acknowledges it when durable.
 */
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
  session.telemetry.add(input, ticket);
}

/**
 * The telemetry a session received in the current turn (typically every PUBLISH parsed from one socket read),
 * handed to the built-in endpoint as one `ingest` call at the end of the turn (a microtask, so no added latency).
 * Its PUBACKs go out together, in arrival order, once the whole batch is durable; the device's activity is
 * recorded once per batch. One append and one store request per read instead of per message: the per-message
 * promises, activity updates and wake-ups were a large share of the W1 profile.
 */
export class TelemetryBatch {
  private inputs: EndpointMessageInput[] = [];
  private tickets: number[] = [];
  private scheduled = false;

  constructor(private readonly session: MqttSession) {}

  /** Adds a message; `ticket` is its PUBACK slot in `session.acks`, or -1 for QoS 0. */
  add(input: EndpointMessageInput, ticket: number): void {
    this.inputs.push(input);
    if (ticket >= 0) this.tickets.push(ticket);
    this.session.appendsStarted(1);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
  }

  /**
   * Hands the queued messages to the endpoint now. Also called when the session closes, so that a will message
   * is appended after the telemetry that preceded it (per-device order).
   */
  readonly flush = (): void => {
    this.scheduled = false;
    const { session } = this;
    const inputs = this.inputs;
    if (inputs.length === 0) return;
    const tickets = this.tickets;
    this.inputs = [];
    this.tickets = [];
    session.core.telemetry.ingest(inputs).then(
      () => {
        session.appendsFinished(inputs.length);
        if (tickets.length > 0) session.acknowledge(tickets);
      },
      (error: unknown) => {
        session.appendsFinished(inputs.length);
        // Without a durable append there is no PUBACK; closing makes the device resend (it keeps QoS 1 messages).
        session.logger.error({ err: error, ...session.describe() }, 'telemetry append failed');
        session.close('telemetry append failed', 'error');
      },
    );
    const identity = session.identity;
    if (identity) {
      session.core.registry
        .touchActivity(identity.deviceId, identity.moduleId)
        .catch((error: unknown) => session.logger.debug({ err: error }, 'activity update failed'));
    }
  };
}
