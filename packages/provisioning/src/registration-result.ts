/**
 * What a DPS reply means for the client, whatever carried it (MQTT, HTTPS): keep polling, retry, done, or which
 * error. One table for both transports, read from structured fields only (status, `errorCode`), never message text.
 */
import {
  AuthenticationError,
  type DpsRegistrationOperation,
  type DpsRegistrationState,
  type ErrorCodeName,
  HubError,
  type HubErrorOptions,
  parseDpsErrorBody,
  parseDpsRegistrationOperation,
} from '@fieldhub/protocol';

/** A successful registration: where the device belongs and under which id. */
export interface RegistrationResult {
  /** Always `assigned`: other final statuses reject with {@link ProvisioningError}. */
  readonly status: 'assigned';
  /** Host name of the hub the device was assigned to (for `HostName=` in a connection string). */
  readonly assignedHub: string;
  /** The device id on that hub. */
  readonly deviceId: string;
  /** The registration id, as the service reports it. */
  readonly registrationId: string;
  /** Why this assignment (`initialAssignment`, `deviceDataMigrated`, `deviceDataReset`, `reprovisionedToInitialAssignment`). */
  readonly substatus?: string;
  /** Data returned by a custom allocation policy, any JSON. */
  readonly payload?: unknown;
  /** When the registration was first made (ISO 8601). */
  readonly createdDateTimeUtc?: string;
  /** When it last changed (ISO 8601). */
  readonly lastUpdatedDateTimeUtc?: string;
  /** The registration record's etag. */
  readonly etag?: string;
  /** The id of the operation that produced this result. */
  readonly operationId: string;
}

/** Options of {@link ProvisioningError}. */
export interface ProvisioningErrorOptions extends HubErrorOptions {
  /** The final status of the registration (`failed`, `disabled`, `unassigned`). */
  readonly registrationStatus: string;
  /** DPS's numeric error code (`registrationState.errorCode` or the error body's `errorCode`). */
  readonly errorCode?: number | undefined;
  /** DPS's error message. */
  readonly errorMessage?: string | undefined;
  /** The registration state DPS answered with, when it sent one. */
  readonly registrationState?: DpsRegistrationState | undefined;
}

/**
 * The service finished the registration without assigning the device: status `failed` (allocation failed, no hub,
 * ...) or `disabled` (the enrollment or registration is disabled). Carries DPS's own `errorCode` and
 * `errorMessage`; `code` is the matching Azure error name when DPS's code is one the table knows, else
 * `InvalidOperation`. Not retryable: the same request gets the same answer until the enrollment changes.
 */
export class ProvisioningError extends HubError {
  /** The registration's final status. */
  readonly registrationStatus: string;
  /** DPS's numeric error code, when it sent one. */
  readonly errorCode: number | undefined;
  /** DPS's error message, when it sent one. */
  readonly errorMessage: string | undefined;
  /** The registration state DPS answered with. */
  readonly registrationState: DpsRegistrationState | undefined;

  constructor(message: string, options: ProvisioningErrorOptions) {
    super(knownCode(options.errorCode) ?? 'InvalidOperation', message, { retryable: false, ...options });
    this.name = 'ProvisioningError';
    this.registrationStatus = options.registrationStatus;
    this.errorCode = options.errorCode;
    this.errorMessage = options.errorMessage;
    this.registrationState = options.registrationState;
  }
}

function knownCode(code: number | undefined): ErrorCodeName | undefined {
  if (code === undefined) return undefined;
  const error = HubError.fromCode(code, '');
  return error.code === 'ServerError' && code !== 500001 ? undefined : error.code;
}

/** One reply as a transport hands it over. */
export interface DpsReply {
  /** 200 done, 202 still assigning, or an error status. */
  readonly status: number;
  /** `retry-after` in seconds, when the reply carried one. */
  readonly retryAfterSeconds: number | undefined;
  /** The body as text. */
  readonly body: string;
}

/** What to do after a reply. */
export type ReplyOutcome =
  | { readonly kind: 'assigned'; readonly result: RegistrationResult }
  | { readonly kind: 'poll'; readonly operationId: string; readonly retryAfterSeconds: number | undefined }
  | { readonly kind: 'retry'; readonly retryAfterSeconds: number | undefined; readonly error: HubError }
  | { readonly kind: 'error'; readonly error: HubError };

/**
 * Reads a reply: 200/202 with an operation (`assigning` / `unassigned` → poll, `assigned` → result, `failed` /
 * `disabled` → ProvisioningError); 429 and 5xx → retry the same request after `retry-after` (as the Node client,
 * §5.1); 401 → AuthenticationError; other statuses → the HubError DPS's `errorCode` names (ArgumentError for 400,
 * ...), with DPS's message.
 */
