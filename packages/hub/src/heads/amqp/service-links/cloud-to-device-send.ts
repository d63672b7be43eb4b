/**
 * `/messages/devicebound`: the link a service sends cloud-to-device messages on (protocol-service.md §3.2;
 * captures/service-amqp.txt). The peer attaches a sender with target `/messages/devicebound` (matched
 * case-insensitively); every message names its device in `to` (`/devices/{URL-encoded id}/messages/devicebound`)
 * and is queued with `core.cloudToDevice.send`. The delivery is `accepted` only after the message is durably
 * queued, else `rejected` with the condition the `azure-iothub` SDK maps to a typed error (`service-errors.ts`):
 * unknown device -> `amqp:not-found`, a full queue (50) -> `amqp:resource-limit-exceeded`, over 64 KB ->
 * `amqp:link:message-size-exceeded`, a bad field -> `com.microsoft:argument-error`.
 *
 * Mapping: `message_id` / `correlation_id` (string, uuid -> canonical lower-case string, ulong, binary),
 * `user_id`, `content_type`, `content_encoding`, `absolute_expiry_time` (else the header's `ttl` from now, else
 * the hub's default TTL), application property `iothub-ack` (any case) -> the ack, the other application
 * properties -> the message's properties, the body (data sections or a binary/string value) -> its bytes.
 *
 * Decisions where the reference is silent:
 * - A missing or malformed `to` is refused with `amqp:not-allowed` (the SDK's InvalidOperationError), Azure's
 *   400003 InvalidOperation "Amqp Message.Properties.To must contain the device identifier". A module address
 *   (`/devices/{id}/modules/{m}/messages/devicebound`) is refused the same way: IoT Hub has no cloud-to-device
 *   messages for modules.
 * - Messages of one link are queued one after another, in arrival order, so that a service's messages to a device
 *   keep their order in its queue (the core serialises per device, but only once the device was looked up).
 * - The route grants the credit (`flowControl: 'route'`): `settings.receiverCredit` at attach, one more per message
 *   settled, so a sender faster than the store waits for credit instead of filling the hub's memory.
 * - Message annotations (`iothub-interface-id`, `dt-subject`) are not kept: the core's messages carry none and no
 *   device head delivers them.
 */
import type { Delivery, EventContext, Message, Receiver } from 'rhea';
import type { CloudToDeviceAck, CloudToDeviceMessageInput } from '../../../core/cloud-to-device';
import type { AmqpConnectionContext, AmqpError, LinkHandle, LinkRoute } from '../contract';
import { AmqpErrorConditions } from '../contract';
import { settleReceived } from '../settlement';
import { bodyBytes, messageIdString, optionalString, propertyString } from './amqp-message-fields';
import { authorizeServiceConnect, toAmqpError } from './service-errors';

/** What `match` returns for `/messages/devicebound`. */
export interface CloudToDeviceSendMatch {
  readonly address: string;
}

const addressPattern = /^\/messages\/devicebound\/?$/i;
const toPattern = /^\/devices\/([^/]+)\/messages\/devicebound\/?$/i;
const moduleToPattern = /^\/devices\/[^/]+\/modules\/[^/]+\/messages\/devicebound\/?$/i;
const ackProperty = 'iothub-ack';

/** A message that cannot be queued because of what it says (refused, not logged as a hub failure). */
class RefusedMessage extends Error {
  constructor(readonly error: AmqpError) {
    super(error.description);
  }
}

const invalidTo = (detail: string): RefusedMessage =>
  new RefusedMessage({
    condition: AmqpErrorConditions.notAllowed,
    description: `Amqp Message.Properties.To must contain the device identifier (${detail})`,
    info: { 'com.microsoft:error-code': 400003 },
  });

/** The device id a message's `to` addresses. @throws RefusedMessage when `to` names no device. */
export function deviceIdFromTo(to: unknown): string {
  if (typeof to !== 'string' || to === '') throw invalidTo('it is missing');
  if (moduleToPattern.test(to)) throw invalidTo('cloud-to-device messages cannot be sent to modules');
  const match = toPattern.exec(to);
  if (!match) throw invalidTo(`'${to.slice(0, 200)}' is not /devices/{deviceId}/messages/devicebound`);
  try {
    return decodeURIComponent(match[1]!);
  } catch {
    throw invalidTo(`'${to.slice(0, 200)}' is not valid percent-encoding`);
  }
}

