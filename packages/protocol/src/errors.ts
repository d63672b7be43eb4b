import { type ErrorCodeName, ErrorCodes, errorCodeName, isErrorCodeName } from './error-codes';

// Recognised across duplicated copies of this package (two versions in one node_modules), unlike instanceof.
const hubErrorMarker = Symbol.for('@fieldhub/protocol/HubError');

/** Options every HubError accepts. */
export interface HubErrorOptions {
  /** The original error. */
  cause?: unknown;
  /** Overrides the table's retryability for this one error. */
  retryable?: boolean;
}

/**
 * The one error base of Fieldhub: a stable string `code` (`'DeviceNotFound'`), the hub's numeric code
 * (`hubCode`, e.g. 404001), the HTTP `status`, and whether a retry can help.
 */
export class HubError extends Error {
  /** Azure's error-code name. */
  readonly code: ErrorCodeName;
  /** Azure's numeric error code; its first three digits are the HTTP status. */
  readonly hubCode: number;
  /** The HTTP status. */
  readonly status: number;
  /** Whether trying the same operation again later can succeed. */
  readonly isRetryable: boolean;

  constructor(code: ErrorCodeName, message: string, options: HubErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const row = ErrorCodes[code];
    this.name = 'HubError';
    this.code = code;
    this.hubCode = row.code;
    this.status = row.status;
    this.isRetryable = options.retryable ?? row.retryable;
    Object.defineProperty(this, hubErrorMarker, { value: true });
  }

  /** True for any HubError, including one made by another copy of this package. */
  static is(value: unknown): value is HubError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[hubErrorMarker] === true;
  }

  /**
   * Builds the right HubError from a code name or number as found on the wire (an `iothub-errorcode` header, an
   * MQTT status, an AMQP condition); unknown codes become ServerError with the original kept in the message.
   */
  static fromCode(code: string | number, message: string, options: HubErrorOptions = {}): HubError {
    const name = typeof code === 'number' ? errorCodeName(code) : isErrorCodeName(code) ? code : undefined;
    if (!name) return new HubError('ServerError', `${message} (code ${code})`, options);
    const Subclass = subclassFor(name);
    return Subclass ? new Subclass(message, { ...options, code: name }) : new HubError(name, message, options);
  }
}

/** Options of the subclasses, which may narrow the code. */
export interface SubclassErrorOptions<C extends ErrorCodeName> extends HubErrorOptions {
  code?: C;
}

/** Bad input: a malformed string, a missing field, a value out of range. `field` names what was wrong. */
export class ArgumentError extends HubError {
  /** The field (or parameter) that was wrong, when one can be named. */
  readonly field: string | undefined;
  constructor(message: string, options: SubclassErrorOptions<ErrorCodeName> & { field?: string } = {}) {
    super(options.code ?? 'ArgumentInvalid', message, options);
    this.name = 'ArgumentError';
    this.field = options.field;
  }
}

/** Wrong, expired or insufficient credentials. */
export class AuthenticationError extends HubError {
  constructor(message: string, options: SubclassErrorOptions<ErrorCodeName> = {}) {
    super(options.code ?? 'IotHubUnauthorizedAccess', message, options);
    this.name = 'AuthenticationError';
  }
}

/** The connection failed or was lost. Retryable. */
export class ConnectionError extends HubError {
  constructor(message: string, options: SubclassErrorOptions<ErrorCodeName> = {}) {
    super(options.code ?? 'ServiceUnavailable', message, { retryable: true, ...options });
    this.name = 'ConnectionError';
  }
}

/** No answer in time (a method response, an acknowledgement). */
export class TimeoutError extends HubError {
  constructor(message: string, options: SubclassErrorOptions<ErrorCodeName> = {}) {
    super(options.code ?? 'GatewayTimeout', message, options);
    this.name = 'TimeoutError';
  }
}

/** The hub asked the caller to slow down. Retryable. */
export class ThrottledError extends HubError {
  constructor(message: string, options: SubclassErrorOptions<ErrorCodeName> = {}) {
    super(options.code ?? 'ThrottlingException', message, options);
    this.name = 'ThrottledError';
  }
}

/** The transport or hub cannot do this operation (e.g. direct methods over HTTPS). */
export class UnsupportedFeatureError extends HubError {
  constructor(message: string, options: SubclassErrorOptions<ErrorCodeName> = {}) {
    super(options.code ?? 'InvalidOperation', message, options);
    this.name = 'UnsupportedFeatureError';
  }
}

/** The caller aborted the operation through its AbortSignal. */
export class AbortError extends HubError {
  constructor(message = 'The operation was aborted', options: SubclassErrorOptions<ErrorCodeName> = {}) {
    super(options.code ?? 'OperationAborted', message, options);
    this.name = 'AbortError';
  }
}

type SubclassConstructor = new (message: string, options: SubclassErrorOptions<ErrorCodeName>) => HubError;

function subclassFor(name: ErrorCodeName): SubclassConstructor | undefined {
  if (name === 'ArgumentInvalid' || name === 'ArgumentNull' || name === 'IotHubFormatError') return ArgumentError;
  if (name === 'IotHubUnauthorizedAccess' || name === 'IotHubUnauthorized') return AuthenticationError;
  if (name === 'ThrottlingException' || name === 'ThrottleBacklogLimitExceeded' || name === 'ThrottlingBacklogTimeout')
    return ThrottledError;
  if (name === 'GatewayTimeout') return TimeoutError;
  if (name === 'ServiceUnavailable') return ConnectionError;
  if (name === 'OperationAborted') return AbortError;
  return undefined;
}
