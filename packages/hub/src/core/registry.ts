/**
 * The identity registry: devices and modules (protocol-service.md §2.4, §2.5), the bulk operation (§2.6),
 * statistics, and the connection facts the device heads keep current. Every write is guarded by the store's
 * revision (compare-and-set) and, for callers, by etags (§0 item 7).
 */

import type { Device, Module, RegistryStatistics, ServiceStatistics } from '@fieldhub/protocol';
import {
  ArgumentError,
  assertValidDeviceId,
  assertValidModuleId,
  HubError,
  Limits,
  type TwinObject,
  validateTwinSection,
  withoutTwinSystemProperties,
} from '@fieldhub/protocol';
import { type DocumentWrite, RevisionConflict, type StoredDocument } from '../store/store';
import type { CoreContext } from './context';
import {
  Collections,
  type DeviceRecord,
  type DeviceStatus,
  etagMatches,
  identityKey,
  isoTime,
  isPlainObject,
  type ModuleRecord,
  moduleKey,
  modulePrefix,
  NEVER,
  newGenerationId,
  newIdentityEtag,
  normalizeAuthentication,
} from './registry-records';
import { type NewTwinContents, newTwinRecord, renderTwin, type TwinDocument, type TwinRecord } from './twin-records';

/** Which identity: a device, or a module of it. */
export interface IdentityIds {
  readonly deviceId: string;
  readonly moduleId?: string;
}

/**
 * Where the registry and twins report lifecycle and twin-change events (§5.6). The events service
 * (`core/events.ts`, `HubEvents`) implements it; failures are logged, never fail the operation that caused them.
 */
export interface LifecycleSink {
  /** An identity was created or deleted; `twin` is its twin document (§5.6 DeviceLifecycleEvents body). */
  deviceLifecycle(
    op: 'createDeviceIdentity' | 'deleteDeviceIdentity',
    twin: TwinDocument,
    ids: IdentityIds,
  ): Promise<void>;
  /** A twin changed; `body` is §5.6's TwinChangeEvents body (the change for update, the whole twin for replace). */
  twinChanged(op: 'updateTwin' | 'replaceTwin', ids: IdentityIds, body: unknown): Promise<void>;
}

/** Pending cloud-to-device messages of an identity (the cloud-to-device service owns the queue). */
export type CloudToDeviceMessageCounter = (deviceId: string, moduleId: string | undefined) => Promise<number>;

/**
 * Called after a device or module was deleted, so that owners of per-identity state (the cloud-to-device
 * queue, sessions) can purge it. For a device, it is called once with `moduleId` undefined (its modules are gone
 * with it) and once per module.
 */
export type IdentityDeletedListener = (ids: IdentityIds) => Promise<void> | void;

/** What a {@link Registry} needs besides the core context. */
export interface RegistryOptions {
  readonly events?: LifecycleSink | undefined;
  readonly cloudToDeviceMessageCount?: CloudToDeviceMessageCounter | undefined;
  readonly onDeviceDeleted?: readonly IdentityDeletedListener[] | undefined;
  /** Updates `touchActivity` coalesces: at most one store write per identity per this many ms. Default 10 s. */
  readonly activityWriteIntervalMs?: number | undefined;
}

/** The Device JSON of §2.4 (the shape @fieldhub/protocol shares with the service SDK). */
export type DeviceDescription = Device;

/** The Module JSON of §2.5. */
export type ModuleDescription = Module;

export type { RegistryStatistics, ServiceStatistics };

/** Bulk import modes (§2.6; PL enum, parsed case-insensitively). `createOrUpdate*` are Azure's import-job modes. */
export const ImportModes = [
  'create',
  'update',
  'updateIfMatchETag',
  'delete',
  'deleteIfMatchETag',
  'updateTwin',
  'updateTwinIfMatchETag',
  'createOrUpdate',
  'createOrUpdateIfMatchETag',
] as const;
/** One bulk import mode. */
export type ImportMode = (typeof ImportModes)[number];

/** One failed item of a bulk request (§2.6). */
export interface BulkRegistryError {
  deviceId: string;
  errorCode: string;
  errorStatus: string;
  moduleId: string | null;
  operation: ImportMode;
}

/** The answer of `POST /devices` (§2.6): 200 when `isSuccessful`, else 400 with the same body. */
export interface BulkRegistryResult {
  isSuccessful: boolean;
  errors: BulkRegistryError[];
  warnings: { deviceId: string; warningCode: string; warningStatus: string }[];
}

/** Records kept at most this many tries of compare-and-set before giving up (only under heavy contention). */
const MAX_CAS_ATTEMPTS = 50;

/**
 * Devices and modules. Records live in the `devices` (key: device id) and `modules` (key: `deviceId/moduleId`)
 * collections; each new identity gets a twin record in `twins` / `module-twins` in the same atomic batch.
 */
