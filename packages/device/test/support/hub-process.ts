/**
 * A hub as a child process through the public CLI (`fieldhub hub start`), so that a test can SIGKILL it: an
 * in-process `hub.stop()` is graceful and proves nothing about crashes. Needs the CLI and hub built
 * (`npx turbo run build`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = new URL('../../../cli/bin/fieldhub.js', import.meta.url).pathname;

/** hub.json, as the hub writes it. */
export interface HubJson {
  hostName: string;
  ports: { mqtt: number | null; amqp: number | null; https: number };
  caCertificate: string;
  serviceConnectionString: string;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** One data directory and MQTT port, and the hub process currently serving them (if any). */
export interface HubHarness {
  readonly dataDir: string;
  readonly mqttPort: number;
  /** hub.json of the running process. @throws when no hub runs. */
  readonly info: HubJson;
  /** The hub's CA (PEM); the same across restarts (it lives in the data directory). */
  readonly ca: string;
  readonly running: boolean;
  /** Starts a hub process on the data directory; `mqttPort` overrides the harness's port for this run. */
  start(options?: { mqttPort?: number }): Promise<HubJson>;
  /** SIGKILL: no drain, no flush beyond what was already durable. */
  kill(): Promise<void>;
  /** SIGTERM: graceful stop. */
  stop(): Promise<void>;
  /** Everything the processes printed (for failure messages). */
  output(): string;
  /** Stops the hub and deletes the data directory. */
  dispose(): Promise<void>;
}

/** Makes a harness with a new temporary data directory and a fixed MQTT port; nothing runs yet. */
export async function hubHarness(): Promise<HubHarness> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fieldhub-faults-'));
  const mqttPort = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let info: HubJson | undefined;
  let ca: string | undefined;
  let output = '';

  async function signal(name: NodeJS.Signals): Promise<void> {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(name);
    await exited;
    child = undefined;
    info = undefined;
  }

  return {
    dataDir,
    mqttPort,
    get info() {
      if (!info) throw new Error('no hub is running');
      return info;
    },
    get ca() {
      if (!ca) throw new Error('the hub never started');
      return ca;
    },
    get running() {
      return info !== undefined;
    },
    async start(options = {}) {
      if (child) throw new Error('a hub is running already');
      const hubJson = join(dataDir, 'hub.json');
      rmSync(hubJson, { force: true });
      const args = [
        cli,
        'hub',
        'start',
        '--data-dir',
        dataDir,
        '--host-name',
        'localhost',
        '--bind',
        '127.0.0.1',
        '--https-port',
        '0',
        '--mqtt-port',
        String(options.mqttPort ?? mqttPort),
        // An ephemeral AMQP port: the default 5671 would collide with other test runs on this machine.
        '--amqp-port',
        '0',
        '--log-level',
        'warn',
      ];
      const started = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child = started;
      started.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      started.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      exited = new Promise<void>((resolve) => started.once('exit', () => resolve()));
      const deadline = Date.now() + 30_000;
      while (!existsSync(hubJson)) {
        if (started.exitCode !== null || started.signalCode !== null) {
          child = undefined;
          throw new Error(`the hub exited with ${started.exitCode ?? started.signalCode}:\n${output}`);
        }
        if (Date.now() > deadline) {
          await signal('SIGKILL');
          throw new Error(`the hub did not write hub.json within 30 s:\n${output}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      info = JSON.parse(readFileSync(hubJson, 'utf8')) as HubJson;
      ca = readFileSync(info.caCertificate, 'utf8');
      return info;
    },
    kill: () => signal('SIGKILL'),
    stop: () => signal('SIGTERM'),
    output: () => output,
    async dispose() {
      await signal('SIGTERM');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
