/**
 * Service REST routes of direct methods (protocol-service.md §2.9): `POST /twins/:id/methods` and
 * `POST /twins/:id/modules/:mid/methods`. ServiceConnect is required (§1.1). Routes only translate to
 * `core.directMethods`; a client that goes away aborts the wait.
 */
import type { Socket } from 'node:net';
import { ArgumentError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { MethodInvocation } from '../../../core/direct-methods';
import type { HubCore } from '../../../core/hub-core';
import { requireApiVersion } from '../api-version';
import { requirePermission } from '../service-auth';
import { identityParams, jsonBody, sendJson } from './registry';

/** Registers the direct method routes. */
export function registerMethodRoutes(app: FastifyInstance, core: HubCore): void {
  for (const path of ['/twins/:id/methods', '/twins/:id/modules/:mid/methods']) {
    app.post(path, async (request, reply) => {
      requireApiVersion(request);
      await requirePermission(core, request, 'ServiceConnect');
      const { deviceId, moduleId } = identityParams(request);
      const invocation = toInvocation(jsonBody(request));
      const signal = abortOnClientGone(reply);
      return sendJson(reply, 200, await core.directMethods.invoke(deviceId, moduleId, invocation, { signal }));
    });
  }
}

/** The SDK's body: `{"methodName":..,"payload":..,"responseTimeoutInSeconds":..,"connectTimeoutInSeconds":..}`. */
function toInvocation(body: unknown): MethodInvocation {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ArgumentError('The request body must be a JSON object with methodName', { field: 'body' });
  }
  const fields = body as Record<string, unknown>;
  if (typeof fields.methodName !== 'string') {
    throw new ArgumentError('methodName is required', { field: 'methodName' });
  }
  return {
    methodName: fields.methodName,
    payload: fields.payload,
    responseTimeoutInSeconds: optionalNumber(fields.responseTimeoutInSeconds, 'responseTimeoutInSeconds'),
    connectTimeoutInSeconds: optionalNumber(fields.connectTimeoutInSeconds, 'connectTimeoutInSeconds'),
  };
}

function optionalNumber(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') throw new ArgumentError(`${field} must be a number`, { field });
  return value;
}

/** One signal per client connection, aborted when it closes. */
const connectionSignals = new WeakMap<Socket, AbortSignal>();

/**
 * Aborts when the HTTP client disconnects before the answer is sent (no point waiting for the device then).
 * Over HTTP/1.1 a client can only give up on a request by closing its connection, so the signal is the
 * connection's, made once per connection (an AbortController and a 'close' listener per request cost ~20 µs of a
 * round trip).
 */
function abortOnClientGone(reply: FastifyReply): AbortSignal {
  const socket = reply.raw.socket;
  if (socket === null) return AbortSignal.abort();
  let signal = connectionSignals.get(socket);
  if (signal === undefined) {
    const controller = new AbortController();
    signal = controller.signal;
    connectionSignals.set(socket, signal);
    if (socket.destroyed) controller.abort();
    else socket.once('close', () => controller.abort());
  }
  return signal;
}
