import { AuthenticationError } from '@fieldhub/protocol';
import type { FastifyRequest } from 'fastify';
import type { Permission } from '../../core/context';
import type { HubCore } from '../../core/hub-core';

/**
 * Authorises a service REST call: the `Authorization` header carries a service SAS token
 * (`SharedAccessSignature sr=<host>&sig=..&se=..&skn=<policy>`, protocol-service.md §1.3) whose policy must
 * hold `permission`. Returns the policy name.
 * @throws AuthenticationError (401 IotHubUnauthorizedAccess) for a missing, malformed, expired or
 * insufficient token.
 */
export async function requirePermission(
  core: HubCore,
  request: FastifyRequest,
  permission: Permission,
): Promise<string> {
  const header = request.headers.authorization;
  if (!header) throw new AuthenticationError('Missing Authorization header with a SharedAccessSignature');
  const { policyName } = await core.policies.authorizeServiceToken(header, permission);
  return policyName;
}
