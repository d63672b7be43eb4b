import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ArgumentError } from '@fieldhub/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig } from './config';

describe('resolveConfig', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'fieldhub-config-'));
    dirs.push(dir);
    return dir;
  };

  it("uses Azure's ports, localhost and ./.fieldhub with no configuration", () => {
    const config = resolveConfig({}, { env: {} });
    expect(config.ports).toEqual({ mqtt: 8883, amqp: 5671, https: 443 });
    expect(config.hostName).toBe('localhost');
    expect(config.hubName).toBe('localhost');
    expect(config.dataDir).toBe(resolve('./.fieldhub'));
    expect(config.core.partitionCount).toBe(4);
    expect(config.core.cloudToDevice.maxQueueDepth).toBe(50);
  });

  it('names the hub after the first label of the host name', () => {
    expect(resolveConfig({ hostName: 'plant.example.com' }, { env: {} }).hubName).toBe('plant');
  });

  it('lets flags win over environment variables, and those over the config file', () => {
    const dir = tempDir();
    const file = join(dir, 'fieldhub.json');
    writeFileSync(
      file,
      JSON.stringify({ hostName: 'from-file', ports: { https: 9443, mqtt: 9883 }, logLevel: 'debug' }),
    );
    const config = resolveConfig(
      { ports: { https: 10443 } },
      { env: { FIELDHUB_HOST_NAME: 'from-env', FIELDHUB_MQTT_PORT: '0' }, configFile: file },
    );
    expect(config.hostName).toBe('from-env');
    expect(config.ports).toEqual({ mqtt: 0, amqp: 5671, https: 10443 });
    expect(config.logLevel).toBe('debug');
  });

  it('reads <dataDir>/config.json when no file is named', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ bind: '127.0.0.1' }));
    expect(resolveConfig({ dataDir: dir }, { env: {} }).bind).toBe('127.0.0.1');
  });

  it('rejects a port out of range and a config file that is not a JSON object, naming the field', () => {
    expect(() => resolveConfig({}, { env: { FIELDHUB_HTTPS_PORT: '70000' } })).toThrow(ArgumentError);
    const dir = tempDir();
    const file = join(dir, 'bad.json');
    writeFileSync(file, '[1, 2]');
    expect(() => resolveConfig({}, { env: {}, configFile: file })).toThrow(/must hold a JSON object/);
    writeFileSync(file, '{ not json');
    expect(() => resolveConfig({}, { env: {}, configFile: file })).toThrow(ArgumentError);
  });

  it("has Azure's file upload defaults, and takes the container and storage from the environment and file", () => {
    const defaults = resolveConfig({}, { env: {} }).fileUpload;
    expect(defaults).toMatchObject({
      containerName: 'fieldhub-uploads',
      sasTtlMs: 3_600_000,
      notifications: true,
      notificationTtlMs: 3_600_000,
      notificationLockDurationMs: 60_000,
      notificationMaxDeliveryCount: 10,
    });
    expect(defaults.storageConnectionString).toBeUndefined();
    const dir = tempDir();
    const file = join(dir, 'fieldhub.json');
    writeFileSync(file, JSON.stringify({ fileUpload: { containerName: 'from-file', notifications: false } }));
    const config = resolveConfig(
      {},
      {
        env: {
          FIELDHUB_FILE_UPLOAD_CONTAINER: 'from-env',
          FIELDHUB_FILE_UPLOAD_STORAGE_CONNECTION_STRING: 'AccountName=a;AccountKey=a2V5',
        },
        configFile: file,
      },
    );
    expect(config.fileUpload.containerName).toBe('from-env');
    expect(config.fileUpload.notifications).toBe(false);
    expect(config.fileUpload.storageConnectionString).toBe('AccountName=a;AccountKey=a2V5');
  });

  it('has the provisioning service on by default on the hub host, and takes its scope and host from env and file', () => {
    expect(resolveConfig({ hostName: 'hub.example' }, { env: {} }).dps).toEqual({
      enabled: true,
      host: 'hub.example',
      idScope: undefined,
    });
    const dir = tempDir();
    const file = join(dir, 'fieldhub.json');
    writeFileSync(file, JSON.stringify({ dps: { idScope: '0neFROMFILE', enabled: false } }));
    const config = resolveConfig(
      {},
      { env: { FIELDHUB_DPS_HOST: 'dps.example', FIELDHUB_DPS_ID_SCOPE: '0neFROMENV' }, configFile: file },
    );
    expect(config.dps).toEqual({ enabled: false, host: 'dps.example', idScope: '0neFROMENV' });
    expect(() => resolveConfig({ dps: { idScope: 'not a scope' } }, { env: {} })).toThrow(/dps.idScope/);
    expect(() => resolveConfig({ dps: { host: 'a/b' } }, { env: {} })).toThrow(/dps.host/);
    expect(() => resolveConfig({ fileUpload: { containerName: 'enrollments' } }, { env: {} })).toThrow(
      /path the hub serves/,
    );
  });

  it('rejects file upload settings out of range, naming the field', () => {
    expect(() => resolveConfig({ fileUpload: { containerName: 'Bad_Name' } }, { env: {} })).toThrow(
      /fileUpload.containerName/,
    );
    expect(() => resolveConfig({ fileUpload: { containerName: 'devices' } }, { env: {} })).toThrow(
      /path the hub serves/,
    );
    expect(() => resolveConfig({ fileUpload: { notificationLockDurationMs: 1000 } }, { env: {} })).toThrow(
      /fileUpload.notificationLockDurationMs/,
    );
    expect(() => resolveConfig({ fileUpload: { notificationMaxDeliveryCount: 101 } }, { env: {} })).toThrow(
      ArgumentError,
    );
  });
});