export class Registry {
  private readonly events: LifecycleSink | undefined;
  private readonly counter: CloudToDeviceMessageCounter;
  private readonly deletedListeners: IdentityDeletedListener[];
  private readonly activityIntervalMs: number;
  private readonly lastActivityWrite = new Map<string, number>();

  constructor(
    private readonly ctx: CoreContext,
    options: RegistryOptions = {},
  ) {
    this.events = options.events;
    this.counter = options.cloudToDeviceMessageCount ?? (async () => 0);
    this.deletedListeners = [...(options.onDeviceDeleted ?? [])];
    this.activityIntervalMs = options.activityWriteIntervalMs ?? 10_000;
  }

  /** Adds a listener called after every identity deletion. Returns a function that removes it. */
  onIdentityDeleted(listener: IdentityDeletedListener): () => void {
    this.deletedListeners.push(listener);
    return () => {
      const index = this.deletedListeners.indexOf(listener);
      if (index >= 0) this.deletedListeners.splice(index, 1);
    };
  }

  // ---- devices ---------------------------------------------------------------------------------------------

  /**
   * `PUT /devices/{id}` (§2.4): without If-Match it creates, with one it updates.
   * @param ifMatch `undefined` (header absent), `'*'`, or the unquoted etag.
   * @throws {ArgumentError} bad id, body or authentication; {@link HubError} DeviceAlreadyExists (409001) on
   * create of an existing device, DeviceNotFound (404001) on update of a missing one, PreconditionFailed (412001).
   */
  async putDevice(deviceId: string, body: unknown, ifMatch: string | undefined): Promise<DeviceDescription> {
    return ifMatch === undefined ? this.createDevice(deviceId, body) : this.updateDevice(deviceId, body, ifMatch);
  }

  /**
   * Creates a device and its twin; keys are generated when missing or empty (§0 item 8).
   * @param twin initial twin contents (bulk import only; §2.6).
   * @throws {ArgumentError} ArgumentInvalid; {@link HubError} DeviceAlreadyExists (409001).
   */
  async createDevice(deviceId: string, body: unknown, twin?: NewTwinContents): Promise<DeviceDescription> {
    const input = this.deviceInput(deviceId, body);
    const nowMs = this.ctx.now();
    const record: DeviceRecord = {
      deviceId,
      generationId: newGenerationId(nowMs),
      etag: newIdentityEtag(),
      status: input.status ?? 'enabled',
      statusReason: input.statusReason ?? null,
      statusUpdatedTime: NEVER,
      connectionState: 'Disconnected',
      connectionStateUpdatedTime: NEVER,
      lastActivityTime: NEVER,
      authentication: normalizeAuthentication(input.authentication),
      capabilities: { iotEdge: input.iotEdge ?? false },
    };
    if (input.deviceScope !== undefined) record.deviceScope = input.deviceScope;
    if (input.parentScopes !== undefined) record.parentScopes = input.parentScopes;
    const twinRecord = newTwinRecord(deviceId, undefined, isoTime(nowMs), twin);
    try {
      await this.ctx.store.documents.batch(this.ctx.hubName, [
        { op: 'put', collection: Collections.devices, key: deviceId, value: record, expectedRevision: 0 },
        // Unconditional: a twin orphaned by a write racing a deletion is simply replaced.
        { op: 'put', collection: Collections.twins, key: deviceId, value: twinRecord },
      ]);
    } catch (error) {
      if (error instanceof RevisionConflict) {
        throw new HubError('DeviceAlreadyExists', `A device with ID '${deviceId}' is already registered`, {
          cause: error,
        });
      }
      throw error;
    }
    await this.emitLifecycle('createDeviceIdentity', record, twinRecord);
    return this.describeDevice(record);
  }

  /**
   * Updates a device's status, statusReason, authentication, capabilities and scopes; read-only fields in the body
   * are ignored. Empty keys keep the current ones (see `normalizeAuthentication`).
   * @param ifMatch `'*'` or the unquoted etag.
   * @throws {HubError} DeviceNotFound (404001), PreconditionFailed (412001); {@link ArgumentError}.
   */
  async updateDevice(deviceId: string, body: unknown, ifMatch: string): Promise<DeviceDescription> {
    const input = this.deviceInput(deviceId, body);
    const record = await this.casDevice(deviceId, (current) => {
      if (!etagMatches(ifMatch, current.etag)) throw preconditionFailed(deviceId);
      const nowMs = this.ctx.now();
      const next: DeviceRecord = {
        ...current,
        etag: newIdentityEtag(),
        authentication: normalizeAuthentication(input.authentication, current.authentication),
      };
      if (input.status !== undefined && input.status !== current.status) {
        next.status = input.status;
        next.statusUpdatedTime = isoTime(nowMs);
      }
      if (input.statusReason !== undefined) next.statusReason = input.statusReason;
      if (input.iotEdge !== undefined) next.capabilities = { iotEdge: input.iotEdge };
      if (input.deviceScope !== undefined) next.deviceScope = input.deviceScope;
      if (input.parentScopes !== undefined) next.parentScopes = input.parentScopes;
      return next;
    });
    return this.describeDevice(record);
  }

