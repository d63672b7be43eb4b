/**
 * Maps a failed REST answer to the HubError family (STYLE: structured fields only, never message text): the
 * `iothub-errorcode` header first, then the code named in Azure's envelope `{"Message":"ErrorCode:<Name>;<text>"}`
 * or the newer `{"Message":"{\"errorCode\":404103,...}"}`, then the HTTP status alone.
 */
import { type ErrorCodeName, HubError, isErrorCodeName, parseErrorEnvelope } from '@fieldhub/protocol';

/** The parts of a failed answer the mapping reads. */
export interface FailedResponse {
  /** The HTTP status. */
  readonly status: number;
  /** Response headers, names lower-cased (as undici gives them). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The response body as text (may be empty). */
  readonly body: string;
}

// A code for answers that carry only a status: the closest row of the protocol's table.
const byStatus: Readonly<Record<number, ErrorCodeName>> = {
  400: 'ArgumentInvalid',
  401: 'IotHubUnauthorizedAccess',
  403: 'IotHubQuotaExceeded',
  404: 'ResourceNotFound',
  405: 'MethodNotAllowed',
  409: 'DeviceAlreadyExists',
  412: 'PreconditionFailed',
  413: 'MessageTooLarge',
  429: 'ThrottlingException',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

/**
 * The HubError for a failed answer. The message is the envelope's text (after `ErrorCode:<Name>;`) or the body.
 * Unknown code names fall back to the status mapping, keeping the name in the message.
 */
export function errorFromResponse(response: FailedResponse): HubError {
  const envelope = parseErrorEnvelope(response.body);
  const header = singleHeader(response.headers['iothub-errorcode']);
  const code = header ?? envelope.code;
  const message = envelope.text ?? (response.body.trim() || `HTTP ${response.status}`);
  if (typeof code === 'number' || (typeof code === 'string' && /^\d{6}$/.test(code))) {
    const error = HubError.fromCode(Number(code), message);
    if (error.code !== 'ServerError' || Number(code) === 500001) return error;
  } else if (code !== undefined && isErrorCodeName(code)) {
    return HubError.fromCode(code, message);
  }
  const fallback = byStatus[response.status] ?? (response.status >= 500 ? 'ServerError' : 'InvalidOperation');
  return HubError.fromCode(fallback, code === undefined ? message : `${message} (code ${code})`);
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text.trim() === '' ? undefined : text.trim();
}
