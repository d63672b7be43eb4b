import type { FastifyInstance } from 'fastify';
import type { HubCore } from '../../../core/hub-core';

/** File upload, device side (protocol-device.md §4.3): SAS URIs and upload notifications. */
export function registerFileUploadRoutes(_app: FastifyInstance, _core: HubCore): void {}