  /**
   * The Device JSON of a device.
   * @throws {HubError} DeviceNotFound (404001).
   */
  async getDevice(deviceId: string): Promise<DeviceDescription> {
    const doc = await this.deviceDoc(deviceId);
    if (!doc) throw deviceNotFound(deviceId);
    return this.describeDevice(doc.value);
  }

  /** The stored device record (keys, status) for the device heads' authentication, or `undefined`. */
  async getDeviceRecord(deviceId: string): Promise<DeviceRecord | undefined> {
    return (await this.deviceDoc(deviceId))?.value;
  }

  /** The stored module record, or `undefined`. */
  async getModuleRecord(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined> {
    return (await this.moduleDoc(deviceId, moduleId))?.value;
  }

  /**
   * Deletes a device with its twin, modules, module twins; then tells the deletion listeners (the
   * cloud-to-device queue is purged there) and emits lifecycle events (§2.4).
   * @param ifMatch `undefined` or `'*'` (unconditional) or the unquoted etag.
   * @throws {HubError} DeviceNotFound (404001), PreconditionFailed (412001).
   */
  async deleteDevice(deviceId: string, ifMatch?: string): Promise<void> {
    const { hubName } = this.ctx;
    const documents = this.ctx.store.documents;
    for (let attempt = 0; ; attempt++) {
      const doc = await this.deviceDoc(deviceId);
      if (!doc) throw deviceNotFound(deviceId);
      if (!etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(deviceId);
      const twin = await documents.get<TwinRecord>(hubName, Collections.twins, deviceId);
      const modules = await documents.list<ModuleRecord>(hubName, Collections.modules, {
        prefix: modulePrefix(deviceId),
      });
      const moduleTwins = await documents.list<TwinRecord>(hubName, Collections.moduleTwins, {
        prefix: modulePrefix(deviceId),
      });
      const writes: DocumentWrite[] = [
        { op: 'delete', collection: Collections.devices, key: deviceId, expectedRevision: doc.revision },
        { op: 'delete', collection: Collections.twins, key: deviceId },
        ...modules.map((m): DocumentWrite => ({ op: 'delete', collection: Collections.modules, key: m.key })),
        ...moduleTwins.map((t): DocumentWrite => ({ op: 'delete', collection: Collections.moduleTwins, key: t.key })),
      ];
      try {
        await documents.batch(hubName, writes);
      } catch (error) {
        if (error instanceof RevisionConflict && attempt < MAX_CAS_ATTEMPTS) continue;
        throw error;
      }
      // A module created between the list and the batch would outlive its device; sweep by prefix.
      await documents.deletePrefix(hubName, Collections.modules, modulePrefix(deviceId));
      await documents.deletePrefix(hubName, Collections.moduleTwins, modulePrefix(deviceId));
      const twinByModule = new Map(moduleTwins.map((t) => [t.key, t.value]));
      for (const module of modules) {
        await this.afterDelete(module.value, twinByModule.get(module.key));
      }
      await this.afterDelete(doc.value, twin?.value);
      return;
    }
  }

  /**
   * Devices in id order, at most `top` (default and maximum 1000; `GET /devices?top=`, §2.3).
   * @throws {ArgumentError} when `top` is not a positive integer.
   */
  async listDevices(top?: number): Promise<DeviceDescription[]> {
    const limit = top ?? 1000;
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new ArgumentError('top must be a positive integer', { field: 'top' });
    const docs = await this.ctx.store.documents.list<DeviceRecord>(this.ctx.hubName, Collections.devices, {
      limit: Math.min(limit, 1000),
    });
    return Promise.all(docs.map((doc) => this.describeDevice(doc.value)));
  }

  // ---- modules ---------------------------------------------------------------------------------------------

  /**
   * `PUT /devices/{id}/modules/{mid}` (§2.5): without If-Match it creates, with one it updates.
   * @throws {HubError} DeviceNotFound, ModuleAlreadyExistsOnDevice (409301), ModuleNotFound (404010),
   * PreconditionFailed; {@link ArgumentError}.
   */
  async putModule(
    deviceId: string,
    moduleId: string,
    body: unknown,
    ifMatch: string | undefined,
  ): Promise<ModuleDescription> {
    return ifMatch === undefined
      ? this.createModule(deviceId, moduleId, body)
      : this.updateModule(deviceId, moduleId, body, ifMatch);
  }

  /**
   * Creates a module on an existing device, with its twin.
   * @throws {HubError} DeviceNotFound (404001), ModuleAlreadyExistsOnDevice (409301); {@link ArgumentError}.
   */
  async createModule(
    deviceId: string,
    moduleId: string,
    body: unknown,
    twin?: NewTwinContents,
  ): Promise<ModuleDescription> {
    const input = this.moduleInput(deviceId, moduleId, body);
    const device = await this.deviceDoc(deviceId);
    if (!device) throw deviceNotFound(deviceId);
    const nowMs = this.ctx.now();
    const record: ModuleRecord = {
      moduleId,
      managedBy: input.managedBy ?? null,
      deviceId,
      generationId: newGenerationId(nowMs),
      etag: newIdentityEtag(),
      connectionState: 'Disconnected',
      connectionStateUpdatedTime: NEVER,
      lastActivityTime: NEVER,
      authentication: normalizeAuthentication(input.authentication),
    };
    const key = moduleKey(deviceId, moduleId);
    const twinRecord = newTwinRecord(deviceId, moduleId, isoTime(nowMs), twin);
    try {
      await this.ctx.store.documents.batch(this.ctx.hubName, [
        // The device must still be there (at the revision read): no module outlives a concurrent delete.
        {
          op: 'put',
          collection: Collections.devices,
          key: deviceId,
          value: device.value,
          expectedRevision: device.revision,
        },
        { op: 'put', collection: Collections.modules, key, value: record, expectedRevision: 0 },
        { op: 'put', collection: Collections.moduleTwins, key, value: twinRecord },
      ]);
    } catch (error) {
      if (!(error instanceof RevisionConflict)) throw error;
      if (error.collection === Collections.devices) {
        // The device changed or vanished meanwhile: decide again.
        return this.createModule(deviceId, moduleId, body, twin);
      }
      throw new HubError('ModuleAlreadyExistsOnDevice', `Module '${moduleId}' already exists on device '${deviceId}'`, {
        cause: error,
      });
    }
    await this.emitLifecycle('createDeviceIdentity', record, twinRecord);
    return this.describeModule(record);
  }

  /**
   * Updates a module's authentication and managedBy.
   * @throws {HubError} ModuleNotFound (404010), PreconditionFailed (412001); {@link ArgumentError}.
   */
  async updateModule(deviceId: string, moduleId: string, body: unknown, ifMatch: string): Promise<ModuleDescription> {
    const input = this.moduleInput(deviceId, moduleId, body);
    const key = moduleKey(deviceId, moduleId);
    for (let attempt = 0; ; attempt++) {
      const doc = await this.moduleDoc(deviceId, moduleId);
      if (!doc) throw moduleNotFound(deviceId, moduleId);
      if (!etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(`${deviceId}/${moduleId}`);
      const next: ModuleRecord = {
        ...doc.value,
        etag: newIdentityEtag(),
        authentication: normalizeAuthentication(input.authentication, doc.value.authentication),
      };
      if (input.managedBy !== undefined) next.managedBy = input.managedBy;
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, Collections.modules, key, next, doc.revision);
        return this.describeModule(next);
      } catch (error) {
        if (!(error instanceof RevisionConflict) || attempt >= MAX_CAS_ATTEMPTS) throw error;
      }
    }
  }

  /**
   * The Module JSON of a module.
   * @throws {HubError} ModuleNotFound (404010) — also when the device does not exist, as Azure answers.
   */
  async getModule(deviceId: string, moduleId: string): Promise<ModuleDescription> {
    const doc = await this.moduleDoc(deviceId, moduleId);
    if (!doc) throw moduleNotFound(deviceId, moduleId);
    return this.describeModule(doc.value);
  }

  /**
   * A device's modules, in id order.
   * @throws {HubError} DeviceNotFound (404001).
   */
  async listModules(deviceId: string): Promise<ModuleDescription[]> {
    if (!(await this.deviceDoc(deviceId))) throw deviceNotFound(deviceId);
    const docs = await this.ctx.store.documents.list<ModuleRecord>(this.ctx.hubName, Collections.modules, {
      prefix: modulePrefix(deviceId),
    });
    return Promise.all(docs.map((doc) => this.describeModule(doc.value)));
  }

  /**
   * Deletes a module and its twin.
   * @throws {HubError} ModuleNotFound (404010), PreconditionFailed (412001).
   */
  async deleteModule(deviceId: string, moduleId: string, ifMatch?: string): Promise<void> {
    const key = moduleKey(deviceId, moduleId);
    const { hubName } = this.ctx;
    for (let attempt = 0; ; attempt++) {
      const doc = await this.moduleDoc(deviceId, moduleId);
      if (!doc) throw moduleNotFound(deviceId, moduleId);
      if (!etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(`${deviceId}/${moduleId}`);
      const twin = await this.ctx.store.documents.get<TwinRecord>(hubName, Collections.moduleTwins, key);
      try {
        await this.ctx.store.documents.batch(hubName, [
          { op: 'delete', collection: Collections.modules, key, expectedRevision: doc.revision },
          { op: 'delete', collection: Collections.moduleTwins, key },
        ]);
      } catch (error) {
        if (error instanceof RevisionConflict && attempt < MAX_CAS_ATTEMPTS) continue;
        throw error;
      }
      await this.afterDelete(doc.value, twin?.value);
      return;
    }
  }

  // ---- statistics and connection facts ---------------------------------------------------------------------

  /** `GET /statistics/devices` (§2.3). Modules are not counted. */
  async statistics(): Promise<RegistryStatistics> {
    const docs = await this.ctx.store.documents.list<DeviceRecord>(this.ctx.hubName, Collections.devices);
    const enabled = docs.filter((doc) => doc.value.status === 'enabled').length;
    return { totalDeviceCount: docs.length, enabledDeviceCount: enabled, disabledDeviceCount: docs.length - enabled };
  }

  /** `GET /statistics/service` (§2.3): devices (not modules) currently connected. */
  async serviceStatistics(): Promise<ServiceStatistics> {
    const docs = await this.ctx.store.documents.list<DeviceRecord>(this.ctx.hubName, Collections.devices);
    return { connectedDeviceCount: docs.filter((doc) => doc.value.connectionState === 'Connected').length };
  }

  /**
   * Records that a device or module connected or disconnected (MQTT/AMQP heads, §2.4): sets `connectionState`
   * and `connectionStateUpdatedTime` (and `lastActivityTime` on connect). Not an identity change: the etag stays.
   * A missing identity is ignored (it may have been deleted while connected).
   */
  async setConnectionState(deviceId: string, moduleId: string | undefined, connected: boolean): Promise<void> {
    const now = isoTime(this.ctx.now());
    await this.casIdentity(deviceId, moduleId, (current) => ({
      ...current,
      connectionState: connected ? 'Connected' : 'Disconnected',
      connectionStateUpdatedTime: now,
      ...(connected ? { lastActivityTime: now } : {}),
    }));
    if (connected) this.lastActivityWrite.set(identityKey(deviceId, moduleId), this.ctx.now());
  }

  /**
   * Records device activity (a message, a twin operation): updates `lastActivityTime`, coalesced to one write per
   * identity per `activityWriteIntervalMs` (Azure's value may lag too, §2.4). A missing identity is ignored.
   */
  async touchActivity(deviceId: string, moduleId?: string): Promise<void> {
    const key = identityKey(deviceId, moduleId);
    const nowMs = this.ctx.now();
    const last = this.lastActivityWrite.get(key);
    if (last !== undefined && nowMs - last < this.activityIntervalMs) return;
    this.lastActivityWrite.set(key, nowMs);
    await this.casIdentity(deviceId, moduleId, (current) => ({ ...current, lastActivityTime: isoTime(nowMs) }));
  }

  /**
   * Marks every identity Disconnected. Call once when a single-process hub starts: sessions did not survive the
   * restart, whatever the store remembers.
   */
  async resetConnectionStates(): Promise<void> {
    const now = isoTime(this.ctx.now());
    for (const collection of [Collections.devices, Collections.modules]) {
      const docs = await this.ctx.store.documents.list<DeviceRecord | ModuleRecord>(this.ctx.hubName, collection);
      for (const doc of docs) {
        if (doc.value.connectionState !== 'Connected') continue;
        const [deviceId, moduleId] =
          collection === Collections.devices ? [doc.key, undefined] : splitModuleKey(doc.key);
        await this.casIdentity(deviceId, moduleId, (current) => ({
          ...current,
          connectionState: 'Disconnected',
          connectionStateUpdatedTime: now,
        }));
      }
    }
  }

  // ---- bulk ------------------------------------------------------------------------------------------------

  /**
   * `POST /devices` (§2.6): 1..100 ExportImportDevice items, each applied on its own (not atomically). Modes are
   * parsed case-insensitively (the Node SDK sends `Update`, `Delete`, ...). Per-item failures land in `errors`.
   * - create: new device (or module, when `moduleId` is given) with its initial twin (`tags`, `properties`);
   * - update / updateIfMatchETag: overwrite identity fields of an existing one (etag in `eTag`);
   * - createOrUpdate / createOrUpdateIfMatchETag: create when missing, else update;
   * - delete / deleteIfMatchETag; updateTwin / updateTwinIfMatchETag: replace the given twin sections (etag in
   *   `twinETag`).
   * @param replaceTwin how updateTwin items are applied (the Twins service), wired by the hub core.
   * @throws {ArgumentError} ArgumentInvalid for a body that is not an array of items with `id` and a known
   * `importMode`, or an empty one; {@link HubError} TooManyDevices (413002) for more than 100 items,
   * DeviceDefinedMultipleTimes (400011) for an identity named twice.
   */
  async bulk(body: unknown, replaceTwin: BulkTwinReplacer): Promise<BulkRegistryResult> {
    if (!Array.isArray(body)) throw new ArgumentError('The body must be a JSON array of devices', { field: 'body' });
    if (body.length === 0) throw new ArgumentError('The body must name at least one device', { field: 'body' });
    if (body.length > Limits.bulkRegistryMaxDevices) {
      throw new HubError(
        'TooManyDevices',
        `At most ${Limits.bulkRegistryMaxDevices} devices per bulk request, not ${body.length}`,
      );
    }
    const items = body.map((raw, index) => parseBulkItem(raw, index));
    const seen = new Set<string>();
    for (const item of items) {
      const key = identityKey(item.id, item.moduleId);
      if (seen.has(key)) {
        throw new HubError('DeviceDefinedMultipleTimes', `Device '${key}' appears more than once in the request`);
      }
      seen.add(key);
    }
    const errors: BulkRegistryError[] = [];
    for (const item of items) {
      try {
        await this.applyBulkItem(item, replaceTwin);
      } catch (error) {
        if (!HubError.is(error)) throw error;
        errors.push({
          deviceId: item.id,
          errorCode: error.code,
          errorStatus: error.message,
          moduleId: item.moduleId ?? null,
          operation: item.mode,
        });
      }
    }
    return { isSuccessful: errors.length === 0, errors, warnings: [] };
  }

  private async applyBulkItem(item: BulkItem, replaceTwin: BulkTwinReplacer): Promise<void> {
    const { id, moduleId, raw } = item;
    assertValidDeviceId(id);
    if (moduleId !== undefined) assertValidModuleId(moduleId);
    const etag = typeof raw.eTag === 'string' && raw.eTag !== '' ? stripQuotes(raw.eTag) : undefined;
    const ifMatch =
      item.mode.endsWith('IfMatchETag') && !item.mode.startsWith('updateTwin') ? requireEtag(etag, 'eTag') : '*';
    switch (item.mode) {
      case 'create':
        await this.bulkCreate(item);
        return;
      case 'createOrUpdate':
      case 'createOrUpdateIfMatchETag':
      case 'update':
      case 'updateIfMatchETag': {
        const exists = moduleId === undefined ? await this.deviceDoc(id) : await this.moduleDoc(id, moduleId);
        if (!exists && item.mode.startsWith('createOrUpdate')) {
          await this.bulkCreate(item);
        } else if (moduleId === undefined) {
          await this.updateDevice(id, deviceBodyOf(raw), ifMatch);
        } else {
          await this.updateModule(id, moduleId, raw, ifMatch);
        }
        return;
      }
      case 'delete':
      case 'deleteIfMatchETag':
        if (moduleId === undefined) await this.deleteDevice(id, ifMatch);
        else await this.deleteModule(id, moduleId, ifMatch);
        return;
      case 'updateTwin':
      case 'updateTwinIfMatchETag': {
        const twinEtag =
          typeof raw.twinETag === 'string' && raw.twinETag !== '' ? stripQuotes(raw.twinETag) : undefined;
        const twinIfMatch = item.mode === 'updateTwinIfMatchETag' ? requireEtag(twinEtag, 'twinETag') : '*';
        const body: Record<string, unknown> = {};
        if (raw.tags !== undefined) body.tags = raw.tags;
        if (isPlainObject(raw.properties) && raw.properties.desired !== undefined) {
          body.properties = { desired: raw.properties.desired };
        }
        await replaceTwin({ deviceId: id, ...(moduleId === undefined ? {} : { moduleId }) }, body, twinIfMatch);
        return;
      }
    }
  }

  private async bulkCreate(item: BulkItem): Promise<void> {
    const { raw } = item;
    const contents: NewTwinContents = {};
    if (raw.tags !== undefined) {
      validateTwinSection(raw.tags, { kind: 'tags' });
      contents.tags = raw.tags;
    }
    const properties = isPlainObject(raw.properties) ? raw.properties : {};
    for (const kind of ['desired', 'reported'] as const) {
      const section = properties[kind];
      if (section === undefined || section === null) continue;
      if (!isPlainObject(section)) throw new ArgumentError(`properties.${kind} must be an object`, { field: kind });
      const clean = withoutTwinSystemProperties(section as TwinObject);
      validateTwinSection(clean, { kind });
      contents[kind] = clean;
    }
    if (item.moduleId === undefined) await this.createDevice(item.id, deviceBodyOf(raw), contents);
    else await this.createModule(item.id, item.moduleId, raw, contents);
  }

  // ---- internals -------------------------------------------------------------------------------------------

  private deviceDoc(deviceId: string): Promise<StoredDocument<DeviceRecord> | undefined> {
    return this.ctx.store.documents.get<DeviceRecord>(this.ctx.hubName, Collections.devices, deviceId);
  }

  private moduleDoc(deviceId: string, moduleId: string): Promise<StoredDocument<ModuleRecord> | undefined> {
    return this.ctx.store.documents.get<ModuleRecord>(
      this.ctx.hubName,
      Collections.modules,
      moduleKey(deviceId, moduleId),
    );
  }

  /** Read-modify-write of a device record with compare-and-set. @throws DeviceNotFound */
  private async casDevice(deviceId: string, change: (current: DeviceRecord) => DeviceRecord): Promise<DeviceRecord> {
    for (let attempt = 0; ; attempt++) {
      const doc = await this.deviceDoc(deviceId);
      if (!doc) throw deviceNotFound(deviceId);
      const next = change(doc.value);
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, Collections.devices, deviceId, next, doc.revision);
        return next;
      } catch (error) {
        if (!(error instanceof RevisionConflict) || attempt >= MAX_CAS_ATTEMPTS) throw error;
      }
    }
  }

