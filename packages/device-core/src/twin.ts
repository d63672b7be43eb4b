/**
 * The twin feature: read the twin, patch reported properties, and receive desired-property updates, including
 * the ones missed while the connection was down (reference §2.6: subscribe -> GET -> ignore notifications with
 * `$version` <= the GET's).
 */
import { applyTwinPatch, type TwinObject, validateTwinSection, withoutTwinSystemProperties } from '@fieldhub/protocol';
import type { ConnectionFeature, ConnectionManager } from './connection-manager';
import { AbortError, ArgumentError, ConnectionError } from './errors';
import { SubscriptionBuffer } from './subscription-buffer';
import type { OperationOptions, Transport, TwinProperties } from './transport/transport';

/** The device's view of its twin: `desired` and `reported`, each with `$version`. */
export type Twin = TwinProperties;

/** A desired-properties patch (a `null` member deletes it) with the desired `$version` it brings the twin to. */
export type DesiredPropertiesPatch = Readonly<Record<string, unknown>> & { readonly $version: number };

/** Options of the twin feature (`createDeviceClient({ twin })`). */
export interface TwinOptions {
  /**
   * Patches buffered per `desiredPropertyUpdates()` iterator while the application is busy. Default 100. When
   * full, the newest patch is merged into the last buffered one (overflow policy `coalesce`: nothing is lost, the
   * application sees fewer, larger patches and the latest `$version`).
   */
  readonly bufferSize?: number;
}

/** The defaults of {@link TwinOptions}. */
export const defaultTwinOptions = { bufferSize: 100 } as const;

type JsonObject = Record<string, unknown>;

function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

/**
 * The JSON merge patch (RFC 7396, as the hub applies desired patches) that turns `from` into `to`: changed and new
 * members, `null` for removed ones, nested objects diffed recursively. Empty when they are equal.
 */
export function desiredPropertiesDiff(from: Readonly<JsonObject>, to: Readonly<JsonObject>): JsonObject {
  const patch: JsonObject = {};
  for (const key of Object.keys(to)) {
    const before = from[key];
    const after = to[key];
    if (!Object.hasOwn(from, key)) patch[key] = after;
    else if (isPlainObject(before) && isPlainObject(after)) {
      const inner = desiredPropertiesDiff(before, after);
      if (Object.keys(inner).length > 0) patch[key] = inner;
    } else if (!deepEqual(before, after)) patch[key] = after;
  }
  for (const key of Object.keys(from)) if (!Object.hasOwn(to, key)) patch[key] = null;
  return patch;
}

/** Merges two successive merge patches into one (`newer` wins; nested objects merge). */
export function mergeDesiredPatches(
  older: DesiredPropertiesPatch,
  newer: DesiredPropertiesPatch,
): DesiredPropertiesPatch {
  const merge = (a: JsonObject, b: JsonObject): JsonObject => {
    const out: JsonObject = { ...a };
    for (const key of Object.keys(b)) {
      const left = out[key];
      const right = b[key];
      out[key] = isPlainObject(left) && isPlainObject(right) ? merge(left, right) : right;
    }
    return out;
  };
  return { ...merge(older, newer), $version: newer.$version };
}

function sectionOf(value: Readonly<JsonObject>): TwinObject {
  return withoutTwinSystemProperties(value as TwinObject);
}

/** The twin feature of a client. */
export class TwinFeature implements ConnectionFeature {
  readonly #manager: ConnectionManager;
  readonly #bufferSize: number;
  readonly #subscribers = new Set<SubscriptionBuffer<DesiredPropertiesPatch>>();
  /** Whether the twin was ever used: re-enabled after every reconnect. */
  #wanted = false;
  #enabledOn = -1;
  #enabling: Promise<void> | undefined;
  /** The last desired properties delivered to iterators (what they know), while any iterate. */
  #baseline: { desired: TwinObject; version: number } | undefined;
  /** Patches that arrived before the baseline was read. */
  #early: { patch: TwinObject; version: number }[] = [];

  /** @throws ArgumentError when `bufferSize` is not a positive integer. */
  constructor(manager: ConnectionManager, options: TwinOptions = {}) {
    this.#manager = manager;
    this.#bufferSize = options.bufferSize ?? defaultTwinOptions.bufferSize;
    if (!Number.isInteger(this.#bufferSize) || this.#bufferSize < 1) {
      throw new ArgumentError('twin.bufferSize must be a positive integer', { field: 'bufferSize' });
    }
    manager.addFeature(this);
    manager.setIncomingHandlers({ desiredPropertiesPatch: (patch, version) => this.#onPatch(patch, version) });
  }

  /** See `DeviceClient.getTwin`. */
  getTwin(options: OperationOptions = {}): Promise<Twin> {
    return this.#run(async (transport, signal) => {
      await this.#ensureEnabled(transport);
      return transport.getTwin({ signal });
    }, options);
  }

  /** See `DeviceClient.updateReportedProperties`. */
  updateReportedProperties(patch: Readonly<Record<string, unknown>>, options: OperationOptions = {}): Promise<number> {
    try {
      validateTwinSection(patch, { kind: 'reported', patch: true });
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#run(async (transport, signal) => {
      await this.#ensureEnabled(transport);
      return transport.updateReportedProperties(patch, { signal });
    }, options);
  }

