/**
 * Twin over AMQP (protocol-device.md §3.5): the device attaches a sender and a receiver on `/devices/{d}/twin`
 * (or the module form), both with the same `com.microsoft:channel-correlation-id`. Requests arrive on the
 * device's sender with message annotations `operation` (GET / PATCH / PUT / DELETE) and `resource`; responses go
 * out on the device's receiver with the request's `correlation_id` (same AMQP type), annotations `status` (AMQP
 * int) and, for a reported patch, `version` (AMQP long: the new reported version), and a JSON body in one data
 * section. PUT / DELETE on `/notifications/twin/properties/desired` subscribe / unsubscribe desired-property
 * pushes: no correlation id, annotation `version` (long), body = the patch plus `$version`, as the captures show
 * the Node SDK receiving it.
 *
 * Errors answer with the core error's status (400 bad JSON / operation, 404 no twin, 429, 500) and body
 * `{ errorCode, message }`, as the MQTT twin handler does (Node parses the body of an error response).
 *
 * Decisions where the reference is silent: PATCH answers 204 (as MQTT); GET, PUT and DELETE answer 200; GET
 * carries no `version` (the twin has two); a request arriving while no response link is attached is dropped
 * (the device cannot match an answer anyway); desired pushes go out only while subscribed and a response link is
 * attached, on the response link paired with the subscribing request link when there is one.
 */
import { HubError } from '@fieldhub/protocol';
import rhea, { type EventContext, type Message, type Receiver, type Sender } from 'rhea';
import { type DesiredChangeNotification, desiredSubject } from '../../../core/twins';
import { settleReceived } from '../settlement';
import { bodyBytes, textOf } from './amqp-values';
import type { IdentityAttachment } from './connected-identities';
import { OutgoingLink } from './outgoing-link';

const desiredResource = '/notifications/twin/properties/desired';
const reportedResource = '/properties/reported';
const channelProperty = 'com.microsoft:channel-correlation-id';

function channelOf(link: Sender | Receiver): string | undefined {
  const value: unknown = link.properties?.[channelProperty];
  return typeof value === 'string' ? value : undefined;
}

function jsonBody(value: unknown): ReturnType<typeof rhea.message.data_section> {
  return rhea.message.data_section(Buffer.from(value === undefined ? '' : JSON.stringify(value), 'utf8'));
}

/** The twin links of one identity on one connection. */
export class TwinChannel {
  /** Response links (the device's receivers), oldest first. */
  private readonly responseLinks = new Map<Sender, OutgoingLink>();
  private readonly requestLinks = new Map<Receiver, (event: EventContext) => void>();
  private unsubscribeDesired: (() => void) | undefined;
  /** The request link that subscribed to desired pushes (its paired response link carries them). */
  private desiredChannel: string | undefined;

  constructor(private readonly attachment: IdentityAttachment) {}

  /** The channel of `attachment`, created on first use. */
  static of(attachment: IdentityAttachment): TwinChannel {
    attachment.twin ??= new TwinChannel(attachment);
    return attachment.twin;
  }

  /** Serves a request link (the device's sender). Returns its stop function. */
  addRequestLink(receiver: Receiver): () => void {
    const onMessage = (event: EventContext): void => this.onRequest(receiver, event);
    this.requestLinks.set(receiver, onMessage);
    receiver.on('message', onMessage);
    return () => {
      const listener = this.requestLinks.get(receiver);
      if (!listener) return;
      receiver.removeListener('message', listener);
      this.requestLinks.delete(receiver);
      this.maybeEnd();
    };
  }

  /** Serves a response link (the device's receiver). Returns its stop function. */
  addResponseLink(sender: Sender): () => void {
    // Node attaches its twin receiver with snd-settle-mode `settled` (§3.3): send pre-settled as it asks.
    if (sender.snd_settle_mode === 1) {
      (sender as unknown as { local: { attach: { snd_settle_mode: number } } }).local.attach.snd_settle_mode = 1;
    }
    this.responseLinks.set(sender, new OutgoingLink(sender));
    return () => {
      if (!this.responseLinks.delete(sender)) return;
      this.maybeEnd();
    };
  }

  private maybeEnd(): void {
    if (this.requestLinks.size > 0 || this.responseLinks.size > 0) return;
    this.unsubscribeDesired?.();
    this.unsubscribeDesired = undefined;
    if (this.attachment.twin === this) this.attachment.twin = undefined;
  }

  /** The response link paired with `channel` (same channel correlation id), else the newest one open. */
  private responseLink(channel: string | undefined): OutgoingLink | undefined {
    let chosen: OutgoingLink | undefined;
    for (const [sender, outgoing] of this.responseLinks) {
      if (!sender.is_open()) continue;
      if (channel !== undefined && channelOf(sender) === channel) return outgoing;
      chosen = outgoing;
    }
    return chosen;
  }

