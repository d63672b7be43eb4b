import { ArgumentError } from '@fieldhub/protocol';

/** Page size when the request names none (UNCONFIRMED Azure default, reference §2.10). */
export const DEFAULT_PAGE_SIZE = 100;
/** Largest page handed out; bigger `x-ms-max-item-count` values are clamped ("up to 1000", reference §2.10). */
export const MAX_PAGE_SIZE = 1000;

/** Which page to cut. */
export interface PageOptions {
  /** The query text; continuation tokens are bound to it. */
  readonly query: string;
  /** `x-ms-max-item-count`; default {@link DEFAULT_PAGE_SIZE}, clamped to {@link MAX_PAGE_SIZE}. */
  readonly maxItemCount?: number | undefined;
  /** `x-ms-continuation` from the previous page, if any. */
  readonly continuation?: string | undefined;
}

/** One page and the token for the next, undefined on the last page (send no header then, reference §0.3). */
export interface Page<T> {
  readonly page: T[];
  readonly continuation: string | undefined;
}

/**
 * Cuts one page out of a query's items. The continuation token is opaque base64 of an offset and a hash of the
 * query text, so a token from another query is refused. If the items shrank since the token was issued, the page
 * is simply shorter or empty.
 *
 * @throws {ArgumentError} (field `maxItemCount`) when `maxItemCount` is not a positive integer; (field
 *   `continuation`) when the token is malformed or belongs to a different query.
 */
export function pageItems<T>(items: readonly T[], options: PageOptions): Page<T> {
  const size = pageSize(options.maxItemCount);
  const offset = options.continuation === undefined ? 0 : readToken(options.continuation, options.query);
  const end = offset + size;
  return {
    page: items.slice(offset, end),
    continuation: end < items.length ? writeToken(end, options.query) : undefined,
  };
}

function pageSize(maxItemCount: number | undefined): number {
  if (maxItemCount === undefined) return DEFAULT_PAGE_SIZE;
  if (!Number.isSafeInteger(maxItemCount) || maxItemCount < 1) {
    throw new ArgumentError(`maxItemCount must be a positive integer, not ${maxItemCount}`, { field: 'maxItemCount' });
  }
  return Math.min(maxItemCount, MAX_PAGE_SIZE);
}

const tokenPattern = /^q1:(\d{1,15}):([0-9a-f]{8})$/;

function writeToken(offset: number, query: string): string {
  return encodeBase64(`q1:${offset}:${hashText(query)}`);
}

function readToken(token: string, query: string): number {
  const match = tokenPattern.exec(decodeBase64(token) ?? '');
  if (!match) throw new ArgumentError('The continuation token is malformed', { field: 'continuation' });
  if (match[2] !== hashText(query)) {
    throw new ArgumentError('The continuation token belongs to a different query', { field: 'continuation' });
  }
  return Number(match[1]);
}

/** FNV-1a, 32 bits, as 8 hex digits: enough to tell queries apart, not a security boundary. */
function hashText(text: string): string {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, '0');
}

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Base64 of an ASCII string (tokens are ASCII), without depending on Buffer or btoa. */
function encodeBase64(text: string): string {
  let out = '';
  for (let index = 0; index < text.length; index += 3) {
    const a = text.charCodeAt(index);
    const b = index + 1 < text.length ? text.charCodeAt(index + 1) : Number.NaN;
    const c = index + 2 < text.length ? text.charCodeAt(index + 2) : Number.NaN;
    const bits = (a << 16) | ((b || 0) << 8) | (c || 0);
    out += alphabet.charAt((bits >> 18) & 63) + alphabet.charAt((bits >> 12) & 63);
    out += Number.isNaN(b) ? '=' : alphabet.charAt((bits >> 6) & 63);
    out += Number.isNaN(c) ? '=' : alphabet.charAt(bits & 63);
  }
  return out;
}

function decodeBase64(text: string): string | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  let out = '';
  for (let index = 0; index < text.length; index += 4) {
    const values = [0, 1, 2, 3].map((offset) => alphabet.indexOf(text.charAt(index + offset)));
    const [a = -1, b = -1, c = -1, d = -1] = values;
    if (a < 0 || b < 0) return undefined;
    const bits = (a << 18) | (b << 12) | (Math.max(c, 0) << 6) | Math.max(d, 0);
    out += String.fromCharCode((bits >> 16) & 255);
    if (c >= 0) out += String.fromCharCode((bits >> 8) & 255);
    if (d >= 0) out += String.fromCharCode(bits & 255);
  }
  return out;
}
