/**
 * Credential providers: where the connection manager gets a SAS token or an X.509 certificate before every
 * connection attempt and before a token expires (reference §1.2 token format, §1.3 renewal: TTL 3600 s, margin
 * 900 s).
 */
import {
  base64Decode,
  base64Encode,
  deviceResourceUri,
  formatSasToken,
  hmacSha256,
  moduleResourceUri,
  parseDeviceConnectionString,
  parseSasToken,
  sasStringToSign,
  utf8Encode,
} from '@fieldhub/protocol';
import { type Clock, systemClock } from './clock';
import { ArgumentError } from './errors';
import type { CredentialProvider, TransportCredentials } from './transport/transport';

/** Who a device or module is: the part of a connection string that is not a secret. */
export interface DeviceIdentity {
  /** The hub (`HostName`), used in SAS `sr` and the MQTT username. */
  readonly hostName: string;
  readonly deviceId: string;
  /** Set for a module identity. */
  readonly moduleId?: string;
  /** Where to dial instead of `hostName` (an edge gateway). */
  readonly gatewayHostName?: string;
}

/** HMAC-SHA256 of `message` under `key`; may be async (Web Crypto, node:crypto, a secure element). */
export type SasSigner = (key: Uint8Array, message: Uint8Array) => Uint8Array | Promise<Uint8Array>;

/** The defaults of SAS tokens made from a key (reference §1.3). */
export const defaultSasToken = { ttlSeconds: 3600, renewalMarginSeconds: 900 } as const;

/** Options of {@link sasKeyCredentialProvider}. */
export interface SasKeyCredentialOptions extends DeviceIdentity {
  /** The base64 device, module or policy key (`SharedAccessKey`). */
  readonly key: string;
  /** The policy name (`SharedAccessKeyName`) when `key` is a policy key; tokens then carry `skn`. */
  readonly keyName?: string;
  /** Token lifetime. Default 3600 s. */
  readonly ttlSeconds?: number;
  /** Renew this long before expiry. Default 900 s; must be less than `ttlSeconds`. */
  readonly renewalMarginSeconds?: number;
  /** Default: the portable HMAC-SHA256 of @fieldhub/protocol. */
  readonly sign?: SasSigner;
  /** Default: the system clock. */
  readonly clock?: Clock;
}

function identityFields(identity: DeviceIdentity): DeviceIdentity {
  return {
    hostName: identity.hostName,
    deviceId: identity.deviceId,
    ...(identity.moduleId !== undefined ? { moduleId: identity.moduleId } : {}),
    ...(identity.gatewayHostName !== undefined ? { gatewayHostName: identity.gatewayHostName } : {}),
  };
}

function resourceUriOf(identity: DeviceIdentity): string {
  return identity.moduleId === undefined
    ? deviceResourceUri(identity.hostName, identity.deviceId)
    : moduleResourceUri(identity.hostName, identity.deviceId, identity.moduleId);
}

function checkIdentity(identity: DeviceIdentity): void {
  if (!identity.hostName) throw new ArgumentError('hostName is required', { field: 'hostName' });
  if (!identity.deviceId) throw new ArgumentError('deviceId is required', { field: 'deviceId' });
  resourceUriOf(identity);
}

/**
 * Caches one token and hands it out until it is within the renewal margin of its expiry (or `refresh` is asked).
 * Concurrent callers share one signing.
 */
function cachingSasProvider(
  identity: DeviceIdentity,
  renewalMarginSeconds: number,
  clock: Clock,
  makeToken: (signal: AbortSignal | undefined) => Promise<TransportCredentials>,
): CredentialProvider {
  let cached: TransportCredentials | undefined;
  let pending: Promise<TransportCredentials> | undefined;
  return {
    ...identityFields(identity),
    kind: 'sas',
    renewalMarginSeconds,
    getCredentials(options = {}) {
      const fresh =
        cached?.sasTokenExpiresAt !== undefined &&
        cached.sasTokenExpiresAt - clock.now() > renewalMarginSeconds * 1000 &&
        options.refresh !== true;
      if (fresh && cached) return Promise.resolve(cached);
      if (!pending) {
        pending = makeToken(options.signal).then(
          (credentials) => {
            cached = credentials;
            pending = undefined;
            return credentials;
          },
          (error: unknown) => {
            pending = undefined;
            throw error;
          },
        );
      }
      return pending;
    },
  };
}

