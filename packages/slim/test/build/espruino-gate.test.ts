import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkSource, ESPRUINO_RULES } from '../../scripts/espruino-gate.mjs';
import { checkModdableBundle } from '../../scripts/moddable-check.mjs';

const rulesOf = (source: string) => checkSource(source).map((violation) => violation.rule);

/** One tiny sample per rule; each must be rejected for that rule. */
const samples: Array<[rule: string, source: string]> = [
  ['destructuring', 'var o = {}; var { a } = o;'],
  ['destructuring', 'var l = []; var [b] = l;'],
  ['spread', 'var l = []; f(...l); function f() {}'],
  ['spread', 'var o = {}; var c = { ...o };'],
  ['rest', 'function f(...args) { return args; }'],
  ['default-parameter', 'function f(a = 1) { return a; }'],
  ['async', 'async function f() {}'],
  ['await', 'async function f(p) { await p; }'],
  ['generator', 'function* f() {}'],
  ['generator', 'function* f() { yield 1; }'],
  ['exponent', 'var a = 2 ** 3;'],
  ['exponent', 'var a = 2; a **= 3;'],
  ['optional-chaining', 'var o = {}; var a = o?.b;'],
  ['logical-assignment', 'var a; a ??= 1;'],
  ['computed-key', 'var k = "x"; var o = { [k]: 1 };'],
  ['computed-key', 'var k = "x"; class C { [k]() {} }'],
  ['trailing-comma', 'function f(a) { return a; } f(1,);'],
  ['trailing-comma', 'function f(a,) { return a; }'],
  ['tagged-template', 'function tag() {} var a = tag`x`;'],
  ['template-literal', 'var a = 1; var b = `a\u0024{a}`;'],
  ['private-name', 'class C { #a = 1; get() { return this.#a; } }'],
  ['static-block', 'class C { static { } }'],
  ['class-extends-expression', 'function make() { return Error; } class C extends make() {}'],
  ['bigint', 'var a = 10n;'],
  ['numeric-separator', 'var a = 1_000;'],
  ['label', 'outer: for (;;) { break outer; }'],
  ['with', 'var o = { a: 1 }; with (o) { a; }'],
  ['line-continuation', 'var s = "one \\\ntwo";'],
  ['new-target', 'function F() { return new.target; }'],
  ['dynamic-import', 'var p = import("x");'],
  ['regex-flags', 'var r = /a/s;'],
  ['regex-flags', 'var r = /a/u;'],
  ['regex-flags', 'var r = /a/y;'],
  ['regex-syntax', 'var r = /(?<year>\\d+)/;'],
  ['regex-syntax', 'var r = /(?<=a)b/;'],
  ['reserved-identifier', 'var of = 1;'],
  ['reserved-identifier', 'var static = 1;'],
  ['reserved-identifier', '(function (undefined) { return undefined; })();'],
  ['missing-global', 'var m = new Map();'],
  ['missing-global', 'var s = new Set();'],
  ['missing-global', 'var w = new WeakMap();'],
  ['missing-global', 'var s = Symbol("x");'],
  ['missing-global', 'var e = new TextEncoder();'],
  ['missing-global', 'var r = Reflect.ownKeys({});'],
  ['missing-global', 'var p = new Proxy({}, {});'],
  ['missing-global', 'queueMicrotask(function () {});'],
  ['missing-global', 'var g = globalThis;'],
  ['missing-global', 'var b = BigInt(1);'],
  ['missing-builtin', 'var a = Array.from([1]);'],
  ['missing-builtin', 'var o = Object.freeze({});'],
  ['missing-builtin', 'var n = Math.trunc(1.5);'],
  ['missing-builtin', 'var o = {}; var e = o.propertyIsEnumerable("a");'],
  ['node-api', 'var fs = require("fs");'],
  ['node-api', 'var b = Buffer.from("x");'],
  ['node-api', 'var e = process.env;'],
  ['hoisting', 'var a = f(); function f() { return 1; }'],
  ['hoisting', 'function g() { var a = f(); function f() { return 1; } return a; }'],
  ['hoisting', '(function () { f(); })(); function f() {}'],
  ['hoisting', 'function a() { return b(); } a(); function b() {}'],
  ['hoisting', 'var a = function () { return b(); }; a(); function b() {}'],
  ['hoisting', 'exports.f = f; function f() {}'],
  ['loop-closure', 'var fs = []; for (let i = 0; i < 3; i++) { fs.push(function () { return i; }); }'],
  ['loop-closure', 'var fs = []; for (const k in {}) { fs.push(() => k); }'],
  ['loop-closure', 'var fs = []; for (const v of []) { fs.push(() => v); }'],
  ['loop-closure', 'var fs = []; for (var i = 0; i < 3; i++) { let v = i; fs.push(() => v); }'],
  ['loop-closure', 'var fs = []; var i = 0; while (i < 3) { const v = i++; fs.push(function () { return v; }); }'],
  ['block-scope', 'function f(c) { let x = 1; if (c) { let x = 2; } return x; }'],
  ['block-scope', 'function f() { var i = 5; for (let i = 0; i < 3; i++) {} return i; }'],
  ['block-scope', 'var x = 1; switch (x) { case 1: const x = 2; }'],
  ['block-scope', 'function f(a) { { class a {} } return a; }'],
  ['return-newline', 'function f() { return\n42; }'],
  ['var-hoisting', 'function f() { g(v); var v = 1; } function g() {}'],
  ['var-hoisting', 'function f() { x = 1; var x; return x; }'],
  ['var-hoisting', 'var r = (function () { return w; })(); var w = 1;'],
];