  /** See `DeviceClient.desiredPropertyUpdates`. */
  desiredPropertyUpdates(options: OperationOptions = {}): AsyncIterableIterator<DesiredPropertiesPatch> {
    this.#manager.requireCapability(this.#manager.capabilities.twin, 'twins');
    const buffer = new SubscriptionBuffer<DesiredPropertiesPatch>({
      capacity: this.#bufferSize,
      overflow: 'coalesce',
      coalesce: mergeDesiredPatches,
    });
    this.#subscribers.add(buffer);
    this.#wanted = true;
    const unsubscribe = (): void => {
      this.#subscribers.delete(buffer);
      if (this.#subscribers.size === 0) {
        this.#baseline = undefined;
        this.#early = [];
      }
    };
    // Aborting rejects a pending next() (the buffer's own listener) and unsubscribes.
    options.signal?.addEventListener('abort', unsubscribe, { once: true });
    if (!this.#baseline) {
      this.#run(async (transport, signal) => {
        await this.#ensureEnabled(transport);
        return transport.getTwin({ signal });
      }, {}).then(
        (twin) => this.#applyFullDesired(twin.desired),
        (error: unknown) => this.#manager.reportError(error, 'could not read the twin for desired-property updates'),
      );
    }
    const iterator: AsyncIterableIterator<DesiredPropertiesPatch> = {
      next: () => (options.signal?.aborted ? Promise.reject(new AbortError()) : buffer.next(options.signal)),
      return: () => {
        buffer.end();
        unsubscribe();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** @internal */
  async onConnected(transport: Transport, signal: AbortSignal): Promise<void> {
    if (!this.#wanted) return;
    await transport.enableTwin({ signal });
    this.#enabledOn = this.#manager.connectionId;
    if (this.#subscribers.size === 0) return;
    let twin: Twin;
    try {
      twin = await transport.getTwin({ signal });
    } catch (error) {
      // A lost connection fails this attempt (the manager retries); anything else (throttled, a server error) is
      // reported and the diff waits for the next reconnect rather than costing a reconnect now.
      if (error instanceof ConnectionError || signal.aborted) throw error;
      this.#manager.reportError(error, 'could not re-read the twin after reconnecting');
      return;
    }
    this.#applyFullDesired(twin.desired);
  }

  /** @internal */
  onDisconnected(): void {
    this.#enabledOn = -1;
  }

  /** @internal */
  onClose(): void {
    for (const buffer of this.#subscribers) buffer.end();
    this.#subscribers.clear();
  }

  #run<T>(run: (transport: Transport, signal: AbortSignal) => Promise<T>, options: OperationOptions): Promise<T> {
    if (!this.#manager.capabilities.twin) {
      try {
        this.#manager.requireCapability(false, 'twins');
      } catch (error) {
        return Promise.reject(error);
      }
    }
    this.#wanted = true;
    return this.#manager.whenConnected(run, options);
  }

  // Twin responses need the subscription first (§2.6); once per connection, shared by concurrent callers.
  async #ensureEnabled(transport: Transport): Promise<void> {
    const connection = this.#manager.connectionId;
    if (this.#enabledOn === connection) return;
    this.#enabling ??= transport.enableTwin().then(
      () => {
        this.#enabledOn = connection;
        this.#enabling = undefined;
      },
      (error: unknown) => {
        this.#enabling = undefined;
        throw error;
      },
    );
    await this.#enabling;
  }

  #onPatch(patch: Readonly<Record<string, unknown>>, version: number): void {
    if (this.#subscribers.size === 0) return;
    const section = sectionOf(patch);
    if (!this.#baseline) {
      this.#early.push({ patch: section, version });
      return;
    }
    this.#deliver(section, version);
  }

  #deliver(patch: TwinObject, version: number): void {
    const baseline = this.#baseline;
    // A notification the GET already covered, or a replay: §2.6.
    if (!baseline || version <= baseline.version) return;
    baseline.desired = applyTwinPatch(baseline.desired, patch);
    baseline.version = version;
    this.#publish({ ...patch, $version: version });
  }

  // A full desired section (first read, or re-read after a reconnect): the baseline, or a diff against it.
  #applyFullDesired(desired: Readonly<JsonObject> & { readonly $version: number }): void {
    if (this.#subscribers.size === 0) return;
    const section = sectionOf(desired);
    const version = desired.$version;
    const baseline = this.#baseline;
    if (!baseline) {
      this.#baseline = { desired: section, version };
      const early = this.#early.splice(0).sort((a, b) => a.version - b.version);
      for (const entry of early) this.#deliver(entry.patch, entry.version);
      return;
    }
    if (version <= baseline.version) return;
    const diff = desiredPropertiesDiff(baseline.desired, section);
    this.#baseline = { desired: section, version };
    if (Object.keys(diff).length > 0) this.#publish({ ...diff, $version: version });
  }

  #publish(patch: DesiredPropertiesPatch): void {
    for (const buffer of this.#subscribers) buffer.push(patch);
  }
}
