/**
 * Direct methods over MQTT (protocol-device.md §2.7; core/direct-methods.ts for the bus contract): while the
 * device is subscribed to `$iothub/methods/POST/#` the session is the responder of `methodSubject(...)`. A
 * request is published as `$iothub/methods/POST/{name}/?$rid={rid}` (QoS 0, body = JSON payload) and answered
 * when the device publishes `$iothub/methods/res/{status}/?$rid={rid}` (body JSON, empty = null).
 *
 * Decisions where the reference is silent: `$rid` is a per-session hex counter (the captures show `42`; any
 * string works); a response body that is not JSON is passed back as a string; a response for an unknown `$rid`
 * (late, after the service gave up) is ignored. Requests wait for 'drain' before being written.
 */
import { HubError, methodRequestTopic } from '@fieldhub/protocol';
import { type MethodRequest, type MethodResponse, methodSubject } from '../../core/direct-methods';
import type { MqttSession } from './session';

interface PendingCall {
  readonly resolve: (response: MethodResponse) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** The session's direct-method responder. */
export class MethodResponder {
  private readonly pending = new Map<string, PendingCall>();
  private unregister: (() => void) | undefined;
  private counter = 0;

  constructor(private readonly session: MqttSession) {}

  /** Registers as the identity's responder on the bus. Idempotent. */
  start(): void {
    const identity = this.session.identity;
    if (this.unregister || !identity) return;
    const { bus, hubName } = this.session.core.context;
    this.unregister = bus.respond(hubName, methodSubject(identity.deviceId, identity.moduleId), (payload) =>
      this.call(payload as MethodRequest),
    );
  }

  /** Unregisters; calls in flight fail as if the device went offline. Idempotent. */
  stop(): void {
    this.unregister?.();
    this.unregister = undefined;
    for (const [rid, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(new HubError('DeviceNotOnline', 'The device disconnected before answering the method call.'));
      this.pending.delete(rid);
    }
  }

  /** The device answered `$rid` with `status` and `payload`. */
  answer(rid: string, status: number, payload: Buffer): void {
    const call = this.pending.get(rid);
    if (!call) {
      this.session.logger.debug({ ...this.session.describe(), rid }, 'method response for no pending call');
      return;
    }
    this.pending.delete(rid);
    clearTimeout(call.timer);
    const text = payload.toString('utf8');
    let value: unknown = null;
    if (text.trim() !== '') {
      try {
        value = JSON.parse(text);
      } catch {
        value = text;
      }
    }
    call.resolve({ status, payload: value });
  }

  private async call(request: MethodRequest): Promise<MethodResponse> {
    if (this.session.congested) await this.session.whenWritable();
    if (!this.unregister || this.session.state !== 'connected') {
      throw new HubError('DeviceNotOnline', 'The device is not connected.');
    }
    this.counter = (this.counter + 1) % 0x1_0000_0000;
    const rid = this.counter.toString(16);
    const topic = methodRequestTopic({ methodName: request.methodName, rid });
    const body = JSON.stringify(request.payload === undefined ? null : request.payload);
    return new Promise<MethodResponse>((resolve, reject) => {
      // The bus times the call out as well; this only forgets the entry so that a silent device leaks nothing.
      const timer = setTimeout(
        () => {
          this.pending.delete(rid);
          reject(new HubError('GatewayTimeout', 'Timed out waiting for the response from device.'));
        },
        request.responseTimeoutInSeconds * 1000 + 1000,
      );
      this.pending.set(rid, { resolve, reject, timer });
      this.session.publish(topic, body);
    });
  }
}
