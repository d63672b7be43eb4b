/**
 * The provisioning service API (Azure DPS's service REST API, the one `azure-iot-provisioning-service` calls), on
 * the HTTPS port. Every path takes `?api-version=` (any value: 2019-03-31 to 2021-10-01 are in the field).
 *
 * - `PUT|GET|DELETE /enrollments/{registrationId}`, `POST /enrollments/query`, `POST /enrollments` (bulk)
 * - `PUT|GET|DELETE /enrollmentGroups/{enrollmentGroupId}`, `POST /enrollmentGroups/query`
 * - `GET|DELETE /registrations/{registrationId}`, `POST /registrations/{enrollmentGroupId}/query`
 *
 * PUT creates or replaces; `If-Match` (quoted or bare etag, or `*`) makes PUT and DELETE conditional (412 when it
 * does not match). Queries page with `x-ms-max-item-count` and `x-ms-continuation` and answer `x-ms-item-type`.
 *
 * Authorization: a service SAS token signed with the DPS policy `provisioningserviceowner` (`hub.json`
 * `dps.serviceConnectionString`, `sr` = the DPS host), or with one of the hub's policies (`iothubowner`: reads
 * need RegistryRead, writes RegistryWrite) when the DPS host is the hub's. Failures answer DPS's error body
 * `{errorCode, trackingId, message, timestampUtc}`.
 */
import { randomUUID } from 'node:crypto';
import { ArgumentError, AuthenticationError, type DpsErrorBody, HubError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Permission } from '../../../core/context';
import type { HubCore } from '../../../core/hub-core';
import { renderEnrollment } from '../../../dps/enrollments';
import { renderRegistrationState } from '../../../dps/registration-states';
import { parseIfMatch } from '../etag';

const jsonType = 'application/json; charset=utf-8';
/** Page size of a query without `x-ms-max-item-count`. */
const defaultPageSize = 100;
const maxPageSize = 1000;
/** Azure's limit of enrollments in one bulk operation. */
const maxBulkEnrollments = 10;

interface IdParams {
  id: string;
}

/** DPS's error body for a HubError. */
export function dpsServiceErrorBody(error: HubError, now = new Date()): DpsErrorBody {
  return {
    errorCode: error.hubCode,
    trackingId: randomUUID(),
    message: error.message,
    timestampUtc: now.toISOString(),
  };
}

function toHubError(error: Error): HubError {
  if (HubError.is(error)) {
    return error.code === 'IotHubFormatError' ? new ArgumentError(error.message, { cause: error }) : error;
  }
  const fastifyCode = (error as { code?: string }).code;
  if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new HubError('MessageTooLarge', 'The request body is too large');
  }
  const status = (error as { statusCode?: number }).statusCode;
  if (status !== undefined && status >= 400 && status < 500) return new ArgumentError(error.message);
  return new HubError('ServerError', 'Internal error', { cause: error });
}

function requireApiVersion(request: FastifyRequest): void {
  const value = (request.query as Record<string, unknown> | undefined)?.['api-version'];
  if (typeof value !== 'string' || value === '') {
    throw new ArgumentError('The api-version query parameter is required', { field: 'api-version' });
  }
}

function bodyOf(request: FastifyRequest): unknown {
  const body = request.body;
  if (!Buffer.isBuffer(body)) return body;
  const text = body.toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ArgumentError(`The request body is not valid JSON: ${(error as Error).message}`, {
      field: 'body',
      cause: error,
    });
  }
}

function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  reply.code(status).header('content-type', jsonType);
  const etag = typeof body === 'object' && body !== null ? (body as { etag?: unknown }).etag : undefined;
  if (typeof etag === 'string') reply.header('etag', `"${etag}"`);
  return reply.send(JSON.stringify(body));
}

/** Reads `x-ms-max-item-count` and `x-ms-continuation`. @throws ArgumentError for a bad count. */
function paging(request: FastifyRequest): { top: number; continuation: string | undefined } {
  const rawCount = request.headers['x-ms-max-item-count'];
  const rawContinuation = request.headers['x-ms-continuation'];
  let top = defaultPageSize;
  if (typeof rawCount === 'string' && rawCount !== '') {
    const count = Number(rawCount);
    if (!Number.isInteger(count) || count < 1) {
      throw new ArgumentError('x-ms-max-item-count must be a positive integer', { field: 'x-ms-max-item-count' });
    }
    top = Math.min(count, maxPageSize);
  }
  const continuation = typeof rawContinuation === 'string' && rawContinuation !== '' ? rawContinuation : undefined;
  return { top, continuation };
}