describe('the Espruino syntax gate', () => {
  it.each(samples)('rejects %s: %s', (rule, source) => {
    expect(rulesOf(source)).toContain(rule);
  });

  it('has a sample for every rule it applies', () => {
    const covered = new Set(samples.map(([rule]) => rule));
    const missing = [...ESPRUINO_RULES].filter((rule) => !covered.has(rule));
    expect(missing).toEqual([]);
  });

  it('passes what Espruino runs: ES5, classes, arrows, getters, shorthand, for-of, ??, define-before-use', () => {
    const clean = `
      'use strict';
      var entry = function (code) { return { code: code, status: Math.floor(code / 1000) }; };
      function helper(a) { return a + 1; }
      var value = helper(1);
      function later() { return value; }
      class Base extends Error { constructor(message) { super(message); this.name = 'Base'; } static make() { return new Base('x'); } }
      class Client { constructor(host) { this.host = host; this.size = 0; } get connected() { return this.size > 0; } }
      var holder = { host: null, get ready() { return true; }, method() { return later(); } };
      var arrow = (x) => x * 2;
      var bytes = new Uint8Array(4);
      for (var i = 0; i < bytes.length; i++) bytes[i] = i;
      for (const b of [1, 2]) arrow(b);
      for (var key in holder) arrow(key);
      var pick = holder.host ?? 'none';
      var hasMap = typeof Map !== 'undefined';
      var re = /^devices\\/([^/]+)\\/messages/gi;
      try { JSON.parse('{'); } catch (error) { pick = String(error); }
      (function () { var inner = helper(2); return inner; })();
      function block(c) { if (c) { let only = 1; return only; } for (var n = 0; n < 2; n++) { let step = n; arrow(step); } return; }
      function ends(c) {
        if (c) return
      }
      var st = holder.static, un = undefined;
      function vars(a) { var kind = typeof later2; var later2 = 1; a = 2; var a; function inner() { return late3; } var late3 = 3; return inner() + kind; }
      var deferred = function () { return notYet(); };
      function notYet() { return 1; }
      deferred();
      exports.createClient = function createClient(h) { return new Client(h); };
      exports.later = later;
    `;
    expect(checkSource(clean)).toEqual([]);
  });

  it('reports no return-newline for a property named return or a return closed by a semicolon', () => {
    expect(checkSource('var o = { return: 1 };\nvar r = o.return\n+ 1;\nfunction f() { return;\n}')).toEqual([]);
  });

  it('does not count a shadowing local as the missing global', () => {
    expect(checkSource('function f(Map) { return new Map(); } var Set = function () {}; new Set();')).toEqual([]);
  });

  it('reports the line and column of each finding, and where the late function is declared', () => {
    const [violation] = checkSource('var a = 1;\nvar b = f();\nfunction f() { return a; }');
    expect(violation).toMatchObject({ line: 2, column: 9, rule: 'hoisting', declaredAt: { line: 3, column: 1 } });
    expect(violation?.message).toContain('f (declared at 3:1)');
  });
});

describe('the gate on the built Espruino script', () => {
  const built = new URL('../../dist/espruino/fieldhub-slim.min.js', import.meta.url);
  const script = () => {
    if (!existsSync(built)) throw new Error(`${built.pathname} is missing: run npm run build -w @fieldhub/slim first`);
    return readFileSync(built, 'utf8');
  };

  it('passes the script as built', () => {
    expect(checkSource(script())).toEqual([]);
  });

  // A regression a lowering or minifier change could bring, spliced into the real script: each one is caught.
  const regressions: Array<[rule: string, where: 'start' | 'end', source: string]> = [
    [
      'template-literal',
      'end',
      'var t = { h: function () { return 1; }, f: function () { return [1].map(() => `\u0024{this.h()}`); } };',
    ],
    ['hoisting', 'start', 'var early = late(); function late() { return 1; }'],
    ['loop-closure', 'end', 'var fs = []; for (var n = 0; n < 3; n++) { let v = n; fs.push(() => v); }'],
    ['destructuring', 'end', 'var { createClient: c } = exports;'],
    ['return-newline', 'end', 'function r() { return\n1; }'],
    ['missing-global', 'end', 'var seen = new Map();'],
  ];
  it.each(regressions)('rejects it with %s added at the %s', (rule, where, source) => {
    const code = where === 'start' ? `${source}\n${script()}` : `${script()}\n${source}`;
    expect(checkSource(code).map((violation) => violation.rule)).toContain(rule);
  });
});

describe('the Espruino example', () => {
  it('keeps to what Espruino runs (its require calls are the host glue)', () => {
    const main = readFileSync(new URL('../../../../examples/espruino/main.js', import.meta.url), 'utf8');
    const rules = new Set([...ESPRUINO_RULES].filter((rule) => rule !== 'node-api'));
    expect(checkSource(main, { rules })).toEqual([]);
  });
});

describe('the Moddable bundle check', () => {
  it('passes an ES2020 module that imports nothing', () => {
    const source = 'class A { constructor() { this.a = 1n; } }\nconst b = A ?? null;\nexport { A as createClient, b };';
    expect(checkModdableBundle(source)).toEqual([]);
  });

  it('refuses syntax newer than ES2020', () => {
    expect(() => checkModdableBundle('let a; a ??= 1;')).toThrow(SyntaxError);
    expect(() => checkModdableBundle('class A { b = 1; }')).toThrow(SyntaxError);
  });

  it('rejects imports and Node APIs', () => {
    const rules = checkModdableBundle(
      'import TCP from "embedded:io/socket/tcp";\nexport const b = Buffer.from(TCP);',
    ).map((v) => v.rule);
    expect(rules).toEqual(['module-import', 'node-api']);
  });
});
