#!/usr/bin/env node
// Runs the whole vitest suite and prints the plain closing line `N passed, N failed` (CI reads that line, not
// vitest's own summary). Two passes at the same time: everything that may run in parallel, and the interop suites
// that bind port 443 (the official Azure SDKs cannot dial another port), one file at a time. They overlap because
// the port-443 suites mostly wait (SDK retry and token-renewal timers, hub restarts) and bind nothing the parallel
// pass uses (its hubs take ephemeral ports); run one after the other they added their whole duration to CI's.
// The parallel pass prints as it goes; the port-443 pass's output is held and printed whole once it ends, so the
// two never interleave.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const reportDir = mkdtempSync(join(tmpdir(), 'fieldhub-vitest-'));
const extra = process.argv.slice(2);

const passes = [
  { name: 'parallel', args: ['--project', 'unit', '--project', 'integration'], live: true },
  { name: 'port-443', args: ['--project', 'interop-443', '--no-file-parallelism'], optional: true, live: false },
];

/** Runs one pass; resolves with its exit status and, unless it is live, everything it printed. */
function runPass(pass, report) {
  return new Promise((resolve) => {
    const child = spawn(
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
      { cwd: root, stdio: pass.live ? 'inherit' : ['ignore', 'pipe', 'pipe'], env: process.env },
    );
    const output = [];
    child.stdout?.on('data', (chunk) => output.push(chunk));
    child.stderr?.on('data', (chunk) => output.push(chunk));
    child.once('error', (error) => {
      output.push(Buffer.from(`${error.stack ?? error}\n`));
      resolve({ status: null, output: Buffer.concat(output) });
    });
    child.once('close', (status) => resolve({ status, output: Buffer.concat(output) }));
  });
}

const results = await Promise.all(
  passes.map(async (pass) => {
    const report = join(reportDir, `${pass.name}.json`);
    const { status, output } = await runPass(pass, report);
    return { pass, report, status, output };
  }),
);

let passed = 0;
let failed = 0;
let skipped = 0;
let exitCode = 0;
for (const { pass, report, status, output } of results) {
  if (!pass.live) {
    process.stdout.write(`\n---- ${pass.name} pass ----\n`);
    process.stdout.write(output);
  }
  if (!existsSync(report)) {
    if (pass.optional && status === 0) continue;
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
  if (status !== 0) exitCode = 1;
}
rmSync(reportDir, { recursive: true, force: true });
if (failed > 0) exitCode = 1;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(exitCode);
