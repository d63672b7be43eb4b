import type { PathExpression, Projection, Query } from './ast';
import { compare, evaluateExpression, resolvePath } from './evaluate-expression';
import { isObject, isPrimitive } from './query-functions';

/** The `x-ms-item-type` of a result (reference §2.10). */
export const QueryItemType = {
  Twin: 'twin',
  DeviceJob: 'deviceJob',
  Raw: 'raw',
} as const;
/** One of {@link QueryItemType}. */
export type QueryItemType = (typeof QueryItemType)[keyof typeof QueryItemType];

/** What a query produced, before paging. */
export interface QueryResult {
  readonly items: unknown[];
  /** `twin` for `SELECT *` over devices or modules, `deviceJob` over jobs, `raw` for projections and aggregates. */
  readonly itemType: QueryItemType;
}

/**
 * Runs a parsed query over documents: device twins for `devices`, module twins for `devices.modules`, device job
 * records for `devices.jobs` (reference §2.8, §2.11). Documents pass the WHERE clause when it evaluates to exactly
 * `true` (see `evaluateExpression`). `SELECT *` returns the documents themselves; projections build new objects
 * keyed by the alias or by the path's last name as the document spells it (`SELECT DeviceId` -> `deviceId`),
 * omitting keys whose value is undefined; an unaliased aggregate is keyed `$1`, `$2`, ... by its position among
 * unnamed projections. Aggregates without GROUP BY give one row, also over no documents (`COUNT()` = 0); with
 * GROUP BY one row per distinct value (documents without the attribute form their own group), in order of first
 * appearance. `TOP n` caps the output rows.
 *
 * Never throws for JSON documents.
 */
export function evaluateQuery(query: Query, documents: Iterable<Record<string, unknown>>): QueryResult {
  const limit = query.top ?? Number.POSITIVE_INFINITY;
  const matches = (document: Record<string, unknown>): boolean =>
    query.where === undefined || evaluateExpression(query.where, document) === true;
  const { selection } = query;

  if (selection.kind === 'all') {
    const items: unknown[] = [];
    if (limit > 0) {
      for (const document of documents) {
        if (!matches(document)) continue;
        items.push(document);
        if (items.length >= limit) break;
      }
    }
    return { items, itemType: query.collection === 'devices.jobs' ? 'deviceJob' : 'twin' };
  }

  const projections = selection.projections;
  const names = unnamedKeys(projections);
  const aggregated = query.groupBy !== undefined || projections.some((projection) => projection.kind === 'aggregate');

  if (!aggregated) {
    const items: unknown[] = [];
    if (limit > 0) {
      for (const document of documents) {
        if (!matches(document)) continue;
        const row: Record<string, unknown> = {};
        projections.forEach((projection, index) => {
          if (projection.kind !== 'attribute') return;
          const resolved = resolvePath(document, projection.path.segments);
          setKey(row, projection.alias ?? resolved.key ?? names[index], resolved.value);
        });
        items.push(row);
        if (items.length >= limit) break;
      }
    }
    return { items, itemType: 'raw' };
  }

  const groups = new Map<string, Group>();
  if (query.groupBy === undefined) groups.set('', createGroup(projections));
  for (const document of documents) {
    if (!matches(document)) continue;
    const group = groupFor(groups, query.groupBy, document, projections);
    group.count++;
    projections.forEach((projection, index) => {
      if (projection.kind === 'aggregate' && projection.argument !== undefined) {
        group.accumulators[index]?.add(evaluateExpression(projection.argument, document));
      }
    });
  }
  const items: unknown[] = [];
  for (const group of groups.values()) {
    if (items.length >= limit) break;
    const row: Record<string, unknown> = {};
    projections.forEach((projection, index) => {
      if (projection.kind === 'attribute') {
        setKey(row, projection.alias ?? group.key ?? names[index], group.value);
      } else {
        const value = projection.name === 'COUNT' ? group.count : group.accumulators[index]?.result();
        setKey(row, projection.alias ?? names[index], value);
      }
    });
    items.push(row);
  }
  return { items, itemType: 'raw' };
}