/**
 * Checks a query specification `{ "query": "*" }`. DPS answers every enrollment for any `SELECT *` without a filter;
 * a filter it cannot evaluate is refused rather than ignored.
 * @throws ArgumentError (400).
 */
function checkQuery(body: unknown): void {
  if (body === undefined) return;
  const query = typeof body === 'object' && body !== null ? (body as { query?: unknown }).query : undefined;
  if (query === undefined || query === null) return;
  if (typeof query !== 'string') throw new ArgumentError('query must be a string', { field: 'query' });
  const text = query.trim();
  if (text === '*' || text === '' || /^select\s+\*\s+from\s+\w+$/i.test(text)) return;
  throw new ArgumentError(`Only '*' queries are supported, not '${text}'`, { field: 'query' });
}

function sendPage(reply: FastifyReply, itemType: string, items: unknown[], continuation: string | undefined) {
  reply.header('x-ms-item-type', itemType);
  if (continuation !== undefined) reply.header('x-ms-continuation', continuation);
  return send(reply, 200, items);
}

/** Registers the provisioning service API. */
export function registerDpsServiceRoutes(app: FastifyInstance, core: HubCore): void {
  const { dps } = core;

  /** @throws AuthenticationError (401002); HubError ResourceNotFound (404) when the service is disabled. */
  async function authorize(request: FastifyRequest, permission: Permission): Promise<void> {
    requireApiVersion(request);
    if (!dps.enabled) throw new HubError('ResourceNotFound', 'The provisioning service is disabled on this hub');
    const header = request.headers.authorization;
    if (!header) throw new AuthenticationError('Missing Authorization header with a SharedAccessSignature');
    if (await dps.policies.isDpsToken(header)) {
      await dps.policies.authorize(header);
      return;
    }
    // The hub's own policies, for a DPS on the hub's host (the default): the token's `sr` is checked as for any
    // service call, so a token for another host is refused.
    await core.policies.authorizeServiceToken(header, permission);
  }

  app.register(async (scope) => {
    scope.setErrorHandler((raw: Error, request, reply) => {
      const error = toHubError(raw);
      if (error.status >= 500) request.log.error({ err: raw, url: request.url }, 'provisioning service call failed');
      else request.log.debug({ code: error.code, url: request.url.split('?')[0] }, error.message);
      return reply
        .code(error.status)
        .header('content-type', jsonType)
        .send(JSON.stringify(dpsServiceErrorBody(error, new Date(core.context.now()))));
    });

    // ---- individual enrollments ----------------------------------------------------------------------------

    scope.post('/enrollments/query', async (request, reply) => {
      await authorize(request, 'RegistryRead');
      checkQuery(bodyOf(request));
      const { top, continuation } = paging(request);
      const page = await dps.enrollments.listIndividual(top, continuation);
      return sendPage(reply, 'Enrollment', page.items.map(renderEnrollment), page.continuationToken);
    });

    scope.post('/enrollments', async (request, reply) => {
      await authorize(request, 'RegistryWrite');
      return send(reply, 200, await bulk(core, bodyOf(request)));
    });

    scope.put<{ Params: IdParams }>('/enrollments/:id', async (request, reply) => {
      await authorize(request, 'RegistryWrite');
      const ifMatch = parseIfMatch(request.headers['if-match']);
      const enrollment = await dps.enrollments.putIndividual(request.params.id, bodyOf(request), ifMatch);
      return send(reply, 200, renderEnrollment(enrollment));
    });

    scope.get<{ Params: IdParams }>('/enrollments/:id', async (request, reply) => {
      await authorize(request, 'RegistryRead');
      const enrollment = await dps.enrollments.getIndividual(request.params.id);
      if (!enrollment) throw new HubError('ResourceNotFound', `Enrollment '${request.params.id}' does not exist`);
      // Azure shows the registration of an individual enrollment with it.
      const state = await dps.registrations.get(request.params.id);
      return send(reply, 200, {
        ...renderEnrollment(enrollment),
        ...(state === undefined ? {} : { registrationState: renderRegistrationState(state) }),
      });
    });

    scope.delete<{ Params: IdParams }>('/enrollments/:id', async (request, reply) => {
      await authorize(request, 'RegistryWrite');
      await dps.enrollments.deleteIndividual(request.params.id, parseIfMatch(request.headers['if-match']));
      return reply.code(204).send();
    });

    // ---- enrollment groups ---------------------------------------------------------------------------------

    scope.post('/enrollmentGroups/query', async (request, reply) => {
      await authorize(request, 'RegistryRead');
      checkQuery(bodyOf(request));
      const { top, continuation } = paging(request);
      const page = await dps.enrollments.listGroups(top, continuation);
      return sendPage(reply, 'EnrollmentGroup', page.items.map(renderEnrollment), page.continuationToken);
    });

    scope.put<{ Params: IdParams }>('/enrollmentGroups/:id', async (request, reply) => {
      await authorize(request, 'RegistryWrite');
      const ifMatch = parseIfMatch(request.headers['if-match']);
      const group = await dps.enrollments.putGroup(request.params.id, bodyOf(request), ifMatch);
      return send(reply, 200, renderEnrollment(group));
    });

    scope.get<{ Params: IdParams }>('/enrollmentGroups/:id', async (request, reply) => {
      await authorize(request, 'RegistryRead');
      const group = await dps.enrollments.getGroup(request.params.id);
      if (!group) throw new HubError('ResourceNotFound', `Enrollment group '${request.params.id}' does not exist`);
      return send(reply, 200, renderEnrollment(group));
    });

    scope.delete<{ Params: IdParams }>('/enrollmentGroups/:id', async (request, reply) => {
      await authorize(request, 'RegistryWrite');
      await dps.enrollments.deleteGroup(request.params.id, parseIfMatch(request.headers['if-match']));
      return reply.code(204).send();
    });

    // ---- registration states -------------------------------------------------------------------------------

    scope.post<{ Params: IdParams }>('/registrations/:id/query', async (request, reply) => {
      await authorize(request, 'RegistryRead');
      const { top, continuation } = paging(request);
      const page = await dps.registrations.listGroup(request.params.id, top, continuation);
      return sendPage(reply, 'DeviceRegistration', page.items.map(renderRegistrationState), page.continuationToken);
    });

    scope.get<{ Params: IdParams }>('/registrations/:id', async (request, reply) => {
      await authorize(request, 'RegistryRead');
      const state = await dps.registrations.get(request.params.id);
      if (!state) throw new HubError('ResourceNotFound', `Registration '${request.params.id}' does not exist`);
      return send(reply, 200, renderRegistrationState(state));
    });

    scope.delete<{ Params: IdParams }>('/registrations/:id', async (request, reply) => {
      await authorize(request, 'RegistryWrite');
      await dps.registrations.delete(request.params.id, parseIfMatch(request.headers['if-match']));
      return reply.code(204).send();
    });
  });
}

