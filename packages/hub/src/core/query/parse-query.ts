import type { Query } from './ast';
import { Parser } from './parser';

/**
 * Parses an IoT Hub query (reference §6):
 * `SELECT [TOP n] * | projection [AS alias][, ...] FROM devices | devices.modules | devices.jobs [WHERE condition]
 * [GROUP BY attribute]`. Keywords, function and attribute names are case-insensitive; paths may be qualified
 * with the collection (`devices.tags.x`, `devices.jobs.jobId`), which is stripped. Projections are attribute paths
 * and the aggregates `COUNT()`, `AVG(e)`, `SUM(e)`, `MIN(e)`, `MAX(e)`. Conditions use `= != <> < > <= >=`,
 * `AND OR NOT`, `+ - * / %`, `IN [..]`/`NIN [..]` (parentheses also accepted), string/number/boolean/null literals
 * and the twin functions `IS_DEFINED IS_NULL IS_BOOL IS_NUMBER IS_STRING IS_OBJECT IS_ARRAY IS_PRIMITIVE STARTSWITH
 * ENDSWITH`.
 *
 * @example
 * ```ts
 * const query = parseQuery("SELECT * FROM devices WHERE tags.location.region = 'US'");
 * const { items, itemType } = evaluateQuery(query, twins);
 * ```
 * @throws {ArgumentError} (code ArgumentInvalid, field `query`) when the text is empty, longer than 8,192
 *   characters, malformed, uses a routing-only function such as `STARTS_WITH`, or breaks a rule of the language
 *   (GROUP BY outside `devices`, projections over `devices.jobs`, attributes mixed with aggregates without GROUP
 *   BY, a duplicate output name). The message says "The query is invalid.", what was wrong and the line/column.
 */
export function parseQuery(text: string): Query {
  return new Parser(text, { dialect: 'twin', collection: undefined }).parseQuery();
}
