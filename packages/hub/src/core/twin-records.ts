/**
 * Stored twins and how they become the wire document of protocol-service.md §2.8 (identity fields merged in).
 * Shared by `registry.ts` (a new identity gets a new twin; lifecycle events carry it) and `twins.ts`.
 * Pure: no store access here.
 */
import { createTwinMetadata, type TwinMetadata, type TwinObject } from '@fieldhub/protocol';
import type { DeviceRecord, ModuleRecord } from './registry-records';

/** One properties section as stored: the values, their `$metadata` tree and the section `$version`. */
export interface TwinSectionRecord {
  value: TwinObject;
  metadata: TwinMetadata;
  version: number;
}

/** A twin as stored in `twins` / `module-twins`. */
export interface TwinRecord {
  deviceId: string;
  moduleId?: string;
  /** Twin-level `version`: +1 on every change of tags, desired or reported (§2.8). The etag derives from it. */
  version: number;
  tags: TwinObject;
  desired: TwinSectionRecord;
  reported: TwinSectionRecord;
  /** The DTDL model id a device announced on connect (`''` when none, as Azure shows). */
  modelId: string;
}

/** A `properties.desired` / `properties.reported` object on the wire: values plus `$metadata` and `$version`. */
export type TwinPropertiesSection = { [key: string]: unknown; $metadata: TwinMetadata; $version: number };

/**
 * The twin document of §2.8. Field names and casing are the PL `Twin` mapper's (note `statusUpdateTime`, not the
 * device's `statusUpdatedTime`). Module twins add `moduleId` and have no `capabilities`.
 */
export interface TwinDocument {
  deviceId: string;
  moduleId?: string;
  etag: string;
  deviceEtag: string;
  status: string;
  statusReason?: string | null;
  statusUpdateTime: string;
  connectionState: string;
  lastActivityTime: string;
  cloudToDeviceMessageCount: number;
  authenticationType: string;
  x509Thumbprint: { primaryThumbprint: string | null; secondaryThumbprint: string | null };
  modelId: string;
  version: number;
  capabilities?: { iotEdge: boolean };
  deviceScope?: string;
  parentScopes?: string[];
  tags: TwinObject;
  properties: { desired: TwinPropertiesSection; reported: TwinPropertiesSection };
}

/**
 * A twin etag: base64 of the twin version as an 8-byte big-endian counter (`AAAAAAAAAAE=`, the typical value
 * §2.8 shows). It changes exactly when the twin does.
 */
export function twinEtag(version: number): string {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(version));
  return bytes.toString('base64');
}

/** Initial section contents (e.g. from a bulk import) or empty. */
export interface NewTwinContents {
  tags?: TwinObject;
  desired?: TwinObject;
  reported?: TwinObject;
}

/**
 * The twin a new identity starts with: version 1, both sections at `$version` 1 with root `$metadata` stamped
 * `now` (desired also with `$lastUpdatedVersion` 1), as Azure shows for a fresh device.
 */
export function newTwinRecord(
  deviceId: string,
  moduleId: string | undefined,
  now: string,
  contents: NewTwinContents = {},
): TwinRecord {
  const desired = contents.desired ?? {};
  const reported = contents.reported ?? {};
  const record: TwinRecord = {
    deviceId,
    version: 1,
    tags: contents.tags ?? {},
    desired: { value: desired, metadata: createTwinMetadata(desired, now, 1), version: 1 },
    reported: { value: reported, metadata: createTwinMetadata(reported, now), version: 1 },
    modelId: '',
  };
  if (moduleId !== undefined) record.moduleId = moduleId;
  return record;
}

/** A section as the wire shows it: values, then `$metadata`, then `$version` (§2.8). */
export function renderSection(section: TwinSectionRecord): TwinPropertiesSection {
  return { ...section.value, $metadata: section.metadata, $version: section.version };
}

/**
 * The §2.8 twin document of a device or module: identity fields from the registry record merged with the twin.
 * @param cloudToDeviceMessageCount pending cloud-to-device messages (owned by the cloud-to-device service).
 */
export function renderTwin(
  identity: DeviceRecord | ModuleRecord,
  twin: TwinRecord,
  cloudToDeviceMessageCount: number,
): TwinDocument {
  const isModule = 'moduleId' in identity;
  const document: TwinDocument = {
    deviceId: identity.deviceId,
    ...(isModule ? { moduleId: identity.moduleId } : {}),
    etag: twinEtag(twin.version),
    deviceEtag: identity.etag,
    // Modules have no status of their own; Azure shows module twins as enabled.
    status: isModule ? 'enabled' : identity.status,
    ...(isModule ? {} : { statusReason: identity.statusReason }),
    statusUpdateTime: isModule ? '0001-01-01T00:00:00Z' : identity.statusUpdatedTime,
    connectionState: identity.connectionState,
    lastActivityTime: identity.lastActivityTime,
    cloudToDeviceMessageCount,
    authenticationType: identity.authentication.type,
    x509Thumbprint: identity.authentication.x509Thumbprint,
    modelId: twin.modelId,
    version: twin.version,
    tags: twin.tags,
    properties: { desired: renderSection(twin.desired), reported: renderSection(twin.reported) },
  };
  if (!isModule) {
    document.capabilities = identity.capabilities;
    if (identity.deviceScope !== undefined) document.deviceScope = identity.deviceScope;
    if (identity.parentScopes !== undefined) document.parentScopes = identity.parentScopes;
  }
  return document;
}
