#!/usr/bin/env node
// The Espruino syntax gate: parses a script with acorn and rejects every construct Espruino 2v29 lacks or runs
// differently (embedded-runtimes.md §1.1, EspruinoDocs info/Features.md), so that a bundle which would fail on a
// board fails the build instead. `dialect-check.mjs` applies a subset of the same rules to the slim sources.
//
// Usage: node scripts/espruino-gate.mjs [--glue] <file.js>...   Exit 1, one `file:line:column  rule: message` per
// finding. `--glue` checks a board's own script (like examples/espruino/main.js), which may `require` modules.
//
// Besides node types, two checks need scopes, so the walk below tracks them:
//  - hoisting (trap 1): Espruino parses as it executes and never hoists function declarations, so a function
//    declared later in a scope is `undefined` for code that runs before the declaration in the same activation
//    (top level, or inside an immediately invoked function). A call at load time to a function that itself uses
//    such a later function counts too (followed transitively).
//  - loop closures (trap 3): `let`/`const` are plain `var`s there, so a closure capturing a loop variable (or a
//    `let`/`const` declared in a loop body) sees the last value.
//  - block scope: for the same reason a `let`/`const` (or class, or function) declared in a block overwrites a
//    variable of the same name outside the block (Features.md: "let is parsed, but treated like var").
//  - `var` before its statement: Espruino creates a `var` when the statement runs, so a use before it (in the same
//    run of the function) reaches an outer variable, or assigns a new global.
// Semicolon insertion differs too (trap 4: `return\n42` returns 42 there), which the tokens show.
import { readFileSync } from 'node:fs';
import { parse } from 'acorn';
import { base, recursive } from 'acorn-walk';

/** Rule ids with a one-line description (printed with each finding). */
export const RULES = {
  destructuring: 'destructuring pattern (Espruino parses `var {a}=o` but binds nothing)',
  spread: 'spread element',
  rest: 'rest element / rest parameter',
  'default-parameter': 'default value (parameter or destructuring default)',
  async: 'async function',
  await: 'await',
  generator: 'generator function / yield',
  exponent: '`**` / `**=` operator',
  'optional-chaining': 'optional chaining `?.`',
  'logical-assignment': '`??=` / `||=` / `&&=`',
  'computed-key': 'computed property key `[k]`',
  'trailing-comma': 'trailing comma in arguments or parameters `f(a,)` (ES2017; only arrays and objects take one)',
  'tagged-template': 'tagged template',
  'template-literal':
    'template literal (trap 2: `this` used only inside a substitution in an arrow is not captured; lower to `+`)',
  'private-name': 'private class member `#x`',
  'static-block': 'class static block',
  'class-extends-expression': 'class extending an expression (Espruino only extends a plain name)',
  bigint: 'BigInt literal',
  'numeric-separator': 'numeric separator `1_000`',
  label: 'label',
  with: '`with` statement',
  'line-continuation':
    'string literal continued over a line break (`\\` before a newline; Features.md: not implemented)',
  'new-target': '`new.target` / `import.meta`',
  'dynamic-import': 'dynamic `import()`',
  'regex-flags': 'regular expression flag Espruino lacks (only g, i, m)',
  'regex-syntax': 'regular expression syntax Espruino lacks (named groups, lookbehind, \\p{...})',
  'reserved-identifier': 'identifier Espruino reserves (`of`, `static`; `undefined` as a binding)',
  'missing-global': 'global Espruino lacks',
  'missing-builtin': 'built-in function Espruino lacks',
  'node-api': 'Node.js API (the bundle must run without Node: hosts are injected)',
  'host-global': 'runtime global used outside a host adapter (timers, console): go through the injected host',
  'module-import': 'import in a bundle (the glue passes the runtime modules to the host factory)',
  hoisting: 'function used at load time before its declaration (trap 1: Espruino does not hoist functions)',
  'var-hoisting':
    '`var` used before its declaration in the same run of a function (Espruino creates it when the statement runs: before, the name is an outer or global variable)',
  'loop-closure':
    '`let`/`const` of a loop (head or body) captured by a closure (trap 3: no per-iteration binding, every closure sees the last value)',
  'block-scope':
    'declaration in a block shadowing an outer name (Espruino has no block scope: `let`/`const` are `var`s, so it overwrites the outer one)',
  'return-newline':
    '`return` then a line break then an expression (trap 4: Espruino inserts no semicolon and returns the expression)',
};