  /** Compare-and-set of connection facts on a device or module; a missing identity is ignored. */
  private async casIdentity(
    deviceId: string,
    moduleId: string | undefined,
    change: <R extends DeviceRecord | ModuleRecord>(current: R) => R,
  ): Promise<void> {
    const collection = moduleId === undefined ? Collections.devices : Collections.modules;
    const key = moduleId === undefined ? deviceId : moduleKey(deviceId, moduleId);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const doc = await this.ctx.store.documents.get<DeviceRecord | ModuleRecord>(this.ctx.hubName, collection, key);
      if (!doc) return;
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, collection, key, change(doc.value), doc.revision);
        return;
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  private async describeDevice(record: DeviceRecord): Promise<DeviceDescription> {
    const description: DeviceDescription = {
      deviceId: record.deviceId,
      generationId: record.generationId,
      etag: record.etag,
      connectionState: record.connectionState,
      status: record.status,
      statusReason: record.statusReason,
      connectionStateUpdatedTime: record.connectionStateUpdatedTime,
      statusUpdatedTime: record.statusUpdatedTime,
      lastActivityTime: record.lastActivityTime,
      cloudToDeviceMessageCount: await this.counter(record.deviceId, undefined),
      authentication: record.authentication,
      capabilities: record.capabilities,
    };
    if (record.deviceScope !== undefined) description.deviceScope = record.deviceScope;
    if (record.parentScopes !== undefined) description.parentScopes = record.parentScopes;
    return description;
  }

