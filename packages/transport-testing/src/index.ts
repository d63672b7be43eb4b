/**
 * @fieldhub/transport-testing (private): what every device transport is tested with. `startConformanceHub()`
 * runs a real hub in-process on 127.0.0.1 (TLS, its own CA, a temporary data directory) and makes SAS and X.509
 * devices over its REST API; `recordingEvents()` records what a transport reports. The conformance suite itself,
 * `describeTransportConformance(name, factory)`, is the `@fieldhub/transport-testing/conformance` subpath: it is
 * written against vitest (a peer dependency), so importing this entry does not load vitest.
 *
 * May depend on anything published (the hub included); nothing may depend on it (ARCHITECTURE.md).
 *
 * @example
 * ```ts
 * const hub = await startConformanceHub();
 * const device = await hub.createSasDevice('d1');
 * const transport = mqtt({ port: hub.info.ports.mqtt! }).create();
 * await transport.connect({ credentials: await device.credentials(), ca: hub.ca }, recordingEvents().events);
 * ```
 * @packageDocumentation
 */
export {
  type ConformanceDevice,
  type ConformanceHub,
  startConformanceHub,
} from './conformance-hub';
export { type EventQueue, type RecordedDesiredPatch, type RecordingEvents, recordingEvents } from './recording-events';
