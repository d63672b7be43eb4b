/**
 * Telemetry over AMQP (protocol-device.md §3.3, §3.4, §3.7, §7): the device's sender link on
 * `/devices/{d}/messages/events` or `/devices/{d}/modules/{m}/messages/events`. Each message becomes a built-in
 * endpoint message stamped with the connection's identity, auth method and generation id (as the MQTT head
 * stamps it), and is settled `accepted` only once it is durably appended (ARCHITECTURE.md invariant). The
 * messages of one turn (typically one socket read) go to the endpoint as one `ingest`, as MQTT's TelemetryBatch.
 *
 * Refusals, as `rejected` outcomes so the link and the connection stay up: over 256 KB (§7) →
 * `amqp:link:message-size-exceeded`; a body that is not bytes, or a property value that is a list or map →
 * `com.microsoft:argument-error`; a failed append → the core error's condition (`amqp:internal-error` for a
 * store failure).
 *
 * Mapping where the reference is silent: the application properties `iothub-outputname`,
 * `iothub-creation-time-utc` and `iothub-message-schema` become the system properties they name (as MQTT's
 * `$.on`, `$.ctime`, `$.schema`); the annotations `iothub-interface-id` and `dt-subject` become the interface id
 * and component name; `creation_time` is used when `iothub-creation-time-utc` is absent.
 */
import type { MessageSystemProperties } from '@fieldhub/protocol';
import type { Delivery, EventContext, Message, Receiver } from 'rhea';
import type { EndpointMessageInput } from '../../../core/telemetry';
import type { SessionIdentity } from '../../mqtt/session';
import { endpointInput, withinTelemetryLimit } from '../../mqtt/telemetry-ingest';
import { type AmqpConnectionContext, type AmqpError, AmqpErrorConditions } from '../contract';
import { settleReceived } from '../settlement';
import { amqpErrorOf, bodyBytes, messageIdText, propertyText, textOf } from './amqp-values';

/** Application properties that carry system properties over AMQP. */
const systemApplicationProperties: Record<string, keyof MessageSystemProperties> = {
  'iothub-outputname': 'outputName',
  'iothub-creation-time-utc': 'creationTimeUtc',
  'iothub-message-schema': 'messageSchema',
};

/** Message annotations that carry system properties (§3.4). */
const systemAnnotations: Record<string, keyof MessageSystemProperties> = {
  'iothub-interface-id': 'interfaceId',
  'dt-subject': 'componentName',
};

/** Largest telemetry body (§7). */
const maxBodyBytes = 256 * 1024;

function isAmqpError(value: unknown): value is AmqpError {
  return typeof value === 'object' && value !== null && 'condition' in value && !Buffer.isBuffer(value);
}

/**
 * The built-in endpoint message for an AMQP telemetry message of `identity`, or the error it is rejected with.
 */
export function telemetryInput(message: Message, identity: SessionIdentity): EndpointMessageInput | AmqpError {
  const body = bodyBytes(message);
  if (isAmqpError(body)) return body;
  if (body.length > maxBodyBytes) {
    return {
      condition: AmqpErrorConditions.messageSizeExceeded,
      description: `The message body is ${body.length} bytes; the limit is ${maxBodyBytes} (256 KB).`,
    };
  }
  const system: MessageSystemProperties = {};
  const messageId = messageIdText(message.message_id);
  if (messageId !== undefined) system.messageId = messageId;
  const correlationId = messageIdText(message.correlation_id);
  if (correlationId !== undefined) system.correlationId = correlationId;
  const userId = textOf(message.user_id);
  if (userId !== undefined) system.userId = userId;
  const to = textOf(message.to);
  if (to !== undefined) system.to = to;
  const contentType = textOf(message.content_type);
  if (contentType !== undefined) system.contentType = contentType;
  const contentEncoding = textOf(message.content_encoding);
  if (contentEncoding !== undefined) system.contentEncoding = contentEncoding;
  const expiry = message.absolute_expiry_time as unknown;
  if (expiry instanceof Date && !Number.isNaN(expiry.getTime())) system.expiryTimeUtc = expiry.toISOString();
  const creation = message.creation_time as unknown;
  if (creation instanceof Date && !Number.isNaN(creation.getTime())) system.creationTimeUtc = creation.toISOString();

  const properties: Record<string, string> = {};
  const applicationProperties = (message.application_properties ?? {}) as Record<string, unknown>;
  for (const name of Object.keys(applicationProperties)) {
    const text = propertyText(applicationProperties[name]);
    if (text === undefined) {
      return {
        condition: AmqpErrorConditions.argumentError,
        description: `Application property '${name.slice(0, 100)}' must be a string, number, boolean or timestamp.`,
      };
    }
    if (text === null) continue;
    // Own keys only: a property named `constructor` must not find Object.prototype's member.
    const lower = name.toLowerCase();
    const systemName = Object.hasOwn(systemApplicationProperties, lower)
      ? systemApplicationProperties[lower]
      : undefined;
    if (systemName !== undefined && systemName !== 'ack') system[systemName] = text;
    else properties[name] = text;
  }
  const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
  for (const name of Object.keys(annotations)) {
    const lower = name.toLowerCase();
    const systemName = Object.hasOwn(systemAnnotations, lower) ? systemAnnotations[lower] : undefined;
    const text = systemName === undefined ? undefined : propertyText(annotations[name]);
    if (systemName !== undefined && systemName !== 'ack' && typeof text === 'string') system[systemName] = text;
  }
  if (!withinTelemetryLimit(body, properties, system)) {
    return {
      condition: AmqpErrorConditions.messageSizeExceeded,
      description: 'The message (body, system property values and application properties) is over 256 KB.',
    };
  }
  return endpointInput(identity, body, properties, system);
}

