import { readFileSync } from 'node:fs';
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
  ['new-target', 'function F() { return new.target; }'],
  ['dynamic-import', 'var p = import("x");'],
  ['regex-flags', 'var r = /a/s;'],
  ['regex-flags', 'var r = /a/u;'],
  ['regex-flags', 'var r = /a/y;'],
  ['regex-syntax', 'var r = /(?<year>\\d+)/;'],
  ['regex-syntax', 'var r = /(?<=a)b/;'],
  ['reserved-identifier', 'var of = 1;'],
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
      var deferred = function () { return notYet(); };
      function notYet() { return 1; }
      deferred();
      exports.createClient = function createClient(h) { return new Client(h); };
      exports.later = later;
    `;
    expect(checkSource(clean)).toEqual([]);
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
