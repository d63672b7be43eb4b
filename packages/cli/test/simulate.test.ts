import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIfMissing, expectFailure, root, run, start } from './helpers/run-cli';

// `fieldhub simulate` against a hub in its own process (`fieldhub hub start`), as a user runs them: 500 devices
// for 30 s on this machine must go without errors. Only outcomes are asserted, never timings.

let dataDir: string;
let hub: ChildProcess | undefined;
let hubOutput = '';

beforeAll(async () => {
  await buildIfMissing();
  dataDir = mkdtempSync(join(tmpdir(), 'fieldhub-simulate-'));
  hub = spawn(
    process.execPath,
    [
      join(root, 'packages/cli/bin/fieldhub.js'),
      'hub',
      'start',
      '--data-dir',
      dataDir,
      '--bind',
      '127.0.0.1',
      '--https-port',
      '0',
      '--mqtt-port',
      '0',
      '--amqp-port',
      '0',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const collect = (chunk: Buffer) => {
    hubOutput += chunk.toString();
  };
  hub.stdout?.on('data', collect);
  hub.stderr?.on('data', collect);
  const deadline = Date.now() + 30_000;
  while (!existsSync(join(dataDir, 'hub.json'))) {
    if (Date.now() > deadline) throw new Error(`the hub did not start:\n${hubOutput}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}, 120_000);

afterAll(async () => {
  if (hub && hub.exitCode === null) {
    const exited = new Promise((resolve) => hub?.once('exit', resolve));
    hub.kill('SIGTERM');
    await exited;
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

interface Summary {
  devices: number;
  connected: number;
  sent: number;
  acknowledged: number;
  errors: number;
  achievedRate: number;
  targetRate: number;
}

describe('fieldhub simulate', () => {
  it('runs 500 devices for 30 s without errors and reports the achieved rate', async () => {
    const result = await run(['simulate', '500', '--duration', '30', '--json', '--data-dir', dataDir], {
      timeoutMs: 150_000,
    });
    expect(result.code, `${result.stderr}\n${hubOutput}`).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary).toMatchObject({ devices: 500, connected: 500, errors: 0, targetRate: 500 });
    expect(summary.acknowledged).toBe(summary.sent);
    expect(summary.sent).toBeGreaterThan(0);
    expect(summary.achievedRate).toBeGreaterThan(0);
    // Not a terminal: the live figures come as whole lines on stderr.
    expect(result.stderr).toMatch(/connected 500\/500 \| sent \d+ \| acknowledged \d+ \| errors 0 \| [\d.]+ msgs\/s/);
  }, 180_000);

  it('reuses the devices it registered before, and prints a readable summary', async () => {
    const result = await run(['simulate', '5', '--rate', '2', '--duration', '2', '--data-dir', dataDir]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/devices\s+5\/5 connected/);
    expect(result.stdout).toMatch(/errors\s+0/);
    expect(result.stdout).toMatch(/achieved rate\s+[\d.]+ msgs\/s \(target 10 msgs\/s\)/);
  }, 60_000);

  it('stops on Ctrl+C with the summary of what ran', async () => {
    const simulation = start(['simulate', '3', '--json', '--data-dir', dataDir]);
    await simulation.until(({ stderr }) => / sending \| .* acknowledged [1-9]/.test(stderr), 'acknowledged telemetry');
    simulation.child.kill('SIGINT');
    expect(await simulation.exited).toBe(0);
    const summary = JSON.parse(simulation.stdout()) as Summary & { interrupted: boolean };
    expect(summary).toMatchObject({ devices: 3, connected: 3, errors: 0, interrupted: true });
    expect(summary.acknowledged).toBeGreaterThan(0);
  }, 60_000);

  it('exits 1 with one line when devices cannot connect', async () => {
    // A wrong MQTT port: nothing listens there; after the first device fails to connect, the rest are not tried.
    const result = await run(
      [
        'simulate',
        '2',
        '--duration',
        '1',
        '--mqtt-port',
        '1',
        '--prefix',
        'nowhere-',
        '--connect-timeout',
        '3',
        '--data-dir',
        dataDir,
      ],
      { timeoutMs: 60_000 },
    );
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n').at(-1)).toMatch(
      /^fieldhub: the simulation had [12] errors?; 0 of 2 devices connected \(first: nowhere-000[12] did not connect within 3 s\)$/,
    );
  }, 90_000);

  it('refuses a bad count', async () => {
    const result = await run(['simulate', 'many', '--data-dir', dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('must be a positive integer');
    expectFailure(await run(['simulate', '1', '--data-dir', join(dataDir, 'nowhere')]), 'no hub.json');
  });
});
