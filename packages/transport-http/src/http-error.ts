/**
 * Maps what HTTPS reports onto the HubError family of @fieldhub/protocol (STYLE: structured fields only, never
 * message text): a failed answer by its `iothub-errorcode` header, then the code named in Azure's error envelope
 * (`{"Message":"ErrorCode:<Name>;<text>"}` or the newer `{"Message":"{\"errorCode\":404103,...}"}`), then its status
 * alone; a failed request (undici's errors) by its error `code`.
 */
import {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  type ErrorCodeName,
  HubError,
  isErrorCodeName,
  parseErrorEnvelope,
  ThrottledError,
} from '@fieldhub/protocol';

/** The parts of a failed answer the mapping reads. */
export interface FailedResponse {
  /** The HTTP status. */
  readonly status: number;
  /** Response headers, names lower-cased (as undici gives them). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The response body as text (may be empty). */
  readonly body: string;
}

// The device API's meaning of a bare status (protocol-device.md §4; the Node SDK's map, plus 429 as the other SDKs
// read it). 404 on a device route is the device; 412 on a settlement is the lock.
const byStatus: Readonly<Record<number, ErrorCodeName>> = {
  400: 'ArgumentInvalid',
  401: 'IotHubUnauthorizedAccess',
  403: 'IotHubQuotaExceeded',
  404: 'DeviceNotFound',
  405: 'MethodNotAllowed',
  412: 'DeviceMessageLockLost',
  413: 'MessageTooLarge',
  429: 'ThrottlingException',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

/** Codes that mean "slow down", whatever their status (the hub's throttles and quotas per device). */
const throttleCodes: ReadonlySet<ErrorCodeName> = new Set<ErrorCodeName>([
  'DeviceMaximumActiveFileUploadLimitExceeded',
  'ThrottlingException',
  'ThrottleBacklogLimitExceeded',
  'ThrottlingBacklogTimeout',
]);

/** Codes left as plain HubErrors for callers to branch on (`error.code`), although their status is 4xx. */
const plainCodes: ReadonlySet<ErrorCodeName> = new Set<ErrorCodeName>([
  'DeviceNotFound',
  'ModuleNotFound',
  'ResourceNotFound',
  'PreconditionFailed',
  'DeviceMessageLockLost',
  'IotHubQuotaExceeded',
  'DeviceMaximumQueueDepthExceeded',
]);

/**
 * The HubError for a failed answer of the hub. 401 is an AuthenticationError; MessageTooLarge and the other codes
 * of a request the hub refused (4xx) are ArgumentErrors, except those callers branch on (DeviceNotFound,
 * DeviceMessageLockLost, quotas: plain HubErrors with their code); throttling is a ThrottledError; 503 a
 * ConnectionError (retryable); other 5xx a retryable HubError.
 */
export function errorFromResponse(response: FailedResponse): HubError {
  const envelope = parseErrorEnvelope(response.body);
  const header = singleHeader(response.headers['iothub-errorcode']);
  const code = header ?? envelope.code;
  const message = envelope.text ?? (response.body.trim().slice(0, 500) || `HTTP ${response.status}`);
  let name: ErrorCodeName | undefined;
  if (typeof code === 'number' || (typeof code === 'string' && /^\d{6}$/.test(code))) {
    const error = HubError.fromCode(Number(code), message);
    if (error.code !== 'ServerError' || Number(code) === 500001) name = error.code;
  } else if (code !== undefined && isErrorCodeName(code)) {
    name = code;
  }
  const known = name !== undefined;
  name ??= byStatus[response.status] ?? (response.status >= 500 ? 'ServerError' : 'ArgumentInvalid');
  const text = known || code === undefined ? message : `${message} (code ${code})`;
  return typed(name, text);
}

function typed(name: ErrorCodeName, message: string): HubError {
  if (throttleCodes.has(name)) return new ThrottledError(message, { code: name, retryable: true });
  const error = HubError.fromCode(name, message);
  if (error.constructor !== HubError || plainCodes.has(name)) return error;
  if (error.status >= 400 && error.status < 500) return new ArgumentError(message, { code: name });
  return error;
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text.trim() === '' ? undefined : text.trim();
}

// undici's codes for a request that reached no answer in time.
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * The HubError for a request that got no answer: AbortError when `signal` aborted; ArgumentError for options undici
 * or TLS refused before dialling (a malformed header, certificate, key or CA); ConnectionError (retryable) for
 * everything on the way (DNS, refused or reset sockets, TLS handshake and certificate checks, timeouts, a closed
 * pool). HubErrors pass through.
 */
export function requestFailure(error: unknown, target: string, signal?: AbortSignal): HubError {
  if (HubError.is(error)) return error;
  if (signal?.aborted) return new AbortError(undefined, { cause: signal.reason ?? error });
  const code = String((error as { code?: unknown } | null)?.code ?? '');
  const reason = error instanceof Error ? error.message : String(error);
  if (code === 'UND_ERR_INVALID_ARG' || code.startsWith('ERR_OSSL_') || code === 'ERR_INVALID_ARG_TYPE') {
    return new ArgumentError(`the request to ${target} could not be made: ${reason}`, { cause: error });
  }
  if (timeoutCodes.has(code)) {
    return new ConnectionError(`${target} did not answer in time (${code})`, { cause: error });
  }
  return new ConnectionError(`cannot reach ${target}: ${reason}`, { cause: error });
}

/** Whether an error of a request means the hub is gone or refuses this device: the transport reports a loss. */
export function endsConnection(error: HubError): boolean {
  return (error instanceof ConnectionError && error.isRetryable) || error instanceof AuthenticationError;
}
