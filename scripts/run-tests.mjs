#!/usr/bin/env node
// Runs the whole vitest suite and prints the plain closing line `N passed, N failed` (CI reads that line, not
// vitest's own summary). Two passes: everything that may run in parallel, then the interop suites that bind
// port 443 (the official Azure SDKs cannot dial another port), one file at a time.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const reportDir = mkdtempSync(join(tmpdir(), 'fieldhub-vitest-'));
const extra = process.argv.slice(2);

const passes = [
  { name: 'parallel', args: ['--project', 'unit', '--project', 'integration'] },
  { name: 'port-443', args: ['--project', 'interop-443', '--no-file-parallelism'], optional: true },
];

let passed = 0;
let failed = 0;
let skipped = 0;
let exitCode = 0;
for (const pass of passes) {
  const report = join(reportDir, `${pass.name}.json`);
  const result = spawnSync(
    process.execPath,
    [
      vitest,
      'run',
      ...pass.args,
      '--passWithNoTests',
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${report}`,
      ...extra,
    ],
    { cwd: root, stdio: 'inherit', env: process.env },
  );
  if (!existsSync(report)) {
    if (pass.optional && result.status === 0) continue;
    // vitest died before reporting: count the pass as one failure so CI never reads it as green.
    failed += 1;
    exitCode = 1;
    continue;
  }
  const json = JSON.parse(readFileSync(report, 'utf8'));
  passed += json.numPassedTests ?? 0;
  failed += json.numFailedTests ?? 0;
  skipped += (json.numPendingTests ?? 0) + (json.numTodoTests ?? 0);
  // Suites that fail to load (syntax error, failed import) report no tests: count each as a failure.
  for (const suite of json.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).length === 0) failed += 1;
  }
  if (result.status !== 0) exitCode = 1;
}
rmSync(reportDir, { recursive: true, force: true });
if (failed > 0) exitCode = 1;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(exitCode);
