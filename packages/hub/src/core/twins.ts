/**
 * Device and module twins (protocol-service.md §2.8): the back end reads, patches and replaces tags and desired
 * properties; the device reads the twin and patches reported properties (device heads). Updates are versioned
 * and serialised per identity: an in-process mutex orders them (so notifications leave in version order) and
 * compare-and-set on the store's revision keeps several hub processes honest.
 */
import {
  ArgumentError,
  applyTwinPatch,
  applyTwinPatchWithMetadata,
  assertValidDeviceId,
  assertValidModuleId,
  createTwinMetadata,
  HubError,
  nextVersion,
  type TwinMetadata,
  type TwinObject,
  validateTwinSection,
  withoutTwinSystemProperties,
} from '@fieldhub/protocol';
import { RevisionConflict } from '../store/store';
import type { CoreContext } from './context';
import type { CloudToDeviceMessageCounter, IdentityIds, LifecycleSink } from './registry';
import {
  Collections,
  type DeviceRecord,
  etagMatches,
  isoTime,
  isPlainObject,
  type ModuleRecord,
  moduleKey,
} from './registry-records';
import {
  newTwinRecord,
  renderSection,
  renderTwin,
  type TwinDocument,
  type TwinPropertiesSection,
  type TwinRecord,
  twinEtag,
} from './twin-records';

/** What a {@link Twins} needs besides the core context. */
export interface TwinsOptions {
  /** Receives `twinChanged` (only that member is used here). */
  readonly events?: Pick<LifecycleSink, 'twinChanged'> | undefined;
  readonly cloudToDeviceMessageCount?: CloudToDeviceMessageCounter | undefined;
}

/**
 * The bus notification of a desired-properties change, published on subject
 * `twin.desired.<deviceId>` or `twin.desired.<deviceId>/<moduleId>` (see {@link desiredSubject}).
 * `patch` is what the device is sent (MQTT `$iothub/twin/PATCH/properties/desired/?$version=<version>`): the
 * changed keys, `null` for deleted ones; `version` is the new desired `$version`.
 */
export interface DesiredChangeNotification {
  readonly version: number;
  readonly patch: TwinObject;
}

/**
 * The bus subject on which desired-property changes of one identity are published (payload:
 * {@link DesiredChangeNotification}). A device session subscribes to it.
 */
export function desiredSubject(deviceId: string, moduleId?: string): string {
  return `twin.desired.${deviceId}${moduleId === undefined ? '' : `/${moduleId}`}`;
}

/** The query collections (§6): device twins, or module twins. */
export type TwinCollection = 'devices' | 'devices.modules';

const MAX_CAS_ATTEMPTS = 50;

