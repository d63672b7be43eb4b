/**
 * The error family of the device SDK: device-core throws only these, all from @fieldhub/protocol, so that
 * `HubError.is(error)` and `error.code` work across package copies (STYLE.md "Errors").
 *
 * Where device-core uses which:
 * - `ConnectionError`: no connection, or the client was closed (`code: 'ServiceUnavailable'`,
 *   `isRetryable: false` and message `client closed` for the latter).
 * - `ThrottledError` with `code: 'ThrottleBacklogLimitExceeded'`: the offline queue was full (overflow policy).
 * - `UnsupportedFeatureError`: the transport cannot do it (direct methods over HTTPS, `reject()` over MQTT).
 * - `AbortError`: the caller's `signal` aborted.
 * - `ArgumentError`, `AuthenticationError`, `TimeoutError`: as the names say.
 */
export {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  HubError,
  type HubErrorOptions,
  ThrottledError,
  TimeoutError,
  UnsupportedFeatureError,
} from '@fieldhub/protocol';
