#!/usr/bin/env node
// Checks the Moddable bundle: it parses as ES2020 (acorn refuses anything newer), imports nothing (the glue passes
// `embedded:` classes, `crypt`, `hmac` and `timer` to createEcma419Host), and reaches no Node API. XS runs far more
// than ES2020 (embedded-runtimes.md §2.1), so this is about staying loadable by older XS builds, not about XS gaps.
//
// Usage: node scripts/moddable-check.mjs <file.js>...   Exit 1 with `file:line:column  rule: message` per finding.
import { readFileSync } from 'node:fs';
import { checkSource, formatViolations } from './espruino-gate.mjs';

/** The rules applied to the ES2020 module. */
export const MODDABLE_RULES = new Set(['module-import', 'dynamic-import', 'node-api']);

/**
 * Checks one ES2020 module.
 * @param {string} source
 * @returns {import('./espruino-gate.mjs').Violation[]}
 * @throws {SyntaxError} when the source is not ES2020 (or not JavaScript)
 */
export function checkModdableBundle(source) {
  return checkSource(source, { sourceType: 'module', ecmaVersion: 2020, rules: MODDABLE_RULES });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let count = 0;
  for (const file of process.argv.slice(2)) {
    try {
      const violations = checkModdableBundle(readFileSync(file, 'utf8'));
      if (violations.length > 0) console.error(formatViolations(file, violations));
      count += violations.length;
    } catch (error) {
      console.error(`${file}: not an ES2020 module: ${error.message}`);
      count += 1;
    }
  }
  if (count > 0) {
    console.error(`moddable-check: ${count} problem(s) in the ES2020 bundle`);
    process.exit(1);
  }
  console.log('moddable-check: ok (ES2020, no imports, no Node API)');
}
