/**
 * The provisioning service's own shared access policy, `provisioningserviceowner` (Azure DPS has one by that name,
 * with every right): its keys sign the service SAS tokens of the DPS service API (`/enrollments`,
 * `/enrollmentGroups`, `/registrations`). Stored in the `dps-policies` collection (scoped by hub name), created with
 * fresh keys on first start. Its connection string (`hub.json` `dps.serviceConnectionString`) is
 * `HostName={dps.host};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=...`.
 */
import { randomBytes } from 'node:crypto';
import { verifySasToken } from '@fieldhub/auth';
import { AuthenticationError, parseSasToken, type SasToken } from '@fieldhub/protocol';
import type { CoreContext } from '../core/context';
import { RevisionConflict } from '../store/store';

/** The name of the DPS service policy. */
export const dpsServicePolicyName = 'provisioningserviceowner';

const collection = 'dps-policies';

/** A DPS shared access policy. */
export interface DpsServicePolicy {
  readonly name: string;
  readonly primaryKey: string;
  readonly secondaryKey: string;
}

/** The DPS service policies. */
export class DpsServicePolicies {
  constructor(
    private readonly ctx: CoreContext,
    private readonly hostName: string,
  ) {}

  /** Creates `provisioningserviceowner` with fresh keys unless it exists. */
  async ensureDefaults(): Promise<void> {
    if (await this.get(dpsServicePolicyName)) return;
    const policy: DpsServicePolicy = {
      name: dpsServicePolicyName,
      primaryKey: randomBytes(32).toString('base64'),
      secondaryKey: randomBytes(32).toString('base64'),
    };
    try {
      await this.ctx.store.documents.put(this.ctx.hubName, collection, dpsServicePolicyName, policy, 0);
    } catch (error) {
      // Another process created it first: theirs stands.
      if (!(error instanceof RevisionConflict)) throw error;
    }
  }

  /** A policy by name, or `undefined`. */
  async get(name: string): Promise<DpsServicePolicy | undefined> {
    return (await this.ctx.store.documents.get<DpsServicePolicy>(this.ctx.hubName, collection, name))?.value;
  }

  /** `HostName={dps.host};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={primary}`. */
  async connectionString(): Promise<string> {
    await this.ensureDefaults();
    const policy = await this.get(dpsServicePolicyName);
    return `HostName=${this.hostName};SharedAccessKeyName=${dpsServicePolicyName};SharedAccessKey=${policy?.primaryKey ?? ''}`;
  }

  /**
   * Whether a token names a DPS policy (then {@link authorize} decides); other tokens are the hub's to judge.
   */
  async isDpsToken(token: string): Promise<boolean> {
    let parsed: SasToken;
    try {
      parsed = parseSasToken(token);
    } catch {
      return false;
    }
    return parsed.skn !== undefined && (await this.get(parsed.skn)) !== undefined;
  }

  /**
   * Authorises a service API call signed with a DPS policy: `sr` is the DPS host (any case, a `:port` and a path
   * allowed, as the service SDK signs `{host}`), signature by the policy's primary or secondary key, not expired.
   * @throws AuthenticationError (401002) otherwise.
   */
  async authorize(token: string): Promise<{ policyName: string }> {
    let parsed: SasToken;
    try {
      parsed = parseSasToken(token);
    } catch (error) {
      throw new AuthenticationError(`Malformed SharedAccessSignature: ${(error as Error).message}`, { cause: error });
    }
    const host = parsed.resourceUri.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/')[0] ?? '';
    const strip = (value: string) => value.replace(/:\d+$/, '').toLowerCase();
    if (strip(host) !== strip(this.hostName)) {
      throw new AuthenticationError(`The token's resource '${parsed.resourceUri}' is not this provisioning service`);
    }
    const policy = parsed.skn === undefined ? undefined : await this.get(parsed.skn);
    if (!policy) throw new AuthenticationError('The token names no provisioning service policy');
    try {
      await verifySasToken(token, { keys: [policy.primaryKey, policy.secondaryKey], now: new Date(this.ctx.now()) });
    } catch (error) {
      throw new AuthenticationError(`SAS token refused: ${(error as Error).message}`, { cause: error });
    }
    return { policyName: policy.name };
  }
}
