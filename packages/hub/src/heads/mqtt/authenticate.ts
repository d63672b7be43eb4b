/**
 * CONNECT authentication of a device or module (protocol-device.md §1.2, §2.2, §6): client id, username, then a
 * SAS token (identity key or a DeviceConnect policy) or, without a password, the TLS client certificate
 * (thumbprint or CA chain). Returns an identity or a refusal with its CONNACK return code; never throws for bad
 * credentials.
 *
 * CONNACK codes, where the reference leaves them UNCONFIRMED (§2.2): 2 for a client id that is not a valid
 * `deviceId` or `deviceId/moduleId`; 4 for a missing or malformed username, a username naming another identity
 * than the client id, or a password that is not a SAS token; 5 for everything about the credentials themselves
 * (unknown identity, disabled device, wrong key, expired token, wrong certificate). The Node SDK maps 2, 4 and 5
 * alike to UnauthorizedError.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { DetailedPeerCertificate } from 'node:tls';
import { derToPem, matchesThumbprint, parseSasToken, type SasToken } from '@fieldhub/auth';
import { isValidDeviceId, isValidModuleId, parseMqttUsername } from '@fieldhub/protocol';
import type { IConnectPacket } from 'mqtt-packet';
import type { HubCore } from '../../core/hub-core';
import { type DeviceRecord, identityKey, type ModuleRecord } from '../../core/registry-records';
import type { ConnectionAuthMethod } from '../../core/telemetry';
import type { CertificateChainAuthenticator, SessionIdentity } from './session';

/** The outcome of {@link authenticateConnect}. */
export type ConnectAuthentication =
  | {
      readonly ok: true;
      readonly identity: SessionIdentity;
      /** When the SAS token stops being accepted (ms since epoch); undefined for X.509. */
      readonly expiresAtMs: number | undefined;
    }
  | { readonly ok: false; readonly returnCode: 2 | 4 | 5; readonly reason: string };

/** What authentication needs besides the packet. */
export interface AuthenticateOptions {
  readonly core: HubCore;
  /** The TLS client certificate with its chain, if any. */
  readonly peerCertificate: DetailedPeerCertificate | undefined;
  readonly certificateAuthorities: CertificateChainAuthenticator;
  readonly clockSkewSeconds: number;
}

const refuse = (returnCode: 2 | 4 | 5, reason: string): ConnectAuthentication => ({ ok: false, returnCode, reason });

/** Splits `deviceId` or `deviceId/moduleId` (§2.2), or undefined when it is neither. */
export function parseClientId(clientId: string): { deviceId: string; moduleId: string | undefined } | undefined {
  const slash = clientId.indexOf('/');
  const deviceId = slash < 0 ? clientId : clientId.slice(0, slash);
  const moduleId = slash < 0 ? undefined : clientId.slice(slash + 1);
  if (!isValidDeviceId(deviceId)) return undefined;
  if (moduleId !== undefined && !isValidModuleId(moduleId)) return undefined;
  return { deviceId, moduleId };
}

/** `host[:port]` -> lower-case host without the port (§1.2: the captured SDK puts `localhost:41883` in `sr`). */
export function normalizeHost(host: string): string {
  const colon = host.lastIndexOf(':');
  const bare = colon > 0 && /^\d+$/.test(host.slice(colon + 1)) ? host.slice(0, colon) : host;
  return bare.toLowerCase();
}

/**
 * Whether a token's decoded resource covers the identity: this hub's host (case-insensitive, port ignored) and a
 * whole-segment prefix of `devices/<id>[/modules/<mid>]` (§1.2).
 */
export function resourceCovers(resourceUri: string, hostName: string, deviceId: string, moduleId?: string): boolean {
  const [host = '', ...rest] = resourceUri.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/');
  const path = rest.filter((segment) => segment !== '');
  const target = moduleId === undefined ? ['devices', deviceId] : ['devices', deviceId, 'modules', moduleId];
  if (normalizeHost(host) !== normalizeHost(hostName) || path.length > target.length) return false;
  return path.every((segment, i) => segment === target[i]);
}

