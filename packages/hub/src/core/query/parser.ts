import type {
  AggregateName,
  ArithmeticOperator,
  Collection,
  ComparisonOperator,
  Dialect,
  Expression,
  PathExpression,
  PathSegment,
  Projection,
  Query,
  Selection,
} from './ast';
import { MAX_QUERY_LENGTH, queryError } from './query-error';
import { queryFunctions } from './query-functions';
import { type Token, tokenize } from './tokenize';

/** Parentheses, NOT, unary minus, calls and arrays nested deeper than this are refused (keeps the stack safe). */
const MAX_NESTING = 64;
/** Expression trees deeper than this are refused; AND/OR lists are flat, so long OR chains stay shallow. */
const MAX_DEPTH = 256;

const aggregateNames: readonly string[] = ['COUNT', 'AVG', 'SUM', 'MIN', 'MAX'] satisfies AggregateName[];
/** Words that cannot start an attribute path (they may still follow a dot: `tags.from`). */
const reservedWords = new Set([
  'SELECT',
  'TOP',
  'FROM',
  'WHERE',
  'GROUP',
  'BY',
  'AS',
  'AND',
  'OR',
  'NOT',
  'IN',
  'NIN',
  'TRUE',
  'FALSE',
  'NULL',
]);
const comparisonSymbols: Readonly<Record<string, ComparisonOperator>> = {
  '=': '=',
  '!=': '!=',
  '<>': '!=',
  '<': '<',
  '>': '>',
  '<=': '<=',
  '>=': '>=',
};

/** What the parser needs to know about where the text comes from. */
export interface ParserOptions {
  readonly dialect: Dialect;
  /** Strip this collection's qualifier from paths (`devices.tags.x` -> `tags.x`); undefined for routing. */
  readonly collection: Collection | undefined;
}

/**
 * Recursive-descent parser over the tokens of one query or condition. Precedence, loosest first:
 * OR, AND, NOT, comparison and IN/NIN, `+ -`, `* / %`, unary minus, path steps.
 */
export class Parser {
  readonly #text: string;
  readonly #tokens: Token[];
  readonly #depths = new WeakMap<Expression, number>();
  readonly #projectionOffsets: number[] = [];
  #index = 0;
  #nesting = 0;
  #dialect: Dialect;
  #collection: Collection | undefined;

