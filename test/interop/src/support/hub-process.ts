import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = new URL('../../../../packages/cli/bin/fieldhub.js', import.meta.url).pathname;

/** hub.json, as the hub writes it. */
export interface HubJson {
  hostName: string;
  ports: { mqtt: number | null; amqp: number | null; https: number };
  caCertificate: string;
  serviceConnectionString: string;
}

/** A hub running as a child process through the public CLI (`fieldhub hub start`). */
export interface HubProcess {
  readonly dataDir: string;
  readonly info: HubJson;
  /** Everything the process printed so far (for failure messages). */
  output(): string;
  /** SIGTERM and wait for exit (graceful stop). */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** Starts the hub again on the same data dir (after SIGTERM, or after kill()). The new handle owns the dir. */
  restart(): Promise<HubProcess>;
  /** Stops (if running) and removes the data dir. */
  dispose(): Promise<void>;
}

/** Options of {@link startHubProcess}. */
export interface HubProcessOptions {
  /** Reuse a data dir (default: a new temp dir, removed by dispose()). */
  dataDir?: string;
  /** A folder with ca.pem and ca-key.pem to seed the hub's CA with (default: FIELDHUB_TEST_CA_DIR). */
  caDir?: string;
  httpsPort?: number;
  /** MQTT-over-TLS port (default 0: a free one). Give a fixed one to keep it across restarts. */
  mqttPort?: number;
  extraArgs?: string[];
}

/** Set by restart(): the handle that made the temp data dir passes its ownership on. */
interface InternalOptions extends HubProcessOptions {
  ownsDataDir?: boolean;
}

/** Starts `fieldhub hub start` on 127.0.0.1 and waits until it has written hub.json. */
export async function startHubProcess(options: HubProcessOptions = {}): Promise<HubProcess> {
  const internal = options as InternalOptions;
  const ownsDataDir = internal.ownsDataDir ?? options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'fieldhub-interop-'));
  const caDir = options.caDir ?? process.env.FIELDHUB_TEST_CA_DIR;
  if (caDir && !existsSync(join(dataDir, 'tls', 'ca.pem'))) {
    mkdirSync(join(dataDir, 'tls'), { recursive: true });
    copyFileSync(join(caDir, 'ca.pem'), join(dataDir, 'tls', 'ca.pem'));
    copyFileSync(join(caDir, 'ca-key.pem'), join(dataDir, 'tls', 'ca-key.pem'));
  }
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
    String(options.httpsPort ?? 443),
    '--mqtt-port',
    String(options.mqttPort ?? 0),
    '--amqp-port',
    '0',
    '--log-level',
    'warn',
    ...(options.extraArgs ?? []),
  ];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const deadline = Date.now() + 30_000;
  while (!existsSync(hubJson)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the hub exited with ${child.exitCode ?? child.signalCode}:\n${output}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the hub did not write hub.json within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const info = JSON.parse(readFileSync(hubJson, 'utf8')) as HubJson;
  const signal = async (name: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(name);
    await exited;
  };
  const handle: HubProcess = {
    dataDir,
    info,
    output: () => output,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    async restart() {
      await signal('SIGTERM');
      const next: InternalOptions = { ...options, dataDir, ownsDataDir };
      return startHubProcess(next);
    },
    async dispose() {
      await signal('SIGTERM');
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return handle;
}
