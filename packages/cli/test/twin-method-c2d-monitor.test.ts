import { createDeviceClient, type DeviceClient, mqtt } from '@fieldhub/device';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { buildIfMissing, expectFailure, run, start } from './helpers/run-cli';

// `fieldhub twin|method|c2d|monitor` as the built CLI against a real hub, with a device connected through
// @fieldhub/device over MQTT using the connection string the CLI printed.

let hub: TestHub;
let device: DeviceClient;
const at = (): string[] => ['--data-dir', hub.dataDir];

beforeAll(async () => {
  await buildIfMissing();
  hub = await startTestHub();
  expect((await run(['device', 'create', 'valve-1', ...at()])).code).toBe(0);
  const printed = await run(['device', 'connection-string', 'valve-1', '--with-port', ...at()]);
  expect(printed.code, printed.stderr).toBe(0);
  device = await createDeviceClient({ connectionString: printed.stdout.trim(), transport: mqtt(), ca: hub.ca });
}, 120_000);

afterAll(async () => {
  await device?.close();
  await hub?.stop();
});

describe('fieldhub twin', () => {
  it('updates desired properties and tags, and shows them with what the device reported', async () => {
    await device.updateReportedProperties({ firmware: '2.1.0' });
    const desiredSeen = (async () => {
      for await (const patch of device.desiredPropertyUpdates()) return patch;
      return undefined;
    })();
    const updated = await run([
      'twin',
      'update',
      'valve-1',
      '--desired',
      '{"interval":5}',
      '--tags',
      '{"site":"north"}',
      ...at(),
    ]);
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.stdout).toMatch(/Updated the twin of 'valve-1': version \d+, etag /);
    expect(await desiredSeen).toMatchObject({ interval: 5 });

    const show = await run(['twin', 'show', 'valve-1', ...at()]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/connection\s+Connected/);
    expect(show.stdout).toContain('"site": "north"');
    expect(show.stdout).toContain('"interval": 5');
    expect(show.stdout).toContain('"firmware": "2.1.0"');
    expect(show.stdout).not.toContain('$metadata');

    const twin = JSON.parse((await run(['twin', 'show', 'valve-1', '--json', ...at()])).stdout);
    expect(twin).toMatchObject({
      deviceId: 'valve-1',
      tags: { site: 'north' },
      properties: { desired: { interval: 5 }, reported: { firmware: '2.1.0' } },
    });
    expect(twin.properties.desired.$metadata).toBeDefined();
  });

  it('applies an update only while --etag matches, and merges (null deletes)', async () => {
    const before = JSON.parse((await run(['twin', 'show', 'valve-1', '--json', ...at()])).stdout) as { etag: string };
    const matching = await run([
      'twin',
      'update',
      'valve-1',
      '--tags',
      '{"site":null,"zone":"b"}',
      '--etag',
      before.etag,
      '--json',
      ...at(),
    ]);
    expect(matching.code, matching.stderr).toBe(0);
    const after = JSON.parse(matching.stdout) as { tags: Record<string, unknown>; etag: string };
    expect(after.tags).toEqual({ zone: 'b' });
    expectFailure(
      await run(['twin', 'update', 'valve-1', '--tags', '{"zone":"c"}', '--etag', before.etag, ...at()]),
      'PreconditionFailed',
    );
  });

  it('reads and updates a module twin with --module, and signs module tokens', async () => {
    const added = await hub.request('PUT', '/devices/valve-1/modules/filter', {
      body: { deviceId: 'valve-1', moduleId: 'filter' },
    });
    expect(added.status).toBe(200);
    const updated = await run(['twin', 'update', 'valve-1', '--module', 'filter', '--desired', '{"mesh":40}', ...at()]);
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.stdout).toContain("Updated the twin of 'valve-1/filter'");
    const twin = JSON.parse((await run(['twin', 'show', 'valve-1', '--module', 'filter', '--json', ...at()])).stdout);
    expect(twin).toMatchObject({ deviceId: 'valve-1', moduleId: 'filter', properties: { desired: { mesh: 40 } } });
    const shown = await run(['twin', 'show', 'valve-1', '--module', 'filter', ...at()]);
    expect(shown.stdout).toMatch(/device id\s+valve-1 \(module filter\)/);
    const token = await run(['sas', 'device', 'valve-1', '--module', 'filter', ...at()]);
    expect(token.stdout).toMatch(/^SharedAccessSignature sr=localhost%2Fdevices%2Fvalve-1%2Fmodules%2Ffilter&/);
  });

  it('refuses bad input with one line', async () => {
    expectFailure(await run(['twin', 'update', 'valve-1', ...at()]), 'nothing to update');
    expectFailure(
      await run(['twin', 'update', 'valve-1', '--desired', '{oops', ...at()]),
      '--desired is not valid JSON',
    );
    expectFailure(await run(['twin', 'update', 'valve-1', '--tags', '[1]', ...at()]), '--tags must be a JSON object');
    expectFailure(await run(['twin', 'show', 'missing', ...at()]), 'DeviceNotFound');
  });
});

