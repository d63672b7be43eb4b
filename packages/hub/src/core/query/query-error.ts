import { ArgumentError } from '@fieldhub/protocol';

/** The longest query text IoT Hub accepts (reference §6, §2.10). */
export const MAX_QUERY_LENGTH = 8192;

/**
 * Builds the ArgumentError (code ArgumentInvalid, HTTP 400) a bad query gets. Azure opens its message with
 * "The query is invalid." (reference §6); we add what was wrong and where, 1-based, so people can find it.
 */
export function queryError(text: string, offset: number | undefined, detail: string): ArgumentError {
  const where = offset === undefined ? '' : ` at ${describePosition(text, offset)}`;
  return new ArgumentError(`The query is invalid. ${detail}${where}.`, { field: 'query' });
}

/** `line 1, column 8 (offset 7)` for a 0-based offset into `text`. */
export function describePosition(text: string, offset: number): string {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let index = 0; index < end; index++) {
    if (text.charCodeAt(index) === 10) {
      line++;
      lineStart = index + 1;
    }
  }
  return `line ${line}, column ${offset - lineStart + 1}`;
}
