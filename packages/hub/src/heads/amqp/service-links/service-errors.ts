/**
 * Authorization and error translation shared by the service links (protocol-service.md §1.1, §3.2, §3.4).
 *
 * Every service link needs a shared access policy with ServiceConnect on the connection (CBS put-token or SASL
 * PLAIN). Core errors become the AMQP conditions the `azure-iothub` SDK maps to its typed errors
 * (`amqp_common_errors.js` + `amqp_service_errors.js`): DeviceNotFound -> `amqp:not-found` (DeviceNotFoundError),
 * DeviceMaximumQueueDepthExceeded -> `amqp:resource-limit-exceeded` (DeviceMaximumQueueDepthExceededError),
 * MessageTooLarge -> `amqp:link:message-size-exceeded` (MessageTooLargeError), argument errors ->
 * `com.microsoft:argument-error` (ArgumentError), InvalidOperation -> `amqp:not-allowed` (InvalidOperationError),
 * throttling -> `com.microsoft:device-container-throttled` (ThrottlingError), anything unexpected ->
 * `amqp:internal-error` (InternalServerError).
 *
 * Decision where the reference is silent: `info` carries `com.microsoft:tracking-id` (as Azure's errors do) and the
 * hub's numeric code under `com.microsoft:error-code`, so that clients other than the Node SDK (ours) can tell
 * 404001 from 404010 without reading the description.
 */
import { randomUUID } from 'node:crypto';
import { type ErrorCodeName, HubError } from '@fieldhub/protocol';
import {
  type AmqpConnectionContext,
  type AmqpError,
  AmqpErrorConditions,
  type AmqpPrincipal,
  type ServicePrincipal,
} from '../contract';

const conditionByCode: Partial<Record<ErrorCodeName, string>> = {
  DeviceNotFound: AmqpErrorConditions.notFound,
  ModuleNotFound: AmqpErrorConditions.notFound,
  IotHubNotFound: 'com.microsoft:iot-hub-not-found-error',
  DeviceMaximumQueueDepthExceeded: AmqpErrorConditions.resourceLimitExceeded,
  MessageTooLarge: AmqpErrorConditions.messageSizeExceeded,
  ArgumentInvalid: AmqpErrorConditions.argumentError,
  ArgumentNull: AmqpErrorConditions.argumentError,
  IotHubFormatError: AmqpErrorConditions.argumentError,
  InvalidOperation: AmqpErrorConditions.notAllowed,
  IotHubUnauthorizedAccess: AmqpErrorConditions.unauthorizedAccess,
  IotHubUnauthorized: AmqpErrorConditions.unauthorizedAccess,
  IotHubQuotaExceeded: AmqpErrorConditions.quotaExceeded,
  PreconditionFailed: AmqpErrorConditions.preconditionFailed,
  DeviceMessageLockLost: AmqpErrorConditions.messageLockLost,
  ThrottlingException: AmqpErrorConditions.throttled,
  ThrottleBacklogLimitExceeded: AmqpErrorConditions.throttled,
  ThrottlingBacklogTimeout: AmqpErrorConditions.throttled,
  ServiceUnavailable: AmqpErrorConditions.timeout,
  GatewayTimeout: AmqpErrorConditions.timeout,
};

/** The ServiceConnect principal of the connection, or the `amqp:unauthorized-access` error an attach is refused with. */
export function authorizeServiceConnect(context: AmqpConnectionContext): AmqpPrincipal | AmqpError {
  const principal: ServicePrincipal | undefined = context.service('ServiceConnect');
  if (principal) return principal;
  return {
    condition: AmqpErrorConditions.unauthorizedAccess,
    description: 'A shared access policy with ServiceConnect permission is required (put a service token on $cbs)',
  };
}

/**
 * The AMQP error for a failed core operation. `internal` is true when the error is not one the caller caused (the
 * route logs those at error level).
 */
export function toAmqpError(error: unknown): AmqpError & { readonly internal: boolean } {
  const trackingId = randomUUID();
  if (HubError.is(error)) {
    const condition = conditionByCode[error.code];
    if (condition !== undefined) {
      return {
        condition,
        description: error.message,
        info: { 'com.microsoft:tracking-id': trackingId, 'com.microsoft:error-code': error.hubCode },
        internal: false,
      };
    }
  }
  return {
    condition: AmqpErrorConditions.internalError,
    description: `Internal error (tracking id ${trackingId})`,
    info: { 'com.microsoft:tracking-id': trackingId },
    internal: true,
  };
}
