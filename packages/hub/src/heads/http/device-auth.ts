/**
 * Authentication of a device's (or module's) HTTPS request (protocol-device.md §4): the `Authorization` header
 * carries a SAS token (the identity's key, or a policy with DeviceConnect), or, without the header, the TLS client
 * certificate authenticates an X.509 identity (thumbprint or CA chain). The same checks as the MQTT and AMQP heads
 * (`heads/mqtt/authenticate.ts`), once per request: HTTPS has no session.
 */
import type { TLSSocket } from 'node:tls';
import { parseSasToken, sasTokenDefaults } from '@fieldhub/auth';
import { AuthenticationError, type SasToken } from '@fieldhub/protocol';
import type { FastifyRequest } from 'fastify';
import type { HubCore } from '../../core/hub-core';
import type { ConnectionAuthMethod } from '../../core/telemetry';
import {
  authenticateCertificate,
  checkDeviceSasToken,
  identityOf,
  recordsOf,
  resourceCovers,
} from '../mqtt/authenticate';
import type { SessionIdentity } from '../mqtt/session';

/**
 * Who sent `request`, which must be `deviceId` (and `moduleId`).
 * @throws AuthenticationError (401 IotHubUnauthorizedAccess) for a missing, malformed, expired or wrong token, an
 * unknown or disabled identity, or a refused certificate. The reason goes to the debug log, not to the caller
 * (Azure answers every refusal alike).
 */
export async function authenticateDeviceRequest(
  core: HubCore,
  request: FastifyRequest,
  deviceId: string,
  moduleId?: string,
): Promise<SessionIdentity> {
  const refuse = (reason: string): never => {
    request.log.debug({ deviceId, moduleId, url: request.url, reason }, 'device request refused');
    throw new AuthenticationError('Unauthorized');
  };
  const records = await recordsOf(core, deviceId, moduleId);
  if (typeof records === 'string') return refuse(records);
  const { record } = records;
  const scope: ConnectionAuthMethod['scope'] = moduleId === undefined ? 'device' : 'module';
  const clockSkewSeconds = sasTokenDefaults.clockSkewSeconds;

  const header = request.headers.authorization;
  if (header === undefined || header === '') {
    const socket = request.raw.socket as Partial<TLSSocket>;
    const peerCertificate =
      typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(true) : undefined;
    const identity = identityOf(deviceId, moduleId, record, { scope, type: 'x509', issuer: 'iothub' });
    const outcome = await authenticateCertificate(
      record,
      deviceId,
      moduleId,
      {
        core,
        peerCertificate: peerCertificate && Object.keys(peerCertificate).length > 0 ? peerCertificate : undefined,
        certificateAuthorities: core.certificateAuthorities,
        clockSkewSeconds,
      },
      identity,
    );
    return outcome.ok ? outcome.identity : refuse(outcome.reason);
  }

  let token: SasToken;
  try {
    token = parseSasToken(header);
  } catch {
    return refuse('Authorization header is not a SAS token');
  }
  if (token.skn !== undefined) {
    try {
      await core.policies.authorizeDeviceConnectPolicyToken(header, deviceId, moduleId);
    } catch (error) {
      return refuse(`policy token refused: ${(error as Error).message}`);
    }
    return identityOf(deviceId, moduleId, record, { scope: 'hub', type: 'sas', issuer: 'iothub' });
  }
  if (record.authentication.type !== 'sas') return refuse(`identity authenticates with ${record.authentication.type}`);
  const { primaryKey, secondaryKey } = record.authentication.symmetricKey;
  const refusal = checkDeviceSasToken(token, [primaryKey, secondaryKey], core.context.now(), clockSkewSeconds);
  if (refusal !== undefined) return refuse(refusal);
  if (!resourceCovers(token.resourceUri, core.context.hostName, deviceId, moduleId)) {
    return refuse(`SAS token for '${token.resourceUri}' does not cover this identity`);
  }
  return identityOf(deviceId, moduleId, record, { scope, type: 'sas', issuer: 'iothub' });
}