  private get logger() {
    return this.attachment.context.logger;
  }

  private describe(): Record<string, unknown> {
    const { identity, context } = this.attachment;
    return { ...context.describe(), deviceId: identity.deviceId, moduleId: identity.moduleId };
  }

  private onRequest(receiver: Receiver, event: EventContext): void {
    const { delivery, message } = event;
    if (!message) return;
    // Twin requests are answered on the response link; the transfer itself is always accepted (Node sends them
    // pre-settled, §3.3).
    if (delivery) settleReceived(delivery);
    if (!this.attachment.active) return;
    const channel = channelOf(receiver);
    const correlationId: unknown = message.correlation_id;
    const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
    const operation = textOf(annotations.operation)?.toUpperCase();
    const resource = textOf(annotations.resource);
    const respond = (status: number, body: unknown, version?: number): void =>
      this.respond(channel, correlationId, status, body, version);
    const fail = (error: unknown): void => this.respondWithError(channel, correlationId, error);
    const { core } = this.attachment.context;
    const { deviceId, moduleId } = this.attachment.identity;

    switch (operation) {
      case 'GET':
        core.twins.getForDevice(deviceId, moduleId).then((twin) => respond(200, twin), fail);
        return;
      case 'PATCH': {
        if (resource?.toLowerCase() !== reportedResource) {
          fail(new HubError('InvalidOperation', `PATCH is only supported on '${reportedResource}'`));
          return;
        }
        const patch = this.parseJson(message);
        if (patch instanceof HubError) {
          fail(patch);
          return;
        }
        core.twins
          .updateReported(deviceId, moduleId, patch)
          .then(({ version }) => respond(204, undefined, version), fail);
        core.registry
          .touchActivity(deviceId, moduleId)
          .catch((error: unknown) => this.logger.debug({ err: error }, 'activity update failed'));
        return;
      }
      case 'PUT':
      case 'DELETE':
        if (resource?.toLowerCase() !== desiredResource) {
          fail(new HubError('InvalidOperation', `${operation} is only supported on '${desiredResource}'`));
          return;
        }
        if (operation === 'PUT') this.subscribeDesired(channel);
        else this.unsubscribeDesiredPushes();
        respond(200, undefined);
        return;
      default:
        fail(new HubError('InvalidOperation', `Unknown twin operation '${String(operation).slice(0, 32)}'`));
    }
  }

  private parseJson(message: Message): unknown {
    const body = bodyBytes(message);
    if (!Buffer.isBuffer(body)) return new HubError('IotHubFormatError', body.description);
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (error) {
      return new HubError('IotHubFormatError', 'The reported properties are not valid JSON', { cause: error });
    }
  }

  private respond(
    channel: string | undefined,
    correlationId: unknown,
    status: number,
    body: unknown,
    version?: number,
  ): void {
    const link = this.responseLink(channel);
    if (!link || !this.attachment.active) {
      this.logger.debug({ ...this.describe(), status }, 'twin response with no response link attached');
      return;
    }
    const annotations: Record<string, unknown> = { status: rhea.types.wrap_int(status) };
    if (version !== undefined) annotations.version = rhea.types.wrap_long(version);
    const response: Message = { message_annotations: annotations, body: jsonBody(body) };
    if (correlationId !== undefined && correlationId !== null) {
      response.correlation_id = correlationId as string;
    }
    link.send(response);
  }

  private respondWithError(channel: string | undefined, correlationId: unknown, error: unknown): void {
    const hubError = HubError.is(error)
      ? error
      : new HubError('ServerError', 'An internal error occurred', { cause: error });
    if (hubError.status >= 500) this.logger.error({ err: error, ...this.describe() }, 'twin request failed');
    this.respond(channel, correlationId, hubError.status, { errorCode: hubError.hubCode, message: hubError.message });
  }

  private subscribeDesired(channel: string | undefined): void {
    this.desiredChannel = channel;
    if (this.unsubscribeDesired) return;
    const { bus, hubName } = this.attachment.context.core.context;
    const { deviceId, moduleId } = this.attachment.identity;
    this.unsubscribeDesired = bus.subscribe(hubName, desiredSubject(deviceId, moduleId), (payload) =>
      this.pushDesired(payload as DesiredChangeNotification),
    );
  }

  private unsubscribeDesiredPushes(): void {
    this.unsubscribeDesired?.();
    this.unsubscribeDesired = undefined;
  }

  private pushDesired(notification: DesiredChangeNotification): void {
    if (!this.unsubscribeDesired || !this.attachment.active) return;
    const link = this.responseLink(this.desiredChannel);
    if (!link) return;
    link.send({
      message_annotations: { version: rhea.types.wrap_long(notification.version) },
      body: jsonBody({ ...notification.patch, $version: notification.version }),
    });
  }
}
