import {
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  HubError,
  ThrottledError,
  TimeoutError,
} from '@fieldhub/protocol';

/**
 * The error for a twin response whose status is 300 or more (`$iothub/twin/res/{status}`, protocol-device.md
 * §2.6). The body's `errorCode` (a name such as `ArgumentInvalid` or a number such as 400004) wins, as the Node
 * SDK reads it; without one the status alone decides.
 */
export function statusError(status: number, body: Uint8Array | string): HubError {
  const text = typeof body === 'string' ? body : new TextDecoder().decode(body);
  let errorCode: string | number | undefined;
  let message = `The hub answered status ${status}`;
  try {
    const parsed: unknown = text.trim() === '' ? undefined : JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null) {
      const record = parsed as Record<string, unknown>;
      const code = record.errorCode ?? record.ErrorCode;
      if (typeof code === 'string' || typeof code === 'number') errorCode = code;
      const text = record.message ?? record.Message;
      if (typeof text === 'string' && text !== '') message = text;
    }
  } catch {
    // Not JSON: the status decides.
  }
  if (errorCode !== undefined) {
    const numeric = typeof errorCode === 'string' && /^\d{6}$/.test(errorCode) ? Number(errorCode) : errorCode;
    return HubError.fromCode(numeric, message);
  }
  return fromStatus(status, message);
}

function fromStatus(status: number, message: string): HubError {
  if (status === 400) return new ArgumentError(message);
  if (status === 401) return new AuthenticationError(message);
  if (status === 403) return new HubError('IotHubQuotaExceeded', message);
  if (status === 404) return new HubError('DeviceNotFound', message);
  if (status === 412) return new HubError('PreconditionFailed', message);
  if (status === 413) return new HubError('MessageTooLarge', message);
  if (status === 429) return new ThrottledError(message);
  if (status === 503) return new ConnectionError(message);
  if (status === 504) return new TimeoutError(message);
  return new HubError('ServerError', message);
}
