import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig, validateGatewayConfig } from './config';
import { createJsonLogger, redact } from './logger';

const key = 'c2VjcmV0LWtleS1vZi1kMQ==';

describe('gateway config', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fieldhub-bridge-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fills the defaults: AMQP, 115200 baud, no devices', () => {
    expect(validateGatewayConfig({ hub: { hostName: 'h' }, ports: [{ path: '/dev/ttyUSB0' }] })).toEqual({
      hub: { hostName: 'h', transport: 'amqp' },
      ports: [{ path: '/dev/ttyUSB0', baudRate: 115200, devices: [] }],
    });
  });

  it.each([
    [{ ports: [{ path: 'p' }] }, 'hub: must be an object'],
    [{ hub: { hostName: 'h', transport: 'http' }, ports: [{ path: 'p' }] }, "hub.transport: must be 'amqp' or 'mqtt'"],
    [{ hub: { hostName: 'h' }, ports: [] }, 'ports: must be a non-empty array'],
    [{ hub: { hostName: 'h' }, ports: [{ path: 'p', baudRate: 0 }] }, 'ports[0].baudRate: must be an integer'],
    [{ hub: { hostName: 'h' }, ports: [{ path: 'p' }, { path: 'p' }] }, 'ports[1].path: p is listed twice'],
    [
      { hub: { hostName: 'h' }, ports: [{ path: 'p', devices: [{ deviceId: 'd' }] }] },
      'ports[0].devices[0]: give exactly one',
    ],
    [{ hub: { hostName: 'h', colour: 1 }, ports: [{ path: 'p' }] }, 'hub.colour: unknown field'],
    [
      {
        hub: { hostName: 'h' },
        ports: [{ path: 'p', devices: [{ connectionString: `HostName=other;DeviceId=d;SharedAccessKey=${key}` }] }],
      },
      'ports[0].devices[0].connectionString: names HostName other, not hub.hostName',
    ],
  ])('refuses %j naming the field', (input, message) => {
    expect(() => validateGatewayConfig(input, 'bridge.json')).toThrow(`bridge.json: ${message}`);
  });

  it('keeps a key out of the error about its connection string', () => {
    const input = {
      hub: { hostName: 'h' },
      ports: [{ path: 'p', devices: [{ connectionString: `DeviceId=d;SharedAccessKey=${key}` }] }],
    };
    expect(() => validateGatewayConfig(input)).toThrow(/connectionString: is not a device connection string/);
    try {
      validateGatewayConfig(input);
    } catch (error) {
      expect(String((error as Error).message)).not.toContain(key);
    }
  });

  it('reads a file, with hub.ca relative to it, and names the file in errors', async () => {
    await writeFile(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    await writeFile(
      join(dir, 'bridge.json'),
      JSON.stringify({ hub: { hostName: 'h', ca: 'ca.pem' }, ports: [{ path: 'p' }] }),
    );
    const config = await loadGatewayConfig(join(dir, 'bridge.json'));
    expect(config.hub.ca).toContain('BEGIN CERTIFICATE');
    await writeFile(join(dir, 'broken.json'), '{ "hub": ');
    await expect(loadGatewayConfig(join(dir, 'broken.json'))).rejects.toThrow(`${join(dir, 'broken.json')}: not JSON`);
    await expect(loadGatewayConfig(join(dir, 'missing.json'))).rejects.toThrow('cannot read the config file (ENOENT)');
  });

  it('names no part of a key in the error for a file that is not JSON (the parser quotes the text around the error)', async () => {
    await writeFile(
      join(dir, 'unquoted.json'),
      `{ "hub": { "hostName": "h" }, "ports": [{ "path": "p", "devices": [{ "deviceId": "d", "sharedAccessKey": ${key} }] }] }`,
    );
    const error = await loadGatewayConfig(join(dir, 'unquoted.json')).then(
      () => undefined,
      (caught: unknown) => caught as Error,
    );
    expect(error?.message).toContain('not JSON');
    expect(error?.message).not.toContain(key.slice(0, 6));
    expect(error?.cause).toBeUndefined();
  });
});

describe('gateway logs', () => {
  it('never writes keys, signatures or tokens', () => {
    const lines: string[] = [];
    const logger = createJsonLogger('debug', (line) => lines.push(line));
    logger.warn?.('device client failed', {
      sharedAccessKey: key,
      message: `refused SharedAccessSignature sr=h%2Fdevices%2Fd&sig=abcDEF%2B&se=1 with HostName=h;SharedAccessKey=${key}`,
      error: new Error('bad token sig=xyz'),
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(key);
    expect(lines[0]).not.toContain('abcDEF');
    expect(lines[0]).not.toContain('xyz');
    expect(JSON.parse(lines[0] as string)).toMatchObject({ level: 40, msg: 'device client failed' });
    expect(redact({ token: 't' })).toEqual({ token: '[redacted]' });
  });

  it('drops lines below the level', () => {
    const lines: string[] = [];
    const logger = createJsonLogger('warn', (line) => lines.push(line));
    logger.info?.('quiet');
    logger.error?.('loud');
    expect(lines.map((line) => JSON.parse(line).msg)).toEqual(['loud']);
  });
});
