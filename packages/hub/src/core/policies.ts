/**
 * Shared access policies (protocol-service.md §1.1) and the service SAS tokens signed with their keys (§1.3).
 * Keys are made on first start, stored in the `policies` collection, kept across restarts and rotatable.
 */
import { randomBytes } from 'node:crypto';
import { verifySasToken } from '@fieldhub/auth';
import { ArgumentError, AuthenticationError, parseSasToken, type SasToken } from '@fieldhub/protocol';
import { RevisionConflict } from '../store/store';
import type { CoreContext, Permission } from './context';

/** A shared access policy as stored and as `list()` returns it. */
export interface SharedAccessPolicy {
  readonly name: string;
  readonly permissions: readonly Permission[];
  readonly primaryKey: string;
  readonly secondaryKey: string;
}

/** Which key of a policy. */
export type PolicyKeyName = 'primary' | 'secondary';

/** The default policies of a new hub and their rights (§1.1; the DeviceConnect policy is `device`, §0 item 10). */
export const defaultPolicies: Readonly<Record<string, readonly Permission[]>> = {
  iothubowner: ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'],
  service: ['ServiceConnect'],
  device: ['DeviceConnect'],
  registryRead: ['RegistryRead'],
  registryReadWrite: ['RegistryRead', 'RegistryWrite'],
};

const COLLECTION = 'policies';

/** Bus subject on which a change of a policy is announced (payload: `{ name }`), so every hub process forgets it. */
export const policyChangedSubject = 'policies.changed';

/**
 * The hub's shared access policies. Reads are served from memory after the first store read (a service call
 * checks its policy on every request); a rotation forgets the cached policy at once in this process and is
 * announced on the bus ({@link policyChangedSubject}) so other hub processes forget it too.
 */
export class Policies {
  /** Policies read from the store (`undefined`: known not to exist). */
  private readonly cache = new Map<string, SharedAccessPolicy | undefined>();
  /** Bumped by every invalidation: a store read that started before one must not fill the cache. */
  private generation = 0;

  constructor(private readonly ctx: CoreContext) {
    ctx.bus.subscribe(ctx.hubName, policyChangedSubject, () => this.invalidate());
  }

  /** Forgets every cached policy (the next read goes to the store). */
  invalidate(): void {
    this.generation++;
    this.cache.clear();
  }

  /**
   * The policy as cached, without a store read: `null` when not cached (then use {@link get}), `undefined` when
   * it is known not to exist.
   */
  cached(name: string): SharedAccessPolicy | undefined | null {
    return this.cache.has(name) ? this.cache.get(name) : null;
  }

  /** Creates the default policies that do not exist yet, each with two fresh keys. Idempotent; call on start. */
  async ensureDefaults(): Promise<void> {
    for (const [name, permissions] of Object.entries(defaultPolicies)) {
      const policy: SharedAccessPolicy = { name, permissions, primaryKey: newKey(), secondaryKey: newKey() };
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, COLLECTION, name, policy, 0);
      } catch (error) {
        // Another process (or an earlier start) made it first: keep its keys.
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
    this.invalidate();
  }

  /** Every policy, by name order. */
  async list(): Promise<SharedAccessPolicy[]> {
    const docs = await this.ctx.store.documents.list<SharedAccessPolicy>(this.ctx.hubName, COLLECTION);
    return docs.map((doc) => doc.value);
  }

  /** One policy, or `undefined`. */
  async get(name: string): Promise<SharedAccessPolicy | undefined> {
    const cached = this.cached(name);
    if (cached !== null) return cached;
    const generation = this.generation;
    const doc = await this.ctx.store.documents.get<SharedAccessPolicy>(this.ctx.hubName, COLLECTION, name);
    const policy = doc?.value;
    if (generation === this.generation) this.cache.set(name, policy);
    return policy;
  }

