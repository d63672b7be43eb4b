/**
 * `fieldhub bridge` as a user runs it (the built CLI in its own process, the gateway package loaded on demand):
 * one port from flags, an MCU simulated in TypeScript on a socat PTY, a real hub in this process. SIGTERM stops it
 * with exit code 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Capability } from '../src/index';
import { PtyPair } from './socat';
import { startTestBench, type TestBench, until } from './test-bench';
import { TsMcu } from './ts-mcu';

const cli = fileURLToPath(new URL('../../../packages/cli/bin/fieldhub.js', import.meta.url));

let bench: TestBench;

beforeAll(async () => {
  bench = await startTestBench('fieldhub-bridge-cli-');
});

afterAll(async () => {
  await bench?.close();
});

describe('fieldhub bridge', () => {
  let pair: PtyPair | undefined;
  let mcu: TsMcu | undefined;
  let child: ChildProcess | undefined;

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await mcu?.stop();
    await pair?.stop();
  });

  it('bridges the MCU on --port with --connection-string, and exits 0 on SIGTERM', async () => {
    const { hub, dir, telemetry } = bench;
    const device = await hub.createSasDevice('bridge-cli');
    const ca = join(dir, 'ca.pem');
    await writeFile(ca, hub.ca);
    pair = new PtyPair(join(dir, 'cli-gw'), join(dir, 'cli-mcu'));
    await pair.start();
    const connectionString = `HostName=${hub.hostName};DeviceId=bridge-cli;SharedAccessKey=${device.primaryKey}`;
    let output = '';
    const running = spawn(
      process.execPath,
      [
        cli,
        'bridge',
        '--port',
        pair.gatewayPath,
        '--connection-string',
        connectionString,
        '--hub-port',
        String(hub.info.ports.amqp),
        '--ca',
        ca,
        '--log-level',
        'info',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
    );
    child = running;
    const exited = new Promise<number | null>((resolve) => running.once('exit', (code) => resolve(code)));
    running.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    running.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    mcu = new TsMcu({ path: pair.mcuPath, deviceId: 'bridge-cli', capabilities: Capability.twin, bootId: 7 });
    mcu.start();
    await until(
      () => mcu?.received.some((message) => message.kind === 'status' && message.state === 2),
      `STATUS online; the CLI said:\n${output}`,
    );
    mcu.sendTelemetry(1, [['$.mid', 'cli-1']], 'from the CLI');
    await until(() => mcu?.acknowledged.get(1) === 200, 'TELEMETRY_ACK 200');
    await until(() => telemetry.find((event) => event.messageId === 'cli-1'), 'the telemetry at the hub');
    running.kill('SIGTERM');
    expect(await exited).toBe(0);
    // The log names the port and the device but holds no key.
    expect(output).toContain('device client connected');
    expect(output).not.toContain(device.primaryKey);
  });
});