  private async describeModule(record: ModuleRecord): Promise<ModuleDescription> {
    return {
      moduleId: record.moduleId,
      managedBy: record.managedBy,
      deviceId: record.deviceId,
      generationId: record.generationId,
      etag: record.etag,
      connectionState: record.connectionState,
      connectionStateUpdatedTime: record.connectionStateUpdatedTime,
      lastActivityTime: record.lastActivityTime,
      cloudToDeviceMessageCount: await this.counter(record.deviceId, record.moduleId),
      authentication: record.authentication,
    };
  }

  private async afterDelete(identity: DeviceRecord | ModuleRecord, twin: TwinRecord | undefined): Promise<void> {
    const ids = idsOf(identity);
    this.lastActivityWrite.delete(identityKey(ids.deviceId, ids.moduleId));
    for (const listener of [...this.deletedListeners]) {
      try {
        await listener(ids);
      } catch (error) {
        this.ctx.logger.error({ err: error, ...ids }, 'identity-deleted listener failed');
      }
    }
    await this.emitLifecycle(
      'deleteDeviceIdentity',
      identity,
      twin ?? newTwinRecord(ids.deviceId, ids.moduleId, isoTime(this.ctx.now())),
    );
  }

  private async emitLifecycle(
    op: 'createDeviceIdentity' | 'deleteDeviceIdentity',
    identity: DeviceRecord | ModuleRecord,
    twin: TwinRecord,
  ): Promise<void> {
    if (!this.events) return;
    const ids = idsOf(identity);
    try {
      const count = op === 'deleteDeviceIdentity' ? 0 : await this.counter(ids.deviceId, ids.moduleId);
      await this.events.deviceLifecycle(op, renderTwin(identity, twin, count), ids);
    } catch (error) {
      // The identity change is committed; a lost notification must not turn it into an error (§5.6).
      this.ctx.logger.error({ err: error, op, ...ids }, 'lifecycle event failed');
    }
  }

