import { AbortError, ArgumentError, HubError, TimeoutError } from '@fieldhub/protocol';
import { BusNoResponder, BusTimeout } from '../bus/bus';
import type { CoreContext } from './context';

/**
 * Direct methods (protocol-service.md §2.9): a service invokes a method on a device or module and waits for the
 * device's `{ status, payload }`.
 *
 * Bus contract with the device heads: a session that can take method calls (MQTT: subscribed to
 * `$iothub/methods/POST/#`; AMQP: the `methods/deviceBound` links attached) registers
 * `bus.respond(hub, methodSubject(deviceId, moduleId), handler)`; the handler receives a
 * {@link MethodRequest} and resolves with a {@link MethodResponse} (or rejects with a HubError). A newer session
 * of the same device replaces the older responder (the Bus's rule). The session unsubscribes on disconnect.
 * Whether a device is "online" for methods is whether that responder exists (`bus.hasResponder`).
 */

/** The bus subject of a device's (or module's) direct methods: `methods.<deviceId>` or `methods.<deviceId>/<moduleId>`. */
export function methodSubject(deviceId: string, moduleId?: string): string {
  return moduleId === undefined ? `methods.${deviceId}` : `methods.${deviceId}/${moduleId}`;
}

/** What a service sends (the body of `POST /twins/{id}/methods`). */
export interface MethodInvocation {
  readonly methodName: string;
  /** Any JSON value; `null` when absent. */
  readonly payload?: unknown;
  /** 5..300, default 30. */
  readonly responseTimeoutInSeconds?: number | undefined;
  /** 0..300, default 0 (the device must already be online). */
  readonly connectTimeoutInSeconds?: number | undefined;
}

/** The payload of the bus request to the device session. */
export interface MethodRequest {
  readonly methodName: string;
  readonly payload: unknown;
  /** How long the service waits for the answer; the head may use it to drop late replies. */
  readonly responseTimeoutInSeconds: number;
}

/** The device's answer, passed back to the service unchanged. */
export interface MethodResponse {
  /** Chosen by the device. */
  readonly status: number;
  readonly payload: unknown;
}

/**
 * What the registry must provide (`Registry` does): the stored records, not the described devices, whose cloud-to-
 * device message count costs a store query that an invocation has no use for.
 */
export interface DirectMethodsRegistry {
  /** The stored device, or undefined when it is not registered. */
  getDeviceRecord(deviceId: string): Promise<unknown>;
  /** The stored module, or undefined when it is not registered. */
  getModuleRecord(deviceId: string, moduleId: string): Promise<unknown>;
}

/** Options of {@link DirectMethods}. */
export interface DirectMethodsOptions {
  /** How often to look for a responder while waiting out `connectTimeoutInSeconds` (default 250 ms). */
  readonly connectPollMs?: number;
}