describe('fieldhub method invoke', () => {
  it("prints the device's { status, payload }", async () => {
    const stop = device.onDirectMethod('setLevel', async (request) => ({
      status: 200,
      payload: { level: (request.payload as { level: number }).level, ok: true },
    }));
    try {
      const result = await run([
        'method',
        'invoke',
        'valve-1',
        'setLevel',
        '--payload',
        '{"level":7}',
        '--timeout',
        '10',
        ...at(),
      ]);
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({ status: 200, payload: { level: 7, ok: true } });
    } finally {
      stop();
    }
  });

  it('exits 1 with a clear line when the device is not online, or unknown', async () => {
    expect((await run(['device', 'create', 'offline-1', ...at()])).code).toBe(0);
    const offline = await run(['method', 'invoke', 'offline-1', 'ping', ...at()]);
    expectFailure(offline, "DeviceNotOnline: device 'offline-1' is not online");
    expectFailure(await run(['method', 'invoke', 'missing', 'ping', ...at()]), 'DeviceNotFound');
    expectFailure(await run(['method', 'invoke', 'valve-1', 'ping', '--payload', 'nope', ...at()]), 'not valid JSON');
  });
});

describe('fieldhub c2d send', () => {
  it('queues a message with an id and properties, which the device receives', async () => {
    const received = (async () => {
      for await (const message of device.cloudToDeviceMessages()) {
        await message.complete();
        return message;
      }
      return undefined;
    })();
    const sent = await run([
      'c2d',
      'send',
      'valve-1',
      'open now',
      '--message-id',
      'm-1',
      '--property',
      'priority=high',
      '--property',
      'source=cli',
      '--ack',
      'full',
      ...at(),
    ]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout).toContain("Queued message m-1 for 'valve-1' (feedback: full)");
    const message = await received;
    expect(message?.text()).toBe('open now');
    expect(message?.messageId).toBe('m-1');
    expect(message?.properties).toMatchObject({ priority: 'high', source: 'cli' });

    const json = await run([
      'c2d',
      'send',
      'valve-1',
      '{"a":1}',
      '--content-type',
      'application/json',
      '--json',
      ...at(),
    ]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      messageId: expect.any(String),
      enqueuedTimeUtc: expect.any(String),
    });
  });

  it('refuses an unknown device and bad flags', async () => {
    expectFailure(await run(['c2d', 'send', 'missing', 'x', ...at()]), 'DeviceNotFound');
    const badAck = await run(['c2d', 'send', 'valve-1', 'x', '--ack', 'sometimes', ...at()]);
    expect(badAck.code).toBe(2);
    const badProperty = await run(['c2d', 'send', 'valve-1', 'x', '--property', 'novalue', ...at()]);
    expect(badProperty.code).toBe(2);
    expect(badProperty.stderr).toContain('must be key=value');
  });
});

