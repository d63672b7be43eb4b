/**
 * The limits of Azure IoT Hub that change protocol behaviour, in one table shared by the hub (which enforces
 * them) and the SDK (which checks early). Sources: protocol-device.md §7 ("device §7"), protocol-service.md
 * §2.4, §2.8, §2.9, §3.2, §3.3, §9 ("service §x"). Sizes are bytes (1 KB = 1024), durations seconds.
 */
import { ArgumentError } from './errors';

/** Every limit, by name. Ranges are `{ default, min, max }`. */
export const Limits = {
  /** Telemetry (device-to-cloud) message: body + system property values + app property names and values. Device §7, service §9. */
  telemetryMessageMaxBytes: 256 * 1024,
  /** A telemetry batch, in total. Device §7. */
  telemetryBatchMaxBytes: 256 * 1024,
  /** Cloud-to-device message. Device §7, service §3.2 (bigger answers MessageTooLarge). */
  cloudToDeviceMessageMaxBytes: 64 * 1024,
  /** Pending cloud-to-device messages per device; one more answers DeviceMaximumQueueDepthExceeded (403004). Device §7, service §3.2. */
  cloudToDeviceQueueMaxDepth: 50,
  /** Cloud-to-device delivery count: only explicit abandons count, lock expiry does not. Device §7, service §3.2. */
  cloudToDeviceMaxDeliveryCount: { default: 10, min: 1, max: 100 },
  /** Cloud-to-device time to live (hub `defaultTtlAsIso8601`): 1 h by default, 1 min to 2 days. Device §7, service §3.2. */
  cloudToDeviceTtlSeconds: { default: 3600, min: 60, max: 2 * 24 * 3600 },
  /** How long a received cloud-to-device message stays locked (invisible) before redelivery; fixed. Device §7. */
  cloudToDeviceLockTimeoutSeconds: 60,
  /**
   * Feedback queue time to live: 1 h by default, at most 2 days (service §3.3). The minimum is not in the
   * reference; 1 minute mirrors the cloud-to-device queue.
   */
  feedbackTtlSeconds: { default: 3600, min: 60, max: 2 * 24 * 3600 },
  /** Feedback max delivery count: default 10 (service §3.3); the 1–100 range mirrors cloud-to-device (not in the reference). */
  feedbackMaxDeliveryCount: { default: 10, min: 1, max: 100 },
  /** Feedback lock duration: 60 s by default, 5–300 s. Service §3.3. */
  feedbackLockDurationSeconds: { default: 60, min: 5, max: 300 },
  /** Feedback records per batch message. Device §7, service §3.3. */
  feedbackBatchMaxRecords: 64,
  /** A feedback batch is sent at most this long after the last record. Device §7, service §3.3. */
  feedbackBatchWindowSeconds: 15,
  /** Twin tags, counted by `twinSectionSize` (excluding `$version` / `$metadata`). Device §7, service §2.8. */
  twinTagsMaxBytes: 8 * 1024,
  /** Twin desired properties, counted as tags. Device §7, service §2.8. */
  twinDesiredMaxBytes: 32 * 1024,
  /** Twin reported properties, counted as tags. Device §7, service §2.8. */
  twinReportedMaxBytes: 32 * 1024,
  /**
   * Nesting depth below a twin section: the section is level 0, the value of a top-level key level 1. Objects
   * and arrays both count (older docs said 5). Service §2.8, as Edge Hub's ReportedPropertiesValidator counts.
   */
  twinMaxDepth: 10,
  /** A twin key, in UTF-8 bytes. Device §7, service §2.8. */
  twinKeyMaxBytes: 1024,
  /** A twin string value, in UTF-8 bytes. Device §7, service §2.8. */
  twinStringValueMaxBytes: 4 * 1024,
  /** Smallest twin integer, -2^52. Device §7, service §2.8. */
  twinIntegerMin: -4503599627370496,
  /** Largest twin integer, 2^52 - 1. Device §7, service §2.8. */
  twinIntegerMax: 4503599627370495,
  /** Device id length in characters (ASCII, so also bytes). Service §2.4. */
  deviceIdMaxLength: 128,
  /** Module id length in characters. Service §2.4. */
  moduleIdMaxLength: 128,
  /** Device `statusReason` length. Service §2.4. */
  statusReasonMaxLength: 128,
  /** Device `generationId` length. Service §2.4. */
  generationIdMaxLength: 128,
  /** Message id length, ASCII. Device §7. */
  messageIdMaxLength: 128,
  /** Symmetric key length in bytes once base64-decoded; the hub generates 32 (UNCONFIRMED in service §2.4). */
  symmetricKeyBytes: { default: 32, min: 16, max: 64 },
  /** Direct method payload, request and response alike. Device §7, service §2.9. */
  methodPayloadMaxBytes: 128 * 1024,
  /** `responseTimeoutInSeconds`: 30 by default, 5–300 (newer docs say up to 3600: UNCONFIRMED). Service §2.9. */
  methodResponseTimeoutSeconds: { default: 30, min: 5, max: 300 },
  /** `connectTimeoutInSeconds`: 0 (the device must already be subscribed) to 300. Service §2.9. */
  methodConnectTimeoutSeconds: { default: 0, min: 0, max: 300 },
  /** Devices per bulk registry request; more answers TooManyDevices (413002). Service §2.2, §2.6. */
  bulkRegistryMaxDevices: 100,
  /** Devices plus modules per hub. Service §9. */
  hubMaxIdentities: 1_000_000,
  /** Concurrent file uploads per device. Device §7, service §9. */
  fileUploadMaxConcurrentPerDevice: 10,
  /** The server's keep-alive is 1.5 × the client's, capped at this. Device §7. */
  mqttKeepAliveMaxSeconds: 1767,
  /** MQTT topic subscriptions per device. Device §7. */
  mqttMaxSubscriptionsPerDevice: 5,
  /** The SAS token lifetime the Node SDK uses by default. Device §1.3. */
  sasTokenDefaultTtlSeconds: 3600,
  /** How long before expiry the Node SDK renews a SAS token. Device §1.3. */
  sasTokenRenewalMarginSeconds: 900,
} as const;

