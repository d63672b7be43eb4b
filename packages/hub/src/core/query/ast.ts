/** The collections a query can read (reference §6). */
export const Collection = {
  Devices: 'devices',
  Modules: 'devices.modules',
  Jobs: 'devices.jobs',
} as const;
/** One of {@link Collection}. */
export type Collection = (typeof Collection)[keyof typeof Collection];

/**
 * The two spellings of the language: twin/job queries accept `STARTSWITH`/`ENDSWITH`, routing conditions accept
 * `STARTS_WITH`/`ENDS_WITH` and the rest of the routing function set; each rejects the other's names (reference §0.11).
 */
export const Dialect = {
  Twin: 'twin',
  Routing: 'routing',
} as const;
/** One of {@link Dialect}. */
export type Dialect = (typeof Dialect)[keyof typeof Dialect];

/** A JSON primitive, or `undefined` (routing's `undefined` literal, and a missing attribute). */
export type Primitive = string | number | boolean | null | undefined;

/**
 * One step of an attribute path: a name (matched case-insensitively) or an array index (`x[0]`).
 * A name reached with `x['a b']` is a name too.
 */
export type PathSegment = string | number;

/** `=`, `!=` (also written `<>`), `<`, `>`, `<=`, `>=`. */
export type ComparisonOperator = '=' | '!=' | '<' | '>' | '<=' | '>=';
/** `+ - * / %` between numbers. */
export type ArithmeticOperator = '+' | '-' | '*' | '/' | '%';
/** The aggregates of the SELECT clause. */
export type AggregateName = 'COUNT' | 'AVG' | 'SUM' | 'MIN' | 'MAX';

/** An expression of a WHERE clause, a routing condition or an aggregate's argument. */
export type Expression =
  | { readonly kind: 'literal'; readonly value: Primitive }
  | { readonly kind: 'array'; readonly items: readonly Expression[] }
  | { readonly kind: 'path'; readonly segments: readonly PathSegment[] }
  | { readonly kind: 'not'; readonly operand: Expression }
  | { readonly kind: 'negate'; readonly operand: Expression }
  | { readonly kind: 'and'; readonly operands: readonly Expression[] }
  | { readonly kind: 'or'; readonly operands: readonly Expression[] }
  | {
      readonly kind: 'compare';
      readonly operator: ComparisonOperator;
      readonly left: Expression;
      readonly right: Expression;
    }
  | {
      readonly kind: 'arithmetic';
      readonly operator: ArithmeticOperator;
      readonly left: Expression;
      readonly right: Expression;
    }
  | {
      readonly kind: 'in';
      /** True for `NIN`. */
      readonly negated: boolean;
      readonly operand: Expression;
      readonly list: readonly Expression[];
    }
  | {
      readonly kind: 'call';
      /** Upper-case function name, e.g. `IS_DEFINED`. */
      readonly name: string;
      readonly args: readonly Expression[];
    };

/** An attribute path expression. */
export type PathExpression = Extract<Expression, { kind: 'path' }>;

/** One item of a SELECT list. */
export type Projection =
  | { readonly kind: 'attribute'; readonly path: PathExpression; readonly alias: string | undefined }
  | {
      readonly kind: 'aggregate';
      readonly name: AggregateName;
      /** Undefined for `COUNT()`. */
      readonly argument: Expression | undefined;
      readonly alias: string | undefined;
    };

/** `SELECT *` or a list of projections. */
export type Selection =
  | { readonly kind: 'all' }
  | { readonly kind: 'projections'; readonly projections: readonly Projection[] };

/** A parsed IoT Hub query (reference §6). Paths are already stripped of their collection qualifier. */
export interface Query {
  /** The query text as given; `pageItems` hashes it into continuation tokens. */
  readonly text: string;
  readonly collection: Collection;
  /** `TOP n`, or undefined. */
  readonly top: number | undefined;
  readonly selection: Selection;
  readonly where: Expression | undefined;
  readonly groupBy: PathExpression | undefined;
}