  /** @throws {ArgumentError} when the text is empty, too long or holds a character that starts no token. */
  constructor(text: string, options: ParserOptions) {
    if (text.length > MAX_QUERY_LENGTH) {
      throw queryError(text, undefined, `The text is ${text.length} characters long; the limit is ${MAX_QUERY_LENGTH}`);
    }
    this.#text = text;
    this.#tokens = tokenize(text);
    this.#dialect = options.dialect;
    this.#collection = options.collection;
    if (this.#peek().kind === 'end') throw queryError(text, undefined, 'The text is empty');
  }

  /**
   * `SELECT [TOP n] * | projection[, ...] FROM collection [WHERE cond] [GROUP BY path]`.
   *
   * @throws {ArgumentError} on any syntax or semantic error.
   */
  parseQuery(): Query {
    this.#expectKeyword('SELECT');
    // The SELECT list comes before FROM but its paths may be qualified by the collection: peek at FROM first.
    this.#collection = this.#lookAheadCollection();
    let top: number | undefined;
    if (this.#acceptKeyword('TOP')) top = this.#parseTop();
    const selection = this.#parseSelection();
    this.#expectKeyword('FROM');
    const collection = this.#parseCollection();
    let where: Expression | undefined;
    if (this.#acceptKeyword('WHERE')) where = this.#parseExpression();
    let groupBy: PathExpression | undefined;
    const groupOffset = this.#peek().offset;
    if (this.#acceptKeyword('GROUP')) {
      this.#expectKeyword('BY');
      groupBy = this.#parsePath();
    }
    this.#expectEnd();
    validateQuery(this.#text, { collection, selection, groupBy, groupOffset, offsets: this.#projectionOffsets });
    return { text: this.#text, collection, top, selection, where, groupBy };
  }

  /**
   * A bare condition: the WHERE clause of a job's `queryCondition`, or a routing condition.
   *
   * @throws {ArgumentError} on any syntax error.
   */
  parseCondition(): Expression {
    const expression = this.#parseExpression();
    this.#expectEnd();
    return expression;
  }

  #lookAheadCollection(): Collection | undefined {
    const start = this.#index;
    try {
      for (let index = start; index < this.#tokens.length; index++) {
        const token = this.#tokens[index];
        const previous = this.#tokens[index - 1];
        if (token?.kind === 'identifier' && token.text.toUpperCase() === 'FROM' && previous?.text !== '.') {
          this.#index = index + 1;
          return this.#parseCollection();
        }
      }
      return undefined;
    } catch {
      return undefined; // the real parse reports it, with its position
    } finally {
      this.#index = start;
    }
  }

  #parseTop(): number {
    const token = this.#peek();
    if (token.kind !== 'number' || !Number.isSafeInteger(token.value) || token.value < 0) {
      throw this.#error(token, 'TOP expects a non-negative integer');
    }
    this.#index++;
    return token.value;
  }

  #parseSelection(): Selection {
    if (this.#acceptSymbol('*')) return { kind: 'all' };
    const projections: Projection[] = [];
    do {
      this.#projectionOffsets.push(this.#peek().offset);
      projections.push(this.#parseProjection());
    } while (this.#acceptSymbol(','));
    return { kind: 'projections', projections };
  }

  #parseProjection(): Projection {
    const token = this.#peek();
    const next = this.#tokens[this.#index + 1];
    let projection: Projection;
    if (token.kind === 'identifier' && next?.kind === 'symbol' && next.text === '(') {
      const name = token.text.toUpperCase();
      if (!aggregateNames.includes(name)) {
        throw this.#error(
          token,
          `Only attribute paths and COUNT, AVG, SUM, MIN, MAX can be selected, not ${token.text}()`,
        );
      }
      this.#index += 2;
      let argument: Expression | undefined;
      if (name === 'COUNT') {
        if (!this.#isSymbol(')')) throw this.#error(this.#peek(), 'COUNT() takes no argument');
      } else {
        argument = this.#parseExpression();
      }
      this.#expectSymbol(')');
      projection = { kind: 'aggregate', name: name as AggregateName, argument, alias: undefined };
    } else {
      projection = { kind: 'attribute', path: this.#parsePath(), alias: undefined };
    }
    if (this.#acceptKeyword('AS')) {
      const alias = this.#peek();
      if (alias.kind !== 'identifier' || reservedWords.has(alias.text.toUpperCase())) {
        throw this.#error(alias, 'AS expects a name');
      }
      this.#index++;
      return { ...projection, alias: alias.text };
    }
    return projection;
  }

  #parseCollection(): Collection {
    const token = this.#peek();
    if (token.kind !== 'identifier' || token.text.toLowerCase() !== 'devices') {
      throw this.#error(token, 'FROM expects devices, devices.modules or devices.jobs');
    }
    this.#index++;
    if (!this.#acceptSymbol('.')) return 'devices';
    const sub = this.#peek();
    const name = sub.kind === 'identifier' ? sub.text.toLowerCase() : '';
    if (name !== 'modules' && name !== 'jobs') throw this.#error(sub, 'FROM expects devices.modules or devices.jobs');
    this.#index++;
    return name === 'modules' ? 'devices.modules' : 'devices.jobs';
  }

  /** An attribute path only (projections, GROUP BY). */
  #parsePath(): PathExpression {
    const token = this.#peek();
    if (token.kind !== 'identifier' || reservedWords.has(token.text.toUpperCase())) {
      throw this.#error(token, 'Expected an attribute name');
    }
    this.#index++;
    return this.#parsePathSteps(token.text);
  }

  #parsePathSteps(first: string): PathExpression {
    const segments: PathSegment[] = [first];
    while (true) {
      if (this.#acceptSymbol('.')) {
        const name = this.#peek();
        if (name.kind !== 'identifier') throw this.#error(name, 'Expected an attribute name after "."');
        this.#index++;
        segments.push(name.text);
      } else if (this.#isSymbol('[')) {
        this.#index++;
        const key = this.#peek();
        if (key.kind === 'string') segments.push(key.value);
        else if (key.kind === 'number' && Number.isSafeInteger(key.value)) segments.push(key.value);
        else throw this.#error(key, 'Expected an array index or a quoted name inside [ ]');
        this.#index++;
        this.#expectSymbol(']');
      } else {
        break;
      }
    }
    return { kind: 'path', segments: qualifyPath(segments, this.#collection) };
  }

  #parseExpression(): Expression {
    return this.#parseOr();
  }

  #parseOr(): Expression {
    const first = this.#parseAnd();
    if (!this.#isKeyword('OR')) return first;
    const operands = [first];
    while (this.#acceptKeyword('OR')) operands.push(this.#parseAnd());
    return this.#node({ kind: 'or', operands }, operands);
  }

  #parseAnd(): Expression {
    const first = this.#parseNot();
    if (!this.#isKeyword('AND')) return first;
    const operands = [first];
    while (this.#acceptKeyword('AND')) operands.push(this.#parseNot());
    return this.#node({ kind: 'and', operands }, operands);
  }

  #parseNot(): Expression {
    const token = this.#peek();
    if (!this.#acceptKeyword('NOT')) return this.#parseComparison();
    const operand = this.#nested(token, () => this.#parseNot());
    return this.#node({ kind: 'not', operand }, [operand]);
  }

  #parseComparison(): Expression {
    let left = this.#parseAdditive();
    while (true) {
      const token = this.#peek();
      const operator = token.kind === 'symbol' ? comparisonSymbols[token.text] : undefined;
      if (operator !== undefined) {
        this.#index++;
        const right = this.#parseAdditive();
        left = this.#node({ kind: 'compare', operator, left, right }, [left, right]);
      } else if (this.#isKeyword('IN') || this.#isKeyword('NIN')) {
        this.#index++;
        const list = this.#parseList(token);
        left = this.#node({ kind: 'in', negated: token.text.toUpperCase() === 'NIN', operand: left, list }, [
          left,
          ...list,
        ]);
      } else {
        return left;
      }
    }
  }

  /** `[a, b]`, or `(a, b)` as Cosmos-style SQL writes it. */
  #parseList(operator: Token): Expression[] {
    const open = this.#peek();
    if (open.kind !== 'symbol' || (open.text !== '[' && open.text !== '(')) {
      throw this.#error(open, `${operator.text.toUpperCase()} expects a list in [ ]`);
    }
    this.#index++;
    return this.#nested(open, () => this.#parseItems(open.text === '[' ? ']' : ')'));
  }

  #parseItems(close: ']' | ')'): Expression[] {
    const items: Expression[] = [];
    if (this.#acceptSymbol(close)) return items;
    do {
      items.push(this.#parseExpression());
    } while (this.#acceptSymbol(','));
    this.#expectSymbol(close);
    return items;
  }

  #parseAdditive(): Expression {
    let left = this.#parseMultiplicative();
    while (this.#isSymbol('+') || this.#isSymbol('-')) {
      const operator = this.#next().text as ArithmeticOperator;
      const right = this.#parseMultiplicative();
      left = this.#node({ kind: 'arithmetic', operator, left, right }, [left, right]);
    }
    return left;
  }

  #parseMultiplicative(): Expression {
    let left = this.#parseUnary();
    while (this.#isSymbol('*') || this.#isSymbol('/') || this.#isSymbol('%')) {
      const operator = this.#next().text as ArithmeticOperator;
      const right = this.#parseUnary();
      left = this.#node({ kind: 'arithmetic', operator, left, right }, [left, right]);
    }
    return left;
  }

  #parseUnary(): Expression {
    const token = this.#peek();
    if (this.#acceptSymbol('-')) {
      const operand = this.#nested(token, () => this.#parseUnary());
      if (operand.kind === 'literal' && typeof operand.value === 'number')
        return { kind: 'literal', value: -operand.value };
      return this.#node({ kind: 'negate', operand }, [operand]);
    }
    if (this.#acceptSymbol('+')) return this.#nested(token, () => this.#parseUnary());
    return this.#parsePrimary();
  }

  #parsePrimary(): Expression {
    const token = this.#next();
    switch (token.kind) {
      case 'number':
      case 'string':
        return { kind: 'literal', value: token.value };
      case 'symbol':
        if (token.text === '(') {
          const inner = this.#nested(token, () => this.#parseExpression());
          this.#expectSymbol(')');
          return inner;
        }
        if (token.text === '[') {
          const items = this.#nested(token, () => this.#parseItems(']'));
          return this.#node({ kind: 'array', items }, items);
        }
        throw this.#error(token, `Unexpected "${token.text}"`);
      case 'end':
        throw this.#error(token, 'Unexpected end of query');
      case 'identifier':
        return this.#parseIdentifier(token);
    }
  }

  #parseIdentifier(token: Extract<Token, { kind: 'identifier' }>): Expression {
    const upper = token.text.toUpperCase();
    if (upper === 'TRUE') return { kind: 'literal', value: true };
    if (upper === 'FALSE') return { kind: 'literal', value: false };
    if (upper === 'NULL') return { kind: 'literal', value: null };
    if (upper === 'UNDEFINED' && this.#dialect === 'routing') return { kind: 'literal', value: undefined };
    if (this.#isSymbol('(')) return this.#parseCall(token, upper);
    if (reservedWords.has(upper)) throw this.#error(token, `Unexpected keyword ${upper}`);
    return this.#parsePathSteps(token.text);
  }

  #parseCall(token: Extract<Token, { kind: 'identifier' }>, name: string): Expression {
    if (aggregateNames.includes(name)) {
      throw this.#error(token, `The aggregate ${name}() is only allowed in the SELECT list`);
    }
    const definition = Object.hasOwn(queryFunctions, name) ? queryFunctions[name] : undefined;
    if (definition === undefined || !definition.dialects.includes(this.#dialect)) {
      throw this.#error(token, `Unknown function ${token.text}${spellingHint(name, this.#dialect)}`);
    }
    this.#index++;
    const args = this.#nested(token, () => this.#parseItems(')'));
    if (args.length < definition.minArgs || args.length > definition.maxArgs) {
      const expected =
        definition.minArgs === definition.maxArgs
          ? String(definition.minArgs)
          : Number.isFinite(definition.maxArgs)
            ? `${definition.minArgs} to ${definition.maxArgs}`
            : `at least ${definition.minArgs}`;
      throw this.#error(token, `${name} takes ${expected} argument${expected === '1' ? '' : 's'}, not ${args.length}`);
    }
    return this.#node({ kind: 'call', name, args }, args);
  }

  #nested<T>(token: Token, parse: () => T): T {
    if (++this.#nesting > MAX_NESTING) throw this.#error(token, `Nesting deeper than ${MAX_NESTING} levels`);
    try {
      return parse();
    } finally {
      this.#nesting--;
    }
  }

  #node(expression: Expression, children: readonly Expression[]): Expression {
    let depth = 0;
    for (const child of children) depth = Math.max(depth, this.#depths.get(child) ?? 0);
    if (depth + 1 > MAX_DEPTH) throw this.#error(this.#peek(), `Expression nested deeper than ${MAX_DEPTH} levels`);
    this.#depths.set(expression, depth + 1);
    return expression;
  }

  #peek(): Token {
    // The token list always ends with `end`, and the parser never steps past it.
    return this.#tokens[this.#index] ?? (this.#tokens[this.#tokens.length - 1] as Token);
  }

  #next(): Token {
    const token = this.#peek();
    if (token.kind !== 'end') this.#index++;
    return token;
  }

