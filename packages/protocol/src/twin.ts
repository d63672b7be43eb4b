/**
 * Twin rules shared by the hub and the SDK: patch semantics (JSON merge patch, RFC 7396, as Azure applies it),
 * section validation (keys, values, depth, size), versions and `$metadata`. Reference: protocol-service.md §2.8,
 * protocol-device.md §2.6 and §7. Every function is pure: inputs are never modified.
 */
import { utf8ByteLength } from './encoding';
import { ArgumentError, HubError } from './errors';
import { Limits } from './limits';

/** A JSON value as a twin holds it. */
export type TwinValue = string | number | boolean | null | TwinValue[] | TwinObject;

/** A JSON object in a twin: a whole section (tags, desired, reported), a nested object, or a patch. */
export interface TwinObject {
  [key: string]: TwinValue;
}

/** The three writable twin sections. */
export type TwinSectionKind = 'tags' | 'desired' | 'reported';

/**
 * The `$metadata` tree of a section: one node per object level and per leaf, each with when it last changed.
 * Desired nodes also carry `$lastUpdatedVersion`; reported nodes do not (service §2.8). Child nodes sit under the
 * same keys as the section's; twin keys cannot start with `$`, so they never collide with the `$` fields.
 */
export interface TwinMetadata {
  /** ISO 8601 UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ`. */
  $lastUpdated: string;
  /** The section `$version` of the last change (desired only). */
  $lastUpdatedVersion?: number;
  [key: string]: TwinMetadata | string | number | undefined;
}

/** Options of {@link validateTwinSection}. */
export interface ValidateTwinSectionOptions {
  /** Which section: chooses the size limit and the path named in errors. */
  kind: TwinSectionKind;
  /**
   * The object is a patch: `null` is allowed (it deletes a key) and the size limit is not checked, because a patch
   * that deletes can be larger than its result. Validate the merged section afterwards for the size.
   */
  patch?: boolean;
}

const sectionPath: Record<TwinSectionKind, string> = {
  tags: 'tags',
  desired: 'properties.desired',
  reported: 'properties.reported',
};

/** The size limit of a section in bytes, as {@link twinSectionSize} counts (device §7). */
export function twinSectionMaxBytes(kind: TwinSectionKind): number {
  if (kind === 'tags') return Limits.twinTagsMaxBytes;
  return kind === 'desired' ? Limits.twinDesiredMaxBytes : Limits.twinReportedMaxBytes;
}

/**
 * The size of a section as Azure counts it (device §7, service §2.8): the sum of every key's UTF-8 length and of
 * every value's (a string's UTF-8 length, 8 bytes for a number, 4 for a boolean, 0 for null). Top-level
 * `$version` and `$metadata` are not counted.
 */
export function twinSectionSize(section: TwinObject): number {
  let size = 0;
  for (const key of Object.keys(section)) {
    if (key === '$version' || key === '$metadata') continue;
    size += utf8ByteLength(key) + valueSize(getOwn(section, key) ?? null);
  }
  return size;
}

function valueSize(value: TwinValue): number {
  if (typeof value === 'string') return utf8ByteLength(value);
  if (typeof value === 'number') return 8;
  if (typeof value === 'boolean') return 4;
  if (value === null) return 0;
  let size = 0;
  if (Array.isArray(value)) {
    for (const item of value) size += valueSize(item);
    return size;
  }
  for (const key of Object.keys(value)) size += utf8ByteLength(key) + valueSize(getOwn(value, key) ?? null);
  return size;
}