/** The name of a limit. */
export type LimitName = keyof typeof Limits;

/**
 * The characters a device or module id may hold besides ASCII letters and digits (service §2.4):
 * `- . + % _ # * ? ! ( ) , = @ $ '`, plus `:` which newer docs list. Newer docs also list `;`; it is left out on
 * purpose because `;` separates the fields of a connection string, so such a device could not use one.
 */
export const IdentityIdSpecialCharacters = "-.+%_#*?!(),=@$':";

function isValidIdentityId(id: unknown, maxLength: number): id is string {
  if (typeof id !== 'string' || id.length === 0 || id.length > maxLength) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    const alphanumeric = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (!alphanumeric && IdentityIdSpecialCharacters.indexOf(id.charAt(i)) < 0) return false;
  }
  return true;
}

/**
 * Whether `id` is a valid device id: 1–128 characters, ASCII letters, digits and the characters of
 * {@link IdentityIdSpecialCharacters}; case-sensitive (service §2.4).
 */
export function isValidDeviceId(id: unknown): id is string {
  return isValidIdentityId(id, Limits.deviceIdMaxLength);
}

/**
 * Asserts that `id` is a valid device id (see {@link isValidDeviceId}).
 *
 * @throws {ArgumentError} (code ArgumentInvalid, field `'deviceId'`) when it is not.
 */
export function assertValidDeviceId(id: unknown): asserts id is string {
  if (!isValidDeviceId(id)) throw new ArgumentError(describeBadId('device', id), { field: 'deviceId' });
}

/**
 * Whether `id` is a valid module id. The rules are the device id's (service §2.4); Edge system modules such as
 * `$edgeAgent` pass because `$` is allowed.
 */
export function isValidModuleId(id: unknown): id is string {
  return isValidIdentityId(id, Limits.moduleIdMaxLength);
}

/**
 * Asserts that `id` is a valid module id (see {@link isValidModuleId}).
 *
 * @throws {ArgumentError} (code ArgumentInvalid, field `'moduleId'`) when it is not.
 */
export function assertValidModuleId(id: unknown): asserts id is string {
  if (!isValidModuleId(id)) throw new ArgumentError(describeBadId('module', id), { field: 'moduleId' });
}

function describeBadId(kind: string, id: unknown): string {
  if (typeof id !== 'string') return `A ${kind} id must be a string`;
  if (id.length === 0) return `A ${kind} id must not be empty`;
  if (id.length > 128) return `A ${kind} id must be at most 128 characters long`;
  return `A ${kind} id may hold only ASCII letters, digits and ${IdentityIdSpecialCharacters}`;
}