  private deviceInput(deviceId: string, body: unknown): DeviceInput {
    assertValidDeviceId(deviceId);
    const source = body === undefined || body === null ? {} : body;
    if (!isPlainObject(source)) throw new ArgumentError('The device must be a JSON object', { field: 'body' });
    if (source.deviceId !== undefined && source.deviceId !== null && source.deviceId !== deviceId) {
      throw new ArgumentError(
        `deviceId '${String(source.deviceId)}' in the body differs from '${deviceId}' in the path`,
        {
          field: 'deviceId',
        },
      );
    }
    const input: DeviceInput = { authentication: source.authentication };
    if (source.status !== undefined && source.status !== null) {
      const status = typeof source.status === 'string' ? source.status.toLowerCase() : '';
      if (status !== 'enabled' && status !== 'disabled') {
        throw new ArgumentError(`status must be enabled or disabled, not '${String(source.status)}'`, {
          field: 'status',
        });
      }
      input.status = status;
    }
    if (source.statusReason !== undefined) {
      if (source.statusReason !== null && typeof source.statusReason !== 'string') {
        throw new ArgumentError('statusReason must be a string', { field: 'statusReason' });
      }
      if (typeof source.statusReason === 'string' && source.statusReason.length > Limits.statusReasonMaxLength) {
        throw new ArgumentError(`statusReason is longer than ${Limits.statusReasonMaxLength} characters`, {
          field: 'statusReason',
        });
      }
      input.statusReason = source.statusReason;
    }
    if (isPlainObject(source.capabilities) && source.capabilities.iotEdge !== undefined) {
      if (typeof source.capabilities.iotEdge !== 'boolean') {
        throw new ArgumentError('capabilities.iotEdge must be a boolean', { field: 'capabilities.iotEdge' });
      }
      input.iotEdge = source.capabilities.iotEdge;
    }
    if (typeof source.deviceScope === 'string') input.deviceScope = source.deviceScope;
    if (Array.isArray(source.parentScopes)) {
      if (!source.parentScopes.every((scope) => typeof scope === 'string')) {
        throw new ArgumentError('parentScopes must be strings', { field: 'parentScopes' });
      }
      input.parentScopes = source.parentScopes as string[];
    }
    return input;
  }