// §2.9 / protocol-device.md §7.
const maxPayloadBytes = 128 * 1024;
const responseTimeoutRange = { min: 5, max: 300, fallback: 30 } as const;
const connectTimeoutRange = { min: 0, max: 300, fallback: 0 } as const;
// US-ASCII printable, excluding $ ( ) < > @ , ; : \ " / [ ] ? = { } SP HT (§2.9).
const methodNamePattern = /^[!#%&'*+\-.0-9A-Z^_`a-z|~]+$/;
const textEncoder = new TextEncoder();

/** Invokes direct methods on devices and modules. */
export class DirectMethods {
  private readonly connectPollMs: number;

  constructor(
    private readonly ctx: CoreContext,
    private readonly registry: DirectMethodsRegistry,
    options: DirectMethodsOptions = {},
  ) {
    this.connectPollMs = options.connectPollMs ?? 250;
  }

  /**
   * Calls a method and resolves with the device's `{ status, payload }`.
   * @throws HubError DeviceNotFound (404001) / ModuleNotFound (404010); ArgumentError (400004) for a bad method
   * name, timeout or payload; MessageTooLarge (413001) for a payload over 128 KB; DeviceNotOnline (404103) when
   * no session responds within `connectTimeoutInSeconds`; TimeoutError GatewayTimeout (504101) when the device
   * does not answer within `responseTimeoutInSeconds`; AbortError when `signal` aborts.
   */
  async invoke(
    deviceId: string,
    moduleId: string | undefined,
    invocation: MethodInvocation,
    options: { signal?: AbortSignal | undefined } = {},
  ): Promise<MethodResponse> {
    const request = validateInvocation(invocation);
    const connectTimeout = seconds(invocation.connectTimeoutInSeconds, 'connectTimeoutInSeconds', connectTimeoutRange);
    if (moduleId === undefined) {
      if ((await this.registry.getDeviceRecord(deviceId)) === undefined) {
        throw new HubError('DeviceNotFound', `Device '${deviceId}' is not registered`);
      }
    } else if ((await this.registry.getModuleRecord(deviceId, moduleId)) === undefined) {
      throw new HubError('ModuleNotFound', `Module '${moduleId}' is not registered on device '${deviceId}'`);
    }

    const subject = methodSubject(deviceId, moduleId);
    await this.waitForResponder(subject, connectTimeout * 1000, options.signal);
    try {
      const reply = await this.ctx.bus.request(this.ctx.hubName, subject, request, {
        timeoutMs: request.responseTimeoutInSeconds * 1000,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return toResponse(reply);
    } catch (error) {
      // The session went away between the presence check and the request.
      if (error instanceof BusNoResponder) throw notOnline();
      if (error instanceof BusTimeout) {
        throw new TimeoutError('Timed out waiting for the response from device.', { cause: error });
      }
      throw error;
    }
  }

  /**
   * Resolves once a session responds on `subject`; polls `hasResponder` until the connect timeout. Wall-clock
   * time on purpose (not `ctx.now`): the bus's own timeouts are real timers too.
   */
  private async waitForResponder(subject: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw new AbortError();
      if (await this.ctx.bus.hasResponder(this.ctx.hubName, subject)) return;
      const left = deadline - Date.now();
      if (left <= 0) throw notOnline();
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.connectPollMs, left)));
    }
  }
}

function notOnline(): HubError {
  return new HubError('DeviceNotOnline', 'Timed out waiting for device to connect.');
}

function validateInvocation(invocation: MethodInvocation): MethodRequest {
  const { methodName } = invocation;
  if (typeof methodName !== 'string' || methodName.length === 0) {
    throw new ArgumentError('methodName is required', { field: 'methodName' });
  }
  if (!methodNamePattern.test(methodName)) {
    throw new ArgumentError(
      `Invalid method name '${methodName}': printable US-ASCII without $ ( ) < > @ , ; : \\ " / [ ] ? = { } space or tab`,
      { field: 'methodName' },
    );
  }
  const payload = invocation.payload === undefined ? null : invocation.payload;
  const size = textEncoder.encode(JSON.stringify(payload)).byteLength;
  if (size > maxPayloadBytes) {
    throw new HubError('MessageTooLarge', `The method payload is ${size} bytes; the limit is ${maxPayloadBytes}`);
  }
  return {
    methodName,
    payload,
    responseTimeoutInSeconds: seconds(
      invocation.responseTimeoutInSeconds,
      'responseTimeoutInSeconds',
      responseTimeoutRange,
    ),
  };
}

function seconds(
  value: number | undefined,
  field: string,
  range: { readonly min: number; readonly max: number; readonly fallback: number },
): number {
  if (value === undefined || value === null) return range.fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < range.min || value > range.max) {
    throw new ArgumentError(`${field} must be a number from ${range.min} to ${range.max}`, { field });
  }
  return value;
}

function toResponse(reply: unknown): MethodResponse {
  const candidate = reply as Partial<MethodResponse> | null | undefined;
  if (!candidate || typeof candidate.status !== 'number' || !Number.isInteger(candidate.status)) {
    throw new HubError('ServerError', 'The device session answered the method call without an integer status');
  }
  return { status: candidate.status, payload: candidate.payload === undefined ? null : candidate.payload };
}
