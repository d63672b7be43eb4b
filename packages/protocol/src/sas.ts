/**
 * SAS tokens as strings: resource URIs, the string to sign, and formatting and parsing of
 * `SharedAccessSignature sr=...&sig=...&se=...[&skn=...]` (reference: protocol-device.md §1.2, §5.5;
 * protocol-service.md §1.3). Signing (HMAC-SHA256) and verification live elsewhere; this file only decides
 * which bytes are signed.
 */
import { ArgumentError } from './errors';
import { percentDecode, percentEncode } from './property-bag';

/** The scheme word every SAS token starts with. */
export const sasTokenPrefix = 'SharedAccessSignature';

/** A parsed SAS token. */
export interface SasToken {
  /** The `sr` field exactly as it appears in the token (usually still percent-encoded): what was signed. */
  sr: string;
  /** `sr` percent-decoded: the resource the token grants access to, e.g. `myhub.example/devices/dev1`. */
  resourceUri: string;
  /** The signature, percent-decoded: base64 of the HMAC-SHA256. */
  sig: string;
  /** Expiry, in whole seconds since the Unix epoch (UTC). */
  se: number;
  /** The shared access policy name, percent-decoded; absent on tokens signed with a device key. */
  skn?: string;
}

/** What {@link formatSasToken} needs. */
export interface SasTokenParts {
  /** The resource URI, not encoded (e.g. from {@link deviceResourceUri}). */
  resourceUri: string;
  /** base64 of the HMAC-SHA256 over {@link sasStringToSign}. */
  signature: string;
  /** Expiry in whole seconds since the Unix epoch. */
  expiry: number;
  /** Policy name (`skn`), for tokens signed with a shared access policy key. */
  keyName?: string;
}

function requireSegment(value: string, field: string): void {
  if (value === '') throw new ArgumentError(`${field} must not be empty`, { field });
  if (value.indexOf('/') >= 0) throw new ArgumentError(`${field} must not contain '/'`, { field });
}

/**
 * The resource URI of a device: `{hostName}/devices/{deviceId}` (the id is not encoded here: Node encodes the
 * whole URI once, when it becomes `sr`).
 *
 * @throws ArgumentError when a part is empty or contains `/`.
 */
export function deviceResourceUri(hostName: string, deviceId: string): string {
  requireSegment(hostName, 'hostName');
  requireSegment(deviceId, 'deviceId');
  return `${hostName}/devices/${deviceId}`;
}

/**
 * The resource URI of a module: `{hostName}/devices/{deviceId}/modules/{moduleId}`.
 *
 * @throws ArgumentError when a part is empty or contains `/`.
 */
export function moduleResourceUri(hostName: string, deviceId: string, moduleId: string): string {
  requireSegment(moduleId, 'moduleId');
  return `${deviceResourceUri(hostName, deviceId)}/modules/${moduleId}`;
}

/**
 * The resource URI of hub-level (service, policy) tokens: the host name itself, port included when there is
 * one (protocol-service.md §1.3).
 *
 * @throws ArgumentError when `hostName` is empty or contains `/`.
 */
export function hubResourceUri(hostName: string): string {
  requireSegment(hostName, 'hostName');
  return hostName;
}

/**
 * The resource URI of a DPS registration: `{idScope}/registrations/{registrationId}` (§5.5).
 *
 * @throws ArgumentError when a part is empty or contains `/`.
 */
export function dpsResourceUri(idScope: string, registrationId: string): string {
  requireSegment(idScope, 'idScope');
  requireSegment(registrationId, 'registrationId');
  return `${idScope}/registrations/${registrationId}`;
}

/**
 * Encodes a resource URI for `sr` the way Node's `encodeUriComponentStrict` does: `encodeURIComponent` and
 * also `! ' ( ) *`, upper-case hex. Real SDKs do not lower-case anything, whatever the docs say (§1.2).
 *
 * @throws ArgumentError when the URI holds an unpaired surrogate.
 */