  private moduleInput(deviceId: string, moduleId: string, body: unknown): ModuleInput {
    assertValidDeviceId(deviceId);
    assertValidModuleId(moduleId);
    const source = body === undefined || body === null ? {} : body;
    if (!isPlainObject(source)) throw new ArgumentError('The module must be a JSON object', { field: 'body' });
    for (const [field, expected] of [
      ['deviceId', deviceId],
      ['moduleId', moduleId],
    ] as const) {
      const value = source[field];
      if (value !== undefined && value !== null && value !== expected) {
        throw new ArgumentError(`${field} '${String(value)}' in the body differs from '${expected}' in the path`, {
          field,
        });
      }
    }
    const input: ModuleInput = { authentication: source.authentication };
    if (source.managedBy !== undefined) {
      if (source.managedBy !== null && typeof source.managedBy !== 'string') {
        throw new ArgumentError('managedBy must be a string', { field: 'managedBy' });
      }
      input.managedBy = source.managedBy;
    }
    return input;
  }
}

/** How bulk `updateTwin` items replace twin sections (implemented by `Twins.replace`). */
export type BulkTwinReplacer = (ids: IdentityIds, body: Record<string, unknown>, ifMatch: string) => Promise<unknown>;

interface DeviceInput {
  authentication: unknown;
  status?: DeviceStatus;
  statusReason?: string | null;
  iotEdge?: boolean;
  deviceScope?: string;
  parentScopes?: string[];
}

