/**
 * Stored shapes of the identity registry and the small rules they obey (ids, keys, thumbprints, etags,
 * generation ids). Shared by `registry.ts` (which owns the records) and `twins.ts` (which reads identity fields
 * into twin documents, protocol-service.md §2.8). Pure: no store access here.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { AuthenticationMechanism, AuthenticationType, ConnectionState, DeviceStatus } from '@fieldhub/protocol';
import { ArgumentError, base64Decode } from '@fieldhub/protocol';

/** Store collections (all scoped by hub name by the store itself). */
export const Collections = {
  /** Device identities, keyed by device id. */
  devices: 'devices',
  /** Module identities, keyed by {@link moduleKey} so that one device's modules prefix-scan. */
  modules: 'modules',
  /** Device twins (tags, desired, reported), keyed by device id. */
  twins: 'twins',
  /** Module twins, keyed by {@link moduleKey}. */
  moduleTwins: 'module-twins',
} as const;

/**
 * The key of a module record: `deviceId/moduleId`. `/` cannot occur in a device id (§2.4), so the prefix
 * `deviceId/` selects exactly one device's modules.
 */
export function moduleKey(deviceId: string, moduleId: string): string {
  return `${deviceId}/${moduleId}`;
}

/** `deviceId` or `deviceId/moduleId`: one key for a device or a module identity. */
export function identityKey(deviceId: string, moduleId: string | undefined): string {
  return moduleId === undefined ? deviceId : moduleKey(deviceId, moduleId);
}

/** The prefix that selects every module (or module twin) of one device. */
export function modulePrefix(deviceId: string): string {
  return `${deviceId}/`;
}

/** Azure's timestamp for "never" (§2.4). */
export type { AuthenticationMechanism, AuthenticationType, ConnectionState, DeviceStatus };

export const NEVER = '0001-01-01T00:00:00Z';

/** Fields devices and modules share. */
interface IdentityRecordBase {
  deviceId: string;
  generationId: string;
  etag: string;
  connectionState: ConnectionState;
  connectionStateUpdatedTime: string;
  lastActivityTime: string;
  authentication: AuthenticationMechanism;
}

/** A device identity as stored in {@link Collections.devices}. */
export interface DeviceRecord extends IdentityRecordBase {
  status: DeviceStatus;
  statusReason: string | null;
  statusUpdatedTime: string;
  capabilities: { iotEdge: boolean };
  deviceScope?: string;
  parentScopes?: string[];
}

/** A module identity as stored in {@link Collections.modules}. */
export interface ModuleRecord extends IdentityRecordBase {
  moduleId: string;
  managedBy: string | null;
}

/** A new symmetric key: 32 random bytes, base64 (§2.4). */
export function newSymmetricKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * A device/module etag: base64 of a random 9-digit decimal, the shape Azure returns (`MTk3NzQzNTY0`, §2.4).
 * Random rather than a counter so that a stale etag never matches a device deleted and created again.
 */
export function newIdentityEtag(): string {
  return Buffer.from(String(randomInt(100_000_000, 1_000_000_000))).toString('base64');
}

// .NET ticks (100 ns) at the Unix epoch: Azure's generation ids are tick counts ("637000000000000000", §2.4).
const TICKS_AT_EPOCH = 621_355_968_000_000_000n;

/** A generation id: .NET ticks of `nowMs` with random sub-millisecond digits, so a re-created identity differs. */
export function newGenerationId(nowMs: number): string {
  return (TICKS_AT_EPOCH + BigInt(Math.floor(nowMs)) * 10_000n + BigInt(randomInt(0, 10_000))).toString();
}

/** ISO-8601 UTC with milliseconds, the twin/registry timestamp format (§2.8). */
export function isoTime(nowMs: number): string {
  return new Date(nowMs).toISOString();
}

const AUTH_TYPES: Readonly<Record<string, AuthenticationType>> = {
  sas: 'sas',
  selfsigned: 'selfSigned',
  certificateauthority: 'certificateAuthority',
  none: 'none',
};