export function readReply(reply: DpsReply): ReplyOutcome {
  if (reply.status === 200 || reply.status === 202) {
    let operation: DpsRegistrationOperation;
    try {
      operation = parseDpsRegistrationOperation(reply.body);
    } catch (error) {
      return {
        kind: 'error',
        error: new HubError(
          'ServerError',
          `DPS answered ${reply.status} with a body that is no registration operation`,
          {
            cause: error,
            retryable: false,
          },
        ),
      };
    }
    return readOperation(operation, reply.retryAfterSeconds);
  }
  const error = errorFromReply(reply);
  if (reply.status === 429 || reply.status >= 500) {
    return { kind: 'retry', retryAfterSeconds: reply.retryAfterSeconds, error };
  }
  return { kind: 'error', error };
}

function readOperation(operation: DpsRegistrationOperation, retryAfterSeconds: number | undefined): ReplyOutcome {
  const state = operation.registrationState;
  switch (operation.status) {
    case 'assigning':
      return { kind: 'poll', operationId: operation.operationId, retryAfterSeconds };
    case 'assigned': {
      const assignedHub = state?.assignedHub;
      const deviceId = state?.deviceId;
      if (state === undefined || assignedHub === undefined || deviceId === undefined) {
        return {
          kind: 'error',
          error: new HubError('ServerError', 'DPS reported the device assigned without assignedHub and deviceId', {
            retryable: false,
          }),
        };
      }
      return { kind: 'assigned', result: resultOf(operation.operationId, state, assignedHub, deviceId) };
    }
    default: {
      // failed, disabled; unassigned as a final answer (the operation ended without an assignment).
      const status = state?.status ?? operation.status;
      const detail = state?.errorMessage ?? `the registration is ${status}`;
      return {
        kind: 'error',
        error: new ProvisioningError(
          `DPS did not assign the device: ${detail}${state?.errorCode === undefined ? '' : ` (errorCode ${state.errorCode})`}`,
          {
            registrationStatus: status,
            errorCode: state?.errorCode,
            errorMessage: state?.errorMessage,
            registrationState: state,
          },
        ),
      };
    }
  }
}

function resultOf(
  operationId: string,
  state: DpsRegistrationState,
  assignedHub: string,
  deviceId: string,
): RegistrationResult {
  const result: {
    -readonly [K in keyof RegistrationResult]: RegistrationResult[K];
  } = {
    status: 'assigned',
    assignedHub,
    deviceId,
    registrationId: state.registrationId ?? '',
    operationId,
  };
  if (state.substatus !== undefined) result.substatus = state.substatus;
  if (state.payload !== undefined) result.payload = state.payload;
  if (state.createdDateTimeUtc !== undefined) result.createdDateTimeUtc = state.createdDateTimeUtc;
  if (state.lastUpdatedDateTimeUtc !== undefined) result.lastUpdatedDateTimeUtc = state.lastUpdatedDateTimeUtc;
  if (state.etag !== undefined) result.etag = state.etag;
  return result;
}

// A bare status's meaning when the body names no known code.
const byStatus: Readonly<Record<number, ErrorCodeName>> = {
  400: 'ArgumentInvalid',
  401: 'IotHubUnauthorizedAccess',
  403: 'IotHubQuotaExceeded',
  404: 'ResourceNotFound',
  405: 'MethodNotAllowed',
  412: 'PreconditionFailed',
  429: 'ThrottlingException',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

/** The HubError for an error reply, from DPS's error body when it has one, else from the status. */
export function errorFromReply(reply: DpsReply): HubError {
  let errorCode: number | undefined;
  let message = `DPS answered ${reply.status}`;
  try {
    const body = parseDpsErrorBody(reply.body);
    errorCode = body.errorCode;
    message = `${body.message} (errorCode ${body.errorCode}${body.trackingId ? `, trackingId ${body.trackingId}` : ''})`;
  } catch {
    const text = reply.body.trim().slice(0, 300);
    if (text !== '') message = `${message}: ${text}`;
  }
  // 401 is always an AuthenticationError: wrong key, unknown or disabled enrollment, an unverified CA (§5, contract).
  if (reply.status === 401) return new AuthenticationError(message, { code: knownAuthCode(errorCode) });
  const named = knownCode(errorCode);
  // A code whose status disagrees with the reply's is not trusted over the status.
  const code =
    named !== undefined && Math.floor((errorCode ?? 0) / 1000) === reply.status
      ? named
      : (byStatus[reply.status] ?? (reply.status >= 500 ? 'ServerError' : 'ArgumentInvalid'));
  const retryable = reply.status === 429 || reply.status >= 500;
  return HubError.fromCode(code, message, { retryable });
}

function knownAuthCode(errorCode: number | undefined): ErrorCodeName {
  const code = knownCode(errorCode);
  return code === 'IotHubUnauthorized' || code === 'IotHubNotFound' ? code : 'IotHubUnauthorizedAccess';
}
