import {
  ArgumentError,
  AuthenticationError,
  base64Encode,
  encodeSasComponent,
  parseSasToken,
  type SasToken,
  sasStringToVerify,
  sasTokenPrefix,
  timingSafeEqual,
  utf8Encode,
} from '@fieldhub/protocol';
import { decodeKey, hmacSha256Async, hmacSha256Sync, throwIfAborted } from './hmac';

export { parseSasToken, type SasToken };

/** Defaults shared by signer and verifier (reference protocol-device.md §1.3). */
export const sasTokenDefaults = {
  /** Token lifetime of the Node SDK's key-based provider. */
  ttlSeconds: 3600,
  /** The Node SDK renews this long before expiry (every 45 min for a 1 h token). */
  renewalMarginSeconds: 900,
  /** Clock skew a verifier tolerates past `se`. */
  clockSkewSeconds: 300,
} as const;

/** Options of {@link createSasToken}. */
export interface CreateSasTokenOptions {
  /**
   * The resource, not encoded: `host/devices/d1`, `host/devices/d1/modules/m1`, `host` (service), or
   * `idScope/registrations/r1` (DPS). Builders: `deviceResourceUri` & co. in @fieldhub/protocol.
   */
  resourceUri: string;
  /** The shared access key, base64 (device, module, policy or enrollment key). */
  key: string;
  /** The policy name (`skn`); omit for device and module keys. */
  keyName?: string;
  /** Expiry as a Date or as whole seconds since the epoch. Exclusive with `ttlSeconds`. */
  expiresAt?: Date | number;
  /** Lifetime from `now`. Default 3600 when `expiresAt` is not given. */
  ttlSeconds?: number;
  /** The clock. Default `new Date()`. */
  now?: Date;
  /**
   * Percent-encode `sr` (default `true`, as the Node device and module SDKs do). `false` writes the resource URI
   * raw, as Node's DPS client does (`sr=0ne00000001/registrations/r1`); the signature covers `sr` either way.
   */
  encodeResourceUri?: boolean;
}

function expirySeconds(options: CreateSasTokenOptions): number {
  if (options.expiresAt !== undefined && options.ttlSeconds !== undefined) {
    throw new ArgumentError('give expiresAt or ttlSeconds, not both', { field: 'expiresAt' });
  }
  const { expiresAt } = options;
  if (expiresAt instanceof Date) {
    const ms = expiresAt.getTime();
    if (Number.isNaN(ms)) throw new ArgumentError('expiresAt is an invalid Date', { field: 'expiresAt' });
    return Math.floor(ms / 1000);
  }
  if (expiresAt !== undefined) {
    if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
      throw new ArgumentError('expiresAt must be whole seconds since the epoch', { field: 'expiresAt' });
    }
    return expiresAt;
  }
  const ttl = options.ttlSeconds ?? sasTokenDefaults.ttlSeconds;
  if (!Number.isSafeInteger(ttl) || ttl <= 0) {
    throw new ArgumentError('ttlSeconds must be a positive whole number', { field: 'ttlSeconds' });
  }
  const now = options.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new ArgumentError('now must be a valid Date', { field: 'now' });
  }
  // Node: se = floor(now in seconds) + ttl (azure-iot-device SharedAccessKeyAuthenticationProvider).
  return Math.floor(now.getTime() / 1000) + ttl;
}

interface PreparedToken {
  sr: string;
  se: number;
  keyName: string | undefined;
  key: Uint8Array;
}

function prepare(options: CreateSasTokenOptions): PreparedToken {
  if (typeof options !== 'object' || options === null) {
    throw new ArgumentError('options are required', { field: 'options' });
  }
  const { resourceUri, keyName } = options;
  if (typeof resourceUri !== 'string' || resourceUri.length === 0) {
    throw new ArgumentError('resourceUri must be a non-empty string', { field: 'resourceUri' });
  }
  if (keyName !== undefined && (typeof keyName !== 'string' || keyName.length === 0)) {
    throw new ArgumentError('keyName must be a non-empty string', { field: 'keyName' });
  }
  const sr = options.encodeResourceUri === false ? resourceUri : encodeSasComponent(resourceUri);
  if (/[\s&]/.test(sr)) {
    throw new ArgumentError('an unencoded resourceUri must not contain whitespace or &', { field: 'resourceUri' });
  }
  return { sr, se: expirySeconds(options), keyName, key: decodeKey(options.key, 'key') };
}