/**
 * `POST /enrollments` `{mode: create|update|updateIfMatchETag|delete, enrollments: [...]}` (Azure's
 * BulkEnrollmentOperation, at most 10): each enrollment is applied on its own; the answer lists the failures
 * (`{isSuccessful, errors: [{registrationId, errorCode, errorStatus}]}`).
 * @throws ArgumentError (400) for a malformed request.
 */
async function bulk(core: HubCore, body: unknown): Promise<unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ArgumentError('The body must be a BulkEnrollmentOperation object', { field: 'body' });
  }
  const { mode, enrollments } = body as { mode?: unknown; enrollments?: unknown };
  if (mode !== 'create' && mode !== 'update' && mode !== 'updateIfMatchETag' && mode !== 'delete') {
    throw new ArgumentError('mode must be create, update, updateIfMatchETag or delete', { field: 'mode' });
  }
  if (!Array.isArray(enrollments) || enrollments.length === 0 || enrollments.length > maxBulkEnrollments) {
    throw new ArgumentError(`enrollments must be an array of 1 to ${maxBulkEnrollments} enrollments`, {
      field: 'enrollments',
    });
  }
  const { enrollments: store } = core.dps;
  const errors: { registrationId: string; errorCode: number; errorStatus: string }[] = [];
  for (const item of enrollments as unknown[]) {
    const registrationId =
      typeof item === 'object' && item !== null ? (item as { registrationId?: unknown }).registrationId : undefined;
    const id = typeof registrationId === 'string' ? registrationId : '';
    try {
      if (id === '') throw new ArgumentError('registrationId is required', { field: 'registrationId' });
      const etag = (item as { etag?: unknown }).etag;
      if (mode === 'create') {
        if (await store.getIndividual(id)) {
          throw new HubError('DeviceAlreadyExists', `Enrollment '${id}' already exists`);
        }
        await store.putIndividual(id, item);
      } else if (mode === 'update') {
        await store.putIndividual(id, item);
      } else if (mode === 'updateIfMatchETag') {
        await store.putIndividual(id, item, typeof etag === 'string' && etag !== '' ? etag : '*');
      } else {
        await store.deleteIndividual(id, typeof etag === 'string' && etag !== '' ? etag : undefined);
      }
    } catch (error) {
      const failure = HubError.is(error) ? error : new HubError('ServerError', String(error), { cause: error });
      errors.push({ registrationId: id, errorCode: failure.hubCode, errorStatus: failure.message });
    }
  }
  return { isSuccessful: errors.length === 0, errors };
}