export function encodeSasComponent(value: string, field = 'resourceUri'): string {
  return percentEncode(value, field).replace(
    /[!'()*]/g,
    (character) => `%${character.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function requireExpiry(expiry: number, field: string): void {
  if (!Number.isSafeInteger(expiry) || expiry < 0) {
    throw new ArgumentError(`${field} must be a non-negative integer number of seconds`, { field });
  }
}

/**
 * The string a signer signs for a token on `resourceUri`: the encoded URI (as {@link formatSasToken} writes
 * `sr`), a line feed, and the expiry. Hash its UTF-8 bytes with HMAC-SHA256 under the base64-decoded key.
 *
 * @throws ArgumentError when `expiry` is not a non-negative safe integer or the URI cannot be encoded.
 */
export function sasStringToSign(resourceUri: string, expiry: number): string {
  requireExpiry(expiry, 'expiry');
  return `${encodeSasComponent(resourceUri)}\n${expiry}`;
}

/**
 * The string a verifier recomputes the HMAC over: `sr` exactly as the token carries it, a line feed, `se`.
 * Clients differ in how (and whether) they encode `sr` (DPS and service tokens from Node are not encoded), so
 * the signature only verifies over the literal text (reference §0.2).
 */
export function sasStringToVerify(token: Pick<SasToken, 'sr' | 'se'>): string {
  return `${token.sr}\n${token.se}`;
}

/**
 * Formats a token in Node's field order `sr, sig, skn, se`, with `sr`, `sig` and `skn` encoded as by
 * {@link encodeSasComponent}.
 *
 * @throws ArgumentError when the resource URI or signature is empty, the expiry is not a non-negative safe
 * integer, or a string holds an unpaired surrogate.
 */
export function formatSasToken(parts: SasTokenParts): string {
  if (parts.resourceUri === '') throw new ArgumentError('resourceUri must not be empty', { field: 'resourceUri' });
  if (parts.signature === '') throw new ArgumentError('signature must not be empty', { field: 'signature' });
  requireExpiry(parts.expiry, 'expiry');
  let text = `${sasTokenPrefix} sr=${encodeSasComponent(parts.resourceUri)}&sig=${encodeSasComponent(parts.signature, 'signature')}`;
  if (parts.keyName !== undefined) {
    if (parts.keyName === '') throw new ArgumentError('keyName must not be empty', { field: 'keyName' });
    text += `&skn=${encodeSasComponent(parts.keyName, 'keyName')}`;
  }
  return `${text}&se=${parts.expiry}`;
}

/**
 * Parses a SAS token, fields in any order (Node writes `sr, sig, skn, se`, the docs `sr, sig, se, skn`).
 * Leading and trailing whitespace is ignored; unknown fields are ignored. `+` is kept as `+`, not read as a
 * space, because hand-made tokens often carry raw base64 in `sig`.
 *
 * @throws ArgumentError (field `sasToken`) when the text is not `SharedAccessSignature <fields>`; (field `sr`,
 * `sig`, `se`, `skn`) when a field is missing, empty, repeated, badly percent-encoded, or `se` is not an integer.
 */
export function parseSasToken(token: string): SasToken {
  const text = token.trim();
  const space = text.search(/\s/);
  if (space < 0 || text.slice(0, space) !== sasTokenPrefix) {
    throw new ArgumentError(`a SAS token must start with '${sasTokenPrefix} '`, { field: 'sasToken' });
  }
  const body = text.slice(space).trim();
  if (/\s/.test(body)) throw new ArgumentError('a SAS token must not contain whitespace', { field: 'sasToken' });
  const fields: Record<string, string> = {};
  for (const segment of body.split('&')) {
    if (segment === '') continue;
    const equals = segment.indexOf('=');
    if (equals <= 0) {
      throw new ArgumentError(`SAS token field '${segment}' is not name=value`, { field: 'sasToken' });
    }
    const name = segment.slice(0, equals);
    if (name !== 'sr' && name !== 'sig' && name !== 'se' && name !== 'skn') continue;
    if (fields[name] !== undefined) {
      throw new ArgumentError(`SAS token field '${name}' appears twice`, { field: name });
    }
    fields[name] = segment.slice(equals + 1);
  }
  const sr = requireField(fields, 'sr');
  const sig = percentDecode(requireField(fields, 'sig'), 'sig');
  const seText = requireField(fields, 'se');
  if (!/^\d{1,15}$/.test(seText)) {
    throw new ArgumentError(`SAS token se must be whole seconds since the epoch, not '${seText}'`, { field: 'se' });
  }
  const result: SasToken = { sr, resourceUri: percentDecode(sr, 'sr'), sig, se: Number(seText) };
  if (fields.skn !== undefined) result.skn = percentDecode(requireField(fields, 'skn'), 'skn');
  return result;
}

function requireField(fields: Record<string, string>, name: string): string {
  const value = fields[name];
  if (value === undefined) throw new ArgumentError(`SAS token has no ${name}`, { field: name });
  if (value === '') throw new ArgumentError(`SAS token ${name} is empty`, { field: name });
  return value;
}

/** What a resource URI names, as {@link parseResourceUri} reads it. */
export type ParsedResourceUri =
  | { kind: 'hub'; hostName: string }
  | { kind: 'devices'; hostName: string }
  | { kind: 'device'; hostName: string; deviceId: string }
  | { kind: 'module'; hostName: string; deviceId: string; moduleId: string }
  | { kind: 'registration'; idScope: string; registrationId: string };

/**
 * Reads a decoded resource URI (a token's `resourceUri`, an AMQP CBS audience): the hub (`{host}`), every device
 * (`{host}/devices`, a gateway's prefix), one device or module, or a DPS registration
 * (`{idScope}/registrations/{registrationId}`). Lenient as Edge Hub is (reference §3.2): an `amqps://`,
 * `https://` or `wss://` prefix and one trailing `/` are ignored, and the fixed words `devices`, `modules` and
 * `registrations` match in any case. Host names are returned as written; compare them without case.
 *
 * @throws ArgumentError (field `resourceUri`) when the URI is empty or has a shape none of the above has.
 */
export function parseResourceUri(resourceUri: string): ParsedResourceUri {
  const fail = (): never => {
    throw new ArgumentError(`resource URI '${resourceUri}' names no hub, device, module or registration`, {
      field: 'resourceUri',
    });
  };
  const withoutScheme = resourceUri.replace(/^(?:amqps|https|wss):\/\//i, '');
  const text = withoutScheme.endsWith('/') ? withoutScheme.slice(0, -1) : withoutScheme;
  const levels = text.split('/');
  if (levels.some((level) => level === '')) return fail();
  const [first, second, third, fourth, fifth] = levels as [string, ...(string | undefined)[]];
  const word = (value: string | undefined): string | undefined => value?.toLowerCase();
  if (levels.length === 1) return { kind: 'hub', hostName: first };
  if (levels.length === 2 && word(second) === 'devices') return { kind: 'devices', hostName: first };
  if (levels.length === 3 && word(second) === 'devices') {
    return { kind: 'device', hostName: first, deviceId: third as string };
  }
  if (levels.length === 3 && word(second) === 'registrations') {
    return { kind: 'registration', idScope: first, registrationId: third as string };
  }
  if (levels.length === 5 && word(second) === 'devices' && word(fourth) === 'modules') {
    return { kind: 'module', hostName: first, deviceId: third as string, moduleId: fifth as string };
  }
  return fail();
}
