/**
 * Shared access policies, a Fieldhub extension (Azure manages policies through ARM, not the hub's REST API):
 *
 * - `GET /fieldhub/policies` -> `[{ name, permissions, primaryKey, secondaryKey }]`
 * - `GET /fieldhub/policies/{name}` -> one policy
 * - `POST /fieldhub/policies/{name}/rotate?key=primary|secondary` -> the policy with a new key
 *
 * Only a policy holding every permission (`iothubowner`) may read or rotate keys, since a key grants its rights.
 */
import { AuthenticationError, HubError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Permissions } from '../../../core/context';
import type { HubCore } from '../../../core/hub-core';
import type { PolicyKeyName } from '../../../core/policies';
import { requirePermission } from '../service-auth';
import { sendJson } from './registry';

async function requireOwner(core: HubCore, request: FastifyRequest): Promise<void> {
  const name = await requirePermission(core, request, 'RegistryWrite');
  const policy = await core.policies.get(name);
  const all = Object.values(Permissions);
  if (!policy || !all.every((permission) => policy.permissions.includes(permission))) {
    throw new AuthenticationError(`Policy ${name} may not read or rotate keys: that needs every permission`);
  }
}

/** Registers the policy extension routes. */
export function registerPolicyRoutes(app: FastifyInstance, core: HubCore): void {
  app.get('/fieldhub/policies', async (request, reply) => {
    await requireOwner(core, request);
    return sendJson(reply, 200, await core.policies.list());
  });

  app.get<{ Params: { name: string } }>('/fieldhub/policies/:name', async (request, reply) => {
    await requireOwner(core, request);
    const policy = await core.policies.get(request.params.name);
    if (!policy) throw new HubError('ResourceNotFound', `No shared access policy named ${request.params.name}`);
    return sendJson(reply, 200, policy);
  });

  app.post<{ Params: { name: string }; Querystring: { key?: string } }>(
    '/fieldhub/policies/:name/rotate',
    async (request, reply) => {
      await requireOwner(core, request);
      const key = request.query.key ?? 'primary';
      if (key !== 'primary' && key !== 'secondary') {
        throw new HubError('ArgumentInvalid', `key must be primary or secondary, got ${key}`);
      }
      return sendJson(reply, 200, await core.policies.rotateKey(request.params.name, key as PolicyKeyName));
    },
  );
}
