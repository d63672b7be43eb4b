// Walks docs/getting-started.md on a fresh hub: every ```sh block, command by command, in the order of the guide,
// run as written by `sh` in a fresh working directory, and checks what each one did. The guide is the script: a
// command this test has no check for fails the test, so the guide and the test cannot drift apart.
//
// How the commands run verbatim:
// - the working directory is a temp dir whose `.fieldhub` is the hub's data dir (the CLI's default) and whose
//   `examples` links to the repository's, so `FIELDHUB_CA=.fieldhub/tls/ca.pem` and `node examples/...` resolve;
// - `npx` on PATH is a shim that runs this checkout's CLI (`npx fieldhub ...`) and nothing else;
// - `npm ci` is skipped (this checkout is installed and built); `npm start` starts the hub as `npm start` does
//   (`fieldhub hub start --demo`) but on 127.0.0.1 with free ports, so MQTT_PORT (which the guide calls optional)
//   is set for every command;
// - the example, which runs until Ctrl+C, is started in the background and stopped with SIGINT at the end.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { repositoryRoot, type WatchedProcess, watchProcess } from './support/example-process';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { apiVersion, serviceCall } from './support/service-rest';

const guidePath = join(repositoryRoot, 'docs', 'getting-started.md');

/** The commands of the ```sh blocks, in order: `\` continuations joined, comment lines and blank lines dropped. */
export function commandsOf(markdown: string): string[] {
  const commands: string[] = [];
  for (const block of markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    let pending = '';
    for (const line of (block[1] ?? '').split('\n')) {
      if (pending === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue;
      if (line.endsWith('\\')) {
        pending += `${line.slice(0, -1).trimEnd()} `;
        continue;
      }
      commands.push((pending + line).trim());
      pending = '';
    }
    if (pending !== '') commands.push(pending.trim());
  }
  return commands;
}

/** A command without a trailing `# comment` (for recognising it; it runs as written). */
function bare(command: string): string {
  return command.replace(/\s+#[^'"]*$/, '').trim();
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let workDir: string;
let hub: HubProcess | undefined;
let device: WatchedProcess | undefined;
let env: Record<string, string>;

beforeAll(() => {
  workDir = mkdtempSync(join(tmpdir(), 'fieldhub-getting-started-'));
  symlinkSync(join(repositoryRoot, 'examples'), join(workDir, 'examples'), 'dir');
  const bin = join(workDir, '.bin');
  mkdirSync(bin);
  const cli = join(repositoryRoot, 'packages', 'cli', 'bin', 'fieldhub.js');
  writeFileSync(
    join(bin, 'npx'),
    [
      '#!/bin/sh',
      `if [ "$1" = fieldhub ]; then shift; exec "${process.execPath}" "${cli}" "$@"; fi`,
      'echo "this walk only runs npx fieldhub, not: npx $*" >&2',
      'exit 127',
      '',
    ].join('\n'),
  );
  chmodSync(join(bin, 'npx'), 0o755);
  env = { PATH: `${bin}:${process.env.PATH ?? ''}`, NO_COLOR: '1' };
});

afterAll(async () => {
  await device?.kill();
  await hub?.dispose();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

function run(command: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      'sh',
      ['-c', command],
      { cwd: workDir, env: { ...process.env, ...env }, timeout: 45_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs a command and fails with everything it printed unless it exits 0. */
async function runOk(command: string): Promise<Result> {
  const result = await run(command);
  if (result.code !== 0) {
    throw new Error(`\`${command}\` exited ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  return result;
}

/** Runs a read-only command again until `accept` holds (the state it shows settles asynchronously). */
async function runUntil(command: string, accept: (result: Result) => boolean, timeoutMs = 15_000): Promise<Result> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await runOk(command);
    if (accept(result) || Date.now() > deadline) return result;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

function requireDevice(command: string): WatchedProcess {
  if (!device) throw new Error(`\`${command}\` needs the device, which the guide has not started yet`);
  return device;
}

function requireHub(command: string): HubProcess {
  if (!hub) throw new Error(`\`${command}\` needs the hub, which the guide has not started yet`);
  return hub;
}

it('the guide has the steps of the issue, in order', () => {
  const steps = commandsOf(readFileSync(guidePath, 'utf8')).map(bare);
  const expected = [
    /^npm ci$/,
    /^npm start$/,
    /^npx fieldhub device create /,
    /^npx fieldhub device connection-string /,
    /node examples\/telemetry\/src\/index\.js$/,
    /^npx fieldhub monitor .*--json/,
    /^npx fieldhub method invoke /,
    /^npx fieldhub twin update .*--desired /,
    /^npx fieldhub c2d send /,
  ];
  let at = 0;
  for (const step of steps) if (expected[at]?.test(step)) at += 1;
  expect(at, `steps found in order: ${steps.join(' | ')}`).toBe(expected.length);
});

/** One kind of documented command: how to recognise it, and how to run and check it. */
interface Step {
  pattern: RegExp;
  check(match: RegExpExecArray, command: string): Promise<void>;
}

const steps: Step[] = [
  {
    // This checkout is installed and built already.
    pattern: /^npm ci$/,
    check: async () => undefined,
  },
  {
    pattern: /^npm start$/,
    async check() {
      hub = await startHubProcess({ dataDir: join(workDir, '.fieldhub'), httpsPort: 0, extraArgs: ['--demo'] });
      env.MQTT_PORT = String(hub.info.ports.mqtt);
      expect(JSON.parse(readFileSync(join(workDir, '.fieldhub', 'hub.json'), 'utf8')).hostName).toBe('localhost');
    },
  },
  {
    // Runs until Ctrl+C: started in the background, in its own process group (a terminal's foreground job).
    pattern: /node examples\/telemetry\/src\/index\.js$/,
    async check(_match, command) {
      requireHub(command);
      device = watchProcess('sh', ['-c', command], { cwd: workDir, env, processGroup: true });
      await device.waitFor(/^connected to localhost as sensor-1$/m);
      await device.waitFor(/^telemetry #1 sent: \{"sequence":1,"temperature":[\d.]+,"humidity":\d+\}$/m);
    },
  },
  {
    pattern: /^npx fieldhub device create (\S+)$/,
    async check(match, command) {
      const deviceId = match[1] ?? '';
      const result = await runOk(command);
      expect(result.stdout).toContain(`Created device '${deviceId}'`);
      const path = `/devices/${deviceId}?api-version=${apiVersion}`;
      const created = await serviceCall(requireHub(command).info, 'GET', path, [200]);
      expect(created.json<{ authentication: { type: string } }>().authentication.type).toBe('sas');
    },
  },
  {
    pattern: /^npx fieldhub device connection-string (\S+)$/,
    async check(match, command) {
      const result = await runOk(command);
      expect(result.stdout.trim()).toMatch(
        new RegExp(`^HostName=localhost;DeviceId=${match[1]};SharedAccessKey=[A-Za-z0-9+/]+=*$`),
      );
    },
  },
  {
    pattern: /^npx fieldhub monitor (.*)$/,
    async check(match, command) {
      const flags = match[1] ?? '';
      const count = Number(/--count (\d+)/.exec(flags)?.[1]);
      const deviceId = /--device (\S+)/.exec(flags)?.[1];
      expect(flags).toContain('--json');
      const result = await runOk(command);
      const events = result.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { deviceId: string; body: string; properties: Record<string, string> });
      expect(events).toHaveLength(count);
      for (const event of events) {
        expect(event.deviceId).toBe(deviceId);
        expect(JSON.parse(event.body)).toMatchObject({ sequence: expect.any(Number), temperature: expect.any(Number) });
        expect(event.properties.sensor).toBe('simulated');
      }
    },
  },
  {
    pattern: /^npx fieldhub method invoke (\S+) (\S+) --payload '(.*)'$/,
    async check(match, command) {
      const payload = JSON.parse(match[3] ?? 'null');
      const result = await runOk(command);
      expect(JSON.parse(result.stdout)).toMatchObject({ status: 200, payload: { pong: true, received: payload } });
      const printed = `direct method ${match[2]}: ${JSON.stringify(payload)}`;
      await requireDevice(command).waitFor(new RegExp(escapeRegExp(printed)));
    },
  },
  {
    pattern: /^npx fieldhub twin update (\S+) --desired '(.*)'$/,
    async check(match, command) {
      const desired = JSON.parse(match[2] ?? '{}') as { telemetryIntervalSeconds: number };
      await runOk(command);
      const example = requireDevice(command);
      await example.waitFor(/desired properties changed: \{"telemetryIntervalSeconds":\d+,"\$version":\d+\}/);
      await example.waitFor(new RegExp(`telemetry interval is now ${desired.telemetryIntervalSeconds} s`));
    },
  },
  {
    // The reported side follows the device's report: read it again until it shows.
    pattern: /^npx fieldhub twin show (\S+)$/,
    async check(_match, command) {
      const reported = /reported:[\s\S]*"telemetryIntervalSeconds": 2,/;
      const result = await runUntil(command, (value) => reported.test(value.stdout));
      expect(result.stdout).toMatch(/desired:[\s\S]*"telemetryIntervalSeconds": 2,[\s\S]*reported:/);
      expect(result.stdout).toMatch(reported);
    },
  },
  {
    pattern: /^npx fieldhub c2d send (\S+) "(.*)"$/,
    async check(match, command) {
      const result = await runOk(command);
      expect(result.stdout).toMatch(new RegExp(`Queued message \\S+ for '${match[1]}'`));
      const printed = `cloud-to-device message: ${match[2] ?? ''}`;
      await requireDevice(command).waitFor(new RegExp(`^${escapeRegExp(printed)}$`, 'm'));
    },
  },
];

it('every command of docs/getting-started.md works as written on a fresh hub', { timeout: 240_000 }, async () => {
  const commands = commandsOf(readFileSync(guidePath, 'utf8'));
  for (const command of commands) {
    const step = bare(command);
    const known = steps
      .map((candidate) => ({ candidate, match: candidate.pattern.exec(step) }))
      .find((found) => found.match);
    if (!known?.match) throw new Error(`the walk has no check for \`${command}\`: add one to ${import.meta.url}`);
    await known.candidate.check(known.match, command);
  }

  // Step 8: Ctrl+C (SIGINT to the terminal's process group: the shell and the example) closes the device cleanly.
  // The example prints its last line only after client.close() resolved; the non-interactive shell around it
  // just dies of the signal, as no interactive shell would.
  const example = requireDevice('Ctrl+C');
  const exit = await example.interrupt();
  expect(example.output()).toMatch(/^closed after \d+ telemetry message\(s\)$/m);
  expect(exit.code === 0 || exit.signal === 'SIGINT', JSON.stringify(exit)).toBe(true);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
