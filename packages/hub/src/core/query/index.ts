/**
 * The IoT Hub query language (reference §6): a pure parser and evaluator for twin, module and job queries, the
 * bare conditions of jobs and routes, and the paging of results. No I/O; imports only `@fieldhub/protocol`.
 *
 * ```ts
 * const query = parseQuery("SELECT deviceId FROM devices WHERE tags.location.region = 'US'");
 * const { items, itemType } = evaluateQuery(query, twins);
 * const { page, continuation } = pageItems(items, { query: query.text, maxItemCount: 10 });
 * const onlyBuilding9 = compileCondition('tags.building = 9');
 * evaluateCondition(onlyBuilding9, twin); // boolean
 * ```
 */
export type {
  AggregateName,
  ArithmeticOperator,
  ComparisonOperator,
  Expression,
  PathExpression,
  PathSegment,
  Primitive,
  Projection,
  Query,
  Selection,
} from './ast';
export { Collection, Dialect } from './ast';
export { type CompileConditionOptions, type Condition, compileCondition, evaluateCondition } from './compile-condition';
export { evaluateExpression } from './evaluate-expression';
export { evaluateQuery, QueryItemType, type QueryResult } from './evaluate-query';
export { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type Page, type PageOptions, pageItems } from './page-items';
export { parseQuery } from './parse-query';
export { MAX_QUERY_LENGTH } from './query-error';
