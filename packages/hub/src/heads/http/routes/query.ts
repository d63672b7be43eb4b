/**
 * `POST /devices/query` (protocol-service.md §2.10, §6): runs the IoT Hub query language over device twins,
 * module twins or device jobs, one page at a time. ServiceConnect is required (§1.1).
 *
 * Paging: `x-ms-max-item-count` asks for a page size (default 100, at most 1000: larger values are clamped,
 * as "up to 1000" in §2.10 allows); `x-ms-continuation` carries the opaque token of the next page both ways and
 * is ABSENT on the last page, never empty (§0 item 3: the Node SDK tests for its presence). `x-ms-item-type`
 * says what the items are (`twin`, `deviceJob`, `raw`). Each page re-runs the query over current data.
 */
import { ArgumentError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import { evaluateQuery, MAX_QUERY_LENGTH, pageItems, parseQuery } from '../../../core/query';
import { requireApiVersion } from '../api-version';
import { requirePermission } from '../service-auth';
import { jsonBody, sendJson } from './registry';

/** Registers `POST /devices/query`. */
export function registerQueryRoutes(app: FastifyInstance, core: HubCore): void {
  app.post('/devices/query', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'ServiceConnect');
    const body = jsonBody(request);
    const text = typeof body === 'object' && body !== null ? (body as { query?: unknown }).query : undefined;
    if (typeof text !== 'string' || text.trim() === '') {
      throw new ArgumentError('The body must be {"query":"<query text>"}', { field: 'query' });
    }
    if (text.length > MAX_QUERY_LENGTH) {
      throw new ArgumentError(`The query is longer than ${MAX_QUERY_LENGTH} characters`, { field: 'query' });
    }
    const query = parseQuery(text);
    // Job records are not kept by this hub yet: `devices.jobs` queries answer an empty result.
    const documents = query.collection === 'devices.jobs' ? [] : await core.twins.allTwins(query.collection);
    const { items, itemType } = evaluateQuery(query, documents as unknown as Record<string, unknown>[]);
    const { page, continuation } = pageItems(items, {
      query: text,
      maxItemCount: readMaxItemCount(request),
      continuation: singleHeader(request, 'x-ms-continuation'),
    });
    reply.header('x-ms-item-type', itemType);
    if (continuation !== undefined) reply.header('x-ms-continuation', continuation);
    return sendJson(reply, 200, page);
  });
}

function singleHeader(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? undefined : text;
}

function readMaxItemCount(request: FastifyRequest): number | undefined {
  const text = singleHeader(request, 'x-ms-max-item-count');
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text.trim()) || Number(text) < 1) {
    throw new ArgumentError(`x-ms-max-item-count must be a positive integer, not '${text}'`, {
      field: 'x-ms-max-item-count',
    });
  }
  return Number(text);
}
