/**
 * Direct methods (`service.directMethods`, protocol-service.md §2.9): invoke a method on a connected device or
 * module and get the device's `{ status, payload }`.
 */
import { ArgumentError } from '@fieldhub/protocol';
import { type HttpClient, segment } from './http-client';
import type { CallOptions } from './options';

/** A direct method call. */
export interface DirectMethodRequest {
  /** US-ASCII printable, without `$ ( ) < > @ , ; : \ " / [ ] ? = { }` and spaces. */
  methodName: string;
  /** Any JSON value (at most 128 KB); `null` when absent. */
  payload?: unknown;
  /** How long the device may take to answer, 5–300 s. Default 30. */
  responseTimeoutInSeconds?: number;
  /** How long to wait for the device to connect, 0–300 s. Default 0: the device must be online. */
  connectTimeoutInSeconds?: number;
  /** Invoke the method on this module of the device. */
  moduleId?: string;
}

/** The device's answer. */
export interface DirectMethodResponse<T = unknown> {
  /** The status the device chose. */
  status: number;
  /** The payload the device answered. */
  payload: T;
}

/** Direct methods. */
export class DirectMethods {
  /** @internal */
  constructor(private readonly http: HttpClient) {}

  /**
   * Invokes a direct method and resolves with the device's answer, whatever status it chose.
   * @throws HubError DeviceNotOnline (404103) when the device is not connected within `connectTimeoutInSeconds`;
   * TimeoutError GatewayTimeout (504101) when it does not answer within `responseTimeoutInSeconds`;
   * DeviceNotFound (404001); ArgumentError for a bad method name or timeout; AbortError on abort.
   */
  async invoke<T = unknown>(
    deviceId: string,
    request: DirectMethodRequest,
    options: CallOptions = {},
  ): Promise<DirectMethodResponse<T>> {
    if (typeof request !== 'object' || request === null || typeof request.methodName !== 'string') {
      throw new ArgumentError('methodName is required', { field: 'methodName' });
    }
    const responseTimeoutInSeconds = request.responseTimeoutInSeconds ?? 30;
    const connectTimeoutInSeconds = request.connectTimeoutInSeconds ?? 0;
    for (const [field, value] of [
      ['responseTimeoutInSeconds', responseTimeoutInSeconds],
      ['connectTimeoutInSeconds', connectTimeoutInSeconds],
    ] as const) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
        throw new ArgumentError(`${field} must be a non-negative number of seconds`, { field });
      }
    }
    const base = `/twins/${segment(deviceId)}`;
    const path =
      request.moduleId === undefined ? `${base}/methods` : `${base}/modules/${segment(request.moduleId)}/methods`;
    const { value } = await this.http.json<DirectMethodResponse<T>>({
      method: 'POST',
      path,
      json: {
        methodName: request.methodName,
        payload: request.payload ?? null,
        responseTimeoutInSeconds,
        connectTimeoutInSeconds,
      },
      signal: options.signal,
      // The hub answers after the device did (or the timeouts expired): wait that long, plus a margin.
      headersTimeoutMs: (responseTimeoutInSeconds + connectTimeoutInSeconds) * 1000 + 15_000,
    });
    return value;
  }
}
