/**
 * The identity registry's JSON shapes as Azure IoT Hub's service REST API carries them (protocol-service.md §2.4,
 * §2.5, §2.3 statistics): what the hub answers and the service SDK reads. camelCase as on the wire; timestamps
 * stay ISO 8601 strings, `0001-01-01T00:00:00Z` meaning "never".
 */

/** `status` of a device. */
export type DeviceStatus = 'enabled' | 'disabled';

/** `connectionState` of a device or module (capitalised on the wire). */
export type ConnectionState = 'Connected' | 'Disconnected';

/** `authentication.type` of a device or module. */
export type AuthenticationType = 'sas' | 'selfSigned' | 'certificateAuthority' | 'none';

/** `authentication` exactly as the registry answers it: every member present, `null` where unused. */
export interface AuthenticationMechanism {
  symmetricKey: { primaryKey: string | null; secondaryKey: string | null };
  x509Thumbprint: { primaryThumbprint: string | null; secondaryThumbprint: string | null };
  type: AuthenticationType;
}

/** A device identity (§2.4; the field names of the PL `Device` mapper). */
export interface Device {
  deviceId: string;
  /** Hub-made; differs when a device is deleted and created again. */
  generationId: string;
  /** The identity's etag (unquoted); guards updates and deletes. */
  etag: string;
  connectionState: ConnectionState;
  status: DeviceStatus;
  statusReason: string | null;
  connectionStateUpdatedTime: string;
  statusUpdatedTime: string;
  lastActivityTime: string;
  cloudToDeviceMessageCount: number;
  authentication: AuthenticationMechanism;
  capabilities: { iotEdge: boolean };
  deviceScope?: string;
  parentScopes?: string[];
}

/** A module identity (§2.5). */
export interface Module {
  moduleId: string;
  managedBy: string | null;
  deviceId: string;
  generationId: string;
  etag: string;
  connectionState: ConnectionState;
  connectionStateUpdatedTime: string;
  lastActivityTime: string;
  cloudToDeviceMessageCount: number;
  authentication: AuthenticationMechanism;
}

/** `GET /statistics/devices`. */
export interface RegistryStatistics {
  totalDeviceCount: number;
  enabledDeviceCount: number;
  disabledDeviceCount: number;
}

/** `GET /statistics/service`. */
export interface ServiceStatistics {
  connectedDeviceCount: number;
}
