/**
 * The JSON shapes of the service REST API (protocol-service.md §2.4–§2.8), camelCase as Azure sends them.
 * Timestamps stay ISO 8601 strings, as on the wire; `0001-01-01T00:00:00Z` means "never".
 */

import type {
  AuthenticationMechanism,
  AuthenticationType,
  ConnectionState,
  Device,
  DeviceStatus,
  Module,
  RegistryStatistics,
  ServiceStatistics,
} from '@fieldhub/protocol';

// The registry's answer shapes are @fieldhub/protocol's, shared with the hub that produces them.
export type {
  AuthenticationMechanism,
  AuthenticationType,
  ConnectionState,
  Device,
  DeviceStatus,
  Module,
  RegistryStatistics,
  ServiceStatistics,
};

/**
 * How a device or module authenticates, as sent on create and update. Empty or absent keys make the hub generate
 * them on create. (Answers carry @fieldhub/protocol's `AuthenticationMechanism`, with every member present.)
 */
export interface AuthenticationInput {
  /** The symmetric keys (base64) for `sas`. */
  symmetricKey?: { primaryKey?: string | null; secondaryKey?: string | null };
  /** The certificate thumbprints for `selfSigned`. */
  x509Thumbprint?: { primaryThumbprint?: string | null; secondaryThumbprint?: string | null };
  /** The kind of credential. */
  type?: AuthenticationType;
}

/** What `devices.create` and `devices.update` send: a device id and any writable fields. */
export interface DeviceInput {
  deviceId: string;
  status?: DeviceStatus;
  statusReason?: string | null;
  authentication?: AuthenticationInput;
  capabilities?: { iotEdge: boolean };
  deviceScope?: string;
  parentScopes?: string[];
  /** Sent back on update when present; `update`'s `etag` option wins. */
  etag?: string;
}

/** What `devices.modules.create` and `update` send. */
export interface ModuleInput {
  deviceId: string;
  moduleId: string;
  managedBy?: string | null;
  authentication?: AuthenticationInput;
  /** Sent back on update when present; `update`'s `etag` option wins. */
  etag?: string;
}

/** A JSON object as twins hold them (tags, desired and reported properties). */
export interface TwinCollection {
  [key: string]: unknown;
}

/** A device or module twin (§2.8). */
export interface Twin {
  deviceId: string;
  moduleId?: string;
  /** The twin's etag (unquoted); guards `patch` and `replace`. */
  etag: string;
  /** Increments on every change. */
  version: number;
  deviceEtag?: string;
  status?: DeviceStatus;
  statusReason?: string | null;
  statusUpdateTime?: string;
  connectionState?: ConnectionState;
  lastActivityTime?: string;
  cloudToDeviceMessageCount?: number;
  authenticationType?: AuthenticationType;
  x509Thumbprint?: { primaryThumbprint: string | null; secondaryThumbprint: string | null };
  modelId?: string;
  capabilities?: { iotEdge: boolean };
  deviceScope?: string;
  parentScopes?: string[];
  tags: TwinCollection;
  properties: {
    /** Written by the service; carries `$metadata` and `$version`. */
    desired: TwinCollection;
    /** Written by the device; carries `$metadata` and `$version`. */
    reported: TwinCollection;
  };
}

/**
 * What `twins.patch` merges (JSON merge: objects merge recursively, `null` deletes a key) and what `twins.replace`
 * puts in place of tags and desired properties. Reported properties are the device's and cannot be written.
 */
export interface TwinPatch {
  tags?: TwinCollection;
  properties?: { desired?: TwinCollection };
}

/** The `importMode` of one bulk item (§2.6). */
export type ImportMode =
  | 'create'
  | 'update'
  | 'updateIfMatchETag'
  | 'delete'
  | 'deleteIfMatchETag'
  | 'updateTwin'
  | 'updateTwinIfMatchETag';

/**
 * One operation of `devices.bulk`. `create`, `update`, `delete` act on the identity, `updateTwin` on its twin. With
 * `etag` (identity) or `twinEtag` (twin), `update`/`delete`/`updateTwin` become the `...IfMatchETag` modes and fail
 * on a mismatch; without, they are unconditional.
 */
export interface BulkOperation {
  operation: 'create' | 'update' | 'delete' | 'updateTwin';
  deviceId: string;
  /** Makes the item a module identity. */
  moduleId?: string;
  etag?: string;
  twinEtag?: string;
  status?: DeviceStatus;
  statusReason?: string | null;
  authentication?: AuthenticationInput;
  capabilities?: { iotEdge: boolean };
  tags?: TwinCollection;
  properties?: { desired?: TwinCollection };
  deviceScope?: string;
  parentScopes?: string[];
}

/** One failed item of a bulk request. */
export interface BulkRegistryError {
  deviceId: string;
  errorCode: string;
  errorStatus: string;
  moduleId: string | null;
  operation: string;
}

/** The answer to `devices.bulk`: `isSuccessful` false when any item failed (the hub then answers 400). */
export interface BulkRegistryResult {
  isSuccessful: boolean;
  errors: BulkRegistryError[];
  warnings: { deviceId: string; warningCode: string; warningStatus: string }[];
}