/** Globals Espruino does not have (reference §1.1 and Features.md). */
const missingGlobals = new Set([
  'Map',
  'Set',
  'WeakMap',
  'WeakSet',
  'WeakRef',
  'FinalizationRegistry',
  'Symbol',
  'TextEncoder',
  'TextDecoder',
  'Reflect',
  'Proxy',
  'queueMicrotask',
  'globalThis',
  'BigInt',
  'BigInt64Array',
  'BigUint64Array',
]);

/** Static built-ins Espruino lacks: `Array.from` (reference §1.1) and those EspruinoDocs Features.md lists as not
 * implemented. */
const missingBuiltins = {
  Array: new Set(['from']),
  Object: new Set(['freeze', 'seal', 'preventExtensions', 'isFrozen', 'isSealed', 'isExtensible']),
  Number: new Set(['isNaN', 'isFinite', 'isSafeInteger', 'EPSILON']),
  Math: new Set(['trunc', 'sign']),
};
/** Methods Espruino lacks on every object (Features.md): any `x.name` is reported, whatever `x` is. */
const missingMethods = new Set(['propertyIsEnumerable']);

const nodeGlobals = new Set(['require', 'process', 'Buffer', '__dirname', '__filename', 'setImmediate']);
const hostGlobals = new Set(['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'console', 'print']);
// Espruino's lexer makes these keywords (src/jslex.c): `var static` or `function (undefined)` do not parse there.
const reservedIdentifiers = new Set(['of', 'static']);
const reservedBindings = new Set(['undefined']);

/**
 * What Espruino lacks, as plain lists, for the engine tests (test/engines/espruino-traits.js deletes them from
 * QuickJS before the Espruino script runs): globals (but `globalThis`, which the test's scripts need), static
 * built-ins by owner, and methods every object lacks.
 */
export const ESPRUINO_MISSING = {
  globals: [...missingGlobals].filter((name) => name !== 'globalThis'),
  builtins: Object.fromEntries(Object.entries(missingBuiltins).map(([owner, names]) => [owner, [...names]])),
  methods: [...missingMethods],
};

/** Every rule: what the gate applies to the Espruino script. */
export const ESPRUINO_RULES = new Set(
  Object.keys(RULES).filter((rule) => rule !== 'host-global' && rule !== 'module-import'),
);

/**
 * @typedef {{ line: number, column: number, rule: string, message: string, detail?: string,
 *   declaredAt?: { line: number, column: number } }} Violation
 * @typedef {{ kind: string, start: number, scope: Scope, fn?: FunctionInfo, loc?: { line: number, column: number } }} Binding
 * @typedef {{ parent: Scope | null, deferDepth: number, bindings: Map<string, Binding>, loop?: boolean }} Scope
 *   `loop`: a block whose `let`/`const` are per iteration in ECMAScript (a loop head or body), not on Espruino
 * @typedef {{ eagerRefs: Binding[], deferDepth: number }} FunctionInfo
 */

/** The text of a finding: the rule, its detail, and where the function it uses is declared (hoisting). */
export function describe(violation) {
  let text = RULES[violation.rule];
  if (violation.detail) text += `: ${violation.detail}`;
  if (violation.declaredAt) text += ` (declared at ${violation.declaredAt.line}:${violation.declaredAt.column})`;
  return text;
}

/** Names bound by a pattern (parameters, declarators, catch parameters). */
function patternNames(pattern, out) {
  if (!pattern) return out;
  switch (pattern.type) {
    case 'Identifier':
      out.push(pattern.name);
      break;
    case 'ObjectPattern':
      for (const property of pattern.properties) {
        patternNames(property.type === 'RestElement' ? property.argument : property.value, out);
      }
      break;
    case 'ArrayPattern':
      for (const element of pattern.elements) patternNames(element, out);
      break;
    case 'AssignmentPattern':
      patternNames(pattern.left, out);
      break;
    case 'RestElement':
      patternNames(pattern.argument, out);
      break;
  }
  return out;
}

/** Binding kinds that are block scoped in ECMAScript and plain `var`s on Espruino. */
const lexicalKinds = new Set(['let', 'const', 'class']);

/** The names a statement declares at its block's level, with the node to report: let/const, class, function. */
function blockDeclarations(statement) {
  if (statement.type === 'VariableDeclaration') {
    if (statement.kind === 'var') return [];
    return statement.declarations.flatMap((declarator) =>
      patternNames(declarator.id, []).map((name) => [name, declarator]),
    );
  }
  if ((statement.type === 'FunctionDeclaration' || statement.type === 'ClassDeclaration') && statement.id) {
    return [[statement.id.name, statement.id]];
  }
  return [];
}

const isFunction = (node) =>
  node.type === 'FunctionExpression' || node.type === 'ArrowFunctionExpression' || node.type === 'FunctionDeclaration';

/** `var` names of a function body (not crossing into nested functions), each with where it is first declared. */
function varDeclarations(body) {
  const found = new Map();
  const skip = () => {};
  recursive(
    body,
    null,
    {
      Function: skip,
      Class: (node, st, c) => {
        if (node.superClass) c(node.superClass, st, 'Expression');
      },
      VariableDeclaration(node, st, c) {
        if (node.kind === 'var') {
          for (const declarator of node.declarations) {
            for (const name of patternNames(declarator.id, [])) if (!found.has(name)) found.set(name, declarator.start);
          }
        }
        base.VariableDeclaration(node, st, c);
      },
    },
    base,
  );
  return found;
}

/** The declaration a statement holds, unwrapping `export`. */
function declarationOf(statement) {
  if (statement.type === 'ExportNamedDeclaration' || statement.type === 'ExportDefaultDeclaration') {
    return statement.declaration ?? null;
  }
  return statement;
}

/**
 * Checks one script (or module) against the rules.
 * @param {string} source
 * @param {{ sourceType?: 'script' | 'module', rules?: Set<string>, ecmaVersion?: number | 'latest' }} [options]
 *   `ecmaVersion` limits the syntax acorn accepts (a newer construct is a SyntaxError)
 * @returns {Violation[]} sorted by position; empty when the source passes
 * @throws {SyntaxError} when acorn cannot parse the source at all
 */
export function checkSource(source, options = {}) {
  const rules = options.rules ?? ESPRUINO_RULES;
  const tokens = [];
  const ast = parse(source, {
    ecmaVersion: options.ecmaVersion ?? 'latest',
    sourceType: options.sourceType ?? 'script',
    locations: true,
    allowHashBang: true,
    onToken: tokens,
  });
  /** @type {Violation[]} */
  const violations = [];
  const reported = new Set();
  const report = (node, rule, detail, declaredAt) => {
    if (!rules.has(rule)) return;
    const key = `${node.start}:${rule}`;
    if (reported.has(key)) return;
    reported.add(key);
    /** @type {Violation} */
    const violation = { line: node.loc.start.line, column: node.loc.start.column + 1, rule, message: '' };
    if (detail) violation.detail = detail;
    if (declaredAt) violation.declaredAt = { line: declaredAt.line, column: declaredAt.column + 1 };
    violation.message = describe(violation);
    violations.push(violation);
  };

  /** @returns {Scope} */
  const newScope = (parent, deferDepth) => ({ parent, deferDepth, bindings: new Map() });
  const declare = (scope, name, kind, start, fn) => {
    scope.bindings.set(name, { kind, start, scope, fn });
  };
  /** Declares what a statement list binds at its own level (let/const/class/function, and imports). */
  const declareStatements = (scope, statements) => {
    for (const statement of statements) {
      if (statement.type === 'ImportDeclaration') {
        for (const specifier of statement.specifiers) declare(scope, specifier.local.name, 'import', -1);
        continue;
      }
      const declaration = declarationOf(statement);
      if (!declaration) continue;
      if (declaration.type === 'FunctionDeclaration' && declaration.id) {
        declare(scope, declaration.id.name, 'function', statement.start, {
          eagerRefs: [],
          deferDepth: scope.deferDepth + 1,
        });
        scope.bindings.get(declaration.id.name).loc = declaration.loc.start;
      } else if (declaration.type === 'ClassDeclaration' && declaration.id) {
        declare(scope, declaration.id.name, 'class', statement.start);
      } else if (declaration.type === 'VariableDeclaration' && declaration.kind !== 'var') {
        for (const declarator of declaration.declarations) {
          for (const name of patternNames(declarator.id, [])) declare(scope, name, declaration.kind, -1);
        }
      }
    }
  };
  const lookup = (scope, name) => {
    for (let current = scope; current; current = current.parent) {
      const binding = current.bindings.get(name);
      if (binding) return binding;
    }
    return undefined;
  };
  /** Follows a function's eager references transitively. */
  const eagerClosure = (binding) => {
    const seen = new Set();
    const queue = [binding];
    while (queue.length > 0) {
      const next = queue.pop();
      if (!next.fn) continue;
      for (const ref of next.fn.eagerRefs) {
        if (seen.has(ref)) continue;
        seen.add(ref);
        queue.push(ref);
      }
    }
    return seen;
  };

  /**
   * Walk state: the scope, the number of deferred (not immediately invoked) function bodies entered, the
   * function whose body this is (to record its eager references), and the node to treat as immediately invoked.
   * `inLoop`: inside a loop body of the current function (its blocks' `let`/`const` are per iteration).
   * @typedef {{ scope: Scope, deferDepth: number, fn: FunctionInfo | null, iife: object | null, typeofArg: object | null, call: object | null, ownerFn: FunctionInfo | null, inLoop: boolean }} State
   */
  const child = (st, patch) => ({ ...st, iife: null, typeofArg: null, call: null, ownerFn: null, ...patch });

  /** Espruino creates a `var` when its statement runs: used (read or assigned) before that in the same activation,
   * the name is an outer variable, or a new global. */
  const checkVarUse = (node, binding, st) => {
    if (binding.kind === 'var' && st.deferDepth === binding.scope.deferDepth && binding.start > node.start) {
      report(node, 'var-hoisting', node.name);
    }
  };

  const reference = (node, st) => {
    const name = node.name;
    if (reservedIdentifiers.has(name)) report(node, 'reserved-identifier', name);
    const binding = lookup(st.scope, name);
    if (!binding) {
      if (st.typeofArg === node) return; // `typeof X` is how code tests for a global safely
      if (missingGlobals.has(name)) report(node, 'missing-global', name);
      else if (nodeGlobals.has(name)) report(node, 'node-api', name);
      else if (hostGlobals.has(name)) report(node, 'host-global', name);
      return;
    }
    const eager = st.deferDepth === binding.scope.deferDepth;
    if (st.typeofArg !== node) checkVarUse(node, binding, st);
    if (binding.scope.loop && lexicalKinds.has(binding.kind) && st.deferDepth > binding.scope.deferDepth) {
      report(node, 'loop-closure', name);
    }
    if (binding.kind !== 'function' && !binding.fn) return;
    if (st.fn && binding.fn && st.fn !== binding.fn && st.deferDepth === st.fn.deferDepth) {
      // Used by the body of the function being walked when that body runs: a load-time call of it needs this.
      if (binding.scope.deferDepth < st.fn.deferDepth) st.fn.eagerRefs.push(binding);
    }
    if (!eager) return;
    if (binding.kind === 'function' && node.start < binding.start) {
      report(node, 'hoisting', name, binding.loc);
      return;
    }
    if (st.call === node) {
      for (const later of eagerClosure(binding)) {
        if (
          later.kind === 'function' &&
          later.scope.deferDepth === binding.scope.deferDepth &&
          later.start > node.start
        ) {
          const laterName = [...later.scope.bindings].find(([, value]) => value === later)?.[0];
          report(node, 'hoisting', `${name}() runs ${laterName}`, later.loc);
        }
      }
    }
  };

  const walkFunction = (node, st, ownerFn) => {
    if (node.async) report(node, 'async');
    if (node.generator) report(node, 'generator');
    const immediate = st.iife === node;
    const deferDepth = immediate ? st.deferDepth : st.deferDepth + 1;
    const scope = newScope(st.scope, deferDepth);
    if (node.type === 'FunctionExpression' && node.id) declare(scope, node.id.name, 'var', -1);
    for (const param of node.params) for (const name of patternNames(param, [])) declare(scope, name, 'param', -1);
    const fn = ownerFn ?? (immediate ? st.fn : null);
    // A function's own blocks are not per iteration of a loop around it: each call has its own variables.
    const inner = child(st, { scope, deferDepth, fn, inLoop: false });
    for (const param of node.params) walkPattern(param, inner, true);
    if (node.body.type === 'BlockStatement') {
      for (const [name, start] of varDeclarations(node.body)) {
        // `var a` over a parameter `a` is the parameter (on Espruino too).
        if (scope.bindings.get(name)?.kind !== 'param') declare(scope, name, 'var', start);
      }
      declareStatements(scope, node.body.body);
      for (const statement of node.body.body) visit(statement, inner);
    } else {
      visit(node.body, inner);
    }
  };

  /** Patterns: bindings and assignment targets; reports destructuring, rest and defaults. */
  const walkPattern = (node, st, isParam) => {
    if (!node) return;
    switch (node.type) {
      case 'Identifier': {
        if (reservedIdentifiers.has(node.name) || reservedBindings.has(node.name)) {
          report(node, 'reserved-identifier', node.name);
        }
        // An assignment target (a declaration is at its own position, which is never before itself).
        const binding = lookup(st.scope, node.name);
        if (binding) checkVarUse(node, binding, st);
        return;
      }
      case 'MemberExpression':
        visit(node, st);
        return;
      case 'ObjectPattern':
        report(node, 'destructuring');
        for (const property of node.properties) {
          if (property.type === 'RestElement') {
            walkPattern(property, st, isParam);
            continue;
          }
          if (property.computed) {
            report(property, 'computed-key');
            visit(property.key, st);
          }
          walkPattern(property.value, st, isParam);
        }
        return;
      case 'ArrayPattern':
        report(node, 'destructuring');
        for (const element of node.elements) walkPattern(element, st, isParam);
        return;
      case 'AssignmentPattern':
        report(node, 'default-parameter', isParam ? 'parameter default' : 'destructuring default');
        walkPattern(node.left, st, isParam);
        visit(node.right, st);
        return;
      case 'RestElement':
        report(node, 'rest');
        walkPattern(node.argument, st, isParam);
        return;
    }
  };

  /** A block's scope (not a function's top level): its declarations must not shadow outer names. */
  const blockScope = (st, statements, loop) => {
    const scope = newScope(st.scope, st.deferDepth);
    if (loop || st.inLoop) scope.loop = true;
    if (statements) {
      declareStatements(scope, statements);
      for (const statement of statements) {
        for (const [name, node] of blockDeclarations(statement)) {
          if (lookup(st.scope, name)) report(node, 'block-scope', name);
        }
      }
    }
    return child(st, { scope });
  };

  const checkRegex = (node) => {
    const { pattern, flags } = node.regex;
    const bad = flags.replace(/[gim]/g, '');
    if (bad) report(node, 'regex-flags', `/${bad}`);
    if (/(?<!\\)(?:\\\\)*\(\?<[=!]/.test(pattern)) report(node, 'regex-syntax', 'lookbehind');
    else if (/(?<!\\)(?:\\\\)*\(\?<[A-Za-z_$]/.test(pattern)) report(node, 'regex-syntax', 'named group');
    else if (/(?<!\\)(?:\\\\)*\\[kpP][<{]/.test(pattern)) report(node, 'regex-syntax', '\\k / \\p escape');
  };

  /** Where each token starts: `return-newline` looks at the token after a `return`. */
  const tokenAt = new Map(tokens.map((token, index) => [token.start, index]));

  /** The visitor overrides: everything else recurses through acorn-walk's `base`. */
  const visitors = {
    Identifier: reference,
    FunctionDeclaration(node, st) {
      const binding = node.id ? lookup(st.scope, node.id.name) : undefined;
      walkFunction(node, st, binding?.kind === 'function' && binding.start <= node.start ? binding.fn : null);
    },
    FunctionExpression: (node, st) => walkFunction(node, st, st.ownerFn ?? null),
    ArrowFunctionExpression: (node, st) => walkFunction(node, st, st.ownerFn ?? null),
    VariableDeclaration(node, st) {
      for (const declarator of node.declarations) {
        walkPattern(declarator.id, st, false);
        if (!declarator.init) continue;
        // `var f = function () {...}`: a load-time call of f runs its body, as for a declaration.
        let ownerFn = null;
        if (declarator.id.type === 'Identifier' && isFunction(declarator.init)) {
          const binding = lookup(st.scope, declarator.id.name);
          if (binding && !binding.fn) binding.fn = { eagerRefs: [], deferDepth: st.deferDepth + 1 };
          ownerFn = binding?.fn ?? null;
        }
        visit(declarator.init, child(st, { ownerFn }));
      }
    },
    BlockStatement(node, st) {
      const inner = blockScope(st, node.body, false);
      for (const statement of node.body) visit(statement, inner);
    },
    StaticBlock(node, st) {
      report(node, 'static-block');
      const inner = blockScope(st, node.body, false);
      for (const statement of node.body) visit(statement, inner);
    },
    SwitchStatement(node, st) {
      visit(node.discriminant, st);
      const statements = node.cases.flatMap((switchCase) => switchCase.consequent);
      const inner = blockScope(st, statements, false);
      for (const switchCase of node.cases) {
        if (switchCase.test) visit(switchCase.test, inner);
        for (const statement of switchCase.consequent) visit(statement, inner);
      }
    },
    ForStatement(node, st) {
      const lexical = node.init?.type === 'VariableDeclaration' && node.init.kind !== 'var';
      const inner = blockScope(st, lexical ? [node.init] : null, lexical);
      if (node.init) visit(node.init, inner);
      if (node.test) visit(node.test, inner);
      if (node.update) visit(node.update, inner);
      visit(node.body, child(inner, { inLoop: true }));
    },
    WhileStatement(node, st) {
      visit(node.test, st);
      visit(node.body, child(st, { inLoop: true }));
    },
    DoWhileStatement(node, st) {
      visit(node.body, child(st, { inLoop: true }));
      visit(node.test, st);
    },
    WithStatement(node, st) {
      report(node, 'with');
      visit(node.object, st);
      visit(node.body, st);
    },
    ReturnStatement(node, st) {
      if (node.argument) {
        visit(node.argument, st);
        return;
      }
      // `return` ended by a line break: ECMAScript inserts a semicolon, Espruino reads on (trap 4).
      const index = tokenAt.get(node.start);
      const next = index === undefined ? undefined : tokens[index + 1];
      const label = next?.type.label;
      if (next && label !== '}' && label !== ';' && label !== 'eof' && next.loc.start.line > node.loc.start.line) {
        report(node, 'return-newline');
      }
    },
    ForInStatement: (node, st) => visitForIn(node, st),
    ForOfStatement(node, st) {
      if (node.await) report(node, 'await', 'for await');
      visitForIn(node, st);
    },
    CatchClause(node, st) {
      const scope = newScope(st.scope, st.deferDepth);
      for (const name of patternNames(node.param, [])) declare(scope, name, 'catch', -1);
      const inner = child(st, { scope });
      walkPattern(node.param, inner, false);
      visit(node.body, inner);
    },
    Class(node, st) {
      const scope = newScope(st.scope, st.deferDepth);
      if (node.type === 'ClassExpression' && node.id) declare(scope, node.id.name, 'class', -1);
      if (node.superClass) {
        if (node.superClass.type !== 'Identifier') report(node.superClass, 'class-extends-expression');
        visit(node.superClass, st);
      }
      const inner = child(st, { scope });
      for (const member of node.body.body) {
        if (member.type === 'StaticBlock') {
          visitors.StaticBlock(member, inner);
          continue;
        }
        if (member.computed) {
          report(member.key, 'computed-key');
          visit(member.key, inner);
        }
        if (member.key?.type === 'PrivateIdentifier') report(member.key, 'private-name');
        if (!member.value) continue;
        if (member.type === 'PropertyDefinition' && !member.static) {
          // Instance field initialisers run at construction time, not while the class is defined.
          visit(member.value, child(inner, { deferDepth: inner.deferDepth + 1 }));
        } else {
          visit(member.value, inner);
        }
      }
    },
    ClassDeclaration: (node, st) => visitors.Class(node, st),
    ClassExpression: (node, st) => visitors.Class(node, st),
    CallExpression: (node, st) => visitCall(node, st),
    NewExpression: (node, st) => visitCall(node, st),
    UnaryExpression(node, st) {
      visit(node.argument, child(st, { typeofArg: node.operator === 'typeof' ? node.argument : null }));
    },
    MemberExpression(node, st) {
      if (
        node.object.type === 'Identifier' &&
        !node.computed &&
        node.property.type === 'Identifier' &&
        missingBuiltins[node.object.name]?.has(node.property.name) &&
        !lookup(st.scope, node.object.name)
      ) {
        report(node, 'missing-builtin', `${node.object.name}.${node.property.name}`);
      }
      if (!node.computed && node.property.type === 'Identifier' && missingMethods.has(node.property.name)) {
        report(node.property, 'missing-builtin', node.property.name);
      }
      if (node.property.type === 'PrivateIdentifier') report(node.property, 'private-name');
      visit(node.object, st);
      if (node.computed) visit(node.property, st);
    },
    ChainExpression(node, st) {
      report(node, 'optional-chaining');
      visit(node.expression, st);
    },
    BinaryExpression(node, st, c) {
      if (node.operator === '**') report(node, 'exponent');
      if (node.left.type === 'PrivateIdentifier') report(node.left, 'private-name');
      base.BinaryExpression(node, st, c);
    },
    AssignmentExpression(node, st) {
      if (node.operator === '**=') report(node, 'exponent');
      if (node.operator === '??=' || node.operator === '||=' || node.operator === '&&=') {
        report(node, 'logical-assignment');
      }
      walkPattern(node.left, st, false);
      visit(node.right, st);
    },
    ObjectExpression(node, st) {
      for (const property of node.properties) {
        if (property.type === 'SpreadElement') {
          visit(property, st);
          continue;
        }
        if (property.computed) {
          report(property, 'computed-key');
          visit(property.key, st);
        }
        visit(property.value, st);
      }
    },
    SpreadElement(node, st) {
      report(node, 'spread');
      visit(node.argument, st);
    },
    AwaitExpression(node, st) {
      report(node, 'await');
      visit(node.argument, st);
    },
    YieldExpression(node, st) {
      report(node, 'generator', 'yield');
      if (node.argument) visit(node.argument, st);
    },
    TemplateLiteral(node, st, c) {
      report(node, 'template-literal');
      base.TemplateLiteral(node, st, c);
    },
    TaggedTemplateExpression(node, st, c) {
      report(node, 'tagged-template');
      base.TaggedTemplateExpression(node, st, c);
    },
    Literal(node) {
      if (typeof node.bigint === 'string') report(node, 'bigint');
      // An unescaped line break can only follow a backslash in a string literal: a line continuation.
      if (typeof node.value === 'string' && /\\(?:\r|\n|\u2028|\u2029)/.test(node.raw))
        report(node, 'line-continuation');
      if (node.regex) checkRegex(node);
      if (typeof node.value === 'number' && node.raw.includes('_')) report(node, 'numeric-separator');
    },
    LabeledStatement(node, st) {
      report(node, 'label', node.label.name);
      visit(node.body, st);
    },
    MetaProperty(node) {
      report(node, 'new-target', `${node.meta.name}.${node.property.name}`);
    },
    ImportExpression(node, st) {
      report(node, 'dynamic-import');
      visit(node.source, st);
    },
    PrivateIdentifier(node) {
      report(node, 'private-name');
    },
    ExportNamedDeclaration(node, st) {
      if (node.declaration) visit(node.declaration, st);
      // `export { a as b }` references local bindings; re-exports (`from`) do not.
      if (!node.source) for (const specifier of node.specifiers) visit(specifier.local, st);
    },
    ExportDefaultDeclaration: (node, st) => visit(node.declaration, st),
    ImportDeclaration(node) {
      report(node, 'module-import', node.source.value);
    },
  };

  function visitForIn(node, st) {
    const lexical = node.left.type === 'VariableDeclaration' && node.left.kind !== 'var';
    visit(node.right, st);
    const inner = blockScope(st, lexical ? [node.left] : null, lexical);
    if (node.left.type === 'VariableDeclaration') visit(node.left, inner);
    else walkPattern(node.left, inner, false);
    visit(node.body, child(inner, { inLoop: true }));
  }

  function visitCall(node, st) {
    let callee = node.callee;
    // `(function () {...}).call(this)` runs as immediately as `(function () {...})()`.
    if (
      callee.type === 'MemberExpression' &&
      !callee.computed &&
      (callee.property.name === 'call' || callee.property.name === 'apply') &&
      isFunction(callee.object)
    ) {
      callee = callee.object;
    }
    if (isFunction(callee)) {
      visit(callee, child(st, { iife: callee }));
      if (callee !== node.callee) visit(node.callee.property, st);
    } else {
      visit(node.callee, child(st, { call: node.callee }));
    }
    for (const argument of node.arguments) visit(argument, st);
  }

  function visit(node, st) {
    recursive(node, st, visitors, base);
  }

  // Trailing commas leave no trace in the tree: look at the tokens (`,` right before `)`).
  for (let index = 1; index < tokens.length; index++) {
    if (tokens[index].type.label === ')' && tokens[index - 1].type.label === ',')
      report(tokens[index - 1], 'trailing-comma');
  }

  const program = newScope(null, 0);
  for (const [name, start] of varDeclarations(ast)) declare(program, name, 'var', start);
  declareStatements(program, ast.body);
  const root = {
    scope: program,
    deferDepth: 0,
    fn: null,
    iife: null,
    typeofArg: null,
    call: null,
    ownerFn: null,
    inLoop: false,
  };
  for (const statement of ast.body) visit(statement, root);
  return violations.sort((a, b) => a.line - b.line || a.column - b.column);
}

/** Formats violations as `file:line:column  rule: message` lines. */
export function formatViolations(file, violations) {
  return violations.map((v) => `${file}:${v.line}:${v.column}  ${v.rule}: ${v.message}`).join('\n');
}

/** Checks files; returns the number of violations (printing them), or throws on unreadable/unparsable input. */
export function gateFiles(files, options = {}) {
  let count = 0;
  for (const file of files) {
    let violations;
    try {
      violations = checkSource(readFileSync(file, 'utf8'), options);
    } catch (error) {
      console.error(`${file}: cannot parse: ${error.message}`);
      count += 1;
      continue;
    }
    if (violations.length > 0) console.error(formatViolations(file, violations));
    count += violations.length;
  }
  return count;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const glue = process.argv.includes('--glue');
  const files = process.argv.slice(2).filter((arg) => arg !== '--glue');
  if (files.length === 0) {
    console.error('usage: espruino-gate.mjs [--glue] <file.js>...');
    process.exit(2);
  }
  const rules = glue ? new Set([...ESPRUINO_RULES].filter((rule) => rule !== 'node-api')) : ESPRUINO_RULES;
  const count = gateFiles(files, { rules });
  if (count > 0) {
    console.error(`espruino-gate: ${count} construct(s) Espruino cannot run (see embedded-runtimes.md §1.1)`);
    process.exit(1);
  }
  console.log(`espruino-gate: ok (${files.join(', ')})`);
}