/** Authenticates a CONNECT. */
export async function authenticateConnect(
  packet: IConnectPacket,
  options: AuthenticateOptions,
): Promise<ConnectAuthentication> {
  const ids = parseClientId(packet.clientId ?? '');
  if (!ids) return refuse(2, 'client id is not a valid deviceId or deviceId/moduleId');
  const { deviceId, moduleId } = ids;

  if (packet.username === undefined || packet.username === '') return refuse(4, 'no username');
  let username: ReturnType<typeof parseMqttUsername>;
  try {
    username = parseMqttUsername(packet.username);
  } catch {
    return refuse(4, 'malformed username');
  }
  if (username.deviceId !== deviceId || username.moduleId !== moduleId) {
    return refuse(4, 'username names another identity than the client id');
  }

  const { core } = options;
  const records = await recordsOf(core, deviceId, moduleId);
  if (typeof records === 'string') return refuse(5, records);
  const { record } = records;

  const scope: ConnectionAuthMethod['scope'] = moduleId === undefined ? 'device' : 'module';
  const identity = (authMethod: ConnectionAuthMethod): SessionIdentity =>
    identityOf(deviceId, moduleId, record, authMethod);

  const password = packet.password === undefined ? '' : packet.password.toString('utf8');
  if (password === '') return authenticateCertificate(record, deviceId, moduleId, options, identity(x509(scope)));

  let token: SasToken;
  try {
    token = parseSasToken(password);
  } catch {
    return refuse(4, 'password is not a SAS token');
  }
  const skewMs = options.clockSkewSeconds * 1000;
  const expiresAtMs = token.se * 1000 + skewMs;
  if (token.skn !== undefined) {
    try {
      await core.policies.authorizeDeviceConnectPolicyToken(password, deviceId, moduleId);
    } catch (error) {
      return refuse(5, `policy token refused: ${(error as Error).message}`);
    }
    return { ok: true, identity: identity({ scope: 'hub', type: 'sas', issuer: 'iothub' }), expiresAtMs };
  }

  if (record.authentication.type !== 'sas')
    return refuse(5, `identity authenticates with ${record.authentication.type}`);
  const { primaryKey, secondaryKey } = record.authentication.symmetricKey;
  const refusal = checkDeviceSasToken(token, [primaryKey, secondaryKey], core.context.now(), options.clockSkewSeconds);
  if (refusal !== undefined) return refuse(5, `SAS token refused: ${refusal}`);
  if (!resourceCovers(token.resourceUri, core.context.hostName, deviceId, moduleId)) {
    return refuse(5, `SAS token refused: SAS token for '${token.resourceUri}' is not authorized`);
  }
  return { ok: true, identity: identity({ scope, type: 'sas', issuer: 'iothub' }), expiresAtMs };
}

/**
 * The registry records of a device (and module), or why it may not connect: unknown, or its device disabled (a
 * module connects under its device: a disabled device disables its modules too). Every device head asks this.
 */
export async function recordsOf(
  core: HubCore,
  deviceId: string,
  moduleId: string | undefined,
): Promise<{ device: DeviceRecord; record: DeviceRecord | ModuleRecord } | string> {
  const device = await core.registry.getDeviceRecord(deviceId);
  if (!device) return `unknown device '${deviceId}'`;
  let record: DeviceRecord | ModuleRecord = device;
  if (moduleId !== undefined) {
    const module = await core.registry.getModuleRecord(deviceId, moduleId);
    if (!module) return `unknown module '${deviceId}/${moduleId}'`;
    record = module;
  }
  if (device.status !== 'enabled') return `device '${deviceId}' is disabled`;
  return { device, record };
}

/** The session identity of a device or module authorized by `authMethod`. */
export function identityOf(
  deviceId: string,
  moduleId: string | undefined,
  record: DeviceRecord | ModuleRecord,
  authMethod: ConnectionAuthMethod,
): SessionIdentity {
  return { deviceId, moduleId, key: identityKey(deviceId, moduleId), authMethod, generationId: record.generationId };
}

