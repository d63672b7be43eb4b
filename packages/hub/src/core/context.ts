import type { Logger } from 'pino';
import type { Bus } from '../bus/bus';
import type { Store } from '../store/store';

/**
 * What every core service receives: the seams, the hub's identity and tunables. Core code never learns whether
 * the store is SQLite or PostgreSQL, nor whether the bus is in-process or NATS.
 */
export interface CoreContext {
  /** The hub's name: scopes every stored record and bus subject (the host name's first label by default). */
  readonly hubName: string;
  /** The host name devices and services dial, e.g. `localhost`. */
  readonly hostName: string;
  readonly store: Store;
  readonly bus: Bus;
  readonly logger: Logger;
  /** Milliseconds since epoch; injectable for tests. */
  readonly now: () => number;
  readonly options: CoreOptions;
}

/** Tunables of the core, with Azure's defaults. */
export interface CoreOptions {
  /** Built-in endpoint partitions (Azure default 4). */
  readonly partitionCount: number;
  /** Built-in endpoint retention in ms (Azure default 1 day). */
  readonly retentionMs: number;
  /** Cloud-to-device defaults (Azure: TTL 1 h, max delivery count 10, feedback TTL 1 h, queue depth 50). */
  readonly cloudToDevice: {
    readonly defaultTtlMs: number;
    readonly maxDeliveryCount: number;
    readonly feedbackTtlMs: number;
    readonly maxQueueDepth: number;
  };
}

/** Azure IoT Hub's defaults. */
export const defaultCoreOptions: CoreOptions = {
  partitionCount: 4,
  retentionMs: 24 * 60 * 60 * 1000,
  cloudToDevice: {
    defaultTtlMs: 60 * 60 * 1000,
    maxDeliveryCount: 10,
    feedbackTtlMs: 60 * 60 * 1000,
    maxQueueDepth: 50,
  },
};

/** Service permissions of shared access policies (protocol-service.md §1.1). */
export const Permissions = {
  RegistryRead: 'RegistryRead',
  RegistryWrite: 'RegistryWrite',
  ServiceConnect: 'ServiceConnect',
  DeviceConnect: 'DeviceConnect',
} as const;
export type Permission = (typeof Permissions)[keyof typeof Permissions];
