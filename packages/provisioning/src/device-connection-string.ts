import { ArgumentError, formatConnectionString } from '@fieldhub/protocol';
import type { RegistrationResult } from './registration-result';

/** How the device authenticates to its assigned hub. */
export type DeviceCredentialOptions =
  /** The same symmetric key it registered with (individual key, or the key derived from the group's). */
  | { readonly symmetricKey: string }
  /** Its X.509 certificate: the connection string says `x509=true`; the certificate goes to the client as `x509`. */
  | { readonly x509: true };

/**
 * The device connection string for the hub a registration assigned the device to:
 * `HostName={assignedHub};DeviceId={deviceId};SharedAccessKey={key}` or `...;x509=true`, ready for
 * `createDeviceClient({ connectionString })` of `@fieldhub/device` (or any Azure IoT device SDK).
 *
 * @example
 * ```ts
 * const result = await register({ idScope, registrationId, symmetricKey });
 * const client = await createDeviceClient({ connectionString: deviceConnectionString(result, { symmetricKey }) });
 * ```
 * @throws ArgumentError when the result has no assigned hub or device id, or the key is not base64.
 */
export function deviceConnectionString(
  result: Pick<RegistrationResult, 'assignedHub' | 'deviceId'>,
  credentials: DeviceCredentialOptions,
): string {
  if (typeof result !== 'object' || result === null || !result.assignedHub || !result.deviceId) {
    throw new ArgumentError('the registration result has no assignedHub and deviceId', { field: 'result' });
  }
  if ('symmetricKey' in credentials && typeof credentials.symmetricKey === 'string') {
    return formatConnectionString({
      hostName: result.assignedHub,
      deviceId: result.deviceId,
      sharedAccessKey: credentials.symmetricKey,
    });
  }
  if ('x509' in credentials && credentials.x509 === true) {
    return formatConnectionString({ hostName: result.assignedHub, deviceId: result.deviceId, x509: true });
  }
  throw new ArgumentError('credentials must be { symmetricKey } or { x509: true }', { field: 'credentials' });
}
