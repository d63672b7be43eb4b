/**
 * What a credential presented over AMQP authorizes (protocol-device.md §3.1-3.2, protocol-service.md §0.5, §3.1,
 * §4.2): a CBS `put-token` (audience + SAS token) or a SASL PLAIN username and password. The checks are the ones
 * every head shares: device tokens through `checkDeviceSasToken` / `resourceCovers` (the MQTT head's), policy
 * tokens through `core.policies` (`authorizeServiceToken`, `authorizeDeviceConnectPolicyToken`); nothing here signs
 * or hashes on its own except comparing a policy key presented as a PLAIN password. Policy tokens signed as Event
 * Hubs clients sign them (HMAC keyed with the key's text rather than its decoded bytes) are accepted on CBS too.
 *
 * Decisions where the reference is silent:
 * - The audience decides what is asked for: one naming `devices/{d}[/modules/{m}]` asks for that device (a device
 *   token, or a policy token whose policy grants DeviceConnect); any other audience on this hub's host asks for a
 *   service principal with every permission of the token's policy (service clients send the bare host name, Event
 *   Hubs clients `sb://host/{entity}/...`). A device token under an audience without a device path is taken for the
 *   device its own `sr` names.
 * - An audience on another host is refused (401), as is a token that has expired by the hub's clock skew.
 */
import { timingSafeEqual } from 'node:crypto';
import type { DetailedPeerCertificate } from 'node:tls';
import { derToPem, parseSasToken, type SasToken } from '@fieldhub/auth';
import { HubError, isValidDeviceId, isValidModuleId } from '@fieldhub/protocol';
import type { HubCore } from '../../core/hub-core';
import { identityKey } from '../../core/registry-records';
import type { DpsProof } from '../../dps/contract';
import { checkDeviceSasToken, identityOf, normalizeHost, recordsOf, resourceCovers } from '../mqtt/authenticate';
import type { AmqpPrincipal, DevicePrincipal, RegistrationPrincipal, ServicePrincipal } from './contract';

/** The outcome of a credential check: a principal, or the CBS status code and why. */
export type CredentialCheck =
  | { readonly ok: true; readonly principal: AmqpPrincipal }
  | { readonly ok: false; readonly status: 400 | 401; readonly reason: string };

/** What the checks need. */
export interface CredentialOptions {
  readonly core: HubCore;
  /** Seconds a token is accepted past its `se` (the principal expires then). */
  readonly clockSkewSeconds: number;
}

/** An audience as the hub reads it: URL-decoded when it decodes, scheme dropped, host and path segments. */
export interface Audience {
  readonly host: string;
  readonly path: readonly string[];
}

const refuse = (status: 400 | 401, reason: string): CredentialCheck => ({ ok: false, status, reason });

/**
 * Parses a CBS audience or a token's resource: `myhub.azure-devices.net%2Fdevices%2Fd1` (Node, the token's `sr`
 * verbatim), `myhub.azure-devices.net/devices/d1`, `amqps://...` or `sb://...` (§3.2).
 */
export function parseAudience(audience: string): Audience {
  let text = audience.trim();
  try {
    text = decodeURIComponent(text);
  } catch {
    // Not URL-encoded (a literal `%` in it): read as is.
  }
  const [host = '', ...rest] = text.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/');
  return { host, path: rest.filter((segment) => segment !== '') };
}

/** The device or module a path names (`devices/{d}` or `devices/{d}/modules/{m}`), if it names one. */
export function deviceOfPath(path: readonly string[]): { deviceId: string; moduleId: string | undefined } | undefined {
  if (path.length !== 2 && path.length !== 4) return undefined;
  if (path[0]?.toLowerCase() !== 'devices') return undefined;
  const deviceId = path[1] ?? '';
  if (!isValidDeviceId(deviceId)) return undefined;
  if (path.length === 2) return { deviceId, moduleId: undefined };
  const moduleId = path[3] ?? '';
  if (path[2]?.toLowerCase() !== 'modules' || !isValidModuleId(moduleId)) return undefined;
  return { deviceId, moduleId };
}