function format(token: PreparedToken, signature: Uint8Array): string {
  // Node's field order: sr, sig, skn, se (protocol-service.md §0.12).
  let text = `${sasTokenPrefix} sr=${token.sr}&sig=${encodeSasComponent(base64Encode(signature), 'sig')}`;
  if (token.keyName !== undefined) text += `&skn=${encodeSasComponent(token.keyName, 'keyName')}`;
  return `${text}&se=${token.se}`;
}

/**
 * Signs a SAS token exactly as the Azure IoT Node SDKs do:
 * `SharedAccessSignature sr=<encoded uri>&sig=<encoded base64 HMAC-SHA256>[&skn=<policy>]&se=<seconds>`, the
 * HMAC keyed with the base64-decoded key over `sr + "\n" + se` (reference protocol-device.md §1.2).
 * Uses Web Crypto when available.
 *
 * @example
 * ```ts
 * const token = await createSasToken({ resourceUri: 'myhub.example/devices/d1', key, ttlSeconds: 3600 });
 * ```
 * @throws ArgumentError (naming the field) when the resource URI, key, key name or expiry is missing or invalid.
 */
export async function createSasToken(options: CreateSasTokenOptions): Promise<string> {
  const token = prepare(options);
  return format(token, await hmacSha256Async(token.key, `${token.sr}\n${token.se}`));
}

/**
 * {@link createSasToken}, synchronously, with the portable HMAC of @fieldhub/protocol (for code that cannot
 * await, e.g. a token provider called from a synchronous callback). Same output.
 * @throws ArgumentError as {@link createSasToken}.
 */
export function createSasTokenSync(options: CreateSasTokenOptions): string {
  const token = prepare(options);
  return format(token, hmacSha256Sync(token.key, `${token.sr}\n${token.se}`));
}

/**
 * Finds the candidate keys (base64) for a token, given its parsed fields: by `skn` for policy tokens, by the
 * device or module named in `resourceUri` otherwise. Return none (`undefined` or `[]`) when the identity is
 * unknown: verification then fails with AuthenticationError.
 */
export type SasKeyResolver = (
  token: SasToken,
  options: { signal?: AbortSignal },
) => string | readonly string[] | undefined | Promise<string | readonly string[] | undefined>;

/** Options of {@link verifySasToken}. */
export interface VerifySasTokenOptions {
  /** The key(s) to try (primary, secondary), or a resolver choosing them from the token. */
  keys: string | readonly string[] | SasKeyResolver;
  /**
   * The resource being accessed, not encoded (`host/devices/d1`). The token's decoded `sr` must equal it or be a
   * prefix of it by whole path segments (`host` and `host/devices` cover `host/devices/d1`; `host/devices/d`
   * does not). The host part compares case-insensitively, the path exactly; a `scheme://` and a trailing `/`
   * are ignored on both. Omit to skip this check (then use `authorize`).
   */
  expectedResourceUri?: string;
  /**
   * Final say after signature, expiry and resource checks pass, e.g. "the policy named by `keyName` has
   * DeviceConnect". Return false to refuse.
   */
  authorize?: (token: VerifiedSasToken) => boolean | Promise<boolean>;
  /** The clock. Default `new Date()`. */
  now?: Date;
  /** Seconds a token stays acceptable after `se`. Default 300. */
  clockSkewSeconds?: number;
  /** Aborts a slow key lookup or authorisation; passed on to `keys` when it is a resolver. */
  signal?: AbortSignal;
}

/** A token that verified. */
export interface VerifiedSasToken {
  /** The decoded `sr`: the resource the token grants. */
  resourceUri: string;
  /** The policy name (`skn`), if the token was signed with a policy key. */
  keyName?: string;
  /** When the token expires (`se`). */
  expiresAt: Date;
  /** Which of the candidate keys matched (0 = primary). */
  keyIndex: number;
}

interface SplitUri {
  host: string;
  path: string[];
}

function splitUri(uri: string): SplitUri {
  const withoutScheme = uri.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/+$/, '');
  const [host = '', ...path] = withoutScheme.split('/');
  return { host: host.toLowerCase(), path };
}

/**
 * Whether a token for `granted` covers `requested`: same host (case-insensitive) and `granted`'s path is a
 * whole-segment prefix of `requested`'s (reference protocol-device.md §1.2).
 */