/**
 * Checks a twin section (or a patch to one) against Azure's rules (service §2.8, device §7):
 * - it is a JSON object; values are strings, finite numbers, booleans, arrays or objects; `null` only in a patch
 *   and never inside an array (as Edge Hub's validator, which follows IoT Hub);
 * - keys are at most 1 KB of UTF-8 and hold no `.`, `$`, space or control character (C0, DEL, C1);
 * - strings are at most 4 KB of UTF-8; integers lie in [-2^52, 2^52 - 1] (a number too large to have a fraction
 *   counts as an integer);
 * - nesting is at most 10 levels below the section (objects and arrays both count);
 * - the size ({@link twinSectionSize}) is within the section's limit (not checked for patches).
 *
 * Strip `$version` and `$metadata` first ({@link withoutTwinSystemProperties}): they are keys with `$`.
 *
 * @throws {ArgumentError} (code ArgumentInvalid 400004, `field` = the path of the offending value, e.g.
 * `properties.desired.a.b`) on a bad shape, key, value or depth.
 * @throws {HubError} (code MessageTooLarge 413001, HTTP 413) when the section is over its size limit. The
 * reference leaves Azure's code UNCONFIRMED; one public report (Azure/iotedge#7035) shows Azure answering
 * errorCode 403100 "'Properties.Reported' size should be less than 32768 bytes". 413 MessageTooLarge is the row
 * of our table that says what happened; no SDK branches on either.
 */
export function validateTwinSection(
  section: unknown,
  options: ValidateTwinSectionOptions,
): asserts section is TwinObject {
  const path = sectionPath[options.kind];
  const patch = options.patch === true;
  if (!isPlainObject(section)) throw new ArgumentError(`${path} must be a JSON object`, { field: path });
  validateObject(section, 0, path, false, patch);
  if (patch) return;
  const size = twinSectionSize(section);
  const max = twinSectionMaxBytes(options.kind);
  if (size > max) throw new HubError('MessageTooLarge', `${path} is ${size} bytes; the limit is ${max}`);
}

function validateObject(object: object, depth: number, path: string, inArray: boolean, patch: boolean): void {
  if (depth > Limits.twinMaxDepth) {
    throw new ArgumentError(`${path} is nested deeper than ${Limits.twinMaxDepth} levels`, { field: path });
  }
  for (const key of Object.keys(object)) {
    const childPath = `${path}.${key}`;
    validateKey(key, path);
    validateValue(getOwn(object as Record<string, unknown>, key), depth + 1, childPath, inArray, patch);
  }
}

function validateKey(key: string, parentPath: string): void {
  const shown = key.length > 40 ? `${key.slice(0, 40)}...` : key;
  if (utf8ByteLength(key) > Limits.twinKeyMaxBytes) {
    throw new ArgumentError(`Key '${shown}' under ${parentPath} is longer than ${Limits.twinKeyMaxBytes} bytes`, {
      field: `${parentPath}.${shown}`,
    });
  }
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    // Service §2.8: no C0/C1 control characters (DEL too, a control character as well), no '.', '$' or space.
    if (c <= 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2e || c === 0x24) {
      throw new ArgumentError(`Key '${shown}' under ${parentPath} holds a character not allowed in a twin key`, {
        field: `${parentPath}.${shown}`,
      });
    }
  }
}

function validateValue(value: unknown, depth: number, path: string, inArray: boolean, patch: boolean): void {
  if (value === null) {
    if (inArray) throw new ArgumentError(`${path}: arrays cannot hold null`, { field: path });
    if (!patch) throw new ArgumentError(`${path}: null is only allowed in a patch`, { field: path });
    return;
  }
  switch (typeof value) {
    case 'string':
      if (utf8ByteLength(value) > Limits.twinStringValueMaxBytes) {
        throw new ArgumentError(`${path} is longer than ${Limits.twinStringValueMaxBytes} bytes`, { field: path });
      }
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new ArgumentError(`${path} is not a finite number`, { field: path });
      if (Number.isInteger(value) && (value < Limits.twinIntegerMin || value > Limits.twinIntegerMax)) {
        throw new ArgumentError(
          `${path} is outside [${Limits.twinIntegerMin}, ${Limits.twinIntegerMax}], the range of twin integers`,
          { field: path },
        );
      }
      return;
    case 'boolean':
      return;
    default:
      break;
  }
  if (Array.isArray(value)) {
    if (depth > Limits.twinMaxDepth) {
      throw new ArgumentError(`${path} is nested deeper than ${Limits.twinMaxDepth} levels`, { field: path });
    }
    for (let i = 0; i < value.length; i++) validateValue(value[i], depth + 1, `${path}[${i}]`, true, patch);
    return;
  }
  if (isPlainObject(value)) {
    validateObject(value, depth, path, inArray, patch);
    return;
  }
  throw new ArgumentError(`${path} is not a JSON value`, { field: path });
}

