/**
 * @fieldhub/provisioning: the Device Provisioning Service client. `register()` sends a device's registration to
 * DPS (Fieldhub's or Azure's) over MQTT or HTTPS, authenticated by a symmetric key (individual, or derived from a
 * group key with `deriveDeviceKey`) or an X.509 certificate, polls until the service decides, and returns the
 * assigned hub and device id; `deviceConnectionString()` turns that into a device connection string.
 *
 * Depends on @fieldhub/protocol, @fieldhub/auth, mqtt (MQTT.js) and undici; never on @fieldhub/device, which the
 * result feeds.
 *
 * @example
 * ```ts
 * import { deriveDeviceKey, deviceConnectionString, register } from '@fieldhub/provisioning';
 * const symmetricKey = deriveDeviceKey(groupKey, 'sensor-7');
 * const result = await register({ idScope: '0ne0001234A', registrationId: 'sensor-7', symmetricKey });
 * const client = await createDeviceClient({ connectionString: deviceConnectionString(result, { symmetricKey }) });
 * ```
 * @packageDocumentation
 */
export {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  deriveDeviceKey,
  HubError,
  TimeoutError,
  UnsupportedFeatureError,
} from '@fieldhub/protocol';
export { type DeviceCredentialOptions, deviceConnectionString } from './device-connection-string';
export { dpsApiVersion, globalProvisioningHost } from './dps-wire';
export { type Pem, type ProvisioningTransport, type RegisterOptions, register } from './register';
export { ProvisioningError, type ProvisioningErrorOptions, type RegistrationResult } from './registration-result';