/** Device and module twins. Records live in `twins` (key: device id) and `module-twins` (`deviceId/moduleId`). */
export class Twins {
  private readonly events: Pick<LifecycleSink, 'twinChanged'> | undefined;
  private readonly counter: CloudToDeviceMessageCounter;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly ctx: CoreContext,
    options: TwinsOptions = {},
  ) {
    this.events = options.events;
    this.counter = options.cloudToDeviceMessageCount ?? (async () => 0);
  }

  /**
   * The §2.8 twin document of a device or module.
   * @throws {HubError} DeviceNotFound (404001) / ModuleNotFound (404010); {@link ArgumentError} for a bad id.
   */
  async get(deviceId: string, moduleId?: string): Promise<TwinDocument> {
    const identity = await this.identity(deviceId, moduleId);
    const twin = await this.twinDoc(deviceId, moduleId);
    return this.render(identity, twin?.value ?? this.blankTwin(deviceId, moduleId));
  }

  /**
   * `PATCH /twins/{id}` (§2.8): JSON merge of `tags` and `properties.desired` (`null` deletes). Read-only and
   * identity fields in the body are ignored (clients send whole twins back); non-empty `properties.reported` is
   * rejected: the back end cannot write reported properties.
   * @param ifMatch `undefined`, `'*'` or the unquoted twin etag.
   * @throws {ArgumentError} ArgumentInvalid (bad body, reported properties, keys/values/depth);
   * {@link HubError} MessageTooLarge (413001) when a section outgrows its limit, PreconditionFailed (412001),
   * DeviceNotFound / ModuleNotFound.
   */
  async patch(deviceId: string, moduleId: string | undefined, body: unknown, ifMatch?: string): Promise<TwinDocument> {
    const { tags, desired } = readServiceBody(body, 'patch');
    const hasTags = tags !== undefined && Object.keys(tags).length > 0;
    const hasDesired = desired !== undefined && Object.keys(desired).length > 0;
    const ids = idsOf(deviceId, moduleId);
    const { identity, twin, change } = await this.mutate(deviceId, moduleId, ifMatch, (current, now) => {
      if (!hasTags && !hasDesired) return undefined;
      const next: TwinRecord = { ...current, version: nextVersion(current.version) };
      const changeBody: Record<string, unknown> = { version: next.version };
      if (hasTags) {
        next.tags = applyTwinPatch(current.tags, tags);
        validateTwinSection(next.tags, { kind: 'tags' });
        changeBody.tags = tags;
      }
      let notification: DesiredChangeNotification | undefined;
      if (hasDesired) {
        const version = nextVersion(current.desired.version);
        const merged = applyTwinPatchWithMetadata(
          current.desired.value,
          current.desired.metadata,
          desired,
          now,
          version,
        );
        validateTwinSection(merged.section, { kind: 'desired' });
        next.desired = { value: merged.section, metadata: merged.metadata, version };
        notification = { version, patch: desired };
        changeBody.properties = { desired: changedSection(desired, merged.metadata, version) };
      }
      return { next, notification, event: { op: 'updateTwin', body: changeBody } };
    });
    if (change) await this.announce(ids, change);
    return this.render(identity, twin);
  }

  /**
   * `PUT /twins/{id}` (§2.8): replaces tags and desired properties entirely; reported properties are untouched
   * (and ignored in the body). Desired `$metadata` is rebuilt, stamped now with the new `$version`. Also applies
   * bulk `updateTwin` items, where a missing section is left as it is.
   * @param options.onlyGivenSections leave sections absent from the body alone (bulk import) instead of clearing them.
   * @throws as {@link Twins.patch}.
   */
  async replace(
    deviceId: string,
    moduleId: string | undefined,
    body: unknown,
    ifMatch?: string,
    options: { onlyGivenSections?: boolean } = {},
  ): Promise<TwinDocument> {
    const { tags, desired } = readServiceBody(body, 'replace');
    const ids = idsOf(deviceId, moduleId);
    const replaceTags = tags !== undefined || !options.onlyGivenSections;
    const replaceDesired = desired !== undefined || !options.onlyGivenSections;
    const { identity, twin, change } = await this.mutate(deviceId, moduleId, ifMatch, (current, now) => {
      const next: TwinRecord = { ...current, version: nextVersion(current.version) };
      if (replaceTags) next.tags = tags ?? {};
      let notification: DesiredChangeNotification | undefined;
      if (replaceDesired) {
        const value = desired ?? {};
        const version = nextVersion(current.desired.version);
        next.desired = { value, metadata: createTwinMetadata(value, now, version), version };
        // The device learns the new desired state as a patch: every new value, and null for each removed key.
        const patch: TwinObject = { ...value };
        for (const key of Object.keys(current.desired.value)) if (!Object.hasOwn(value, key)) patch[key] = null;
        notification = { version, patch };
      }
      return { next, notification, event: { op: 'replaceTwin', body: undefined } };
    });
    const document = this.render(identity, twin);
    if (change) await this.announce(ids, { ...change, event: { op: 'replaceTwin', body: await document } });
    return document;
  }

  /**
   * The device patches its reported properties (MQTT `PATCH/properties/reported`, device heads): JSON merge with
   * `null` deleting, `$metadata` maintained (`$lastUpdated` only).
   * @returns the new reported `$version` (MQTT answers it as `$version`).
   * @throws {ArgumentError} ArgumentInvalid; {@link HubError} MessageTooLarge (413001), DeviceNotFound / ModuleNotFound.
   */
  async updateReported(deviceId: string, moduleId: string | undefined, patch: unknown): Promise<{ version: number }> {
    if (!isPlainObject(patch))
      throw new ArgumentError('Reported properties must be a JSON object', { field: 'reported' });
    const clean = withoutTwinSystemProperties(patch as TwinObject);
    validateTwinSection(clean, { kind: 'reported', patch: true });
    const ids = idsOf(deviceId, moduleId);
    const { twin, change } = await this.mutate(deviceId, moduleId, undefined, (current, now) => {
      const version = nextVersion(current.reported.version);
      const merged = applyTwinPatchWithMetadata(current.reported.value, current.reported.metadata, clean, now);
      validateTwinSection(merged.section, { kind: 'reported' });
      const next: TwinRecord = {
        ...current,
        version: nextVersion(current.version),
        reported: { value: merged.section, metadata: merged.metadata, version },
      };
      const body = { version: next.version, properties: { reported: changedSection(clean, merged.metadata, version) } };
      return { next, notification: undefined, event: { op: 'updateTwin', body } };
    });
    if (change) await this.announce(ids, change);
    return { version: twin.reported.version };
  }

  /**
   * What a device reads (MQTT `GET`, §2.8 / device §2.6): `{ desired, reported }` with `$metadata` and `$version`.
   * @throws {HubError} DeviceNotFound / ModuleNotFound.
   */
  async getForDevice(
    deviceId: string,
    moduleId?: string,
  ): Promise<{ desired: TwinPropertiesSection; reported: TwinPropertiesSection }> {
    await this.identity(deviceId, moduleId);
    const twin = (await this.twinDoc(deviceId, moduleId))?.value ?? this.blankTwin(deviceId, moduleId);
    return { desired: renderSection(twin.desired), reported: renderSection(twin.reported) };
  }

  /**
   * Records the DTDL model id a device announced on connect (shown as the twin's `modelId`). Not a twin change:
   * the version stays. A missing identity is ignored.
   */
  async setModelId(deviceId: string, moduleId: string | undefined, modelId: string): Promise<void> {
    const { collection, key } = twinLocation(deviceId, moduleId);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const doc = await this.ctx.store.documents.get<TwinRecord>(this.ctx.hubName, collection, key);
      if (!doc || doc.value.modelId === modelId) return;
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, collection, key, { ...doc.value, modelId }, doc.revision);
        return;
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  /**
   * Every twin document of a query collection (§6), in id order: the input of the query engine.
   */
  async allTwins(collection: TwinCollection): Promise<TwinDocument[]> {
    const { hubName } = this.ctx;
    const documents = this.ctx.store.documents;
    const [identityCollection, twinCollection] =
      collection === 'devices'
        ? [Collections.devices, Collections.twins]
        : [Collections.modules, Collections.moduleTwins];
    const [identities, twins] = await Promise.all([
      documents.list<DeviceRecord | ModuleRecord>(hubName, identityCollection),
      documents.list<TwinRecord>(hubName, twinCollection),
    ]);
    const twinByKey = new Map(twins.map((doc) => [doc.key, doc.value]));
    return Promise.all(
      identities.map((doc) => {
        const moduleId = 'moduleId' in doc.value ? doc.value.moduleId : undefined;
        const twin = twinByKey.get(doc.key) ?? this.blankTwin(doc.value.deviceId, moduleId);
        return this.render(doc.value, twin);
      }),
    );
  }

  // ---- internals -------------------------------------------------------------------------------------------

  /**
   * Serialised read-modify-write of one twin. `change` returns the next record (or `undefined` for no change)
   * with what to announce. Retries on a revision conflict (another hub process wrote meanwhile).
   */
  private async mutate(
    deviceId: string,
    moduleId: string | undefined,
    ifMatch: string | undefined,
    change: (current: TwinRecord, now: string) => PendingChange | undefined,
  ): Promise<{ identity: DeviceRecord | ModuleRecord; twin: TwinRecord; change: PendingChange | undefined }> {
    const { collection, key } = twinLocation(deviceId, moduleId);
    return this.withLock(key, async () => {
      for (let attempt = 0; ; attempt++) {
        const identity = await this.identity(deviceId, moduleId);
        const doc = await this.ctx.store.documents.get<TwinRecord>(this.ctx.hubName, collection, key);
        const current = doc?.value ?? this.blankTwin(deviceId, moduleId);
        if (!etagMatches(ifMatch, twinEtag(current.version))) {
          throw new HubError(
            'PreconditionFailed',
            `The etag given for the twin of '${key}' does not match its current etag`,
          );
        }
        const pending = change(current, isoTime(this.ctx.now()));
        if (!pending) return { identity, twin: current, change: undefined };
        try {
          await this.ctx.store.documents.put(this.ctx.hubName, collection, key, pending.next, doc?.revision ?? 0);
          return { identity, twin: pending.next, change: pending };
        } catch (error) {
          if (!(error instanceof RevisionConflict) || attempt >= MAX_CAS_ATTEMPTS) throw error;
        }
      }
    });
  }

  /** Publishes the desired-change notification (bus) and the twin-change event, after the write committed. */
  private async announce(ids: IdentityIds, change: PendingChange): Promise<void> {
    if (change.notification) {
      this.ctx.bus.publish(this.ctx.hubName, desiredSubject(ids.deviceId, ids.moduleId), change.notification);
    }
    if (!this.events) return;
    try {
      await this.events.twinChanged(change.event.op, ids, change.event.body);
    } catch (error) {
      // The twin change is committed; a lost notification must not turn it into an error (§5.6).
      this.ctx.logger.error({ err: error, ...ids }, 'twin change event failed');
    }
  }

  private async withLock<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const run = previous.then(task, task);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  private async identity(deviceId: string, moduleId: string | undefined): Promise<DeviceRecord | ModuleRecord> {
    assertValidDeviceId(deviceId);
    if (moduleId === undefined) {
      const doc = await this.ctx.store.documents.get<DeviceRecord>(this.ctx.hubName, Collections.devices, deviceId);
      if (!doc) throw new HubError('DeviceNotFound', `Device '${deviceId}' is not registered`);
      return doc.value;
    }
    assertValidModuleId(moduleId);
    const key = moduleKey(deviceId, moduleId);
    const doc = await this.ctx.store.documents.get<ModuleRecord>(this.ctx.hubName, Collections.modules, key);
    if (!doc) throw new HubError('ModuleNotFound', `Module '${moduleId}' is not registered on device '${deviceId}'`);
    return doc.value;
  }

  private twinDoc(deviceId: string, moduleId: string | undefined) {
    const { collection, key } = twinLocation(deviceId, moduleId);
    return this.ctx.store.documents.get<TwinRecord>(this.ctx.hubName, collection, key);
  }

  // An identity always gets a twin in the same batch; this covers records written before that (or by hand).
  private blankTwin(deviceId: string, moduleId: string | undefined): TwinRecord {
    return newTwinRecord(deviceId, moduleId, isoTime(0));
  }

  private async render(identity: DeviceRecord | ModuleRecord, twin: TwinRecord): Promise<TwinDocument> {
    const moduleId = 'moduleId' in identity ? identity.moduleId : undefined;
    return renderTwin(identity, twin, await this.counter(identity.deviceId, moduleId));
  }
}