const THUMBPRINT_PATTERN = /^(?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$/;

/**
 * Turns the `authentication` a client sent into the stored form (§0 item 8, §2.4):
 * - missing type: `sas` when keys are given or nothing is, `selfSigned` when only thumbprints are;
 * - `sas`: missing or EMPTY keys are generated (32 random bytes) — unless `previous` is a sas identity, whose keys
 *   are kept: the Node SDK normalises an absent `authentication` to empty keys on update too, and regenerating then
 *   would silently lock the device out;
 * - provided keys must be base64 of 16–64 bytes; thumbprints 40 (SHA-1) or 64 (SHA-256) hex digits.
 * @throws {ArgumentError} ArgumentInvalid for a bad type, key or thumbprint.
 */
export function normalizeAuthentication(input: unknown, previous?: AuthenticationMechanism): AuthenticationMechanism {
  const source = isPlainObject(input) ? input : {};
  const symmetricKey = isPlainObject(source.symmetricKey) ? source.symmetricKey : {};
  const thumbprint = isPlainObject(source.x509Thumbprint) ? source.x509Thumbprint : {};
  const primaryKey = optionalString(symmetricKey.primaryKey, 'authentication.symmetricKey.primaryKey');
  const secondaryKey = optionalString(symmetricKey.secondaryKey, 'authentication.symmetricKey.secondaryKey');
  const primaryThumbprint = optionalString(
    thumbprint.primaryThumbprint,
    'authentication.x509Thumbprint.primaryThumbprint',
  );
  const secondaryThumbprint = optionalString(
    thumbprint.secondaryThumbprint,
    'authentication.x509Thumbprint.secondaryThumbprint',
  );

  let type: AuthenticationType;
  if (source.type === undefined || source.type === null || source.type === '') {
    type = !primaryKey && !secondaryKey && (primaryThumbprint || secondaryThumbprint) ? 'selfSigned' : 'sas';
  } else {
    const found = typeof source.type === 'string' ? AUTH_TYPES[source.type.toLowerCase()] : undefined;
    if (!found) {
      throw new ArgumentError(
        `authentication.type '${String(source.type)}' is not one of sas, selfSigned, certificateAuthority, none`,
        {
          field: 'authentication.type',
        },
      );
    }
    type = found;
  }

  const none = { primaryKey: null, secondaryKey: null };
  const noThumbprints = { primaryThumbprint: null, secondaryThumbprint: null };
  switch (type) {
    case 'sas': {
      const kept = previous?.type === 'sas' ? previous.symmetricKey : undefined;
      return {
        symmetricKey: {
          primaryKey: primaryKey ? checkKey(primaryKey, 'primaryKey') : (kept?.primaryKey ?? newSymmetricKey()),
          secondaryKey: secondaryKey
            ? checkKey(secondaryKey, 'secondaryKey')
            : (kept?.secondaryKey ?? newSymmetricKey()),
        },
        x509Thumbprint: noThumbprints,
        type,
      };
    }
    case 'selfSigned': {
      if (!primaryThumbprint && !secondaryThumbprint) {
        throw new ArgumentError('authentication type selfSigned needs x509Thumbprint.primaryThumbprint', {
          field: 'authentication.x509Thumbprint.primaryThumbprint',
        });
      }
      return {
        symmetricKey: none,
        x509Thumbprint: {
          primaryThumbprint: primaryThumbprint ? checkThumbprint(primaryThumbprint, 'primaryThumbprint') : null,
          secondaryThumbprint: secondaryThumbprint ? checkThumbprint(secondaryThumbprint, 'secondaryThumbprint') : null,
        },
        type,
      };
    }
    default:
      return { symmetricKey: none, x509Thumbprint: noThumbprints, type };
  }
}

function checkKey(key: string, name: string): string {
  let length = -1;
  try {
    length = base64Decode(key).length;
  } catch {
    // reported below as the same argument error
  }
  if (length < 16 || length > 64) {
    throw new ArgumentError(`authentication.symmetricKey.${name} must be base64 of 16 to 64 bytes`, {
      field: `authentication.symmetricKey.${name}`,
    });
  }
  return key;
}

function checkThumbprint(value: string, name: string): string {
  if (!THUMBPRINT_PATTERN.test(value)) {
    throw new ArgumentError(`authentication.x509Thumbprint.${name} must be 40 or 64 hexadecimal digits`, {
      field: `authentication.x509Thumbprint.${name}`,
    });
  }
  return value.toUpperCase();
}

function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new ArgumentError(`${field} must be a string`, { field });
  return value;
}

/** A JSON object (not an array, not null). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads an If-Match value as core takes it: `undefined` (none sent), `'*'`, or an etag with its quotes already
 * stripped (§0 item 7). Returns whether `actual` satisfies it.
 */
export function etagMatches(ifMatch: string | undefined, actual: string): boolean {
  return ifMatch === undefined || ifMatch === '*' || ifMatch === actual;
}
