#!/usr/bin/env node
// The dialect check: the slim sources are written in a restricted TypeScript dialect (ARCHITECTURE.md, "Embedded
// targets") so that the Espruino bundle needs no regenerator, no iterator protocol and no Map/Set, and stays small.
// Each file is transpiled alone (typescript.transpileModule, target ES2022: types erased, syntax kept) and checked
// with the Espruino gate's rules that Babel's lowering cannot fix or that the dialect bans for size. Findings point
// at the TypeScript source through the transpiler's source map.
//
// Usage: node scripts/dialect-check.mjs [file.ts...]   (default: src/**/*.ts without tests and hosts/node.ts)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { checkSource, describe, ESPRUINO_RULES } from './espruino-gate.mjs';

/** Gate rules that do not apply to the sources: Babel lowers these constructs correctly for Espruino (block
 * scoping included: it renames a shadowing `let`). */
const loweredByBabel = new Set([
  'block-scope',
  'template-literal',
  'tagged-template',
  'private-name',
  'static-block',
  'numeric-separator',
  'logical-assignment',
  'trailing-comma',
]);

/** The rules the dialect enforces; `host-global` only outside the host adapters (`src/hosts/`). */
export function dialectRules(file) {
  const rules = new Set([...ESPRUINO_RULES].filter((rule) => !loweredByBabel.has(rule)));
  if (!/[\\/]hosts[\\/]/.test(file)) rules.add('host-global');
  return rules;
}

const base64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decodes a source map's `mappings` into, per generated line, [generatedColumn, sourceLine, sourceColumn]. */
function decodeMappings(mappings) {
  const lines = [];
  let sourceLine = 0;
  let sourceColumn = 0;
  let sourceIndex = 0;
  let nameIndex = 0;
  for (const line of mappings.split(';')) {
    const segments = [];
    let generatedColumn = 0;
    for (const segment of line.split(',')) {
      if (!segment) continue;
      const values = [];
      let value = 0;
      let shift = 0;
      for (const char of segment) {
        const digit = base64.indexOf(char);
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
          continue;
        }
        values.push(value & 1 ? -(value >>> 1) : value >>> 1);
        value = 0;
        shift = 0;
      }
      generatedColumn += values[0];
      if (values.length >= 4) {
        sourceIndex += values[1];
        sourceLine += values[2];
        sourceColumn += values[3];
        if (values.length >= 5) nameIndex += values[4];
        segments.push([generatedColumn, sourceLine, sourceColumn]);
      }
    }
    lines.push(segments);
  }
  void sourceIndex;
  void nameIndex;
  return lines;
}

/** Maps a 1-based generated position to the 1-based source position (the generated one when unmapped). */
function originalPosition(lines, line, column) {
  const segments = lines[line - 1] ?? [];
  let best;
  for (const segment of segments) if (segment[0] <= column - 1) best = segment;
  if (!best) best = segments[0];
  return best ? { line: best[1] + 1, column: best[2] + 1 } : { line, column };
}

/**
 * Checks one TypeScript source file.
 * @param {string} file path (used for the rule selection and the transpiler's file name)
 * @param {string} source the TypeScript text
 * @returns {{ line: number, column: number, rule: string, message: string }[]} positions in the TypeScript source
 */
export function checkDialect(file, source) {
  const output = ts.transpileModule(source, {
    fileName: file,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      sourceMap: true,
      isolatedModules: true,
      useDefineForClassFields: true,
    },
  });
  const code = output.outputText.replace(/\n\/\/# sourceMappingURL=.*$/, '\n');
  const lines = decodeMappings(JSON.parse(output.sourceMapText ?? '{"mappings":""}').mappings);
  return checkSource(code, { sourceType: 'module', rules: dialectRules(file) }).map((violation) => {
    const mapped = { ...violation, ...originalPosition(lines, violation.line, violation.column) };
    if (violation.declaredAt) {
      mapped.declaredAt = originalPosition(lines, violation.declaredAt.line, violation.declaredAt.column);
    }
    mapped.message = describe(mapped);
    return mapped;
  });
}

/** The files the dialect covers: `src/**\/*.ts` without tests, declarations, fixtures and the Node host. */
export function dialectFiles(root) {
  const out = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) {
        if (entry !== '__fixtures__') walk(path);
      } else if (entry.endsWith('.ts') && !entry.endsWith('.test.ts') && !entry.endsWith('.d.ts')) {
        if (relative(root, path).split(/[\\/]/).join('/') !== 'src/hosts/node.ts') out.push(path);
      }
    }
  };
  walk(join(root, 'src'));
  return out.sort();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = new URL('..', import.meta.url).pathname;
  const files = process.argv.length > 2 ? process.argv.slice(2) : dialectFiles(root);
  let count = 0;
  for (const file of files) {
    const violations = checkDialect(file, readFileSync(file, 'utf8'));
    for (const v of violations)
      console.error(`${relative(process.cwd(), file)}:${v.line}:${v.column}  ${v.rule}: ${v.message}`);
    count += violations.length;
  }
  if (count > 0) {
    console.error(
      `dialect-check: ${count} construct(s) outside the slim dialect (ARCHITECTURE.md, "Embedded targets")`,
    );
    process.exit(1);
  }
  console.log(`dialect-check: ok (${files.length} files)`);
}
