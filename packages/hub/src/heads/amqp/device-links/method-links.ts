/**
 * Direct methods over AMQP (protocol-device.md §3.6; core/direct-methods.ts for the bus contract): the device
 * attaches a receiver and a sender on `/devices/{d}/methods/devicebound` (or the module form). While its receiver
 * (the hub's request link) is attached, this identity's channel is the responder of `methodSubject(...)` on the
 * bus, as the MQTT head's method-responder is while subscribed.
 *
 * A request goes out on the request link with `correlation_id` = a fresh request id as an AMQP uuid, application
 * property `IoThub-methodname`, body = the JSON payload in one data section. The device answers on its sender
 * with the same `correlation_id` (uuid, or its text), application property `IoThub-status` (int) and a JSON body.
 * When the last request link detaches, calls in flight fail as `DeviceNotOnline` (§3.6).
 *
 * Decisions where the reference is silent (as the MQTT responder): a response body that is not JSON is passed
 * back as a string, an empty one as null; a response for an unknown request (late, after the service gave up)
 * is accepted and ignored; a missing or non-numeric `IoThub-status` is answered to the service as 500.
 */
import { randomUUID } from 'node:crypto';
import { HubError } from '@fieldhub/protocol';
import rhea, { type EventContext, type Receiver, type Sender } from 'rhea';
import { type MethodRequest, type MethodResponse, methodSubject } from '../../../core/direct-methods';
import { settleReceived } from '../settlement';
import { bodyBytes, messageIdText, uuidBytes } from './amqp-values';
import type { IdentityAttachment } from './connected-identities';
import { OutgoingLink } from './outgoing-link';

interface PendingCall {
  readonly resolve: (response: MethodResponse) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

function statusOf(applicationProperties: Record<string, unknown>): number | undefined {
  for (const name of Object.keys(applicationProperties)) {
    if (name.toLowerCase() !== 'iothub-status') continue;
    const value = applicationProperties[name];
    const status = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN;
    return Number.isInteger(status) ? status : undefined;
  }
  return undefined;
}

/** The direct-method links of one identity on one connection. */
export class MethodChannel {
  /** Request links (the device's receivers), oldest first. */
  private readonly requestLinks = new Map<Sender, OutgoingLink>();
  private readonly responseLinks = new Map<Receiver, (event: EventContext) => void>();
  private readonly pending = new Map<string, PendingCall>();
  private unregister: (() => void) | undefined;

  constructor(private readonly attachment: IdentityAttachment) {}

  /** The channel of `attachment`, created on first use. */
  static of(attachment: IdentityAttachment): MethodChannel {
    attachment.methods ??= new MethodChannel(attachment);
    return attachment.methods;
  }

  /** Serves a request link (the device's receiver): the identity takes method calls. Returns its stop function. */
  addRequestLink(sender: Sender): () => void {
    this.requestLinks.set(sender, new OutgoingLink(sender));
    if (!this.unregister) {
      const { bus, hubName } = this.attachment.context.core.context;
      const { deviceId, moduleId } = this.attachment.identity;
      this.unregister = bus.respond(hubName, methodSubject(deviceId, moduleId), (payload) =>
        this.call(payload as MethodRequest),
      );
    }
    return () => {
      if (!this.requestLinks.delete(sender)) return;
      if (this.requestLinks.size === 0) this.stopResponding();
      this.maybeEnd();
    };
  }

  /** Serves a response link (the device's sender). Returns its stop function. */
  addResponseLink(receiver: Receiver): () => void {
    const onMessage = (event: EventContext): void => this.onResponse(event);
    this.responseLinks.set(receiver, onMessage);
    receiver.on('message', onMessage);
    return () => {
      const listener = this.responseLinks.get(receiver);
      if (!listener) return;
      receiver.removeListener('message', listener);
      this.responseLinks.delete(receiver);
      this.maybeEnd();
    };
  }

  private maybeEnd(): void {
    if (this.requestLinks.size > 0 || this.responseLinks.size > 0) return;
    if (this.attachment.methods === this) this.attachment.methods = undefined;
  }

  /** Unregisters; calls in flight fail as if the device went offline. */
  private stopResponding(): void {
    this.unregister?.();
    this.unregister = undefined;
    for (const [id, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(new HubError('DeviceNotOnline', 'The device detached its method links before answering.'));
      this.pending.delete(id);
    }
  }

  /** The newest open request link. */
  private requestLink(): OutgoingLink | undefined {
    let chosen: OutgoingLink | undefined;
    for (const [sender, outgoing] of this.requestLinks) if (sender.is_open()) chosen = outgoing;
    return chosen;
  }

  private call(request: MethodRequest): Promise<MethodResponse> {
    const link = this.requestLink();
    if (!link || !this.attachment.active) {
      return Promise.reject(new HubError('DeviceNotOnline', 'The device is not connected.'));
    }
    const id = randomUUID();
    const body = JSON.stringify(request.payload === undefined ? null : request.payload);
    return new Promise<MethodResponse>((resolve, reject) => {
      // The bus times the call out as well; this only forgets the entry so that a silent device leaks nothing.
      const timer = setTimeout(
        () => {
          this.pending.delete(id);
          reject(new HubError('GatewayTimeout', 'Timed out waiting for the response from device.'));
        },
        request.responseTimeoutInSeconds * 1000 + 1000,
      );
      timer.unref?.();
      this.pending.set(id, { resolve, reject, timer });
      const sent = link.send({
        // A Buffer is encoded as an AMQP uuid (rhea's message-id rule), as Azure sends the request id (§3.6).
        correlation_id: uuidBytes(id) as unknown as string,
        application_properties: { 'IoThub-methodname': request.methodName },
        body: rhea.message.data_section(Buffer.from(body, 'utf8')),
      });
      if (!sent && this.pending.delete(id)) {
        clearTimeout(timer);
        reject(new HubError('DeviceNotOnline', 'The device is not taking method requests (no link credit).'));
      }
    });
  }

  private onResponse(event: EventContext): void {
    const { delivery, message } = event;
    if (delivery) settleReceived(delivery);
    if (!message) return;
    const id = messageIdText(message.correlation_id)?.toLowerCase();
    const call = id === undefined ? undefined : this.pending.get(id);
    if (!call || id === undefined) {
      this.attachment.context.logger.debug(
        { ...this.attachment.context.describe(), deviceId: this.attachment.identity.deviceId },
        'method response for no pending call',
      );
      return;
    }
    this.pending.delete(id);
    clearTimeout(call.timer);
    const status = statusOf((message.application_properties ?? {}) as Record<string, unknown>) ?? 500;
    const body = bodyBytes(message);
    const text = Buffer.isBuffer(body) ? body.toString('utf8') : '';
    let payload: unknown = null;
    if (text.trim() !== '') {
      try {
        payload = JSON.parse(text);
      } catch {
        payload = text;
      }
    }
    call.resolve({ status, payload });
  }
}