  #isSymbol(text: string): boolean {
    const token = this.#peek();
    return token.kind === 'symbol' && token.text === text;
  }

  #acceptSymbol(text: string): boolean {
    if (!this.#isSymbol(text)) return false;
    this.#index++;
    return true;
  }

  #expectSymbol(text: string): void {
    if (!this.#acceptSymbol(text)) throw this.#error(this.#peek(), `Expected "${text}"`);
  }

  #isKeyword(word: string): boolean {
    const token = this.#peek();
    return token.kind === 'identifier' && token.text.toUpperCase() === word;
  }

  #acceptKeyword(word: string): boolean {
    if (!this.#isKeyword(word)) return false;
    this.#index++;
    return true;
  }

  #expectKeyword(word: string): void {
    if (!this.#acceptKeyword(word)) throw this.#error(this.#peek(), `Expected ${word}`);
  }

  #expectEnd(): void {
    const token = this.#peek();
    if (token.kind !== 'end') throw this.#error(token, `Unexpected ${describe(token)}`);
  }

  #error(token: Token, detail: string): Error {
    const found = /^Expected| expects/.test(detail) ? ` but found ${describe(token)}` : '';
    return queryError(this.#text, token.offset, detail + found);
  }
}

function describe(token: Token): string {
  return token.kind === 'end'
    ? 'end of query'
    : `"${token.text.length > 40 ? `${token.text.slice(0, 40)}...` : token.text}"`;
}

