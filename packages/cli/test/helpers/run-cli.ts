import { type ChildProcess, execFile, spawn } from 'node:child_process';
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

/** A CLI process left running (monitor, simulate), to be signalled. */
export interface RunningCli {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when `check` holds for the output, or rejects after 30 s. */
  until(check: (output: { stdout: string; stderr: string }) => boolean, what: string): Promise<void>;
  /** The exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

/** Starts the built CLI and leaves it running. */
export function start(args: readonly string[]): RunningCli {
  const child = spawn(process.execPath, [cli, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', FIELDHUB_DEBUG: '' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async until(check, what) {
      const deadline = Date.now() + 30_000;
      while (!check({ stdout, stderr })) {
        if (Date.now() > deadline || child.exitCode !== null) {
          throw new Error(`no ${what}:\nstdout: ${stdout}\nstderr: ${stderr}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}
