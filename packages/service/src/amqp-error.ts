/**
 * Maps AMQP errors (a `rejected` outcome, a refused attach, a detach or a close; protocol-service.md §3.2) to the
 * HubError family. STYLE: structured fields only: the condition, and an error-code name or number the peer put in
 * the error's `info` map; never the description text. The table follows azure-iot-amqp-base's
 * `amqp_common_errors.js`, where Azure's service clients get their typed errors from.
 */
import { type ErrorCodeName, HubError, isErrorCodeName } from '@fieldhub/protocol';

/** The parts of an AMQP error the mapping reads (rhea's `AmqpError` or a plain object). */
export interface AmqpErrorLike {
  readonly condition?: unknown;
  readonly description?: unknown;
  readonly info?: unknown;
}

/** What a condition means where it arrived (e.g. `amqp:not-found` on a C2D send means the device). */
export interface AmqpErrorContext {
  /** The code for `amqp:not-found`. Default `ResourceNotFound`. */
  readonly notFound?: ErrorCodeName;
  /** The code for `amqp:resource-limit-exceeded`. Default `IotHubQuotaExceeded`. */
  readonly resourceLimit?: ErrorCodeName;
}

// Conditions whose meaning does not depend on the link; the two context-dependent ones are handled in the function.
const byCondition: Readonly<Record<string, ErrorCodeName>> = {
  'amqp:unauthorized-access': 'IotHubUnauthorizedAccess',
  'amqp:link:message-size-exceeded': 'MessageTooLarge',
  'amqp:decode-error': 'ArgumentInvalid',
  'amqp:invalid-field': 'ArgumentInvalid',
  'com.microsoft:argument-error': 'ArgumentInvalid',
  'com.microsoft:argument-out-of-range': 'ArgumentInvalid',
  'amqp:not-allowed': 'InvalidOperation',
  'amqp:not-implemented': 'InvalidOperation',
  'com.microsoft:device-container-throttled': 'ThrottlingException',
  'com.microsoft:server-busy': 'ThrottlingException',
  'com.microsoft:precondition-failed': 'PreconditionFailed',
  'com.microsoft:quota-exceeded': 'IotHubQuotaExceeded',
  'com.microsoft:message-lock-lost': 'DeviceMessageLockLost',
  'com.microsoft:timeout': 'GatewayTimeout',
  'com.microsoft:device-already-exists': 'DeviceAlreadyExists',
  'amqp:internal-error': 'ServerError',
  // The link or connection went away under the caller: trying again on a new one can work.
  'amqp:link:detach-forced': 'ServiceUnavailable',
  'amqp:link:stolen': 'ServiceUnavailable',
  'amqp:connection:forced': 'ServiceUnavailable',
  'amqp:connection:framing-error': 'ServiceUnavailable',
  'com.microsoft:operation-cancelled': 'ServiceUnavailable',
};

/**
 * The HubError for an AMQP error. An error-code name or number in `info` (`iothub-errorcode`, `errorCode`,
 * `com.microsoft:error-code`) wins over the condition; unknown conditions become ServerError with the condition
 * kept in the message.
 */
export function errorFromAmqp(error: AmqpErrorLike | undefined, context: AmqpErrorContext = {}): HubError {
  const condition = typeof error?.condition === 'string' ? error.condition : undefined;
  const description =
    typeof error?.description === 'string' && error.description !== ''
      ? error.description
      : `The hub refused the operation${condition ? ` (${condition})` : ''}`;
  const infoCode = codeFromInfo(error?.info);
  if (infoCode !== undefined) {
    const mapped = HubError.fromCode(infoCode, description);
    if (mapped.code !== 'ServerError' || infoCode === 500001 || infoCode === 'ServerError') return mapped;
  }
  let name: ErrorCodeName | undefined;
  if (condition === 'amqp:not-found') name = context.notFound ?? 'ResourceNotFound';
  else if (condition === 'amqp:resource-limit-exceeded') name = context.resourceLimit ?? 'IotHubQuotaExceeded';
  else if (condition !== undefined) name = byCondition[condition];
  if (name === undefined) {
    return new HubError('ServerError', condition ? `${description} (condition ${condition})` : description);
  }
  return HubError.fromCode(name, description);
}

function codeFromInfo(info: unknown): string | number | undefined {
  if (typeof info !== 'object' || info === null) return undefined;
  const record = info as Record<string, unknown>;
  for (const key of ['iothub-errorcode', 'errorCode', 'com.microsoft:error-code']) {
    const value = record[key];
    if (typeof value === 'number' && Number.isInteger(value)) return value;
    if (typeof value === 'string' && /^\d{6}$/.test(value)) return Number(value);
    if (typeof value === 'string' && isErrorCodeName(value)) return value;
  }
  return undefined;
}
