/**
 * Drives the C simulated MCU of firmware-bridge/mcu (`fb_sim`, built with `make -C firmware-bridge/mcu sim O=<dir>`):
 * line commands on its stdin, one JSON event per line on its stdout (CLI and events: firmware-bridge/mcu/README.md).
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** One event the simulator printed. */
export type SimEvent = Record<string, unknown> & { readonly event: string };

const mcuDir = fileURLToPath(new URL('../../mcu/', import.meta.url));

/**
 * Builds `fb_sim` into `outDir` and returns its path.
 * @throws Error saying what is missing when make or the C compiler fails.
 */
export function buildSimulator(outDir: string): string {
  try {
    execFileSync('make', ['-s', '-C', mcuDir, 'sim', `O=${outDir}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
    throw new Error(`could not build the simulated MCU (make and a C compiler are required): ${stderr}`);
  }
  return `${outDir}/fb_sim`;
}

/** A running `fb_sim`. */
export class FbSim {
  readonly events: SimEvent[] = [];
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #exited: Promise<unknown>;

  constructor(binary: string, args: readonly string[]) {
    this.#child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#exited = new Promise((resolve) => this.#child.once('exit', resolve));
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as SimEvent);
      } catch {
        this.events.push({ event: 'unparsed', line });
      }
    });
  }

  /** Sends one command line (`telemetry k=v body`, `report {...}`, `twin-get`, `settle 3 complete`, `state`). */
  command(line: string): void {
    this.#child.stdin.write(`${line}\n`);
  }

  /** The first event matching `predicate`, waiting up to `timeoutMs` for it. */
  async waitFor(predicate: (event: SimEvent) => boolean, what: string, timeoutMs = 30_000): Promise<SimEvent> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(predicate);
      if (found) return found;
      if (Date.now() > end) {
        throw new Error(`timed out waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-8))}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** Stops the simulator (`quit`, then SIGKILL if it lingers). */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    this.command('quit');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 2000);
    await this.#exited;
    clearTimeout(timer);
  }
}
