import type { Dialect } from './ast';

/** What a scalar function needs: its arity, the dialects that know it, and its body over evaluated arguments. */
export interface QueryFunction {
  readonly minArgs: number;
  readonly maxArgs: number;
  readonly dialects: readonly Dialect[];
  /** Gets `undefined` for missing attributes; answers `undefined` when its arguments have the wrong types. */
  readonly apply: (args: readonly unknown[]) => unknown;
}

const both: readonly Dialect[] = ['twin', 'routing'];
const routing: readonly Dialect[] = ['routing'];
const twin: readonly Dialect[] = ['twin'];

/** A plain JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** null, a boolean, a number or a string. */
export function isPrimitive(value: unknown): value is string | number | boolean | null {
  return value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function typeCheck(test: (value: unknown) => boolean): QueryFunction {
  return { minArgs: 1, maxArgs: 1, dialects: both, apply: ([value]) => test(value) };
}

function strings(arity: number, dialects: readonly Dialect[], body: (...values: string[]) => unknown): QueryFunction {
  return {
    minArgs: arity,
    maxArgs: arity,
    dialects,
    apply: (args) => (args.every((arg) => typeof arg === 'string') ? body(...(args as string[])) : undefined),
  };
}

function math(arity: number, body: (...values: number[]) => number): QueryFunction {
  return {
    minArgs: arity,
    maxArgs: arity,
    dialects: routing,
    apply: (args) => {
      if (!args.every((arg) => typeof arg === 'number')) return undefined;
      const result = body(...(args as number[]));
      return Number.isFinite(result) ? result : undefined;
    },
  };
}

/**
 * The scalar functions, by upper-case name (reference §5.3, §6). Twin queries know the type checks plus
 * `STARTSWITH`/`ENDSWITH`; routing conditions know the type checks, math, `AS_NUMBER` and the underscore string
 * functions. Type checks answer `false` for a missing attribute, except `IS_DEFINED` which is its whole point.
 */
export const queryFunctions: Readonly<Record<string, QueryFunction>> = {
  IS_DEFINED: typeCheck((value) => value !== undefined),
  IS_NULL: typeCheck((value) => value === null),
  IS_BOOL: typeCheck((value) => typeof value === 'boolean'),
  IS_NUMBER: typeCheck((value) => typeof value === 'number'),
  IS_STRING: typeCheck((value) => typeof value === 'string'),
  IS_OBJECT: typeCheck(isObject),
  IS_ARRAY: typeCheck(Array.isArray),
  IS_PRIMITIVE: typeCheck(isPrimitive),
  STARTSWITH: strings(2, twin, (value, prefix) => value.startsWith(prefix)),
  ENDSWITH: strings(2, twin, (value, suffix) => value.endsWith(suffix)),
  STARTS_WITH: strings(2, routing, (value, prefix) => value.startsWith(prefix)),
  ENDS_WITH: strings(2, routing, (value, suffix) => value.endsWith(suffix)),
  CONTAINS: strings(2, routing, (value, fragment) => value.includes(fragment)),
  INDEX_OF: strings(2, routing, (value, fragment) => value.indexOf(fragment)),
  LENGTH: strings(1, routing, (value) => value.length),
  LOWER: strings(1, routing, (value) => value.toLowerCase()),
  UPPER: strings(1, routing, (value) => value.toUpperCase()),
  CONCAT: {
    minArgs: 1,
    maxArgs: Number.POSITIVE_INFINITY,
    dialects: routing,
    apply: (args) => (args.every((arg) => typeof arg === 'string') ? args.join('') : undefined),
  },
  SUBSTRING: {
    minArgs: 2,
    maxArgs: 3,
    dialects: routing,
    apply: ([value, start, length]) => {
      if (typeof value !== 'string' || !Number.isInteger(start)) return undefined;
      if (length !== undefined && !Number.isInteger(length)) return undefined;
      const from = Math.max(0, start as number);
      return length === undefined ? value.slice(from) : value.slice(from, from + Math.max(0, length as number));
    },
  },
  AS_NUMBER: {
    minArgs: 1,
    maxArgs: 1,
    dialects: routing,
    apply: ([value]) => {
      if (typeof value === 'number') return value;
      if (typeof value !== 'string' || value.trim() === '') return undefined;
      const number = Number(value);
      return Number.isFinite(number) ? number : undefined;
    },
  },
  ABS: math(1, Math.abs),
  EXP: math(1, Math.exp),
  POWER: math(2, (base, exponent) => base ** exponent),
  SQUARE: math(1, (value) => value * value),
  CEILING: math(1, Math.ceil),
  FLOOR: math(1, Math.floor),
  SIGN: math(1, Math.sign),
  SQRT: math(1, Math.sqrt),
};
