import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';

/** The repository root. */
export const root = new URL('../../../..', import.meta.url).pathname;
const cli = join(root, 'packages/cli/bin/fieldhub.js');

/** What a CLI run ended with. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI (packages/cli/dist) in a child process. Asynchronous on purpose: a hub answering the CLI may
 * run in the test's own event loop.
 */
export function run(
  args: readonly string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      {
        cwd: root,
        timeout: options.timeoutMs ?? 30_000,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, NO_COLOR: '1', FIELDHUB_DEBUG: '', ...options.env },
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Builds a package with tsup when its dist is missing (never rebuilds: tsup cleans dist under concurrent runs). */
export async function buildIfMissing(): Promise<void> {
  for (const [dir, entry] of [
    ['packages/hub', 'dist/index.js'],
    ['packages/service', 'dist/index.js'],
    ['packages/cli', 'dist/bin.js'],
  ] as const) {
    if (existsSync(join(root, dir, entry))) continue;
    await new Promise<void>((resolve, reject) => {
      execFile('npx', ['tsup'], { cwd: join(root, dir) }, (error) => (error ? reject(error) : resolve()));
    });
  }
}

/** Asserts a user error: exit 1, nothing on stdout, one line on stderr naming `text`, no stack trace. */
export function expectFailure(result: Run, text: string): void {
  expect(result.code, result.stdout).toBe(1);
  expect(result.stdout).toBe('');
  const lines = result.stderr.trim().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(result.stderr).toMatch(/^fieldhub: /);
  expect(result.stderr).toContain(text);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}
