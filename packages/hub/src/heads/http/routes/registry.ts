/**
 * Service REST routes of the identity registry (protocol-service.md §2.3–§2.6): devices, modules, bulk,
 * statistics. Routes only translate HTTP to `core.registry`; errors are thrown as HubError and the server writes
 * Azure's envelope. Permissions follow §1.1's suggested mapping: reads need RegistryRead, writes RegistryWrite.
 */
import { ArgumentError, HubError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import { requireApiVersion } from '../api-version';
import { formatEtagHeader, parseIfMatch } from '../etag';
import { requirePermission } from '../service-auth';

/** The content type of every JSON answer (§0 item 2: the Node SDK parses bodies only with it). */
export const jsonContentType = 'application/json; charset=utf-8';

/** Path parameters of device and module routes (fastify has already percent-decoded them, §2.1). */
export interface IdentityParams {
  id: string;
  mid?: string;
}

/**
 * The parsed JSON body. The server parses `application/json`; a body sent without that content type arrives as
 * bytes and is parsed here, so that raw clients that forget the header get the same answers.
 * @throws {HubError} IotHubFormatError (400006) for bytes that are not JSON.
 */
export function jsonBody(request: FastifyRequest): unknown {
  const body = request.body;
  if (!Buffer.isBuffer(body)) return body;
  const text = body.toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HubError('IotHubFormatError', `The request body is not valid JSON: ${(error as Error).message}`);
  }
}

/** Sends a JSON answer with Azure's content type, and an `ETag` header when the body carries an etag. */
export function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  reply.code(status).header('content-type', jsonContentType);
  if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
    const etag = (body as { etag?: unknown }).etag;
    if (typeof etag === 'string') reply.header('etag', formatEtagHeader(etag));
  }
  return reply.send(JSON.stringify(body));
}

/** Reads the path's device and module ids. */
export function identityParams(request: FastifyRequest): { deviceId: string; moduleId: string | undefined } {
  const params = request.params as IdentityParams;
  return { deviceId: params.id, moduleId: params.mid };
}

/**
 * Registers the registry routes (§2.3):
 * `GET|PUT|DELETE /devices/:id`, `GET|POST /devices`, `GET /devices/:id/modules`,
 * `GET|PUT|DELETE /devices/:id/modules/:mid`, `GET /statistics/devices`, `GET /statistics/service`.
 */
export function registerRegistryRoutes(app: FastifyInstance, core: HubCore): void {
  const { registry } = core;

  app.get('/devices', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryRead');
    return sendJson(reply, 200, await registry.listDevices(readTop(request)));
  });

  app.post('/devices', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryWrite');
    const result = await registry.bulk(jsonBody(request), (ids, body, ifMatch) =>
      core.twins.replace(ids.deviceId, ids.moduleId, body, ifMatch, { onlyGivenSections: true }),
    );
    // §2.6: 200 when every item succeeded, 400 with the same body otherwise.
    return sendJson(reply, result.isSuccessful ? 200 : 400, result);
  });

  app.get('/devices/:id', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryRead');
    return sendJson(reply, 200, await registry.getDevice(identityParams(request).deviceId));
  });

  app.put('/devices/:id', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryWrite');
    const { deviceId } = identityParams(request);
    const ifMatch = parseIfMatch(request.headers['if-match']);
    return sendJson(reply, 200, await registry.putDevice(deviceId, jsonBody(request), ifMatch));
  });

  app.delete('/devices/:id', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryWrite');
    await registry.deleteDevice(identityParams(request).deviceId, parseIfMatch(request.headers['if-match']));
    return reply.code(204).send();
  });

  app.get('/devices/:id/modules', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryRead');
    return sendJson(reply, 200, await registry.listModules(identityParams(request).deviceId));
  });

  app.get('/devices/:id/modules/:mid', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryRead');
    const { deviceId, moduleId } = identityParams(request);
    return sendJson(reply, 200, await registry.getModule(deviceId, moduleId ?? ''));
  });

  app.put('/devices/:id/modules/:mid', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryWrite');
    const { deviceId, moduleId } = identityParams(request);
    const ifMatch = parseIfMatch(request.headers['if-match']);
    return sendJson(reply, 200, await registry.putModule(deviceId, moduleId ?? '', jsonBody(request), ifMatch));
  });

  app.delete('/devices/:id/modules/:mid', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryWrite');
    const { deviceId, moduleId } = identityParams(request);
    await registry.deleteModule(deviceId, moduleId ?? '', parseIfMatch(request.headers['if-match']));
    return reply.code(204).send();
  });

  app.get('/statistics/devices', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryRead');
    return sendJson(reply, 200, await registry.statistics());
  });

  app.get('/statistics/service', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'RegistryRead');
    return sendJson(reply, 200, await registry.serviceStatistics());
  });
}

// `GET /devices?top=n` (§2.3): a positive integer; the registry caps it at 1000.
function readTop(request: FastifyRequest): number | undefined {
  const value = (request.query as Record<string, unknown> | undefined)?.top;
  if (value === undefined || value === '') return undefined;
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || !/^\d{1,9}$/.test(text) || Number(text) < 1) {
    throw new ArgumentError(`top must be a positive integer, not '${String(text)}'`, { field: 'top' });
  }
  return Number(text);
}
