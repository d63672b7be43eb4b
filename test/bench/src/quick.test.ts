import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const runner = fileURLToPath(new URL('./run.mjs', import.meta.url));

// CI's guard that the benchmark still runs: every workload, small, against the built hub and Mosquitto (installed
// by the runner when missing). It asserts completion and delivery only; figures are for `npm run bench`.
it('npm run bench -- --quick completes every workload and delivers every message', async () => {
  const child = spawn(process.execPath, [runner, '--quick'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  expect(output, output).not.toContain('FAILED');
  expect(code, output).toBe(0);
  for (const id of ['W1', 'W2', 'W3', 'W4', 'W5', 'W6', 'W7', 'W8']) {
    expect(output).toMatch(new RegExp(`^\\| ${id} \\|`, 'm'));
  }
}, 240_000);