/**
 * Checks a device or module token as @fieldhub/auth's `verifySasToken` does (HMAC-SHA256 over the literal `sr`
 * and `se`, constant-time comparison against each key, expiry with clock skew), but synchronously with
 * node:crypto: Web Crypto's importKey + sign cost ~0.5 ms of main-thread CPU per CONNECT and a thread-pool round
 * trip (the W6 connect-storm profile). Returns why the token is refused, or undefined when it is accepted.
 */
export function checkDeviceSasToken(
  token: SasToken,
  keys: readonly (string | null | undefined)[],
  nowMs: number,
  clockSkewSeconds: number,
): string | undefined {
  const presented = Buffer.from(token.sig, 'utf8');
  const stringToVerify = `${token.sr}\n${token.se}`;
  let known = 0;
  let matched = false;
  for (const key of keys) {
    if (typeof key !== 'string' || key === '') continue;
    const secret = Buffer.from(key, 'base64');
    if (secret.length === 0) continue;
    known++;
    const expected = Buffer.from(createHmac('sha256', secret).update(stringToVerify, 'utf8').digest('base64'), 'utf8');
    // Every key is checked even after a match: the time taken does not reveal which key matched.
    if (expected.length === presented.length && timingSafeEqual(expected, presented)) matched = true;
  }
  if (known === 0) return 'no key is known for this SAS token';
  if (!matched) return 'SAS token signature does not match';
  if (nowMs / 1000 > token.se + clockSkewSeconds) {
    return `SAS token expired at ${new Date(token.se * 1000).toISOString()}`;
  }
  return undefined;
}

function x509(scope: ConnectionAuthMethod['scope']): ConnectionAuthMethod {
  return { scope, type: 'x509', issuer: 'iothub' };
}

/**
 * Checks the TLS client certificate of an identity that authenticates with X.509 (§6): its thumbprint
 * (`selfSigned`) or its chain to a verified CA whose leaf names the identity (`certificateAuthority`). Shared with
 * the AMQP head, where a device that presented a certificate and did no CBS is authorized by it.
 */
export async function authenticateCertificate(
  record: DeviceRecord | ModuleRecord,
  deviceId: string,
  moduleId: string | undefined,
  options: AuthenticateOptions,
  identity: SessionIdentity,
): Promise<ConnectAuthentication> {
  const { type } = record.authentication;
  if (type !== 'selfSigned' && type !== 'certificateAuthority') {
    return refuse(5, `no password, and the identity authenticates with ${type}`);
  }
  const peer = options.peerCertificate;
  if (!peer?.raw || peer.raw.length === 0) return refuse(5, 'no password and no client certificate');
  const leaf = derToPem(peer.raw, 'CERTIFICATE');
  try {
    if (type === 'selfSigned') {
      const { primaryThumbprint, secondaryThumbprint } = record.authentication.x509Thumbprint;
      if (!matchesThumbprint(leaf, [primaryThumbprint, secondaryThumbprint])) {
        return refuse(5, 'client certificate matches neither registered thumbprint');
      }
      return { ok: true, identity, expiresAtMs: undefined };
    }
    // §6, shared with every head: the chain reaches a verified CA and the leaf's CN names the identity. For a
    // module the CN is its module id (UNCONFIRMED in the reference).
    const check = await options.certificateAuthorities.authenticateDevice(moduleId ?? deviceId, [
      leaf,
      ...intermediatesOf(peer),
    ]);
    if (!check.ok) return refuse(5, `client certificate refused: ${check.reason}`);
    return { ok: true, identity, expiresAtMs: undefined };
  } catch (error) {
    return refuse(5, `client certificate refused: ${(error as Error).message}`);
  }
}

/** The certificates the peer sent above its leaf (§6: leaf + intermediates; the root is not required). */
export function intermediatesOf(leaf: DetailedPeerCertificate): string[] {
  const result: string[] = [];
  let current = leaf;
  for (let depth = 0; depth < 8; depth++) {
    const issuer = current.issuerCertificate;
    if (!issuer?.raw || issuer === current || issuer.fingerprint256 === current.fingerprint256) break;
    result.push(derToPem(issuer.raw, 'CERTIFICATE'));
    current = issuer;
  }
  return result;
}