interface Group {
  /** The grouped attribute's value and its spelling in the first document of the group. */
  value: unknown;
  key: string | undefined;
  count: number;
  accumulators: (Accumulator | undefined)[];
}

function createGroup(projections: readonly Projection[], value?: unknown, key?: string): Group {
  return {
    value,
    key,
    count: 0,
    accumulators: projections.map((projection) =>
      projection.kind === 'aggregate' && projection.name !== 'COUNT' ? createAccumulator(projection.name) : undefined,
    ),
  };
}

function groupFor(
  groups: Map<string, Group>,
  groupBy: PathExpression | undefined,
  document: Record<string, unknown>,
  projections: readonly Projection[],
): Group {
  if (groupBy === undefined) return groups.get('') as Group;
  const resolved = resolvePath(document, groupBy.segments);
  const id = groupId(resolved.value);
  let group = groups.get(id);
  if (group === undefined) {
    group = createGroup(projections, resolved.value, resolved.key);
    groups.set(id, group);
  }
  return group;
}

/** A key telling distinct values apart by type and content (object keys sorted). */
function groupId(value: unknown): string {
  if (value === undefined) return 'u';
  return `v${stableStringify(value)}`;
}

function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${stableStringify(value[key])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'u';
}

interface Accumulator {
  add(value: unknown): void;
  result(): unknown;
}

/**
 * SUM and AVG take numbers and skip everything else (SUM of nothing is 0, AVG of nothing is undefined); MIN and MAX
 * take primitives in the order null < booleans < numbers < strings and skip undefined, objects and arrays.
 */
function createAccumulator(name: 'AVG' | 'SUM' | 'MIN' | 'MAX'): Accumulator {
  if (name === 'SUM' || name === 'AVG') {
    let sum = 0;
    let count = 0;
    return {
      add(value) {
        if (typeof value !== 'number') return;
        sum += value;
        count++;
      },
      result() {
        if (name === 'SUM') return Number.isFinite(sum) ? sum : undefined;
        return count === 0 || !Number.isFinite(sum) ? undefined : sum / count;
      },
    };
  }
  let best: unknown;
  return {
    add(value) {
      if (!isPrimitive(value)) return;
      if (best === undefined) {
        best = value;
        return;
      }
      const order = crossTypeOrder(value, best);
      if (name === 'MIN' ? order < 0 : order > 0) best = value;
    },
    result: () => best,
  };
}

const typeRank = (value: unknown): number =>
  value === null ? 0 : typeof value === 'boolean' ? 1 : typeof value === 'number' ? 2 : 3;

function crossTypeOrder(left: unknown, right: unknown): number {
  const rank = typeRank(left) - typeRank(right);
  if (rank !== 0) return rank;
  if (compare('<', left, right) === true) return -1;
  if (compare('>', left, right) === true) return 1;
  if (typeof left === 'boolean' && left !== right) return left ? 1 : -1;
  return 0;
}

/** `$1`, `$2`, ... for projections that have neither an alias nor a name of their own. */
function unnamedKeys(projections: readonly Projection[]): string[] {
  let counter = 0;
  return projections.map((projection) => {
    const last = projection.kind === 'attribute' ? projection.path.segments.at(-1) : undefined;
    return projection.alias === undefined && typeof last !== 'string' ? `$${++counter}` : nameOf(projection);
  });
}

function nameOf(projection: Projection): string {
  if (projection.alias !== undefined) return projection.alias;
  const last = projection.kind === 'attribute' ? projection.path.segments.at(-1) : undefined;
  return typeof last === 'string' ? last : '$';
}

function setKey(row: Record<string, unknown>, key: string | undefined, value: unknown): void {
  if (key === undefined || value === undefined) return;
  // defineProperty, not assignment: a key spelled `__proto__` must stay a plain key.
  Object.defineProperty(row, key, { value, enumerable: true, writable: true, configurable: true });
}
