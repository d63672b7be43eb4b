/**
 * The start position of a partition receiver, from its source filter (protocol-service.md §4.2): the filter
 * `apache.org:selector-filter:string` (descriptor `0x468c00000004`) holds one of
 * `amqp.annotation.x-opt-offset > '123'`, `amqp.annotation.x-opt-sequence-number >= '5'` or
 * `amqp.annotation.x-opt-enqueued-time > '1654109018051'` (ms), as `@azure/event-hubs` writes them
 * (`eventPosition.js`). Offset `-1` is the start of the partition, `@latest` its end.
 *
 * Decisions where the reference is silent:
 * - Fieldhub's offset is the decimal sequence number (`core/telemetry.ts`), so an offset filter is a
 *   sequence-number filter; an offset that is not a whole number is refused (`com.microsoft:argument-error`, as
 *   Event Hubs refuses a malformed filter), not read as "earliest".
 * - `>=` on an enqueued time includes events enqueued in that very millisecond (the core's enqueued-time position
 *   is exclusive, so the route asks for "after time - 1").
 * - No filter at all reads from the start of the partition (Event Hubs' behaviour for a receiver without filter).
 * - Keywords and annotation names match case-insensitively and whitespace is free, like a SQL-92 filter.
 */
import type { StartPosition } from '../../../core/telemetry';

/** The filter's name and numeric descriptor. */
export const selectorFilterName = 'apache.org:selector-filter:string';
export const selectorFilterCode = 0x468c00000004;

/** A start position, or why the filter is refused. */
export type FilterResult = { readonly from: StartPosition } | { readonly error: string };

const expressionPattern =
  /^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>)\s*'([^']*)'\s*$/i;
const integerPattern = /^-?\d+$/;

/** A described or plain value's inner value (rhea decodes described types as `{ descriptor, value }`). */
function innerValue(entry: unknown): unknown {
  if (entry !== null && typeof entry === 'object' && 'value' in entry) return (entry as { value: unknown }).value;
  return entry;
}

function descriptorOf(entry: unknown): unknown {
  if (entry !== null && typeof entry === 'object' && 'descriptor' in entry) {
    return innerValue((entry as { descriptor: unknown }).descriptor);
  }
  return undefined;
}

/**
 * The selector expression of a source's `filter` map: the entry named `apache.org:selector-filter:string`, or any
 * entry whose descriptor is `0x468c00000004` or that name. Undefined when there is none.
 */
export function selectorExpression(filter: unknown): unknown {
  if (filter === null || typeof filter !== 'object') return undefined;
  const entries = filter as Record<string, unknown>;
  if (selectorFilterName in entries) return innerValue(entries[selectorFilterName]);
  for (const entry of Object.values(entries)) {
    const descriptor = descriptorOf(entry);
    if (descriptor === selectorFilterCode || descriptor === selectorFilterName) return innerValue(entry);
  }
  return undefined;
}

/** Parses one selector expression into a start position. */
export function parseSelector(expression: unknown): FilterResult {
  if (typeof expression !== 'string') return { error: 'The selector filter must be a string' };
  const match = expressionPattern.exec(expression);
  if (!match) {
    return {
      error: `Unsupported selector filter '${expression}': expected amqp.annotation.x-opt-offset, x-opt-sequence-number or x-opt-enqueued-time with > or >= and a quoted value`,
    };
  }
  const annotation = (match[1] as string).toLowerCase();
  const inclusive = match[2] === '>=';
  const value = (match[3] as string).trim();
  if (annotation === 'x-opt-offset') {
    if (value === '-1') return { from: 'earliest' };
    if (value.toLowerCase() === '@latest') return { from: 'latest' };
  }
  if (!integerPattern.test(value) || !Number.isSafeInteger(Number(value))) {
    return { error: `The ${annotation} value '${value}' in the selector filter is not a whole number` };
  }
  const number = Number(value);
  if (annotation === 'x-opt-enqueued-time') return { from: { enqueuedTime: inclusive ? number - 1 : number } };
  // Below the first sequence number every event is "after" the position: the start of the partition.
  if (number < 0) return { from: 'earliest' };
  return { from: { sequenceNumber: number, inclusive } };
}

/** The start position a source filter asks for: the selector's, or the start of the partition without one. */
export function startPositionOf(filter: unknown): FilterResult {
  const expression = selectorExpression(filter);
  if (expression === undefined) return { from: 'earliest' };
  return parseSelector(expression);
}