function spellingHint(name: string, dialect: Dialect): string {
  const other = dialect === 'twin' ? name.replace('_WITH', 'WITH') : name.replace(/^(STARTS|ENDS)WITH$/, '$1_WITH');
  if (other === name || !Object.hasOwn(queryFunctions, other)) return '';
  return dialect === 'twin' ? ` (twin queries spell it ${other})` : ` (routing conditions spell it ${other})`;
}

/** Drops a leading collection qualifier: `devices.tags.x`, `devices.modules.moduleId`, `devices.jobs.jobId`. */
function qualifyPath(segments: PathSegment[], collection: Collection | undefined): PathSegment[] {
  if (collection === undefined || typeof segments[0] !== 'string' || segments[0].toLowerCase() !== 'devices') {
    return segments;
  }
  const second = segments[1];
  const sub = typeof second === 'string' ? second.toLowerCase() : undefined;
  if (collection !== 'devices' && segments.length > 2 && `devices.${sub}` === collection) return segments.slice(2);
  return segments.length > 1 ? segments.slice(1) : segments;
}

/** Same path, compared case-insensitively. */
export function samePath(a: PathExpression, b: PathExpression): boolean {
  return (
    a.segments.length === b.segments.length &&
    a.segments.every((segment, index) => {
      const other = b.segments[index];
      return typeof segment === 'string' && typeof other === 'string'
        ? segment.toLowerCase() === other.toLowerCase()
        : segment === other;
    })
  );
}

