// The processes a benchmark measures (the hub, Mosquitto) and the ones that load them (generator workers), with
// CPU and memory read from /proc so every process is measured the same way.
import { execFileSync, fork, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../../../', import.meta.url).pathname;
const cli = join(root, 'packages/cli/bin/fieldhub.js');
const clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** CPU seconds (user + system) a process used so far. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/** Resident set size in bytes. */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Measures CPU of `pids` (a name -> pid map) over a stretch of work: `stop()` returns percent of one core each. */
export function cpuMeter(pids) {
  const start = performance.now();
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
  return {
    stop() {
      const seconds = (performance.now() - start) / 1000;
      const result = {};
      for (const [name, pid] of Object.entries(pids)) {
        let used = 0;
        try {
          used = cpuSeconds(pid) - before[name];
        } catch {
          used = 0;
        }
        result[name] = Math.round((used / seconds) * 1000) / 10;
      }
      return result;
    },
  };
}

/** Starts `fieldhub hub start` on free ports; resolves once hub.json is written. */
export async function startHub({ dataDir, mqttPort, httpsPort, logLevel = 'warn' } = {}) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'fieldhub-bench-hub-'));
  const hubJson = join(dir, 'hub.json');
  rmSync(hubJson, { force: true });
  const ports = { mqtt: mqttPort ?? (await freePort()), https: httpsPort ?? (await freePort()) };
  const startedAt = performance.now();
  const child = spawn(
    process.execPath,
    [
      cli,
      'hub',
      'start',
      '--data-dir',
      dir,
      '--host-name',
      'localhost',
      '--bind',
      '127.0.0.1',
      '--mqtt-port',
      String(ports.mqtt),
      '--https-port',
      String(ports.https),
      '--amqp-port',
      '0',
      '--log-level',
      logLevel,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (chunk) => {
    output = (output + chunk).slice(-20_000);
  });
  child.stderr.on('data', (chunk) => {
    output = (output + chunk).slice(-20_000);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 30_000;
  while (!existsSync(hubJson)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the hub exited:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the hub wrote no hub.json within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const info = JSON.parse(readFileSync(hubJson, 'utf8'));
  return {
    kind: 'hub',
    pid: child.pid,
    dataDir: dir,
    startedAt,
    hostName: info.hostName,
    port: ports.mqtt,
    httpsPort: ports.https,
    amqpPort: info.ports.amqp,
    ca: readFileSync(info.caCertificate, 'utf8'),
    serviceConnectionString: info.serviceConnectionString,
    output: () => output,
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      if (!keepData && dataDir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Mosquitto binary, installed from Debian's package when missing. */
export function ensureMosquitto() {
  const candidates = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto'];
  const found = () => candidates.find((path) => existsSync(path));
  if (found()) return found();
  console.error('Mosquitto is not installed: installing Debian package mosquitto (apt-get)...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const run = (args) => execFileSync(sudo[0] ?? args[0], sudo.length ? args : args.slice(1), { env, stdio: 'pipe' });
  try {
    run(['apt-get', 'install', '-y', '--no-install-recommends', 'mosquitto']);
  } catch {
    run(['apt-get', 'update']);
    run(['apt-get', 'install', '-y', '--no-install-recommends', 'mosquitto']);
  }
  // The package enables a system service on 1883; the benchmark never uses it, and stops it where systemd runs.
  try {
    execFileSync('systemctl', ['stop', 'mosquitto'], { stdio: 'ignore' });
  } catch {}
  const path = found();
  if (!path) throw new Error('apt-get installed mosquitto but no mosquitto binary was found');
  return path;
}

/** The Mosquitto version line (e.g. `2.0.11`). */
export function mosquittoVersion(binary) {
  const output = spawnSyncText(binary, ['-h']);
  return /mosquitto version (\S+)/.exec(output)?.[1] ?? 'unknown';
}

function spawnSyncText(command, args) {
  try {
    return execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (error) {
    // `mosquitto -h` exits with 3 after printing its usage.
    return `${error.stdout ?? ''}${error.stderr ?? ''}`;
  }
}

/**
 * Starts Mosquitto with TLS on a free port (the hub's server certificate, so both sides do the same handshake),
 * `set_tcp_nodelay true`, no persistence, no authentication, no limit on queued messages, 1,000 in flight per client.
 */
export async function startMosquitto({ binary, tlsDir }) {
  const dir = mkdtempSync(join(tmpdir(), 'fieldhub-bench-mosquitto-'));
  for (const file of ['ca.pem', 'server.pem', 'server-key.pem']) copyFileSync(join(tlsDir, file), join(dir, file));
  const port = await freePort();
  const config = join(dir, 'mosquitto.conf');
  writeFileSync(
    config,
    [
      'per_listener_settings false',
      'allow_anonymous true',
      'persistence false',
      'set_tcp_nodelay true',
      // Unlimited (0) made Mosquitto scan a list of thousands of in-flight messages per PUBACK: 23.6k msgs/s at
      // 85% CPU on W1, against 28.8k at 96% with 1,000 (20: 22.0k, 100: 24.3k).
      'max_inflight_messages 1000',
      'max_queued_messages 0',
      'max_connections -1',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `listener ${port} 127.0.0.1`,
      `cafile ${join(dir, 'ca.pem')}`,
      `certfile ${join(dir, 'server.pem')}`,
      `keyfile ${join(dir, 'server-key.pem')}`,
      '',
    ].join('\n'),
  );
  const child = spawn(binary, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr.on('data', (chunk) => {
    output = (output + chunk).slice(-20_000);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await waitForPort(
    port,
    () => child.exitCode !== null,
    () => output,
  );
  return {
    kind: 'peer',
    pid: child.pid,
    port,
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPort(port, hasExited, output) {
  const { connect } = await import('node:net');
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (hasExited()) throw new Error(`mosquitto exited:\n${output()}`);
    const open = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port} within 10 s:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A generator worker process (`src/workers/<name>.mjs`) driven over IPC: `request(message)` sends one command
 * and resolves with the worker's answer (`{ ok: true, ... }`), rejecting on `{ ok: false, error }` or exit.
 */
export function startWorker(name) {
  const child = fork(new URL(`../workers/${name}.mjs`, import.meta.url).pathname, [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiting = [];
  child.on('message', (message) => {
    const next = waiting.shift();
    if (!next) return;
    if (message.ok) next.resolve(message);
    else next.reject(new Error(`worker ${name}: ${message.error}`));
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.once('exit', (code, signal) => {
    for (const next of waiting.splice(0)) next.reject(new Error(`worker ${name} exited (${code ?? signal})`));
  });
  return {
    pid: child.pid,
    request(message) {
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        child.send(message);
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
