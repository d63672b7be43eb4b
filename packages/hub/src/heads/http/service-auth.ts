import { sasTokenDefaults } from '@fieldhub/auth';
import { AuthenticationError, parseSasToken, type SasToken } from '@fieldhub/protocol';
import type { FastifyRequest } from 'fastify';
import type { Permission } from '../../core/context';
import type { HubCore } from '../../core/hub-core';

/** A service token whose signature verified, remembered so that the next request with it skips the HMACs. */
interface VerifiedServiceToken {
  readonly policyName: string;
  /** The policy's keys when it verified: after a rotation the token is verified afresh (and fails if signed with the old key). */
  readonly primaryKey: string;
  readonly secondaryKey: string;
  /** ms since epoch after which the token stops verifying: `se` plus the clock skew the verifier tolerates. */
  readonly validUntil: number;
}

/**
 * Verified tokens per hub core. An SDK sends one token for up to an hour, so a handful of entries serve every
 * request; the bound only matters for a client minting a token per request (oldest entries go first).
 */
const verifiedTokens = new WeakMap<HubCore, Map<string, VerifiedServiceToken>>();
const maxVerifiedTokens = 1024;

/**
 * Authorises a service REST call: the `Authorization` header carries a service SAS token
 * (`SharedAccessSignature sr=<host>&sig=..&se=..&skn=<policy>`, protocol-service.md §1.3) whose policy must
 * hold `permission`. Returns the policy name.
 *
 * A token that verified before is not verified again (two HMACs on the crypto thread pool per request were the
 * largest share of a direct method's round trip): the policy is still looked up on every request (in memory, see
 * `Policies`), and the token is accepted only while that policy has the same keys as when it verified, the token has not expired,
 * and the policy holds `permission` — what a full verification would decide, so rotations and expiry take effect
 * at once.
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
  let cache = verifiedTokens.get(core);
  if (cache === undefined) {
    cache = new Map();
    verifiedTokens.set(core, cache);
  }
  const known = cache.get(header);
  if (known !== undefined) {
    // Served from memory: the policy cache forgets a policy when it rotates (core/policies.ts).
    const cached = core.policies.cached(known.policyName);
    const policy = cached !== null ? cached : await core.policies.get(known.policyName);
    if (
      policy !== undefined &&
      policy.primaryKey === known.primaryKey &&
      policy.secondaryKey === known.secondaryKey &&
      core.context.now() <= known.validUntil
    ) {
      if (!policy.permissions.includes(permission)) {
        throw new AuthenticationError(`Policy '${policy.name}' does not grant ${permission}`);
      }
      return policy.name;
    }
    cache.delete(header);
  }
  // The policy's keys before and after the verification: equal means the signature was checked with these keys.
  const parsed = parseQuietly(header);
  const before = parsed?.skn === undefined ? undefined : await core.policies.get(parsed.skn);
  const { policyName } = await core.policies.authorizeServiceToken(header, permission);
  const after = await core.policies.get(policyName);
  if (
    parsed !== undefined &&
    before !== undefined &&
    after !== undefined &&
    before.primaryKey === after.primaryKey &&
    before.secondaryKey === after.secondaryKey
  ) {
    if (cache.size >= maxVerifiedTokens) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    cache.set(header, {
      policyName,
      primaryKey: after.primaryKey,
      secondaryKey: after.secondaryKey,
      validUntil: (parsed.se + sasTokenDefaults.clockSkewSeconds) * 1000,
    });
  }
  return policyName;
}

/** The token's fields, or undefined when malformed (authorizeServiceToken then answers it). */
function parseQuietly(header: string): SasToken | undefined {
  try {
    return parseSasToken(header);
  } catch {
    return undefined;
  }
}
