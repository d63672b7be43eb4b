/**
 * AMQP failures as the spec's `HubError`s, mapped from structured fields only (STYLE.md "Errors"): the error
 * condition of a detach, close or `rejected` outcome (protocol-device.md §3.4), the `status-code` of a CBS
 * put-token response (§3.2), and the `status` annotation of a twin response (§3.5). The mapping follows what the
 * official Node SDK (azure-iot-amqp-base `translateError`) makes of the same conditions.
 */
import {
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  HubError,
  ThrottledError,
  TimeoutError,
  UnsupportedFeatureError,
} from '@fieldhub/protocol';

/** An AMQP error as rhea hands it over (a detach, close or `rejected` outcome's `error` field). */
export interface AmqpErrorFields {
  readonly condition?: unknown;
  readonly description?: unknown;
  readonly info?: unknown;
}

function trackingId(info: unknown): string | undefined {
  if (typeof info !== 'object' || info === null) return undefined;
  const id = (info as Record<string, unknown>)['com.microsoft:tracking-id'];
  return typeof id === 'string' ? id : undefined;
}

/** True for an object shaped as an AMQP error (it has a string `condition`). */
export function isAmqpError(value: unknown): value is AmqpErrorFields & { condition: string } {
  return typeof value === 'object' && value !== null && typeof (value as AmqpErrorFields).condition === 'string';
}

/**
 * The HubError for an AMQP error condition (protocol-device.md §3.4). `what` says what failed ("attaching the
 * telemetry link"); the description and the `com.microsoft:tracking-id` the hub sent end up in the message.
 * Unknown conditions become a retryable `ServerError`.
 */
export function conditionError(error: AmqpErrorFields, what: string): HubError {
  const condition = typeof error.condition === 'string' ? error.condition : 'unknown';
  const description = typeof error.description === 'string' && error.description !== '' ? `: ${error.description}` : '';
  const tracking = trackingId(error.info);
  const message = `${what} failed (${condition})${description}${tracking === undefined ? '' : ` [tracking id ${tracking}]`}`;
  // The plain fields, not rhea's object: its link errors reference the link, which references the connection.
  const options = {
    cause: {
      condition,
      ...(typeof error.description === 'string' ? { description: error.description } : {}),
      ...(error.info === undefined ? {} : { info: error.info }),
    },
  };
  switch (condition) {
    case 'amqp:unauthorized-access':
      return new AuthenticationError(message, options);
    case 'com.microsoft:iot-hub-not-found-error':
      return new AuthenticationError(message, { ...options, code: 'IotHubNotFound' });
    case 'amqp:not-found':
      return new HubError('DeviceNotFound', message, options);
    case 'amqp:link:message-size-exceeded':
      return new ArgumentError(message, { ...options, code: 'MessageTooLarge' });
    case 'amqp:decode-error':
    case 'amqp:invalid-field':
    case 'com.microsoft:argument-error':
    case 'com.microsoft:argument-out-of-range':
      return new ArgumentError(message, options);
    case 'amqp:not-allowed':
      return new HubError('InvalidOperation', message, options);
    case 'amqp:not-implemented':
      return new UnsupportedFeatureError(message, options);
    case 'com.microsoft:device-container-throttled':
      return new ThrottledError(message, options);
    case 'amqp:resource-limit-exceeded':
    case 'com.microsoft:quota-exceeded':
      return new HubError('IotHubQuotaExceeded', message, options);
    case 'com.microsoft:timeout':
      return new TimeoutError(message, options);
    case 'com.microsoft:message-lock-lost':
      return new HubError('DeviceMessageLockLost', message, options);
    case 'com.microsoft:precondition-failed':
      return new HubError('PreconditionFailed', message, options);
    case 'com.microsoft:iot-hub-suspended':
      return new HubError('IotHubSuspended', message, options);
    case 'com.microsoft:device-already-exists':
      return new HubError('DeviceAlreadyExists', message, options);
    // The hub took the link or connection away (another connection of the same device, shutdown): try again.
    case 'amqp:link:detach-forced':
    case 'amqp:link:stolen':
    case 'amqp:connection:forced':
    case 'amqp:connection:framing-error':
    case 'amqp:connection:redirect':
    case 'amqp:link:redirect':
    case 'amqp:session:window-violation':
    case 'amqp:session:errant-link':
    case 'amqp:session:handle-in-use':
    case 'amqp:session:unattached-handle':
      return new ConnectionError(message, options);
    default:
      return new HubError('ServerError', message, options);
  }
}

/**
 * The error for a CBS put-token response whose `status-code` is not 200 (protocol-device.md §3.2). The Node SDK
 * treats every such answer as Unauthorized; so does this, except where the status says the hub, not the token,
 * is the problem: 429 (throttled) and 5xx (retryable), and 408/504 (timeout).
 */
export function cbsStatusError(status: number | undefined, description: string | undefined): HubError {
  const message = `the hub refused the SAS token (CBS status ${status ?? 'missing'}${description ? `: ${description}` : ''})`;
  if (status === 429) return new ThrottledError(message);
  if (status === 408 || status === 504) return new TimeoutError(message);
  if (status !== undefined && status >= 500) return new ConnectionError(message, { code: 'ServerError' });
  return new AuthenticationError(message);
}

/**
 * The error for a twin response whose `status` is 300 or more (protocol-device.md §3.5). The body's `errorCode`
 * (a name such as `ArgumentInvalid` or a number such as 400004) wins, as the Node SDK reads it; without one the
 * status decides, as the Node SDK's twin error map does (400 format, 401 unauthorized, 403 invalid operation,
 * 404 not found, 412, 413, 429 throttled, 503, 504 timeout).
 */
export function twinStatusError(status: number, body: Uint8Array | undefined): HubError {
  const text = body === undefined ? '' : new TextDecoder().decode(body);
  let errorCode: string | number | undefined;
  let message = `The hub answered the twin request with status ${status}`;
  try {
    const parsed: unknown = text.trim() === '' ? undefined : JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null) {
      const record = parsed as Record<string, unknown>;
      const code = record.errorCode ?? record.ErrorCode;
      if (typeof code === 'string' || typeof code === 'number') errorCode = code;
      const detail = record.message ?? record.Message;
      if (typeof detail === 'string' && detail !== '') message = detail;
    }
  } catch {
    // Not JSON: the status decides.
  }
  if (errorCode !== undefined) {
    const numeric = typeof errorCode === 'string' && /^\d{6}$/.test(errorCode) ? Number(errorCode) : errorCode;
    return HubError.fromCode(numeric, message);
  }
  if (status === 400) return new ArgumentError(message);
  if (status === 401) return new AuthenticationError(message);
  if (status === 403) return new HubError('InvalidOperation', message);
  if (status === 404) return new HubError('DeviceNotFound', message);
  if (status === 412) return new HubError('PreconditionFailed', message);
  if (status === 413) return new ArgumentError(message, { code: 'MessageTooLarge' });
  if (status === 429) return new ThrottledError(message);
  if (status === 503) return new ConnectionError(message);
  if (status === 504) return new TimeoutError(message);
  return new HubError('ServerError', message);
}
