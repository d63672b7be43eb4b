#!/usr/bin/env node
// The size budget (issue #11): the minified Espruino script must stay under 12 KB, because Espruino keeps the
// module's source in its JsVar blocks (embedded-runtimes.md §1.2: 12-16 bytes per block, 1,700 to 16,383 blocks
// per board). Prints both bundles' sizes, raw and gzip, and what each module contributes to the Espruino script
// (its code after tree-shaking and lowering, without comments and whitespace: where the bytes go).
//
// Usage: node scripts/size-budget.mjs [--dist DIR] [--limit BYTES]   Exit 1 when over budget or a bundle is missing.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

/** The budget for `dist/espruino/fieldhub-slim.min.js`, in bytes: the script must be smaller. */
export const ESPRUINO_BUDGET_BYTES = 12 * 1024;

/** Raw and gzip sizes of a file. */
export function sizesOf(path) {
  const bytes = readFileSync(path);
  return { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}

/**
 * Checks the budget over a dist folder.
 * @param {string} dist the package's dist folder
 * @param {number} [limit] bytes the minified Espruino script must stay under
 * @returns {{ ok: boolean, lines: string[] }} the report, and whether the budget holds
 */
export function checkBudget(dist, limit = ESPRUINO_BUDGET_BYTES) {
  const lines = [];
  const bundles = [
    ['espruino', join(dist, 'espruino', 'fieldhub-slim.min.js')],
    ['espruino (unminified)', join(dist, 'espruino', 'fieldhub-slim.js')],
    ['moddable', join(dist, 'moddable', 'fieldhub-slim.js')],
  ];
  let ok = true;
  let espruinoBytes = 0;
  for (const [name, path] of bundles) {
    if (!existsSync(path)) {
      lines.push(`size-budget: missing ${path} (run rollup first)`);
      ok = false;
      continue;
    }
    const { raw, gzip } = sizesOf(path);
    // The budget is the minified script's (what a board loads), never the unminified one's.
    if (name === 'espruino') espruinoBytes = raw;
    lines.push(`  ${name.padEnd(22)} ${String(raw).padStart(7)} B raw  ${String(gzip).padStart(6)} B gzip`);
  }
  const over = espruinoBytes >= limit;
  const modulesPath = join(dist, 'espruino', 'fieldhub-slim.modules.json');
  if (existsSync(modulesPath)) {
    const modules = Object.entries(JSON.parse(readFileSync(modulesPath, 'utf8'))).sort((a, b) => b[1] - a[1]);
    const total = modules.reduce((sum, [, size]) => sum + size, 0);
    lines.push(`  espruino script by module (lowered code without comments and whitespace, ${total} B):`);
    for (const [id, size] of over ? modules : modules.slice(0, 6)) {
      const share = total > 0 ? Math.round((size / total) * 100) : 0;
      lines.push(`    ${String(size).padStart(6)} B ${String(share).padStart(3)}%  ${id}`);
    }
  }
  if (over) {
    ok = false;
    lines.push(
      `size-budget: the Espruino script is ${espruinoBytes} B, the budget is < ${limit} B: trim the largest modules above`,
    );
  } else if (ok) {
    lines.push(`size-budget: ok, Espruino script ${espruinoBytes} B < ${limit} B (${limit - espruinoBytes} B left)`);
  }
  return { ok, lines };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const option = (name) => {
    const index = args.indexOf(name);
    return index >= 0 ? args[index + 1] : undefined;
  };
  const dist = option('--dist') ?? new URL('../dist', import.meta.url).pathname;
  const limit = option('--limit') ? Number(option('--limit')) : ESPRUINO_BUDGET_BYTES;
  const { ok, lines } = checkBudget(dist, limit);
  (ok ? console.log : console.error)(lines.join('\n'));
  if (!ok) process.exit(1);
}
