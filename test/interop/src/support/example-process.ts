import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const repositoryRoot = fileURLToPath(new URL('../../../../', import.meta.url));

/** How a child process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A long-running child process (an example, a shell command) whose output is watched. */
export interface WatchedProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved as they arrived. */
  output(): string;
  /**
   * Resolves with the first match of `pattern` in the output at or after `from` (an output offset), waiting up to
   * `timeoutMs`.
   * @throws Error with the output so far when the process exits or the time runs out first.
   */
  waitFor(pattern: RegExp, options?: { timeoutMs?: number; from?: number }): Promise<RegExpExecArray>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ProcessExit>;
  /** Waits for the exit (up to `timeoutMs`, then SIGKILL and throw). */
  waitForExit(timeoutMs?: number): Promise<ProcessExit>;
  /** Sends SIGINT (Ctrl+C) and waits for the exit. */
  interrupt(timeoutMs?: number): Promise<ProcessExit>;
  /** SIGKILL if still running. */
  kill(): Promise<void>;
}

/** Options of {@link watchProcess}. */
export interface WatchProcessOptions {
  cwd?: string;
  /** Added to this process's environment. */
  env?: Record<string, string | undefined>;
  /**
   * Run it in its own process group and signal the whole group (for `sh -c '<command>'`, so that Ctrl+C reaches
   * the command the shell started, as it does in a terminal).
   */
  processGroup?: boolean;
}

/** Spawns `command args` and watches its output. */
export function watchProcess(
  command: string,
  args: readonly string[],
  options: WatchProcessOptions = {},
): WatchedProcess {
  const child = spawn(command, args, {
    cwd: options.cwd ?? repositoryRoot,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.processGroup === true,
  });
  const signal = (name: NodeJS.Signals) => {
    if (options.processGroup && child.pid !== undefined) {
      try {
        process.kill(-child.pid, name);
        return;
      } catch {
        // The group is gone already; fall through to the child itself.
      }
    }
    child.kill(name);
  };
  let output = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const wake of waiters) wake();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const wake of waiters) wake();
    });
  });
  const running = () => child.exitCode === null && child.signalCode === null;

  const waitFor = (pattern: RegExp, waitOptions: { timeoutMs?: number; from?: number } = {}) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const from = waitOptions.from ?? 0;
      const check = () => {
        const match = new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(output.slice(from));
        if (match) {
          finish();
          resolve(match);
        } else if (!running()) {
          finish();
          reject(new Error(`the process exited before printing ${pattern}; its output:\n${output}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${pattern} within ${waitOptions.timeoutMs ?? 20_000} ms; the output so far:\n${output}`));
      }, waitOptions.timeoutMs ?? 20_000);
      const finish = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const waitForExit = async (timeoutMs = 20_000): Promise<ProcessExit> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const result = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      signal('SIGKILL');
      await exited;
      throw new Error(`the process did not exit within ${timeoutMs} ms; its output:\n${output}`);
    }
    return result;
  };

  return {
    child,
    output: () => output,
    waitFor,
    exited,
    waitForExit,
    async interrupt(timeoutMs = 20_000) {
      if (running()) signal('SIGINT');
      return waitForExit(timeoutMs);
    },
    async kill() {
      if (running()) signal('SIGKILL');
      await exited;
    },
  };
}

/** Runs `node examples/<name>/src/<file>` (default `index.js`) with `args` and watches it. */
export function runExample(
  name: string,
  args: readonly string[] = [],
  options: WatchProcessOptions & { file?: string } = {},
): WatchedProcess {
  const script = `${repositoryRoot}examples/${name}/src/${options.file ?? 'index.js'}`;
  return watchProcess(process.execPath, [script, ...args], options);
}