/**
 * Applies a patch to a section and returns the new section (service §2.8, device §2.6; RFC 7396): objects merge
 * recursively, a `null` member deletes its key, anything else (strings, numbers, booleans, arrays) replaces. An
 * object patching a non-object creates a fresh object without the patch's `null` members. Unchanged subtrees
 * of `target` are shared with the result, values from `patch` are copied.
 *
 * Validate the patch first ({@link validateTwinSection} with `patch: true`), and the result after.
 *
 * @throws {ArgumentError} (field `'patch'` or `'target'`) when either is not a JSON object.
 */
export function applyTwinPatch(target: TwinObject, patch: TwinObject): TwinObject {
  if (!isPlainObject(target)) throw new ArgumentError('The twin section must be a JSON object', { field: 'target' });
  if (!isPlainObject(patch)) throw new ArgumentError('A twin patch must be a JSON object', { field: 'patch' });
  return mergeObject(target, patch);
}

function mergeObject(target: TwinObject | undefined, patch: TwinObject): TwinObject {
  const out: TwinObject = {};
  if (target !== undefined) for (const key of Object.keys(target)) setOwn(out, key, getOwn(target, key) ?? null);
  for (const key of Object.keys(patch)) {
    const value = getOwn(patch, key) ?? null;
    if (value === null) {
      delete out[key];
    } else if (isPlainObject(value)) {
      const current = target === undefined ? undefined : getOwn(target, key);
      setOwn(out, key, mergeObject(isPlainObject(current) ? current : undefined, value));
    } else {
      setOwn(out, key, copyValue(value));
    }
  }
  return out;
}

// A deep copy that keeps every member: array elements are values, not patches (RFC 7396 replaces arrays whole).
function copyValue(value: TwinValue): TwinValue {
  if (Array.isArray(value)) return value.map(copyValue);
  if (isPlainObject(value)) {
    const out: TwinObject = {};
    for (const key of Object.keys(value)) setOwn(out, key, copyValue(getOwn(value, key) ?? null));
    return out;
  }
  return value;
}

/**
 * Builds the `$metadata` tree of a whole section written at once (a new twin, or a replacing PUT of desired
 * properties, service §2.8): every object level and every leaf gets `$lastUpdated: now` and, when `version` is
 * given (desired), `$lastUpdatedVersion: version`. Array elements get no nodes of their own.
 */
export function createTwinMetadata(section: TwinObject, now: string, version?: number): TwinMetadata {
  const node = metadataLeaf(now, version);
  for (const key of Object.keys(section)) {
    const value = getOwn(section, key);
    if (value === null || value === undefined) continue;
    setOwn(node, key, isPlainObject(value) ? createTwinMetadata(value, now, version) : metadataLeaf(now, version));
  }
  return node;
}

/**
 * Applies a patch like {@link applyTwinPatch} and maintains `$metadata` as Azure does (service §2.8): every node
 * the patch touches, from the section root down to each written leaf, gets `$lastUpdated: now` and (desired)
 * `$lastUpdatedVersion: version`; deleted keys lose their node; subtrees the patch does not reach keep theirs.
 * Pass `version` for desired properties (the new section `$version`, see {@link nextVersion}); leave it out for
 * reported properties and tags.
 *
 * @param metadata the section's current `$metadata`, or `undefined` for a section that has none yet.
 * @throws {ArgumentError} (field `'patch'` or `'target'`) when the section or patch is not a JSON object.
 */
