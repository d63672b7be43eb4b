/**
 * @fieldhub/hub: the Fieldhub server, an Azure IoT Hub-compatible hub on an embedded store.
 *
 * Depends on @fieldhub/protocol, @fieldhub/auth and server libraries; never on the device SDK
 * (ARCHITECTURE.md). Core logic sits over the Store and Bus seams; protocol heads only translate.
 *
 * @example
 * ```ts
 * import { createHub } from '@fieldhub/hub';
 * const hub = createHub({ dataDir: './.fieldhub', ports: { https: 0 } });
 * const info = await hub.start();          // also written to <dataDir>/hub.json
 * console.log(info.serviceConnectionString);
 * await hub.stop();
 * ```
 * @packageDocumentation
 */
export type { Bus } from './bus/bus';
export {
  configFromEnvironment,
  configFromFile,
  defaultPorts,
  environmentVariables,
  type HubConfig,
  type HubConfigInput,
  resolveConfig,
} from './config';
export type { CoreContext, CoreOptions, Permission } from './core/context';
export type { HubCore } from './core/hub-core';
export { type CreateHubOptions, createHub, type Hub, type HubInfo } from './hub';
export type { Store } from './store/store';