/** Checks a CBS put-token: what `token` authorizes for `audience`. Never throws for bad credentials. */
export async function checkToken(
  audience: string,
  token: string,
  options: CredentialOptions,
): Promise<CredentialCheck> {
  const { core } = options;
  const target = parseAudience(audience);
  if (target.host === '' || normalizeHost(target.host) !== normalizeHost(core.context.hostName)) {
    return refuse(401, `audience '${audience}' is not this hub`);
  }
  let parsed: SasToken;
  try {
    parsed = parseSasToken(token);
  } catch (error) {
    return refuse(400, `not a SAS token: ${(error as Error).message}`);
  }
  const expiresAtMs = parsed.se * 1000 + options.clockSkewSeconds * 1000;
  if (expiresAtMs <= core.context.now()) {
    return refuse(401, `SAS token expired at ${new Date(parsed.se * 1000).toISOString()}`);
  }
  const device = deviceOfPath(target.path) ?? (parsed.skn === undefined ? deviceOfResource(parsed) : undefined);

  if (parsed.skn !== undefined && device === undefined) {
    const policy = await core.policies.get(parsed.skn);
    if (!policy || policy.permissions.length === 0) return refuse(401, `no shared access policy '${parsed.skn}'`);
    try {
      // Verifies host, signature and expiry; the permission is the policy's own, so it holds by construction.
      await core.policies.authorizeServiceToken(token, policy.permissions[0] ?? 'ServiceConnect');
    } catch (error) {
      // Event Hubs and Service Bus clients (@azure/core-amqp `createToken`) key the HMAC with the key's text, not
      // the bytes it encodes: the same check over the text's bytes (base64 of its UTF-8 for checkDeviceSasToken).
      const textKeys = [policy.primaryKey, policy.secondaryKey].map((key) =>
        Buffer.from(key, 'utf8').toString('base64'),
      );
      const onThisHub = normalizeHost(parseAudience(parsed.resourceUri).host) === normalizeHost(core.context.hostName);
      if (
        !onThisHub ||
        checkDeviceSasToken(parsed, textKeys, core.context.now(), options.clockSkewSeconds) !== undefined
      ) {
        return refuse(401, (error as Error).message);
      }
    }
    const principal: ServicePrincipal = {
      kind: 'service',
      policyName: policy.name,
      permissions: policy.permissions,
      expiresAtMs,
    };
    return { ok: true, principal };
  }
  if (device === undefined) return refuse(401, `SAS token for '${parsed.resourceUri}' names no device`);

  const { deviceId, moduleId } = device;
  const records = await recordsOf(core, deviceId, moduleId);
  if (typeof records === 'string') return refuse(401, records);
  if (parsed.skn !== undefined) {
    try {
      await core.policies.authorizeDeviceConnectPolicyToken(token, deviceId, moduleId);
    } catch (error) {
      return refuse(401, `policy token refused: ${(error as Error).message}`);
    }
    const identity = identityOf(deviceId, moduleId, records.record, { scope: 'hub', type: 'sas', issuer: 'iothub' });
    return { ok: true, principal: { kind: 'device', identity, expiresAtMs } };
  }
  const { authentication } = records.record;
  if (authentication.type !== 'sas') return refuse(401, `identity authenticates with ${authentication.type}`);
  const { primaryKey, secondaryKey } = authentication.symmetricKey;
  const refusal = checkDeviceSasToken(parsed, [primaryKey, secondaryKey], core.context.now(), options.clockSkewSeconds);
  if (refusal !== undefined) return refuse(401, refusal);
  if (!resourceCovers(parsed.resourceUri, core.context.hostName, deviceId, moduleId)) {
    return refuse(401, `SAS token for '${parsed.resourceUri}' does not cover ${identityKey(deviceId, moduleId)}`);
  }
  const scope = moduleId === undefined ? 'device' : 'module';
  const identity = identityOf(deviceId, moduleId, records.record, { scope, type: 'sas', issuer: 'iothub' });
  const principal: DevicePrincipal = { kind: 'device', identity, expiresAtMs };
  return { ok: true, principal };
}

/**
 * Checks SASL PLAIN (§3.1): `{deviceId}@sas.{hubName}` or `{deviceId}/modules/{moduleId}@sas.{hubName}` with a
 * device token (or a DeviceConnect policy token); `{policy}@sas.root.{hubName}` with a policy token; and, as Event
 * Hubs tools send it, a bare policy name with the policy's key as the password (also accepted after
 * `@sas.root.{hubName}`). The hub name compares case-insensitively.
 */
