import type { ComparisonOperator, Expression, PathSegment } from './ast';
import { isObject, isPrimitive, queryFunctions } from './query-functions';

/** Where a path led: the value (undefined when missing) and the last key as the document spells it. */
export interface Resolved {
  readonly value: unknown;
  /** The document's own spelling of the last name segment, or undefined when the path is missing. */
  readonly key: string | undefined;
}

/**
 * Follows an attribute path through a JSON document. Names match case-insensitively (an exact match wins);
 * only own properties count, so `constructor` or `__proto__` never reach the prototype.
 */
export function resolvePath(document: unknown, segments: readonly PathSegment[]): Resolved {
  let value: unknown = document;
  let key: string | undefined;
  for (const segment of segments) {
    if (typeof segment === 'number') {
      if (!Array.isArray(value) || segment < 0 || segment >= value.length) return { value: undefined, key: undefined };
      value = value[segment];
      key = undefined;
      continue;
    }
    if (!isObject(value)) return { value: undefined, key: undefined };
    key = findKey(value, segment);
    if (key === undefined) return { value: undefined, key: undefined };
    value = value[key];
  }
  return { value, key };
}

function findKey(object: Record<string, unknown>, name: string): string | undefined {
  if (Object.hasOwn(object, name)) return name;
  const lower = name.toLowerCase();
  return Object.keys(object).find((key) => key.toLowerCase() === lower);
}

/**
 * Evaluates an expression against one document with the language's undefined-aware semantics (reference §6):
 * a missing attribute is `undefined`; comparisons need two primitives of the same type (or `null` on one side
 * of `=`/`!=`) and are `undefined` otherwise (so both `=` and `!=` fail a string against a number, or an object); ordering applies to numbers and
 * strings (ordinal); arithmetic needs numbers and a finite result; AND/OR/NOT are three-valued (`false AND
 * undefined` is `false`, `true OR undefined` is `true`, otherwise `undefined` spreads). A condition holds only when
 * it evaluates to exactly `true`.
 *
 * Never throws for any JSON document.
 */
export function evaluateExpression(expression: Expression, document: unknown): unknown {
  switch (expression.kind) {
    case 'literal':
      return expression.value;
    case 'array':
      return expression.items.map((item) => evaluateExpression(item, document));
    case 'path':
      return resolvePath(document, expression.segments).value;
    case 'not': {
      const operand = evaluateExpression(expression.operand, document);
      return typeof operand === 'boolean' ? !operand : undefined;
    }
    case 'negate': {
      const operand = evaluateExpression(expression.operand, document);
      return typeof operand === 'number' ? -operand : undefined;
    }
    case 'and': {
      let result: boolean | undefined = true;
      for (const operand of expression.operands) {
        const value = evaluateExpression(operand, document);
        if (value === false) return false;
        if (value !== true) result = undefined;
      }
      return result;
    }
    case 'or': {
      let result: boolean | undefined = false;
      for (const operand of expression.operands) {
        const value = evaluateExpression(operand, document);
        if (value === true) return true;
        if (value !== false) result = undefined;
      }
      return result;
    }
    case 'compare':
      return compare(
        expression.operator,
        evaluateExpression(expression.left, document),
        evaluateExpression(expression.right, document),
      );
    case 'arithmetic': {
      const left = evaluateExpression(expression.left, document);
      const right = evaluateExpression(expression.right, document);
      if (typeof left !== 'number' || typeof right !== 'number') return undefined;
      const result = arithmetic(expression.operator, left, right);
      return Number.isFinite(result) ? result : undefined;
    }
    case 'in': {
      const operand = evaluateExpression(expression.operand, document);
      if (!isPrimitive(operand)) return undefined;
      const found = expression.list.some((item) => compare('=', operand, evaluateExpression(item, document)) === true);
      return found !== expression.negated;
    }
    case 'call': {
      const definition = Object.hasOwn(queryFunctions, expression.name) ? queryFunctions[expression.name] : undefined;
      if (definition === undefined) return undefined;
      return definition.apply(expression.args.map((arg) => evaluateExpression(arg, document)));
    }
  }
}

/**
 * Compares two values. Undefined unless both are primitives; `null` equals only `null` (so `x != null` holds for
 * any defined non-null primitive); other mixed types, and ordering of booleans or null, are undefined.
 */
export function compare(operator: ComparisonOperator, left: unknown, right: unknown): boolean | undefined {
  if (!isPrimitive(left) || !isPrimitive(right)) return undefined;
  const sameType = typeof left === typeof right && (left === null) === (right === null);
  if (operator === '=' || operator === '!=') {
    if (!sameType && left !== null && right !== null) return undefined;
    return (left === right) === (operator === '=');
  }
  if (!sameType) return undefined;
  if (typeof left === 'number' && typeof right === 'number') return order(operator, left, right);
  if (typeof left === 'string' && typeof right === 'string') return order(operator, left, right);
  return undefined;
}

function order<T extends number | string>(operator: '<' | '>' | '<=' | '>=', left: T, right: T): boolean {
  switch (operator) {
    case '<':
      return left < right;
    case '>':
      return left > right;
    case '<=':
      return left <= right;
    case '>=':
      return left >= right;
  }
}

function arithmetic(operator: '+' | '-' | '*' | '/' | '%', left: number, right: number): number {
  switch (operator) {
    case '+':
      return left + right;
    case '-':
      return left - right;
    case '*':
      return left * right;
    case '/':
      return left / right;
    case '%':
      return left % right;
  }
}
