import { HubError } from '@fieldhub/protocol';
import { pino } from 'pino';
import { createLocalBus } from '../bus/local/local-bus';
import { openSqliteStore } from '../store/sqlite/sqlite-store';
import type { Store } from '../store/store';
import { type CoreContext, type CoreOptions, defaultCoreOptions } from './context';

/**
 * Test support for the core unit tests of telemetry, events, cloud-to-device and direct methods: a real
 * in-memory SQLite store, the in-process bus and a clock the test moves. Not exported from the package.
 */
export interface TestCore {
  readonly ctx: CoreContext;
  /** Moves the injected clock forward. */
  advance(ms: number): void;
  /** Releases the store and the bus. */
  close(): Promise<void>;
}

/** A core context over `openSqliteStore({ path: ':memory:' })` and `createLocalBus()`, with an injected clock. */
export async function createTestCore(options: Partial<CoreOptions> = {}, store?: Store): Promise<TestCore> {
  const opened = store ?? (await openSqliteStore({ path: ':memory:' }));
  const bus = createLocalBus();
  let time = Date.parse('2026-01-01T00:00:00.000Z');
  const ctx: CoreContext = {
    hubName: 'testhub',
    hostName: 'localhost',
    store: opened,
    bus,
    logger: pino({ level: 'silent' }),
    now: () => time,
    options: { ...defaultCoreOptions, ...options },
  };
  return {
    ctx,
    advance(ms) {
      time += ms;
    },
    async close() {
      await bus.close();
      await opened.close();
    },
  };
}

/** A registry fake with the two lookups the services need (it implements their declared interfaces). */
export class FakeRegistry {
  private readonly devices = new Map<string, { generationId: string; modules: Set<string> }>();

  /** Registers a device (and its modules). */
  add(deviceId: string, modules: string[] = []): this {
    this.devices.set(deviceId, { generationId: `gen-${deviceId}`, modules: new Set(modules) });
    return this;
  }

  /** @throws HubError DeviceNotFound */
  async getDevice(deviceId: string): Promise<{ generationId: string }> {
    const device = this.devices.get(deviceId);
    if (!device) throw new HubError('DeviceNotFound', `Device ${deviceId} not found`);
    return { generationId: device.generationId };
  }

  /** The device's record, or undefined. */
  async getDeviceRecord(deviceId: string): Promise<{ generationId: string } | undefined> {
    const device = this.devices.get(deviceId);
    return device && { generationId: device.generationId };
  }

  /** The module's record, or undefined. */
  async getModuleRecord(deviceId: string, moduleId: string): Promise<{ generationId: string } | undefined> {
    const device = this.devices.get(deviceId);
    return device?.modules.has(moduleId) ? { generationId: `${device.generationId}-${moduleId}` } : undefined;
  }

  /** @throws HubError ModuleNotFound */
  async getModule(deviceId: string, moduleId: string): Promise<{ generationId: string }> {
    const device = this.devices.get(deviceId);
    if (!device?.modules.has(moduleId))
      throw new HubError('ModuleNotFound', `Module ${deviceId}/${moduleId} not found`);
    return { generationId: `${device.generationId}-${moduleId}` };
  }
}