export function sasResourceCovers(granted: string, requested: string): boolean {
  const a = splitUri(granted);
  const b = splitUri(requested);
  if (a.host === '' || a.host !== b.host || a.path.length > b.path.length) return false;
  return a.path.every((segment, i) => segment === b.path[i]);
}

function candidateKeys(value: string | readonly string[] | undefined): readonly string[] {
  if (value === undefined) return [];
  return typeof value === 'string' ? [value] : value;
}

/**
 * Verifies a SAS token the way IoT Hub does (reference protocol-device.md §0.2, §1.2; protocol-service.md §0.12):
 * parse the fields in any order; recompute the HMAC over the LITERAL `sr` (still encoded, whatever encoding the
 * client chose) and `se`; compare in constant time against each candidate key; refuse it when `se` + skew has
 * passed; then authorise on the DECODED `sr` (see `expectedResourceUri`) and the `authorize` callback.
 *
 * @example
 * ```ts
 * const ok = await verifySasToken(token, { keys: [primary, secondary], expectedResourceUri: 'myhub.example/devices/d1' });
 * ```
 * @throws ArgumentError when the options are invalid (no keys option, a key that is not base64, a negative skew).
 * @throws AbortError when `signal` aborts.
 * @throws AuthenticationError when the token is malformed (the parse error is its `cause`), no key is found,
 * the signature does not match, it has expired, or it does not cover the resource or is refused by `authorize`.
 */
export async function verifySasToken(token: string, options: VerifySasTokenOptions): Promise<VerifiedSasToken> {
  if (typeof options !== 'object' || options === null || options.keys === undefined) {
    throw new ArgumentError('keys are required', { field: 'keys' });
  }
  const skew = options.clockSkewSeconds ?? sasTokenDefaults.clockSkewSeconds;
  if (!Number.isFinite(skew) || skew < 0) {
    throw new ArgumentError('clockSkewSeconds must be a non-negative number', { field: 'clockSkewSeconds' });
  }
  const now = options.now ?? new Date();
  let parsed: SasToken;
  try {
    if (typeof token !== 'string') throw new ArgumentError('a SAS token must be a string', { field: 'sasToken' });
    parsed = parseSasToken(token);
  } catch (error) {
    throw new AuthenticationError(`malformed SAS token: ${(error as Error).message}`, { cause: error });
  }

  const { signal } = options;
  throwIfAborted(signal);
  const keys = candidateKeys(
    typeof options.keys === 'function' ? await options.keys(parsed, signal ? { signal } : {}) : options.keys,
  );
  throwIfAborted(signal);
  if (keys.length === 0) throw new AuthenticationError('no key is known for this SAS token');
  const presented = utf8Encode(parsed.sig);
  const stringToVerify = sasStringToVerify(parsed);
  let keyIndex = -1;
  for (let i = 0; i < keys.length; i++) {
    const expected = base64Encode(await hmacSha256Async(decodeKey(keys[i], `keys[${i}]`), stringToVerify));
    // Keep checking the remaining keys even after a match: the time taken does not reveal which key matched.
    if (timingSafeEqual(utf8Encode(expected), presented) && keyIndex < 0) keyIndex = i;
  }
  if (keyIndex < 0) throw new AuthenticationError('SAS token signature does not match');

  if (now.getTime() / 1000 > parsed.se + skew) {
    throw new AuthenticationError(`SAS token expired at ${new Date(parsed.se * 1000).toISOString()}`);
  }
  const verified: VerifiedSasToken = {
    resourceUri: parsed.resourceUri,
    expiresAt: new Date(parsed.se * 1000),
    keyIndex,
  };
  if (parsed.skn !== undefined) verified.keyName = parsed.skn;
  if (
    options.expectedResourceUri !== undefined &&
    !sasResourceCovers(parsed.resourceUri, options.expectedResourceUri)
  ) {
    throw new AuthenticationError(
      `SAS token for '${parsed.resourceUri}' does not grant '${options.expectedResourceUri}'`,
    );
  }
  const allowed = options.authorize ? await options.authorize(verified) : true;
  throwIfAborted(signal);
  if (!allowed) {
    throw new AuthenticationError(`SAS token for '${parsed.resourceUri}' is not authorized`);
  }
  return verified;
}
