/**
 * Service REST routes of twins (protocol-service.md §2.3, §2.8): `GET|PATCH|PUT /twins/:id` and
 * `/twins/:id/modules/:mid`. ServiceConnect is required (§1.1). Routes only translate to `core.twins`.
 */
import type { FastifyInstance } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import { requireApiVersion } from '../api-version';
import { parseIfMatch } from '../etag';
import { requirePermission } from '../service-auth';
import { identityParams, jsonBody, sendJson } from './registry';

/** Registers the device and module twin routes. */
export function registerTwinRoutes(app: FastifyInstance, core: HubCore): void {
  const { twins } = core;
  for (const path of ['/twins/:id', '/twins/:id/modules/:mid']) {
    app.get(path, async (request, reply) => {
      requireApiVersion(request);
      await requirePermission(core, request, 'ServiceConnect');
      const { deviceId, moduleId } = identityParams(request);
      return sendJson(reply, 200, await twins.get(deviceId, moduleId));
    });

    // PATCH: JSON merge of tags and desired properties; PUT: replace both (§2.8). If-Match quoted, bare or "*".
    app.patch(path, async (request, reply) => {
      requireApiVersion(request);
      await requirePermission(core, request, 'ServiceConnect');
      const { deviceId, moduleId } = identityParams(request);
      const ifMatch = parseIfMatch(request.headers['if-match']);
      return sendJson(reply, 200, await twins.patch(deviceId, moduleId, jsonBody(request), ifMatch));
    });

    app.put(path, async (request, reply) => {
      requireApiVersion(request);
      await requirePermission(core, request, 'ServiceConnect');
      const { deviceId, moduleId } = identityParams(request);
      const ifMatch = parseIfMatch(request.headers['if-match']);
      return sendJson(reply, 200, await twins.replace(deviceId, moduleId, jsonBody(request), ifMatch));
    });
  }
}
