/**
 * The slim client's errors: plain `Error`s with a stable string `code` (and the hub's `status` where it gave one).
 * Not the protocol's `HubError` family: that one carries the whole error-code table and a `Symbol.for` marker,
 * which cost kilobytes and do not exist on Espruino.
 */
import type { SlimError } from './types';

/**
 * Makes a {@link SlimError}.
 *
 * @param code - the stable code callers branch on (`Unauthorized`, `Timeout`, `BufferFull`, ...).
 * @param message - for people; the code when absent (the bundle size budget prefers codes to prose).
 * @param status - the status the hub answered, when there was one.
 */
export function slimError(code: string, message?: string, status?: number): SlimError {
  const error = new Error(message || code) as SlimError;
  error.code = code;
  if (status !== undefined) error.status = status;
  return error;
}
