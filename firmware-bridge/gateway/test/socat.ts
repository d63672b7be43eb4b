/** A socat PTY pair with stable link paths (PROTOCOL.md tests; reference §5.2), killed and restarted at will. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Fails with a clear message when socat is missing: the bridge tests never skip silently. */
export function requireSocat(): void {
  try {
    execFileSync('socat', ['-V'], { stdio: 'ignore' });
  } catch {
    throw new Error('socat is required by the firmware-bridge tests: apt-get install socat (see README, Testing)');
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One socat process joining two PTYs linked at `gatewayPath` and `mcuPath`. */
export class PtyPair {
  readonly gatewayPath: string;
  readonly mcuPath: string;
  #process: ChildProcess | undefined;

  constructor(gatewayPath: string, mcuPath: string) {
    this.gatewayPath = gatewayPath;
    this.mcuPath = mcuPath;
  }

  /** Starts socat and waits for both links ("plugs the cable in"). */
  async start(): Promise<void> {
    const child = spawn(
      'socat',
      ['-d', '-d', `pty,raw,echo=0,link=${this.gatewayPath}`, `pty,raw,echo=0,link=${this.mcuPath}`],
      { stdio: 'ignore' },
    );
    this.#process = child;
    await waitFor(() => existsSync(this.gatewayPath) && existsSync(this.mcuPath), 'socat to make its PTY links');
  }

  /** Kills socat ("pulls the cable"): both PTYs vanish; waits until the links are gone. */
  async stop(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    await waitFor(() => !existsSync(this.gatewayPath) && !existsSync(this.mcuPath), 'socat to remove its links');
  }
}