/**
 * Signs SAS tokens with a device, module or policy key: `sr` = the identity's resource URI, `se` = now + TTL.
 *
 * @throws ArgumentError when the identity is incomplete, the key is not base64, or the TTL is not above the margin.
 * @example
 * ```ts
 * const credentialProvider = sasKeyCredentialProvider({ hostName: 'hub.local', deviceId: 'd1', key });
 * ```
 */
export function sasKeyCredentialProvider(options: SasKeyCredentialOptions): CredentialProvider {
  checkIdentity(options);
  const ttlSeconds = options.ttlSeconds ?? defaultSasToken.ttlSeconds;
  const renewalMarginSeconds = options.renewalMarginSeconds ?? defaultSasToken.renewalMarginSeconds;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new ArgumentError('ttlSeconds must be a positive integer', { field: 'ttlSeconds' });
  }
  if (!(renewalMarginSeconds >= 0) || renewalMarginSeconds >= ttlSeconds) {
    throw new ArgumentError('renewalMarginSeconds must be >= 0 and less than ttlSeconds', {
      field: 'renewalMarginSeconds',
    });
  }
  const key = base64Decode(options.key);
  const sign: SasSigner = options.sign ?? hmacSha256;
  const clock = options.clock ?? systemClock;
  const resourceUri = resourceUriOf(options);
  const identity = identityFields(options);
  return cachingSasProvider(options, renewalMarginSeconds, clock, async () => {
    const expiry = Math.floor(clock.now() / 1000) + ttlSeconds;
    const signature = base64Encode(await sign(key, utf8Encode(sasStringToSign(resourceUri, expiry))));
    const sasToken = formatSasToken({
      resourceUri,
      signature,
      expiry,
      ...(options.keyName !== undefined ? { keyName: options.keyName } : {}),
    });
    return { ...identity, sasToken, sasTokenExpiresAt: expiry * 1000 };
  });
}

/** What an external signer is asked for. */
export interface SasTokenRequest {
  /** The resource URI the token must grant (`{host}/devices/{id}[/modules/{mid}]`), not encoded. */
  readonly resourceUri: string;
  /** Set when the hub refused the previous token (make a new one, do not return a cached one). */
  readonly refresh: boolean;
  readonly signal?: AbortSignal;
}

/** Options of {@link sasTokenCredentialProvider}. */
export interface SasTokenCredentialOptions extends DeviceIdentity {
  /** Returns a complete token (`SharedAccessSignature sr=...&sig=...&se=...`), signed wherever (TPM, bridge). */
  readonly getToken: (request: SasTokenRequest) => string | Promise<string>;
  /** Ask for a new token this long before the last one expires. Default 900 s. */
  readonly renewalMarginSeconds?: number;
  /** Default: the system clock. */
  readonly clock?: Clock;
}

/**
 * Credentials from tokens signed elsewhere (a TPM, the firmware bridge, a token service): `getToken` is called
 * when there is no token yet, when the last one is within the renewal margin of expiry, and after the hub refused
 * one. The token's `se` gives its expiry.
 *
 * @throws ArgumentError (from `getCredentials`) when `getToken` returns something that is not a SAS token.
 * @example
 * ```ts
 * const credentialProvider = sasTokenCredentialProvider({ hostName, deviceId, getToken: () => tpm.sign() });
 * ```
 */
export function sasTokenCredentialProvider(options: SasTokenCredentialOptions): CredentialProvider {
  checkIdentity(options);
  const renewalMarginSeconds = options.renewalMarginSeconds ?? defaultSasToken.renewalMarginSeconds;
  const resourceUri = resourceUriOf(options);
  const identity = identityFields(options);
  let refreshNext = false;
  const provider = cachingSasProvider(options, renewalMarginSeconds, options.clock ?? systemClock, async (signal) => {
    const sasToken = await options.getToken({ resourceUri, refresh: refreshNext, ...(signal ? { signal } : {}) });
    const parsed = parseSasToken(sasToken);
    return { ...identity, sasToken, sasTokenExpiresAt: parsed.se * 1000 };
  });
  return {
    ...provider,
    getCredentials(getOptions = {}) {
      refreshNext = getOptions.refresh === true;
      return provider.getCredentials(getOptions);
    },
  };
}

