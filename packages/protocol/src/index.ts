/**
 * @fieldhub/protocol: the IoT Hub wire vocabulary shared by the hub, the SDK and the slim build.
 *
 * Pure data and functions: topics, property bags, connection strings, error codes, twin rules, limits, SAS
 * strings to sign, DPS shapes, and SHA-256 / HMAC-SHA256 in plain ECMAScript. It must not import anything, nor
 * use Node APIs (see ARCHITECTURE.md).
 *
 * @example
 * ```ts
 * import { parseConnectionString, telemetryTopic } from '@fieldhub/protocol';
 * const cs = parseConnectionString('HostName=h.example;DeviceId=d1;SharedAccessKey=AAAA');
 * const topic = telemetryTopic({ deviceId: cs.deviceId!, properties: { temp: '21' } });
 * ```
 * @packageDocumentation
 */
export * from './connection-string';
export * from './dps';
export * from './encoding';
export * from './error-codes';
export * from './errors';
export * from './hmac';
export * from './limits';
export * from './property-bag';
export * from './registry-shapes';
export * from './sas';
export * from './sha256';
export * from './topics';
export * from './twin';
