/**
 * Azure Storage service SAS for one blob (or container), written by hand after "Create a service SAS"
 * (learn.microsoft.com/rest/api/storageservices/create-service-sas): the hub signs the SAS it hands to devices and
 * the embedded Blob-compatible store verifies the SAS presented to it. The output equals `@azure/storage-blob`'s
 * `generateBlobSASQueryParameters` for the same inputs (unit-tested).
 *
 * String-to-sign by `sv` (the values exactly as they appear in the query, decoded once):
 * - 2015-04-05 to 2018-11-08: sp, st, se, canonicalized resource, si, sip, spr, sv, rscc, rscd, rsce, rscl, rsct;
 * - 2018-11-09 to 2020-12-05: ... sv, sr, snapshot time, rscc ...;
 * - 2020-12-06 and later: ... sv, sr, snapshot time, ses (encryption scope), rscc ....
 * The canonicalized resource is `/blob/{account}/{container}/{blob}` (`/blob/{account}/{container}` for `sr=c`).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The SAS version the hub signs with: the one `@azure/storage-blob` 12.8 (the device SDK's) speaks. */
export const blobSasVersion = '2020-10-02';

/** Blob SAS permissions in Azure's canonical order (`racwdxyltmeop`, blob subset). */
const permissionOrder = 'racwdxytmei';

/** What a blob SAS grants. */
export interface BlobSasInput {
  readonly accountName: string;
  /** The account key, base64 (as in a storage connection string). */
  readonly accountKey: string;
  readonly containerName: string;
  /** The blob; absent for a container SAS (`sr=c`). */
  readonly blobName?: string;
  /** Permission letters, e.g. `rw`; put into canonical order. */
  readonly permissions: string;
  readonly expiresOn: Date;
  readonly startsOn?: Date;
  /** `https` or `https,http`. Default `https`. */
  readonly protocol?: string;
  /** Default {@link blobSasVersion}. */
  readonly version?: string;
}