interface ModuleInput {
  authentication: unknown;
  managedBy?: string | null;
}

interface BulkItem {
  id: string;
  moduleId: string | undefined;
  mode: ImportMode;
  raw: Record<string, unknown>;
}

const importModeByLowerCase = new Map<string, ImportMode>(ImportModes.map((mode) => [mode.toLowerCase(), mode]));

function parseBulkItem(raw: unknown, index: number): BulkItem {
  if (!isPlainObject(raw)) throw new ArgumentError(`Item ${index} is not a JSON object`, { field: `[${index}]` });
  if (typeof raw.id !== 'string' || raw.id === '') {
    throw new ArgumentError(`Item ${index} has no id`, { field: `[${index}].id` });
  }
  const mode = typeof raw.importMode === 'string' ? importModeByLowerCase.get(raw.importMode.toLowerCase()) : undefined;
  if (!mode) {
    throw new ArgumentError(`Item ${index} has an unknown importMode '${String(raw.importMode)}'`, {
      field: `[${index}].importMode`,
    });
  }
  const moduleId = typeof raw.moduleId === 'string' && raw.moduleId !== '' ? raw.moduleId : undefined;
  return { id: raw.id, moduleId, mode, raw };
}

// ExportImportDevice names the device `id` (§2.6); the device body reader wants `deviceId`.
function deviceBodyOf(raw: Record<string, unknown>): Record<string, unknown> {
  const { id, moduleId: _moduleId, eTag: _eTag, importMode: _importMode, ...rest } = raw;
  return { ...rest, deviceId: id };
}

function requireEtag(etag: string | undefined, field: string): string {
  if (etag === undefined) throw new ArgumentError(`${field} is required with an IfMatchETag import mode`, { field });
  return etag;
}

function stripQuotes(etag: string): string {
  return etag.length >= 2 && etag.startsWith('"') && etag.endsWith('"') ? etag.slice(1, -1) : etag;
}

function idsOf(identity: DeviceRecord | ModuleRecord): IdentityIds {
  return 'moduleId' in identity
    ? { deviceId: identity.deviceId, moduleId: identity.moduleId }
    : { deviceId: identity.deviceId };
}

function splitModuleKey(key: string): [string, string] {
  const slash = key.indexOf('/');
  return [key.slice(0, slash), key.slice(slash + 1)];
}

function deviceNotFound(deviceId: string): HubError {
  return new HubError('DeviceNotFound', `Device '${deviceId}' is not registered`);
}

function moduleNotFound(deviceId: string, moduleId: string): HubError {
  return new HubError('ModuleNotFound', `Module '${moduleId}' is not registered on device '${deviceId}'`);
}

function preconditionFailed(what: string): HubError {
  return new HubError('PreconditionFailed', `The etag given for '${what}' does not match its current etag`);
}