/** Translates a received AMQP message into the core's message. @throws ArgumentError for a bad field. */
export function toCloudToDeviceInput(message: Message, now: number): CloudToDeviceMessageInput {
  const properties: Record<string, string> = {};
  let ack: string | undefined;
  const applicationProperties = (message.application_properties ?? {}) as Record<string, unknown>;
  for (const [name, value] of Object.entries(applicationProperties)) {
    const text = propertyString(name, value);
    if (text === undefined) continue;
    if (name.toLowerCase() === ackProperty) ack = text;
    else properties[name] = text;
  }
  let expiryTimeUtc: number | undefined;
  const absoluteExpiry: unknown = message.absolute_expiry_time;
  if (absoluteExpiry instanceof Date) expiryTimeUtc = absoluteExpiry.getTime();
  else if (typeof absoluteExpiry === 'number') expiryTimeUtc = absoluteExpiry;
  else if (typeof message.ttl === 'number' && message.ttl > 0) expiryTimeUtc = now + message.ttl;
  const userId: unknown = message.user_id;
  return {
    body: bodyBytes(message.body),
    messageId: messageIdString(message.message_id, 'message_id'),
    correlationId: messageIdString(message.correlation_id, 'correlation_id'),
    userId:
      userId instanceof Uint8Array
        ? Buffer.from(userId).toString('utf8')
        : optionalString(userId, 'user_id') || undefined,
    contentType: optionalString(message.content_type, 'content_type'),
    contentEncoding: optionalString(message.content_encoding, 'content_encoding'),
    properties,
    expiryTimeUtc,
    // The core refuses values other than none/positive/negative/full with ArgumentError.
    ack: ack as CloudToDeviceAck | undefined,
  };
}

/** The route of `/messages/devicebound` (the hub receives). */
export function cloudToDeviceSendRoute(): LinkRoute<CloudToDeviceSendMatch> {
  return {
    name: 'service-cloud-to-device-send',
    direction: 'receive',
    flowControl: 'route',
    match: (address) => (addressPattern.test(address) ? { address } : undefined),
    authorize: async (context) => authorizeServiceConnect(context),
    open: (link, _match, context) => serveSendLink(link as Receiver, context),
  };
}

function serveSendLink(link: Receiver, context: AmqpConnectionContext): LinkHandle {
  let closed = false;
  // One message at a time, in arrival order (see the file comment).
  let tail: Promise<void> = Promise.resolve();
  const onMessage = (event: EventContext) => {
    const { message, delivery } = event;
    if (!message || !delivery) return;
    tail = tail.then(() => queue(message, delivery));
  };
  const queue = async (message: Message, delivery: Delivery): Promise<void> => {
    const { core, logger } = context;
    let deviceId: string | undefined;
    let rejection: AmqpError | undefined;
    try {
      deviceId = deviceIdFromTo(message.to);
      const result = await core.cloudToDevice.send(deviceId, toCloudToDeviceInput(message, core.context.now()));
      logger.debug(
        { ...context.describe(), deviceId, messageId: result.messageId, sequenceNumber: result.sequenceNumber },
        'cloud-to-device message queued over AMQP',
      );
    } catch (error) {
      const amqpError = error instanceof RefusedMessage ? { ...error.error, internal: false } : toAmqpError(error);
      const fields = { ...context.describe(), deviceId, condition: amqpError.condition, err: error };
      if (amqpError.internal) logger.error(fields, 'cloud-to-device send failed');
      else logger.info({ ...fields, err: undefined, reason: amqpError.description }, 'cloud-to-device send refused');
      const { internal: _internal, ...refusal } = amqpError;
      rejection = refusal;
    }
    // Settling after the link went away cannot reach the peer; the outcome is already in the store.
    if (!closed) settleReceived(delivery, rejection);
    if (!closed) link.add_credit(1);
  };
  link.on('message', onMessage);
  link.add_credit(context.settings.receiverCredit);
  return {
    // Resolves when the messages already received are queued (or refused): the hub's stop waits for them.
    close() {
      if (!closed) {
        closed = true;
        link.removeListener('message', onMessage);
      }
      return tail;
    },
  };
}