  /**
   * Replaces one key of a policy with 32 fresh random bytes; tokens signed with the old key stop verifying.
   * @returns the policy with its new key.
   * @throws {ArgumentError} ArgumentInvalid for an unknown policy.
   */
  async rotateKey(name: string, which: PolicyKeyName): Promise<SharedAccessPolicy> {
    for (;;) {
      const doc = await this.ctx.store.documents.get<SharedAccessPolicy>(this.ctx.hubName, COLLECTION, name);
      if (!doc) throw new ArgumentError(`No shared access policy '${name}'`, { field: 'policyName' });
      const next: SharedAccessPolicy =
        which === 'primary' ? { ...doc.value, primaryKey: newKey() } : { ...doc.value, secondaryKey: newKey() };
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, COLLECTION, name, next, doc.revision);
        this.invalidate();
        this.ctx.bus.publish(this.ctx.hubName, policyChangedSubject, { name });
        return next;
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  /**
   * The service connection string of a policy (§1.2), with its primary key:
   * `HostName=<host>;SharedAccessKeyName=<policy>;SharedAccessKey=<key>`.
   * @throws {ArgumentError} ArgumentInvalid for an unknown policy.
   */
  async connectionString(policyName: string): Promise<string> {
    const policy = await this.get(policyName);
    if (!policy) throw new ArgumentError(`No shared access policy '${policyName}'`, { field: 'policyName' });
    return `HostName=${this.ctx.hostName};SharedAccessKeyName=${policy.name};SharedAccessKey=${policy.primaryKey}`;
  }

  /**
   * Authorises a service call (§1.3): `token` (the whole `Authorization` value) must be a SAS token whose `sr` is
   * this hub's host name, compared case-insensitively and ignoring a `:port` on either side, optionally followed
   * by a path (`host/devices`: older docs scope registry tokens so; service tokens are hub-wide anyway, §1.1);
   * whose `skn` names a policy; whose signature verifies with that policy's primary or secondary key over the
   * literal `sr` (§0 item 12); which has not expired; and whose policy holds `permission`.
   * @throws {AuthenticationError} IotHubUnauthorizedAccess (401002) in every failing case — Azure answers 401 for
   * insufficient rights too.
   */
  async authorizeServiceToken(token: string, permission: Permission): Promise<{ policyName: string }> {
    const parsed = this.parse(token);
    const [host] = splitResource(parsed.resourceUri);
    if (!sameHost(host, this.ctx.hostName)) {
      throw new AuthenticationError(`The token's resource '${parsed.resourceUri}' is not this hub`);
    }
    const policy = await this.verifyPolicySignature(token);
    if (!policy.permissions.includes(permission)) {
      throw new AuthenticationError(`Policy '${policy.name}' does not grant ${permission}`);
    }
    return { policyName: policy.name };
  }

  /**
   * Authorises a device (or module) connection made with a token signed by a shared access policy holding
   * DeviceConnect (§1.1: such a policy can mint device-scoped tokens). The token's resource must be a
   * per-segment prefix of `host/devices/<deviceId>[/modules/<moduleId>]` (§1.3), e.g. `host`, `host/devices`,
   * or the device's own URI.
   * @throws {AuthenticationError} IotHubUnauthorizedAccess (401002) when it does not hold.
   */
  async authorizeDeviceConnectPolicyToken(
    token: string,
    deviceId: string,
    moduleId?: string,
  ): Promise<{ policyName: string }> {
    const parsed = this.parse(token);
    const [host, ...path] = splitResource(parsed.resourceUri);
    const target = moduleId === undefined ? ['devices', deviceId] : ['devices', deviceId, 'modules', moduleId];
    const scoped =
      sameHost(host, this.ctx.hostName) && path.length <= target.length && path.every((s, i) => s === target[i]);
    if (!scoped)
      throw new AuthenticationError(`The token's resource '${parsed.resourceUri}' does not cover ${target.join('/')}`);
    const policy = await this.verifyPolicySignature(token);
    if (!policy.permissions.includes('DeviceConnect')) {
      throw new AuthenticationError(`Policy '${policy.name}' does not grant DeviceConnect`);
    }
    return { policyName: policy.name };
  }

  private parse(token: string): SasToken {
    try {
      return parseSasToken(token);
    } catch (error) {
      throw new AuthenticationError(`Malformed SharedAccessSignature: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Signature and expiry through @fieldhub/auth's `verifySasToken` (HMAC over the literal `sr`, constant time,
   * either key, 5 minutes of clock skew as its default); the resource is checked by the callers.
   */
  private async verifyPolicySignature(token: string): Promise<SharedAccessPolicy> {
    let policy: SharedAccessPolicy | undefined;
    await verifySasToken(token, {
      keys: async (parsed) => {
        if (parsed.skn === undefined) return undefined;
        policy = await this.get(parsed.skn);
        return policy ? [policy.primaryKey, policy.secondaryKey] : undefined;
      },
      now: new Date(this.ctx.now()),
    });
    if (!policy) throw new AuthenticationError('The token names no known shared access policy');
    return policy;
  }
}

function newKey(): string {
  return randomBytes(32).toString('base64');
}

// `[scheme://]host[/seg...]` -> [host, seg...], dropping empty segments (a trailing slash). AMQP clients sign their
// CBS audience, scheme included: Event Hubs clients `sb://host/{entity}/...`, others `amqps://host/...` (§4.2).
function splitResource(resourceUri: string): string[] {
  const [host = '', ...rest] = resourceUri.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/');
  return [host, ...rest.filter((segment) => segment !== '')];
}

function stripPort(host: string): string {
  const colon = host.lastIndexOf(':');
  return colon > 0 && /^\d+$/.test(host.slice(colon + 1)) ? host.slice(0, colon) : host;
}

// §1.3: with a port in HostName, `sr` carries it; without, it may not. Host names compare case-insensitively.
function sameHost(a: string | undefined, b: string): boolean {
  return a !== undefined && stripPort(a).toLowerCase() === stripPort(b).toLowerCase();
}