/** Azure's SAS time format: ISO 8601 without milliseconds. */
export function sasTime(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** Puts permission letters into Azure's order (`wr` -> `rw`). @throws RangeError for an unknown letter. */
export function canonicalPermissions(permissions: string): string {
  for (const letter of permissions) {
    if (!permissionOrder.includes(letter)) throw new RangeError(`Unknown blob SAS permission '${letter}'`);
  }
  return [...permissionOrder].filter((letter) => permissions.includes(letter)).join('');
}

/**
 * Signs a service SAS and returns its query string, without the leading `?`, in `@azure/storage-blob`'s parameter
 * order (`sv`, `spr`, `st`, `se`, `sr`, `sp`, `sig`).
 * @throws RangeError for an unknown permission letter.
 */
export function createBlobSas(input: BlobSasInput): string {
  const fields: SasFields = {
    sv: input.version ?? blobSasVersion,
    spr: input.protocol ?? 'https',
    st: input.startsOn ? sasTime(input.startsOn) : '',
    se: sasTime(input.expiresOn),
    sr: input.blobName === undefined ? 'c' : 'b',
    sp: canonicalPermissions(input.permissions),
  };
  const signature = sign(
    input.accountKey,
    stringToSign(fields, canonicalResource(input.accountName, input.containerName, input.blobName)),
  );
  const query = new URLSearchParams();
  for (const name of ['sv', 'spr', 'st', 'se', 'sr', 'sp'] as const) {
    if (fields[name] !== '') query.set(name, fields[name]);
  }
  query.set('sig', signature);
  return query.toString();
}

/** Why a presented SAS was refused, as Azure Storage's error codes. */
export type BlobSasRefusal =
  | { readonly code: 'AuthenticationFailed'; readonly reason: string }
  | { readonly code: 'AuthorizationPermissionMismatch'; readonly reason: string }
  | { readonly code: 'AuthorizationResourceTypeMismatch'; readonly reason: string }
  | { readonly code: 'AuthorizationProtocolMismatch'; readonly reason: string }
  | { readonly code: 'AuthorizationSourceIPMismatch'; readonly reason: string };

/** What a request needs of its SAS. */
export interface BlobSasCheck {
  readonly accountName: string;
  /** Keys that may have signed (the current one first). */
  readonly accountKeys: readonly string[];
  readonly containerName: string;
  readonly blobName: string;
  /** One permission letter the operation needs (`r`, `w`, `d`, `c`). */
  readonly permission: string;
  /** ms since epoch. */
  readonly now: number;
  /** Tolerated clock difference for `st` and `se` (ms). */
  readonly clockSkewMs: number;
  /** The client's IP address, checked against a signed IP range (`sip`). */
  readonly clientAddress?: string;
}

/**
 * Verifies the SAS in a request's query (`URLSearchParams` of the request URL) for one blob operation.
 * @returns `undefined` when the SAS grants the operation, else Azure Storage's refusal (all 403).
 */
export function verifyBlobSas(query: URLSearchParams, check: BlobSasCheck): BlobSasRefusal | undefined {
  const value = (name: string) => query.get(name) ?? '';
  const sig = value('sig');
  const fields: SasFields = {
    sv: value('sv'),
    spr: value('spr'),
    st: value('st'),
    se: value('se'),
    sr: value('sr'),
    sp: value('sp'),
    si: value('si'),
    sip: value('sip'),
    snapshot: value('snapshot'),
    ses: value('ses'),
    rscc: value('rscc'),
    rscd: value('rscd'),
    rsce: value('rsce'),
    rscl: value('rscl'),
    rsct: value('rsct'),
  };
  const failed = (reason: string): BlobSasRefusal => ({ code: 'AuthenticationFailed', reason });
  if (sig === '') return failed('the request carries no SAS signature (sig)');
  if (fields.sv === '' || fields.sv < '2015-04-05') return failed(`unsupported signed version '${fields.sv}'`);
  if (fields.si !== '') return failed('stored access policies (si) are not supported');
  if (fields.sr !== 'b' && fields.sr !== 'c') return failed(`signed resource '${fields.sr}' is not b or c`);
  const resource = canonicalResource(
    check.accountName,
    check.containerName,
    fields.sr === 'b' ? check.blobName : undefined,
  );
  const expected = stringToSign(fields, resource);
  const presented = Buffer.from(sig, 'base64');
  const matches = check.accountKeys.some((key) => {
    const computed = Buffer.from(sign(key, expected), 'base64');
    return computed.length === presented.length && timingSafeEqual(computed, presented);
  });
  // Azure's message for both a forged signature and a SAS for another blob: the signature does not match.
  if (!matches) return failed(`signature did not match (string to sign for ${resource})`);
  const expiry = Date.parse(fields.se);
  if (Number.isNaN(expiry)) return failed(`signed expiry '${fields.se}' is not a time`);
  if (expiry + check.clockSkewMs <= check.now) return failed(`signed expiry ${fields.se} has passed`);
  if (fields.st !== '') {
    const start = Date.parse(fields.st);
    if (Number.isNaN(start)) return failed(`signed start '${fields.st}' is not a time`);
    if (start - check.clockSkewMs > check.now) return failed(`signed start ${fields.st} is in the future`);
  }
  if (fields.spr !== '' && !fields.spr.split(',').includes('https')) {
    return { code: 'AuthorizationProtocolMismatch', reason: `signed protocol '${fields.spr}' excludes https` };
  }
  if (fields.sip !== undefined && fields.sip !== '' && !addressInRange(check.clientAddress, fields.sip)) {
    return {
      code: 'AuthorizationSourceIPMismatch',
      reason: `client address ${check.clientAddress ?? 'unknown'} is outside ${fields.sip}`,
    };
  }
  if (!fields.sp.includes(check.permission)) {
    return {
      code: 'AuthorizationPermissionMismatch',
      reason: `signed permissions '${fields.sp}' lack '${check.permission}'`,
    };
  }
  return undefined;
}

interface SasFields {
  readonly sv: string;
  readonly spr: string;
  readonly st: string;
  readonly se: string;
  readonly sr: string;
  readonly sp: string;
  readonly si?: string;
  readonly sip?: string;
  readonly snapshot?: string;
  readonly ses?: string;
  readonly rscc?: string;
  readonly rscd?: string;
  readonly rsce?: string;
  readonly rscl?: string;
  readonly rsct?: string;
}

/** Whether an IPv4 address (also IPv4-mapped IPv6) lies in `a.b.c.d` or `a.b.c.d-e.f.g.h`. */
function addressInRange(address: string | undefined, range: string): boolean {
  const number = (text: string | undefined): number | undefined => {
    const match = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/i.exec(text ?? '');
    if (!match) return undefined;
    const parts = match.slice(1).map(Number);
    if (parts.some((part) => part > 255)) return undefined;
    return parts.reduce((total, part) => total * 256 + part, 0);
  };
  const [low, high = low] = range.split('-');
  const value = number(address);
  const from = number(low);
  const to = number(high);
  return value !== undefined && from !== undefined && to !== undefined && value >= from && value <= to;
}

function canonicalResource(accountName: string, containerName: string, blobName: string | undefined): string {
  return blobName === undefined
    ? `/blob/${accountName}/${containerName}`
    : `/blob/${accountName}/${containerName}/${blobName}`;
}

function stringToSign(fields: SasFields, resource: string): string {
  const head = [fields.sp, fields.st, fields.se, resource, fields.si ?? '', fields.sip ?? '', fields.spr, fields.sv];
  const tail = [fields.rscc ?? '', fields.rscd ?? '', fields.rsce ?? '', fields.rscl ?? '', fields.rsct ?? ''];
  if (fields.sv < '2018-11-09') return [...head, ...tail].join('\n');
  if (fields.sv < '2020-12-06') return [...head, fields.sr, fields.snapshot ?? '', ...tail].join('\n');
  return [...head, fields.sr, fields.snapshot ?? '', fields.ses ?? '', ...tail].join('\n');
}

function sign(accountKey: string, text: string): string {
  return createHmac('sha256', Buffer.from(accountKey, 'base64')).update(text, 'utf8').digest('base64');
}
