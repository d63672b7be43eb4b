import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSasToken } from '@fieldhub/auth';
import { parseConnectionString } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `fieldhub hub start --demo` (what the root `npm start` runs), as the built CLI in a child process: the hub
// starts, writes hub.json, and its demo device shows telemetry, reported properties and direct methods.

const cli = new URL('../bin/fieldhub.js', import.meta.url).pathname;

interface HubJson {
  hostName: string;
  ports: { mqtt: number; https: number };
  caCertificate: string;
  serviceConnectionString: string;
}

function start(dataDir: string): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(
    process.execPath,
    [
      cli,
      'hub',
      'start',
      '--demo',
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
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function until(check: () => boolean, what: string, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function rest(
  info: HubJson,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const cs = parseConnectionString(info.serviceConnectionString);
  const token = await createSasToken({
    resourceUri: info.hostName,
    key: cs.sharedAccessKey ?? '',
    keyName: cs.sharedAccessKeyName ?? '',
    ttlSeconds: 600,
  });
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        servername: info.hostName,
        port: info.ports.https,
        method,
        path: `${path}?api-version=2021-04-12`,
        ca: readFileSync(info.caCertificate),
        headers: { authorization: token, ...(payload ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('fieldhub hub start --demo', () => {
  let dataDir: string;
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'fieldhub-demo-'));
  });
  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs the hub with a demo device that sends telemetry, reports properties and answers direct methods', async () => {
    const hub = start(dataDir);
    try {
      const hubJson = join(dataDir, 'hub.json');
      await until(() => existsSync(hubJson), 'hub.json', hub.output);
      const info = JSON.parse(readFileSync(hubJson, 'utf8')) as HubJson;
      // The banner follows hub.json (written atomically by the hub as it starts listening) on stdout.
      await until(() => hub.output().includes('Owner connection string'), 'the banner', hub.output);
      await until(() => hub.output().includes('telemetry #1'), 'the first telemetry', hub.output);

      const invoked = await rest(info, 'POST', '/twins/demo-device/methods', { methodName: 'ping', payload: {} });
      expect(invoked.status).toBe(200);
      expect(invoked.json).toMatchObject({ status: 200, payload: { pong: true } });

      const twin = await rest(info, 'GET', '/twins/demo-device');
      expect(twin.json).toMatchObject({ properties: { reported: { firmware: '1.0.0' } } });

      const device = await rest(info, 'GET', '/devices/demo-device');
      expect(device.json).toMatchObject({ connectionState: 'Connected' });
    } finally {
      hub.child.kill('SIGTERM');
    }
    expect(await hub.exited).toBe(0);
    expect(existsSync(join(dataDir, 'hub.json'))).toBe(false);

    // A second start reuses the data dir and the registered demo device.
    const again = start(dataDir);
    try {
      await until(() => again.output().includes('telemetry #1'), 'the first telemetry after a restart', again.output);
    } finally {
      again.child.kill('SIGTERM');
    }
    expect(await again.exited).toBe(0);
  }, 90_000);
});