/**
 * Serves one telemetry link: appends what arrives and settles it once durable. The link grants its own credit
 * (`flowControl: 'route'`): `settings.receiverCredit` at first, and one more per message settled, so that a
 * device has at most that many messages waiting for their append (the MQTT head pauses reading instead).
 */
export class TelemetryLink {
  private inputs: EndpointMessageInput[] = [];
  private deliveries: Delivery[] = [];
  private scheduled = false;
  private stopped = false;
  private readonly appends = new Set<Promise<void>>();

  constructor(
    private readonly receiver: Receiver,
    private readonly identity: SessionIdentity,
    private readonly context: AmqpConnectionContext,
  ) {
    receiver.on('message', this.onMessage);
    receiver.add_credit(context.settings.receiverCredit);
  }

  /**
   * Stops taking messages; what was received is still appended (as it was received). Resolves when those appends
   * are done (the hub's stop waits for them). Idempotent.
   */
  stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.receiver.removeListener('message', this.onMessage);
      this.flush();
    }
    return Promise.all([...this.appends]).then(() => undefined);
  }

  /** Settles a delivery and grants the credit it used back. */
  private settle(delivery: Delivery, error: AmqpError | undefined): void {
    settleReceived(delivery, error);
    if (!this.stopped && this.receiver.is_open()) this.receiver.add_credit(1);
  }

  private readonly onMessage = (event: EventContext): void => {
    const { delivery, message } = event;
    if (!delivery || !message || this.stopped) return;
    const input = telemetryInput(message, this.identity);
    if (isAmqpError(input)) {
      this.context.logger.warn(
        { ...this.context.describe(), deviceId: this.identity.deviceId, condition: input.condition },
        `amqp telemetry rejected: ${input.description}`,
      );
      this.settle(delivery, input);
      return;
    }
    this.inputs.push(input);
    this.deliveries.push(delivery);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
  };

  /** Hands the queued messages to the endpoint and settles them when durable. */
  private readonly flush = (): void => {
    this.scheduled = false;
    const inputs = this.inputs;
    if (inputs.length === 0) return;
    const deliveries = this.deliveries;
    this.inputs = [];
    this.deliveries = [];
    const { core } = this.context;
    const append = core.telemetry.ingest(inputs).then(
      () => {
        for (const delivery of deliveries) this.settle(delivery, undefined);
      },
      async (error: unknown) => {
        if (inputs.length === 1) {
          this.failed(deliveries[0] as Delivery, error);
          return;
        }
        // One message the core refuses (e.g. over the limit once the hub's own stamps are counted) would fail the
        // whole batch: settle each message by its own append instead, in order.
        for (const [index, input] of inputs.entries()) {
          const delivery = deliveries[index] as Delivery;
          await core.telemetry.ingest([input]).then(
            () => this.settle(delivery, undefined),
            (single: unknown) => this.failed(delivery, single),
          );
        }
      },
    );
    this.appends.add(append);
    void append.finally(() => this.appends.delete(append));
    core.registry
      .touchActivity(this.identity.deviceId, this.identity.moduleId)
      .catch((error: unknown) => this.context.logger.debug({ err: error }, 'activity update failed'));
  };

  private failed(delivery: Delivery, error: unknown): void {
    const amqpError = amqpErrorOf(error);
    const level = amqpError.condition === AmqpErrorConditions.internalError ? 'error' : 'warn';
    this.context.logger[level](
      { err: error, ...this.context.describe(), deviceId: this.identity.deviceId },
      'amqp telemetry append failed',
    );
    this.settle(delivery, amqpError);
  }
}