interface PendingChange {
  next: TwinRecord;
  notification: DesiredChangeNotification | undefined;
  event: { op: 'updateTwin' | 'replaceTwin'; body: unknown };
}

function twinLocation(deviceId: string, moduleId: string | undefined): { collection: string; key: string } {
  return moduleId === undefined
    ? { collection: Collections.twins, key: deviceId }
    : { collection: Collections.moduleTwins, key: moduleKey(deviceId, moduleId) };
}

function idsOf(deviceId: string, moduleId: string | undefined): IdentityIds {
  return moduleId === undefined ? { deviceId } : { deviceId, moduleId };
}

/**
 * Reads `tags` and `properties.desired` from a service PATCH/PUT body (§2.8), stripping echoed `$metadata` /
 * `$version`, and validates them (as patches for PATCH: nulls allowed; sizes are checked after the merge).
 */
function readServiceBody(body: unknown, kind: 'patch' | 'replace'): { tags?: TwinObject; desired?: TwinObject } {
  if (!isPlainObject(body)) throw new ArgumentError('The twin must be a JSON object', { field: 'body' });
  const result: { tags?: TwinObject; desired?: TwinObject } = {};
  const patch = kind === 'patch';
  if (body.tags !== undefined && body.tags !== null) {
    validateTwinSection(body.tags, { kind: 'tags', patch });
    result.tags = body.tags;
  }
  if (body.properties !== undefined && body.properties !== null) {
    if (!isPlainObject(body.properties))
      throw new ArgumentError('properties must be a JSON object', { field: 'properties' });
    const { desired, reported } = body.properties;
    if (
      patch &&
      isPlainObject(reported) &&
      Object.keys(withoutTwinSystemProperties(reported as TwinObject)).length > 0
    ) {
      throw new ArgumentError('Reported properties cannot be updated by the back end', {
        field: 'properties.reported',
      });
    }
    if (desired !== undefined && desired !== null) {
      if (!isPlainObject(desired)) {
        throw new ArgumentError('properties.desired must be a JSON object', { field: 'properties.desired' });
      }
      const clean = withoutTwinSystemProperties(desired as TwinObject);
      validateTwinSection(clean, { kind: 'desired', patch });
      result.desired = clean;
    }
  }
  return result;
}

/** §5.6's change body for one section: the changed keys, their `$metadata` nodes and the section `$version`. */
function changedSection(patch: TwinObject, metadata: TwinMetadata, version: number): TwinObject {
  const changedMetadata: Record<string, unknown> = { $lastUpdated: metadata.$lastUpdated };
  if (metadata.$lastUpdatedVersion !== undefined) changedMetadata.$lastUpdatedVersion = metadata.$lastUpdatedVersion;
  for (const key of Object.keys(patch)) {
    const node = metadata[key];
    if (node !== undefined) changedMetadata[key] = node;
  }
  return { ...patch, $metadata: changedMetadata as TwinObject, $version: version };
}
