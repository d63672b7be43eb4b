import type { FastifyInstance } from 'fastify';
import type { HubCore } from '../../../core/hub-core';

/** The device HTTPS API (protocol-device.md §4.1, §4.2): telemetry and polled cloud-to-device. */
export function registerDeviceMessageRoutes(_app: FastifyInstance, _core: HubCore): void {}
