/**
 * Provisioning over HTTPS, device side (protocol-device.md §5.2; captures/dps.txt). Routes only translate to
 * `core.dps` (`../../../dps/contract.ts`); every request authenticates (HTTPS has no session): the `Authorization`
 * header's SAS token (`skn=registration`), or without it the TLS client certificate and the intermediates the
 * device sent.
 *
 * - `PUT /{idScope}/registrations/{registrationId}/register?api-version=..[&forceRegistration=true]`, body
 *   `{"registrationId","payload"?}` -> 202 `{operationId, status: 'assigning'}` with a `retry-after` header, or 200
 *   with the final operation.
 * - `GET /{idScope}/registrations/{registrationId}/operations/{operationId}?api-version=..` -> 202 while assigning,
 *   200 once done. Node sends a `{}` body with its GET: it is ignored.
 * - Failures answer DPS's JSON error body `{errorCode, trackingId, message, timestampUtc}` with the status (not the
 *   IoT Hub envelope of the other routes): 400 a malformed body or a missing api-version, 401 refused credentials
 *   (wrong key, unknown or disabled enrollment, wrong ID scope, refused certificate), 404 an unknown operation.
 *
 * The routes' first segment is a parameter: fastify's router prefers static segments, so `/devices/..`,
 * `/twins/..`, `/enrollments/..` and the blob container `/{containerName}/..` keep their routes (tested).
 */
import type { TLSSocket } from 'node:tls';
import { ArgumentError, HubError, parseDpsRegistrationRequest } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import type { DpsAnswer, DpsPrincipal, DpsProof } from '../../../dps/contract';
import { asHubError, dpsErrorBody, peerChainOf } from '../../mqtt/dps-session';

const jsonType = 'application/json; charset=utf-8';

/** Registers the device-facing provisioning routes. */
export function registerDpsDeviceRoutes(app: FastifyInstance, core: HubCore): void {
  app.register(async (scope) => {
    // DPS's error body, not IoT Hub's envelope: the provisioning SDKs read `errorCode` and `message` from it.
    scope.setErrorHandler((raw: Error, request, reply) => {
      const error = toDpsError(raw);
      if (error.status >= 500)
        request.log.error({ err: raw, path: request.url.split('?')[0] }, 'provisioning request failed');
      else request.log.debug({ code: error.code, path: request.url.split('?')[0] }, error.message);
      // Throttled: when to try again, as Azure says it (the SDKs otherwise wait their default interval).
      if (error.status === 429) reply.header('retry-after', '1');
      return reply
        .code(error.status)
        .header('content-type', jsonType)
        .send(JSON.stringify(dpsErrorBody(error)));
    });

    scope.put('/:idScope/registrations/:registrationId/register', async (request, reply) => {
      requireDpsApiVersion(request);
      const principal = await authenticate(core, request);
      const body = parseDpsRegistrationRequest(request.body ?? null);
      // DPS compares registration ids without case (§5.4).
      if (body.registrationId.toLowerCase() !== principal.registrationId.toLowerCase()) {
        throw new ArgumentError(
          `The registrationId '${body.registrationId}' of the body is not the one of the path '${principal.registrationId}'`,
          { field: 'registrationId' },
        );
      }
      const query = request.query as Record<string, unknown>;
      const force = String(query.forceRegistration ?? '').toLowerCase() === 'true';
      const answer = await core.dps.register(principal, {
        ...(body.payload === undefined ? {} : { payload: body.payload }),
        ...(force ? { forceRegistration: true } : {}),
      });
      return send(reply, answer);
    });

    scope.get('/:idScope/registrations/:registrationId/operations/:operationId', async (request, reply) => {
      requireDpsApiVersion(request);
      const principal = await authenticate(core, request);
      const { operationId } = request.params as { operationId: string };
      return send(reply, await core.dps.operationStatus(principal, operationId));
    });
  });
}

function send(reply: FastifyReply, answer: DpsAnswer): FastifyReply {
  reply.code(answer.status).header('content-type', jsonType);
  if (answer.retryAfterSeconds !== undefined) {
    reply.header('retry-after', String(Math.max(0, Math.ceil(answer.retryAfterSeconds))));
  }
  return reply.send(JSON.stringify(answer.body));
}

/** The request's proof: its `Authorization` SAS token, else its TLS client certificate chain. */
async function authenticate(core: HubCore, request: FastifyRequest): Promise<DpsPrincipal> {
  const { idScope, registrationId } = request.params as { idScope: string; registrationId: string };
  const header = request.headers.authorization;
  let proof: DpsProof;
  if (header !== undefined && header !== '') {
    proof = { kind: 'sas', token: header };
  } else {
    const socket = request.raw.socket as Partial<TLSSocket>;
    const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(true) : undefined;
    const chain = peerChainOf(peer && Object.keys(peer).length > 0 ? peer : undefined);
    if (chain.length === 0) {
      throw new HubError('IotHubUnauthorizedAccess', 'Unauthorized: no Authorization header and no client certificate');
    }
    proof = { kind: 'x509', chain };
  }
  return core.dps.authenticate(idScope, registrationId, proof);
}

/** DPS answers a request without `api-version` 400 (any value is accepted: SDKs send several, §5). */
function requireDpsApiVersion(request: FastifyRequest): void {
  const value = (request.query as Record<string, unknown> | undefined)?.['api-version'];
  if (typeof value !== 'string' || value === '') {
    throw new ArgumentError('The api-version query parameter is required', { field: 'api-version' });
  }
}

/** Fastify's own errors (unparsable JSON, body too large, bad media type) and stray exceptions as HubErrors. */
function toDpsError(error: Error): HubError {
  if (HubError.is(error)) {
    // The JSON parser of the app throws IoT Hub's format error: DPS calls a malformed body a bad argument.
    return error.code === 'IotHubFormatError' ? new ArgumentError(error.message, { cause: error }) : error;
  }
  const code = (error as { code?: string }).code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new HubError('MessageTooLarge', 'The request body is too large');
  const status = (error as { statusCode?: number }).statusCode;
  if (status !== undefined && status >= 400 && status < 500) return new ArgumentError(error.message);
  return asHubError(error);
}
