import type { Collection, Dialect, Expression } from './ast';
import { evaluateExpression } from './evaluate-expression';
import { Parser } from './parser';

/** A compiled boolean condition. */
export interface Condition {
  readonly text: string;
  readonly dialect: Dialect;
  readonly expression: Expression;
}

/** How to read a condition. */
export interface CompileConditionOptions {
  /** `twin` (default) for job `queryCondition`s and twin filters; `routing` for route conditions. */
  readonly dialect?: Dialect;
  /** The collection whose qualifier paths may carry (`devices.tags.x`); default `devices`. Ignored for routing. */
  readonly collection?: Collection;
}

/**
 * Compiles a bare condition: what follows WHERE in a query, a job's `queryCondition` (`deviceId IN ['a','b']`),
 * or a routing condition with `dialect: 'routing'` (routing functions and the `undefined` literal, no collection
 * qualifier; paths such as `$body.x` resolve against whatever document the router builds).
 *
 * @throws {ArgumentError} (code ArgumentInvalid, field `query`) when the text is empty, longer than 8,192
 *   characters or malformed, with the position in the message.
 */
export function compileCondition(text: string, options: CompileConditionOptions = {}): Condition {
  const dialect = options.dialect ?? 'twin';
  const collection = dialect === 'routing' ? undefined : (options.collection ?? 'devices');
  const expression = new Parser(text, { dialect, collection }).parseCondition();
  return { text, dialect, expression };
}

/**
 * True when the condition evaluates to exactly `true` for the document; false for `false`, for a non-boolean
 * result and for `undefined` (a missing attribute, mismatched types).
 *
 * Never throws for JSON documents.
 */
export function evaluateCondition(condition: Condition, document: unknown): boolean {
  return evaluateExpression(condition.expression, document) === true;
}
