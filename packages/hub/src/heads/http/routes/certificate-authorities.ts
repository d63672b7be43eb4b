/**
 * CA certificates, a Fieldhub extension (Azure manages them through ARM's `certificates` resource, not the hub's
 * REST API; protocol-device.md §6). Reads need RegistryRead, writes RegistryWrite (§1.1 of protocol-service.md:
 * they decide which devices may connect, as registry writes do).
 *
 * - `GET /fieldhub/certificates` -> `[description]`
 * - `PUT /fieldhub/certificates/{name}` body `{ certificate: "<PEM>", isVerified?: boolean }`, `If-Match` to replace
 * - `GET /fieldhub/certificates/{name}` -> description
 * - `DELETE /fieldhub/certificates/{name}` (`If-Match` optional) -> 204
 * - `POST /fieldhub/certificates/{name}/generateVerificationCode` -> description + `verificationCode`
 * - `POST /fieldhub/certificates/{name}/verify` body `{ certificate: "<PEM of the verification certificate>" }`
 */
import { ArgumentError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AddCertificateAuthorityOptions } from '../../../core/certificate-authorities';
import type { HubCore } from '../../../core/hub-core';
import { parseIfMatch } from '../etag';
import { requirePermission } from '../service-auth';
import { jsonBody, sendJson } from './registry';

interface NameParams {
  name: string;
}

/** The `{ certificate, isVerified? }` body of PUT and verify. @throws ArgumentError naming the bad field. */
function certificateBody(
  request: FastifyRequest,
  allowVerified: boolean,
): { certificate: string; isVerified?: boolean } {
  const body = jsonBody(request);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ArgumentError('The body must be a JSON object { "certificate": "<PEM>" }', { field: 'body' });
  }
  const { certificate, isVerified } = body as Record<string, unknown>;
  if (typeof certificate !== 'string' || certificate.trim() === '') {
    throw new ArgumentError('certificate must be a PEM certificate string', { field: 'certificate' });
  }
  if (!allowVerified || isVerified === undefined) return { certificate };
  if (typeof isVerified !== 'boolean') {
    throw new ArgumentError('isVerified must be true or false', { field: 'isVerified' });
  }
  return { certificate, isVerified };
}

/** Registers the CA certificate extension routes. */
export function registerCertificateAuthorityRoutes(app: FastifyInstance, core: HubCore): void {
  const cas = core.certificateAuthorities;

  app.get('/fieldhub/certificates', async (request, reply) => {
    await requirePermission(core, request, 'RegistryRead');
    return sendJson(reply, 200, await cas.list());
  });

  app.get<{ Params: NameParams }>('/fieldhub/certificates/:name', async (request, reply) => {
    await requirePermission(core, request, 'RegistryRead');
    return sendJson(reply, 200, await cas.get(request.params.name));
  });

  app.put<{ Params: NameParams }>('/fieldhub/certificates/:name', async (request, reply) => {
    await requirePermission(core, request, 'RegistryWrite');
    const { certificate, isVerified } = certificateBody(request, true);
    const ifMatch = parseIfMatch(request.headers['if-match']);
    const options: AddCertificateAuthorityOptions = {
      ...(ifMatch === undefined ? {} : { ifMatch }),
      ...(isVerified === true ? { verified: true } : {}),
    };
    const added = await cas.add(request.params.name, certificate, options);
    return sendJson(reply, 200, added);
  });

  app.delete<{ Params: NameParams }>('/fieldhub/certificates/:name', async (request, reply) => {
    await requirePermission(core, request, 'RegistryWrite');
    await cas.delete(request.params.name, parseIfMatch(request.headers['if-match']));
    return reply.code(204).send();
  });

  app.post<{ Params: NameParams }>('/fieldhub/certificates/:name/generateVerificationCode', async (request, reply) => {
    await requirePermission(core, request, 'RegistryWrite');
    return sendJson(
      reply,
      200,
      await cas.generateVerificationCode(request.params.name, parseIfMatch(request.headers['if-match'])),
    );
  });

  app.post<{ Params: NameParams }>('/fieldhub/certificates/:name/verify', async (request, reply) => {
    await requirePermission(core, request, 'RegistryWrite');
    const { certificate } = certificateBody(request, false);
    return sendJson(
      reply,
      200,
      await cas.verify(request.params.name, certificate, parseIfMatch(request.headers['if-match'])),
    );
  });
}
