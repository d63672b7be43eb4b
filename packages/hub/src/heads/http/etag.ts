import { ArgumentError } from '@fieldhub/protocol';

/**
 * Reads an `If-Match` header as the SDKs send it: quoted (`"AAAA"`, `"*"`) or bare (protocol-service.md §0, 7).
 * Returns `undefined` when absent, `'*'` for "any version", otherwise the bare etag.
 * @throws ArgumentError when the header is present but empty or a list of several etags.
 */
export function parseIfMatch(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = (Array.isArray(header) ? header.join(',') : header).trim();
  if (value === '') throw new ArgumentError('If-Match is empty', { field: 'If-Match' });
  if (value.includes(',')) throw new ArgumentError('If-Match names more than one etag', { field: 'If-Match' });
  const bare = value.startsWith('W/') ? value.slice(2) : value;
  const unquoted = bare.length >= 2 && bare.startsWith('"') && bare.endsWith('"') ? bare.slice(1, -1) : bare;
  return unquoted;
}

/** Formats an etag the way Azure answers it in an `ETag` header: quoted. */
export function formatEtagHeader(etag: string): string {
  return `"${etag}"`;
}