function validateQuery(
  text: string,
  query: {
    collection: Collection;
    selection: Selection;
    groupBy: PathExpression | undefined;
    groupOffset: number;
    offsets: readonly number[];
  },
): void {
  const { collection, selection, groupBy, groupOffset, offsets } = query;
  if (groupBy !== undefined && collection !== 'devices') {
    throw queryError(text, groupOffset, `GROUP BY is only supported FROM devices, not FROM ${collection}`);
  }
  if (selection.kind === 'all') {
    if (groupBy !== undefined) throw queryError(text, groupOffset, 'SELECT * cannot be grouped');
    return;
  }
  if (collection === 'devices.jobs') {
    throw queryError(text, offsets[0], 'Queries FROM devices.jobs only support SELECT *');
  }
  const aggregates = selection.projections.filter((projection) => projection.kind === 'aggregate');
  const names = new Set<string>();
  for (const [index, projection] of selection.projections.entries()) {
    const offset = offsets[index];
    if (projection.kind === 'attribute') {
      if (groupBy !== undefined && !samePath(projection.path, groupBy)) {
        throw queryError(text, offset, 'With GROUP BY, every selected attribute must be the grouped attribute');
      }
      if (groupBy === undefined && aggregates.length > 0) {
        throw queryError(text, offset, 'Attributes and aggregates cannot be mixed without GROUP BY');
      }
    }
    const name = (projection.alias ?? lastName(projection))?.toLowerCase();
    if (name !== undefined) {
      if (names.has(name)) throw queryError(text, offset, `The output name ${name} is selected twice`);
      names.add(name);
    }
  }
}

function lastName(projection: Projection): string | undefined {
  if (projection.kind !== 'attribute') return undefined;
  const last = projection.path.segments[projection.path.segments.length - 1];
  return typeof last === 'string' ? last : undefined;
}