/**
 * A fixed token (a connection string's `SharedAccessSignature`): it cannot be renewed, so the connection lasts
 * until the token expires and the hub closes it.
 *
 * @throws ArgumentError when `sasToken` is not a SAS token.
 */
export function staticSasTokenCredentialProvider(identity: DeviceIdentity, sasToken: string): CredentialProvider {
  checkIdentity(identity);
  const expiresAt = parseSasToken(sasToken).se * 1000;
  const credentials: TransportCredentials = { ...identityFields(identity), sasToken, sasTokenExpiresAt: expiresAt };
  return {
    ...identityFields(identity),
    kind: 'sas',
    renewalMarginSeconds: 0,
    getCredentials: () => Promise.resolve(credentials),
  };
}

/** Options of {@link x509CredentialProvider}. */
export interface X509CredentialOptions extends DeviceIdentity {
  /** PEM client certificate (chain, leaf first). */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
  readonly passphrase?: string;
}

/**
 * Credentials of a device that authenticates with a client certificate (TLS); nothing expires.
 *
 * @throws ArgumentError when the identity is incomplete or `cert`/`key` is empty.
 */
export function x509CredentialProvider(options: X509CredentialOptions): CredentialProvider {
  checkIdentity(options);
  if (!options.cert) throw new ArgumentError('x509.cert is required', { field: 'cert' });
  if (!options.key) throw new ArgumentError('x509.key is required', { field: 'key' });
  const identity = identityFields(options);
  const credentials: TransportCredentials = {
    ...identity,
    x509: {
      certificate: options.cert,
      privateKey: options.key,
      ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}),
    },
  };
  return { ...identity, kind: 'x509', getCredentials: () => Promise.resolve(credentials) };
}

/** Options of {@link credentialProviderFromConnectionString}. */
export interface ConnectionStringCredentialOptions {
  /** Certificate and key, required with `x509=true` and refused otherwise. */
  readonly x509?: { readonly cert: string; readonly key: string; readonly passphrase?: string };
  /** Token lifetime for `SharedAccessKey`. Default 3600 s. */
  readonly ttlSeconds?: number;
  /** Default 900 s. */
  readonly renewalMarginSeconds?: number;
  /** HMAC signer for `SharedAccessKey`; default the portable one. */
  readonly sign?: SasSigner;
  readonly clock?: Clock;
}

/**
 * The provider a device connection string calls for (§1.1): `SharedAccessKey` signs renewable tokens,
 * `SharedAccessSignature` is a fixed token, `x509=true` takes `options.x509`. `ModuleId` makes it a module
 * identity and `GatewayHostName` is where the transport dials.
 *
 * @throws ArgumentError when the connection string is malformed or incomplete (see `parseDeviceConnectionString`),
 * when `x509=true` comes without `options.x509`, or `options.x509` comes with a SAS connection string.
 */
export function credentialProviderFromConnectionString(
  connectionString: string,
  options: ConnectionStringCredentialOptions = {},
): CredentialProvider {
  const cs = parseDeviceConnectionString(connectionString);
  const identity: DeviceIdentity = identityFields(cs);
  if (cs.x509 === true) {
    if (!options.x509) {
      throw new ArgumentError('the connection string says x509=true: pass x509: { cert, key }', { field: 'x509' });
    }
    return x509CredentialProvider({ ...identity, ...options.x509 });
  }
  if (options.x509) {
    throw new ArgumentError('x509 options need a connection string with x509=true', { field: 'x509' });
  }
  if (cs.sharedAccessSignature !== undefined)
    return staticSasTokenCredentialProvider(identity, cs.sharedAccessSignature);
  return sasKeyCredentialProvider({
    ...identity,
    key: cs.sharedAccessKey as string,
    ...(cs.sharedAccessKeyName !== undefined ? { keyName: cs.sharedAccessKeyName } : {}),
    ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}),
    ...(options.renewalMarginSeconds !== undefined ? { renewalMarginSeconds: options.renewalMarginSeconds } : {}),
    ...(options.sign !== undefined ? { sign: options.sign } : {}),
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
  });
}