export function applyTwinPatchWithMetadata(
  section: TwinObject,
  metadata: TwinMetadata | undefined,
  patch: TwinObject,
  now: string,
  version?: number,
): { section: TwinObject; metadata: TwinMetadata } {
  if (!isPlainObject(section)) throw new ArgumentError('The twin section must be a JSON object', { field: 'target' });
  if (!isPlainObject(patch)) throw new ArgumentError('A twin patch must be a JSON object', { field: 'patch' });
  return mergeWithMetadata(section, metadata, patch, now, version);
}

function mergeWithMetadata(
  target: TwinObject,
  metadata: TwinMetadata | undefined,
  patch: TwinObject,
  now: string,
  version: number | undefined,
): { section: TwinObject; metadata: TwinMetadata } {
  const out = mergeObject(target, {});
  const node = metadataLeaf(now, version);
  if (metadata !== undefined) {
    for (const key of Object.keys(metadata)) {
      const child = getOwn(metadata, key);
      // Keep the children of keys still present; this node's own `$` fields were just rewritten.
      if (key.charAt(0) !== '$' && isPlainObject(child) && getOwn(out, key) !== undefined) setOwn(node, key, child);
    }
  }
  for (const key of Object.keys(patch)) {
    const value = getOwn(patch, key) ?? null;
    if (value === null) {
      delete out[key];
      delete node[key];
      continue;
    }
    if (isPlainObject(value)) {
      const current = getOwn(target, key);
      if (isPlainObject(current)) {
        const childMetadata = metadata === undefined ? undefined : getOwn(metadata, key);
        const merged = mergeWithMetadata(
          current,
          isPlainObject(childMetadata) ? (childMetadata as TwinMetadata) : undefined,
          value,
          now,
          version,
        );
        setOwn(out, key, merged.section);
        setOwn(node, key, merged.metadata);
      } else {
        const fresh = mergeObject(undefined, value);
        setOwn(out, key, fresh);
        setOwn(node, key, createTwinMetadata(fresh, now, version));
      }
      continue;
    }
    setOwn(out, key, copyValue(value));
    setOwn(node, key, metadataLeaf(now, version));
  }
  return { section: out, metadata: node };
}

function metadataLeaf(now: string, version: number | undefined): TwinMetadata {
  return version === undefined ? { $lastUpdated: now } : { $lastUpdated: now, $lastUpdatedVersion: version };
}

/**
 * The version after `current`: section `$version`s and the twin `version` increase by one on every change
 * (service §2.8); a section or twin that has none yet starts at 1.
 *
 * @throws {ArgumentError} (field `'version'`) when `current` is not a non-negative safe integer, or is the largest.
 */
export function nextVersion(current?: number): number {
  if (current === undefined) return 1;
  if (!Number.isSafeInteger(current) || current < 0 || current >= Number.MAX_SAFE_INTEGER) {
    throw new ArgumentError(`A twin version must be a non-negative safe integer, not ${current}`, { field: 'version' });
  }
  return current + 1;
}

/**
 * A copy of a section without its top-level `$version` and `$metadata`, which clients may echo back (a twin read
 * and sent again) but which are the hub's to set.
 */
export function withoutTwinSystemProperties(section: TwinObject): TwinObject {
  const out: TwinObject = {};
  for (const key of Object.keys(section)) {
    if (key !== '$version' && key !== '$metadata') setOwn(out, key, getOwn(section, key) ?? null);
  }
  return out;
}

// Plain objects only: JSON.parse output, object literals, and objects from another realm (whose prototype is
// another Object.prototype), but not Date, Map, class-less exotic objects or arrays.
function isPlainObject(value: unknown): value is TwinObject {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.prototype.toString.call(value) === '[object Object]'
  );
}

// Own properties only, so keys such as `toString` or `__proto__` read what the JSON said and not the prototype.
function getOwn<T>(object: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

// Assignment to `__proto__` would change the prototype instead of creating a key (JSON.parse creates one).
function setOwn<T>(object: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') {
    Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    object[key] = value;
  }
}