describe('fieldhub monitor', () => {
  it('prints telemetry and hub events as JSON lines and exits after --count', async () => {
    await device.sendTelemetry({ body: { temperature: 21.5 }, properties: { unit: 'C' } });
    await device.sendTelemetry({ body: new Uint8Array([0xff, 0x00, 0xfe]) });
    const result = await run(
      ['monitor', '--device', 'valve-1', '--from', 'earliest', '--json', '--count', '50', ...at()],
      {
        timeoutMs: 5000,
      },
    );
    // Fewer than 50 events exist: the run is cut by the timeout, but every line printed so far is one event.
    const events = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const telemetry = events.filter(
      (e) => (e.systemProperties as Record<string, unknown>)['iothub-message-source'] === 'Telemetry',
    );
    expect(telemetry.map((e) => [e.body, e.bodyEncoding])).toEqual([
      ['{"temperature":21.5}', 'utf-8'],
      [Buffer.from([0xff, 0x00, 0xfe]).toString('base64'), 'base64'],
    ]);
    expect(telemetry[0]).toMatchObject({
      deviceId: 'valve-1',
      properties: { unit: 'C' },
      partition: expect.any(Number),
    });
    expect(events.every((e) => e.deviceId === 'valve-1')).toBe(true);
    const sources = new Set(
      events.map((e) => (e.systemProperties as Record<string, unknown>)['iothub-message-source']),
    );
    expect(sources).toContain('deviceLifecycleEvents');
    expect(sources).toContain('twinChangeEvents');

    const counted = await run([
      'monitor',
      '--device',
      'valve-1',
      '--from',
      'earliest',
      '--json',
      '--count',
      '3',
      ...at(),
    ]);
    expect(counted.code, counted.stderr).toBe(0);
    expect(counted.stdout.trim().split('\n')).toHaveLength(3);
  });

  it('follows live events from latest, readable without colour when not a terminal', async () => {
    const monitor = run(['monitor', '--device', 'valve-1', '--count', '1', ...at()]);
    // The monitor starts reading at "latest": send until it has seen one.
    let result: Awaited<typeof monitor> | undefined;
    void monitor.then((r) => {
      result = r;
    });
    for (let i = 0; i < 100 && result === undefined; i += 1) {
      await device.sendTelemetry({ body: { live: i }, properties: { kind: 'live' } });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const done = await monitor;
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/^\d{4}-\d\d-\d\dT\S+Z valve-1 \{"live":\d+\} kind=live\n$/);
    expect(done.stdout).not.toContain('\u001b[');
    expect(done.stderr).toContain('Monitoring events');
  });

  it('colours when forced, and shows hub events distinctly', async () => {
    const result = await run(['monitor', '--device', 'valve-1', '--from', 'earliest', '--count', '1', ...at()], {
      env: { NO_COLOR: '', FORCE_COLOR: '1' },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('\u001b[');
    expect(result.stdout).toContain('[lifecycle: createDeviceIdentity]');
  });
});

describe('Ctrl+C', () => {
  it('stops the monitor cleanly, exit 0 and no stack trace', async () => {
    const monitor = start(['monitor', '--device', 'valve-1', ...at()]);
    await monitor.until(({ stderr }) => stderr.includes('Monitoring events'), 'start notice');
    // "latest" starts when the stream is open, a moment after the notice: send until one is seen.
    for (let i = 0; i < 100 && !monitor.stdout().includes('beforeStop'); i += 1) {
      await device.sendTelemetry({ body: { beforeStop: i } });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await monitor.until(({ stdout }) => stdout.includes('beforeStop'), 'event');
    monitor.child.kill('SIGINT');
    expect(await monitor.exited).toBe(0);
    expect(monitor.stderr()).not.toContain('fieldhub:');
  });
});

describe('--help', () => {
  it('answers for every command', async () => {
    for (const command of [
      ['twin'],
      ['twin', 'show'],
      ['twin', 'update'],
      ['method'],
      ['method', 'invoke'],
      ['c2d'],
      ['c2d', 'send'],
      ['monitor'],
    ]) {
      const result = await run([...command, '--help']);
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`Usage: fieldhub ${command.join(' ')}`);
    }
  });
});