export async function checkPlain(
  username: string,
  password: string,
  options: CredentialOptions,
): Promise<CredentialCheck> {
  const { core } = options;
  const hubName = core.context.hubName.toLowerCase();
  const at = username.lastIndexOf('@');
  const name = at < 0 ? username : username.slice(0, at);
  const realm = at < 0 ? undefined : username.slice(at + 1).toLowerCase();
  if (realm === `sas.${hubName}`) {
    const slash = name.indexOf('/');
    const path = slash < 0 ? ['devices', name] : ['devices', name.slice(0, slash), ...name.slice(slash + 1).split('/')];
    const device = deviceOfPath(path);
    if (!device) return refuse(401, `PLAIN username '${username}' names no device or module`);
    const audience = `${core.context.hostName}/${path.join('/')}`;
    return checkToken(audience, password, options);
  }
  if (realm !== undefined && realm !== `sas.root.${hubName}`) {
    return refuse(401, `PLAIN username '${username}' is not for this hub`);
  }
  if (password.trimStart().startsWith('SharedAccessSignature ')) {
    let skn: string | undefined;
    try {
      skn = parseSasToken(password).skn;
    } catch (error) {
      return refuse(401, `not a SAS token: ${(error as Error).message}`);
    }
    if (skn !== name) return refuse(401, `the SAS token is not signed by policy '${name}'`);
    return checkToken(core.context.hostName, password, options);
  }
  const policy = await core.policies.get(name);
  if (!policy || policy.permissions.length === 0) return refuse(401, `no shared access policy '${name}'`);
  const presented = Buffer.from(password, 'utf8');
  let matched = false;
  for (const key of [policy.primaryKey, policy.secondaryKey]) {
    const expected = Buffer.from(key, 'utf8');
    // Both keys are compared: the time taken does not reveal which one matched.
    if (expected.length === presented.length && timingSafeEqual(expected, presented)) matched = true;
  }
  if (!matched) return refuse(401, `wrong key for policy '${name}'`);
  return {
    ok: true,
    principal: { kind: 'service', policyName: policy.name, permissions: policy.permissions, expiresAtMs: undefined },
  };
}

function deviceOfResource(token: SasToken): { deviceId: string; moduleId: string | undefined } | undefined {
  return deviceOfPath(parseAudience(token.resourceUri).path);
}

/**
 * The registration a SASL PLAIN username names for the provisioning service (protocol-device.md §5.3):
 * `{idScope}/registrations/{registrationId}`, exactly three segments; undefined for any other username.
 */
export function parseRegistrationUsername(username: string): { idScope: string; registrationId: string } | undefined {
  const segments = username.split('/');
  if (segments.length !== 3 || segments[1]?.toLowerCase() !== 'registrations') return undefined;
  const [idScope = '', , registrationId = ''] = segments;
  if (idScope === '' || registrationId === '' || username.includes('@')) return undefined;
  return { idScope, registrationId };
}

/**
 * Asks the provisioning service whether `proof` authenticates the registration (`core.dps.authenticate`). A refusal
 * is a 401 whatever the service threw for it (an unknown enrollment, a wrong key, a disabled enrollment, an
 * unverified CA: the device learns no more than over SASL), except a 400 for a malformed registration id. Never
 * throws for bad credentials; errors of the service itself (5xx) propagate.
 */
export async function checkRegistration(
  idScope: string,
  registrationId: string,
  proof: DpsProof,
  core: HubCore,
): Promise<CredentialCheck> {
  try {
    const registration = await core.dps.authenticate(idScope, registrationId, proof);
    const principal: RegistrationPrincipal = {
      kind: 'registration',
      registration,
      expiresAtMs: registration.expiresAtMs,
    };
    return { ok: true, principal };
  } catch (error) {
    if (!HubError.is(error) || error.status >= 500) throw error;
    return refuse(error.status === 400 ? 400 : 401, error.message);
  }
}

/**
 * The certificate chain a TLS peer presented, leaf first, PEM (what `DpsProof` x509 carries, §6: leaf and
 * intermediates; the root is not required). Empty when the peer presented none.
 */
export function peerCertificateChain(peer: DetailedPeerCertificate | undefined): string[] {
  if (!peer?.raw || peer.raw.length === 0) return [];
  const chain = [derToPem(peer.raw, 'CERTIFICATE')];
  let current = peer;
  // Node links a self-signed certificate to itself: stop there, and after a chain no device sends.
  for (let depth = 0; depth < 8; depth++) {
    const issuer = current.issuerCertificate;
    if (!issuer?.raw || issuer === current || issuer.fingerprint256 === current.fingerprint256) break;
    chain.push(derToPem(issuer.raw, 'CERTIFICATE'));
    current = issuer;
  }
  return chain;
}
