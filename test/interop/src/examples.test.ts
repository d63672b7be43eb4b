// Runs every example in examples/ as a user would (node examples/<name>/src/index.js, configured by environment
// variables and bounded by --count / --duration) against a real hub started through the CLI, and checks what each
// one did from the service side: telemetry on the built-in endpoint, reported properties, method answers,
// cloud-to-device feedback, X.509 connections, every gateway leaf.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa } from '@fieldhub/auth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telemetryOf } from './support/built-in-endpoint';
import { repositoryRoot, runExample, type WatchedProcess, watchProcess } from './support/example-process';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { apiVersion, createDevice, serviceCall, serviceRequest } from './support/service-rest';

let hub: HubProcess;
let workDir: string;
const running = new Set<WatchedProcess>();

beforeAll(async () => {
  hub = await startHubProcess({ httpsPort: 0 });
  workDir = mkdtempSync(join(tmpdir(), 'fieldhub-examples-'));
});

afterAll(async () => {
  await Promise.all([...running].map((example) => example.kill()));
  await hub?.dispose();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/** The environment the READMEs set: the device's connection string, the hub's CA and its (ephemeral) MQTT port. */
function deviceEnv(connectionString?: string): Record<string, string> {
  return {
    ...(connectionString === undefined ? {} : { DEVICE_CONNECTION_STRING: connectionString }),
    FIELDHUB_CA: hub.info.caCertificate,
    MQTT_PORT: String(hub.info.ports.mqtt),
  };
}

/** Creates a SAS device and returns its connection string, as `fieldhub device connection-string` prints it. */
async function sasDevice(deviceId: string): Promise<string> {
  const device = await createDevice(hub.info, deviceId);
  return `HostName=${hub.info.hostName};DeviceId=${deviceId};SharedAccessKey=${device.authentication.symmetricKey?.primaryKey}`;
}

function start(name: string, args: string[], env: Record<string, string>, file?: string): WatchedProcess {
  const example = runExample(name, args, { env, cwd: workDir, ...(file === undefined ? {} : { file }) });
  running.add(example);
  return example;
}

type Json = Record<string, unknown>;

interface TwinJson {
  properties: { desired: Json; reported: Json };
}

async function twinOf(deviceId: string): Promise<TwinJson> {
  const response = await serviceCall(hub.info, 'GET', `/twins/${deviceId}?api-version=${apiVersion}`, [200]);
  return response.json();
}

async function patchDesired(deviceId: string, desired: Record<string, unknown>): Promise<void> {
  await serviceCall(hub.info, 'PATCH', `/twins/${deviceId}?api-version=${apiVersion}`, [200], {
    body: { properties: { desired } },
    headers: { 'if-match': '*' },
  });
}

/** Invokes a direct method; retries while the device has not subscribed yet (404 DeviceNotOnline). */
async function invoke(
  deviceId: string,
  methodName: string,
  payload?: unknown,
): Promise<{ status: number; payload: unknown }> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const response = await serviceRequest(hub.info, 'POST', `/twins/${deviceId}/methods?api-version=${apiVersion}`, {
      body: { methodName, payload, responseTimeoutInSeconds: 10 },
    });
    if (response.status === 200) return response.json();
    if (response.status !== 404 || Date.now() > deadline) {
      throw new Error(`${methodName} answered ${response.status}: ${response.body.toString()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function bodies(events: { body: string }[]): Json[] {
  return events.map((event) => JSON.parse(event.body) as Json);
}

describe('examples against a real hub', () => {
  it('telemetry: sends --count messages with their properties and exits 0', async () => {
    const example = start('telemetry', ['--count', '3', '--interval', '0.2'], deviceEnv(await sasDevice('ex-sensor')));
    expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
    expect(example.output()).toContain('connected to localhost as ex-sensor');
    expect(example.output()).toContain('closed after 3 telemetry message(s)');

    const events = await telemetryOf(hub.info, 'ex-sensor');
    expect(bodies(events).map((body) => body.sequence)).toEqual([1, 2, 3]);
    expect(events.every((event) => event.properties.sensor === 'simulated')).toBe(true);
    expect(events[0]?.contentType).toBe('application/json');
    const twin = await twinOf('ex-sensor');
    expect(twin.properties.reported).toMatchObject({ telemetryIntervalSeconds: 0.2, sensor: 'simulated' });
  });

  it('thermostat: applies the desired target set while it was off, refuses one out of range, follows a change', async () => {
    // The first device proves the desired-while-offline case; the second the live one.
    const offlineDevice = await sasDevice('ex-thermostat');
    await patchDesired('ex-thermostat', { targetTemperature: 24 });
    const offline = start('thermostat', ['--count', '2', '--interval', '0.2'], deviceEnv(offlineDevice));
    expect(await offline.waitForExit()).toEqual({ code: 0, signal: null });
    expect(offline.output()).toContain('target temperature is now 24 °C (desired version 2)');
    expect((await twinOf('ex-thermostat')).properties.reported.targetTemperature).toEqual({
      value: 24,
      ackCode: 200,
      ackVersion: 2,
      ackDescription: 'applied',
    });

    const live = start(
      'thermostat',
      ['--interval', '0.2', '--duration', '50'],
      deviceEnv(await sasDevice('ex-thermostat-2')),
    );
    await live.waitFor(/telemetry #1:/);
    await patchDesired('ex-thermostat-2', { targetTemperature: 40 });
    await live.waitFor(/refused targetTemperature 40 \(desired version 2\)/);
    await patchDesired('ex-thermostat-2', { targetTemperature: 19 });
    await live.waitFor(/target temperature is now 19 °C \(desired version 3\)/);
    const twin = await eventually(
      () => twinOf('ex-thermostat-2'),
      (value) => (value.properties.reported.targetTemperature as Json | undefined)?.ackVersion === 3,
    );
    expect(twin.properties.reported.targetTemperature).toEqual({
      value: 19,
      ackCode: 200,
      ackVersion: 3,
      ackDescription: 'applied',
    });
    expect(twin.properties.reported).toMatchObject({ firmwareVersion: '1.2.0', model: 'example-thermostat' });
    await live.waitFor(/\{"temperature":19,"targetTemperature":19,"mode":"idle"\}/);
    expect(await live.interrupt()).toEqual({ code: 0, signal: null });
    const readings = bodies(await telemetryOf(hub.info, 'ex-thermostat-2'));
    expect(readings.some((reading) => reading.targetTemperature === 19)).toBe(true);
  });

  it('direct-methods: answers getStatus, blink and a bad payload; 501 for an unknown method; exits after --count', async () => {
    const example = start('direct-methods', ['--count', '3'], deviceEnv(await sasDevice('ex-lamp')));
    await example.waitFor(/answering getStatus, blink, reboot/);
    expect(await invoke('ex-lamp', 'selfDestruct')).toMatchObject({ status: 501 });
    expect(await invoke('ex-lamp', 'getStatus')).toMatchObject({ status: 200, payload: { on: false, blinks: 0 } });
    expect(await invoke('ex-lamp', 'blink', { times: 2 })).toEqual({ status: 200, payload: { blinked: 2 } });
    expect(await invoke('ex-lamp', 'blink', { times: 99 })).toEqual({
      status: 400,
      payload: { error: 'times must be an integer from 1 to 10' },
    });
    expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
    expect(example.output()).toContain('closed after 3 direct method call(s)');
  });

  it('direct-methods: reboot records lastReboot in the reported properties', async () => {
    const example = start('direct-methods', ['--count', '1'], deviceEnv(await sasDevice('ex-lamp-2')));
    await example.waitFor(/answering/);
    const answer = await invoke('ex-lamp-2', 'reboot', { delaySeconds: 5 });
    expect(answer.status).toBe(200);
    expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
    const twin = await twinOf('ex-lamp-2');
    expect(twin.properties.reported.lastReboot).toBe((answer.payload as Json).rebootAt);
  });

  it('cloud-to-device: prints and completes each message; the hub records positive feedback', async () => {
    const connectionString = await sasDevice('ex-display');
    // One message queued while the device is offline, one sent while it listens.
    const first = await serviceCall(hub.info, 'POST', '/fieldhub/devices/ex-display/messages/devicebound', [202], {
      body: 'Doors open at 9',
      headers: { 'iothub-ack': 'full', 'content-type': 'text/plain' },
    });
    const example = start('cloud-to-device', ['--count', '2'], deviceEnv(connectionString));
    await example.waitFor(/cloud-to-device message #1: Doors open at 9/);
    const second = await serviceCall(hub.info, 'POST', '/fieldhub/devices/ex-display/messages/devicebound', [202], {
      body: '{"brightness":80}',
      headers: { 'iothub-ack': 'positive', 'iothub-app-priority': 'high', 'content-type': 'application/json' },
    });
    expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
    expect(example.output()).toMatch(
      /cloud-to-device message #2: \{"brightness":80\}, properties \{.*"priority":"high"/,
    );
    expect(example.output()).toContain('closed after 2 message(s)');

    const sent = [first.json<{ messageId: string }>().messageId, second.json<{ messageId: string }>().messageId];
    const records: { originalMessageId: string; statusCode: string }[] = [];
    await eventually(
      async () => {
        const response = await serviceRequest(
          hub.info,
          'GET',
          `/messages/serviceBound/feedback?api-version=${apiVersion}`,
        );
        if (response.status !== 200) return records;
        records.push(...response.json<typeof records>());
        const lockToken = String(response.headers.etag ?? '').replace(/"/g, '');
        await serviceCall(
          hub.info,
          'DELETE',
          `/messages/serviceBound/feedback/${lockToken}?api-version=${apiVersion}`,
          [204],
        );
        return records;
      },
      (value) => sent.every((id) => value.some((record) => record.originalMessageId === id)),
    );
    for (const id of sent) {
      expect(records.find((record) => record.originalMessageId === id)?.statusCode).toBe('Success');
    }
  });

  it('x509-device: connects with a self-signed certificate registered by its thumbprint', async () => {
    const maker = start('x509-device', ['ex-meter', '--out', workDir], {}, 'make-certificate.js');
    expect(await maker.waitForExit()).toEqual({ code: 0, signal: null });
    const thumbprint = /thumbprint {2}([0-9A-F]{40}) \(SHA-1\)/.exec(maker.output())?.[1];
    expect(thumbprint).toBeDefined();
    await createDevice(hub.info, 'ex-meter', {
      authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: thumbprint } },
    });
    // DEVICE_CERT / DEVICE_KEY default to <id>.pem and <id>-key.pem in the working directory.
    const example = start('x509-device', ['--count', '2', '--interval', '0.2'], {
      ...deviceEnv(),
      DEVICE_ID: 'ex-meter',
    });
    expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
    expect(example.output()).toContain('connected to localhost as ex-meter with the certificate ex-meter.pem');
    expect(await telemetryOf(hub.info, 'ex-meter')).toHaveLength(2);
    expect((await twinOf('ex-meter')).properties.reported.authentication).toBe('x509');
  });

  it('x509-device: connects with a certificate issued by a verified CA', async () => {
    const ca = await createRootCa({ commonName: 'Examples Fleet CA' });
    writeFileSync(join(workDir, 'fleet-ca.pem'), ca.certificate);
    writeFileSync(join(workDir, 'fleet-ca-key.pem'), ca.privateKey);
    await serviceCall(hub.info, 'PUT', '/fieldhub/certificates/examples-fleet', [200, 201], {
      body: { certificate: ca.certificate, isVerified: true },
    });
    const maker = start(
      'x509-device',
      ['ex-meter-ca', '--out', workDir, '--ca', 'fleet-ca.pem', '--ca-key', 'fleet-ca-key.pem'],
      {},
      'make-certificate.js',
    );
    expect(await maker.waitForExit()).toEqual({ code: 0, signal: null });
    await createDevice(hub.info, 'ex-meter-ca', { authentication: { type: 'certificateAuthority' } });
    const example = start('x509-device', ['--count', '1'], {
      ...deviceEnv(),
      DEVICE_CONNECTION_STRING: 'HostName=localhost;DeviceId=ex-meter-ca;x509=true',
      DEVICE_CERT: join(workDir, 'ex-meter-ca.pem'),
      DEVICE_KEY: join(workDir, 'ex-meter-ca-key.pem'),
    });
    expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
    expect(await telemetryOf(hub.info, 'ex-meter-ca')).toHaveLength(1);
  });

  it('x509-device: an unregistered certificate ends the run with a one-line reason and exit 1', async () => {
    const maker = start('x509-device', ['ex-meter-stranger', '--out', workDir], {}, 'make-certificate.js');
    expect(await maker.waitForExit()).toEqual({ code: 0, signal: null });
    await createDevice(hub.info, 'ex-meter-stranger', {
      authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: '0'.repeat(40) } },
    });
    const example = start('x509-device', ['--count', '1'], { ...deviceEnv(), DEVICE_ID: 'ex-meter-stranger' });
    expect((await example.waitForExit()).code).toBe(1);
    expect(example.output()).toMatch(/^cannot connect: IotHubUnauthorizedAccess: /m);
  });

  it('gateway: every leaf of the config file connects with its own identity and sends its readings', async () => {
    const leaves = [
      { deviceId: 'ex-gw-air', sensor: 'temperature' },
      { deviceId: 'ex-gw-soil', sensor: 'soil-moisture' },
      { deviceId: 'ex-gw-light', sensor: 'light' },
      { deviceId: 'ex-gw-humidity', sensor: 'humidity' },
    ];
    const config = {
      // The CA and port from the file this time (no FIELDHUB_CA / MQTT_PORT).
      ca: hub.info.caCertificate,
      mqttPort: hub.info.ports.mqtt,
      leaves: await Promise.all(
        leaves.map(async (leaf) => ({
          connectionString: await sasDevice(leaf.deviceId),
          sensor: leaf.sensor,
          intervalSeconds: 0.2,
        })),
      ),
    };
    const configPath = join(workDir, 'gateway.config.json');
    writeFileSync(configPath, JSON.stringify(config));
    const gateway = start('gateway', ['--config', configPath, '--count', '2'], {});
    expect(await gateway.waitForExit()).toEqual({ code: 0, signal: null });
    expect(gateway.output()).toContain('starting 4 leaf device(s)');
    expect(gateway.output()).toContain('gateway stopped: 4 leaf device(s) ran, 0 failed');

    for (const leaf of leaves) {
      expect(gateway.output()).toContain(`[${leaf.deviceId}] connected (${leaf.sensor}, every 0.2 s)`);
      const events = await telemetryOf(hub.info, leaf.deviceId);
      expect(events).toHaveLength(2);
      expect(events.every((event) => event.properties.sensor === leaf.sensor)).toBe(true);
      expect((await twinOf(leaf.deviceId)).properties.reported).toMatchObject({ sensor: leaf.sensor });
    }
    expect(readFileSync(configPath, 'utf8')).toContain('ex-gw-air');
  });

  it('gateway: a leaf the hub refuses is reported, the others run, the exit code is 1', async () => {
    const good = await sasDevice('ex-gw-good');
    await sasDevice('ex-gw-bad');
    const config = {
      leaves: [
        { connectionString: good, sensor: 'light', intervalSeconds: 0.2 },
        {
          connectionString: `HostName=localhost;DeviceId=ex-gw-bad;SharedAccessKey=${Buffer.alloc(32).toString('base64')}`,
          sensor: 'humidity',
        },
      ],
    };
    const configPath = join(workDir, 'gateway-bad.config.json');
    writeFileSync(configPath, JSON.stringify(config));
    const gateway = start('gateway', ['--config', configPath, '--count', '2'], deviceEnv());
    expect((await gateway.waitForExit()).code).toBe(1);
    expect(gateway.output()).toMatch(/\[ex-gw-bad\] failed: /);
    expect(gateway.output()).toContain('gateway stopped: 1 leaf device(s) ran, 1 failed');
    expect(await telemetryOf(hub.info, 'ex-gw-good')).toHaveLength(2);
  });

  it('provisioning: registers through a group enrollment over MQTT and HTTPS, then sends telemetry to the assigned hub', async () => {
    // The group, through the provisioning service REST API (the hub's iothubowner may manage the hub's own DPS).
    const group = await serviceCall(hub.info, 'PUT', '/enrollmentGroups/ex-sensors?api-version=2021-10-01', [200], {
      body: { enrollmentGroupId: 'ex-sensors', attestation: { type: 'symmetricKey' } },
    });
    const groupKey = group.json<{ attestation: { symmetricKey: { primaryKey: string } } }>().attestation.symmetricKey
      .primaryKey;
    const dps = (JSON.parse(readFileSync(join(hub.dataDir, 'hub.json'), 'utf8')) as { dps: { idScope: string } }).dps;
    for (const transport of ['mqtt', 'https']) {
      const registrationId = `ex-provisioned-${transport}`;
      const example = start('provisioning', ['--transport', transport, '--count', '2', '--interval', '0.2'], {
        ...deviceEnv(),
        HTTPS_PORT: String(hub.info.ports.https),
        DPS_HOST: '127.0.0.1',
        DPS_ID_SCOPE: dps.idScope,
        REGISTRATION_ID: registrationId,
        DPS_GROUP_KEY: groupKey,
      });
      expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
      expect(example.output()).toContain(
        `registered ${registrationId} over ${transport}: assigned to localhost as ${registrationId}`,
      );
      expect(await telemetryOf(hub.info, registrationId)).toHaveLength(2);
    }
  });

  it('file-upload: streams a file with progress to the end, and the service is notified of the blob', async () => {
    const file = join(workDir, 'snapshot.bin');
    const size = 5 * 1024 * 1024 + 123;
    writeFileSync(file, randomBytes(size));
    const example = start('file-upload', [file, '--name', 'snapshots/first.bin'], {
      ...deviceEnv(await sasDevice('ex-camera')),
      HTTPS_PORT: String(hub.info.ports.https),
    });
    expect(await example.waitForExit()).toEqual({ code: 0, signal: null });
    expect(example.output()).toContain(`progress: ${size} of ${size} bytes (100 %)`);
    expect(example.output()).toContain(`uploaded ${size} bytes as ex-camera/snapshots/first.bin`);
    // The service side, as the README shows it: `fieldhub files notifications` (one JSON record per line).
    const cli = watchProcess(process.execPath, [
      `${repositoryRoot}packages/cli/bin/fieldhub.js`,
      'files',
      'notifications',
      '--data-dir',
      hub.dataDir,
      '--json',
      '--count',
      '1',
    ]);
    running.add(cli);
    expect(await cli.waitForExit()).toEqual({ code: 0, signal: null });
    const records = cli
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Json);
    expect(records).toContainEqual(
      expect.objectContaining({
        deviceId: 'ex-camera',
        blobName: 'ex-camera/snapshots/first.bin',
        blobSizeInBytes: size,
      }),
    );
  });

  it('every example refuses to start without its configuration, naming what is missing', async () => {
    for (const name of ['telemetry', 'thermostat', 'direct-methods', 'cloud-to-device', 'file-upload']) {
      const example = start(name, [], { DEVICE_CONNECTION_STRING: '' });
      expect((await example.waitForExit()).code).toBe(2);
      expect(example.output()).toContain('Set DEVICE_CONNECTION_STRING');
    }
  });
});
