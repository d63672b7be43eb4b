import { describe, expect, test } from 'vitest';
import { deviceJobs, deviceTwins, moduleTwins } from './__fixtures__/twins';
import { evaluateQuery } from './evaluate-query';
import { parseQuery } from './parse-query';

const run = (text: string, documents: Record<string, unknown>[] = deviceTwins) =>
  evaluateQuery(parseQuery(text), documents);
const ids = (text: string, documents?: Record<string, unknown>[]) =>
  run(text, documents).items.map((item) => (item as { deviceId: string }).deviceId);

describe('evaluateQuery: the reference examples verbatim (§6)', () => {
  test('SELECT * FROM devices returns every twin as a twin item', () => {
    const result = run('SELECT * FROM devices');
    expect(result.itemType).toBe('twin');
    expect(result.items).toEqual(deviceTwins);
    expect(result.items[0]).toBe(deviceTwins[0]);
  });

  test('SELECT DeviceId, LastActivityTime FROM devices WHERE ... uses the canonical casing', () => {
    const result = run(
      "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Connected'",
    );
    expect(result.itemType).toBe('raw');
    expect(result.items).toEqual([
      { deviceId: 'thermostat-1', lastActivityTime: '2026-11-20T10:00:00.000Z' },
      { deviceId: 'thermostat-2', lastActivityTime: '2026-11-21T10:00:00.000Z' },
      { deviceId: 'gateway-1', lastActivityTime: '0001-01-01T00:00:00Z' },
    ]);
  });

  test('SELECT COUNT() AS totalNumberOfDevices FROM devices', () => {
    expect(run('SELECT COUNT() AS totalNumberOfDevices FROM devices')).toEqual({
      items: [{ totalNumberOfDevices: 10 }],
      itemType: 'raw',
    });
  });

  test('the GROUP BY telemetryConfig.status example', () => {
    const result = run(
      'SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status',
    );
    expect(result.items).toEqual([
      { status: 'Success', numberOfDevices: 4 },
      { status: 'Pending', numberOfDevices: 2 },
      { status: 'Error', numberOfDevices: 1 },
      { numberOfDevices: 3 },
    ]);
  });

  test("SELECT * FROM devices WHERE tags.location.region = 'US'", () => {
    expect(ids("SELECT * FROM devices WHERE tags.location.region = 'US'")).toEqual([
      'myDeviceId',
      'thermostat-1',
      'gateway-1',
      'Sensor-Upper',
    ]);
  });

  test('the devices.jobs example, with the field name the job records carry', () => {
    const verbatim =
      "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'thermostat-1' AND devices.jobs.jobType = 'scheduleUpdateTwin' AND devices.jobs.status = 'completed' AND devices.jobs.createdTimeUtc > '2016-09-01'";
    // The doc names the field createdTimeUtc; the records (§2.11) carry createdDateTimeUtc, so nothing matches.
    expect(run(verbatim, deviceJobs)).toEqual({ items: [], itemType: 'deviceJob' });
    const result = run(verbatim.replace('createdTimeUtc', 'createdDateTimeUtc'), deviceJobs);
    expect(result).toEqual({ items: [deviceJobs[0]], itemType: 'deviceJob' });
  });

  test("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'x'", () => {
    expect(ids("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'update-1'", deviceJobs)).toEqual([
      'thermostat-1',
      'thermostat-2',
    ]);
  });

  test('module twins filtered with deviceId IN [...]', () => {
    const result = run(
      "SELECT * FROM devices.modules WHERE deviceId IN ['gateway-1'] AND properties.reported.status = 'running'",
      moduleTwins,
    );
    expect(result.itemType).toBe('twin');
    expect(result.items.map((item) => (item as { moduleId: string }).moduleId)).toEqual(['$edgeAgent', '$edgeHub']);
  });
});

describe('evaluateQuery: filters', () => {
  test.each([
    ["status = 'disabled'", ['thermostat-3']],
    ["connectionState <> 'Disconnected'", ['thermostat-1', 'thermostat-2', 'gateway-1']],
    ['capabilities.iotEdge = true', ['gateway-1']],
    ['properties.reported.batteryLevel < 30', ['thermostat-3', 'sensor-untagged']],
    ['properties.reported.batteryLevel >= 80', ['thermostat-2', 'gateway-1']],
    ['properties.desired.telemetryConfig.sendFrequencyInSecs = 300', ['myDeviceId']],
    ["properties.reported.connectivity.type != 'cellular'", ['thermostat-1']],
    ['tags.floor = 2', ['thermostat-2', 'Sensor-Upper']],
    ["tags.floor = '2'", ['sensor-null']],
    ['tags.floor > 1', ['thermostat-2', 'thermostat-3', 'Sensor-Upper', 'sensor-array']],
    ['tags.floor < 0', ['sensor-quote']],
    ['tags.floor * 2 = 3', ['sensor-array']],
    ['tags.floor + 1 = 4', ['thermostat-3']],
    ['tags.floor - 1 = 0 AND tags.floor % 2 = 1', ['thermostat-1']],
    ['tags.floor / 2 = 1.5', ['thermostat-3']],
    ['-tags.floor = 1', ['sensor-quote']],
    ['tags.floor IN [1, 3]', ['thermostat-1', 'thermostat-3']],
    ["tags.floor NIN [1, 2, 3, '2']", ['sensor-array', 'sensor-quote']],
    [
      'IS_DEFINED(tags.location)',
      ['myDeviceId', 'thermostat-1', 'thermostat-2', 'thermostat-3', 'gateway-1', 'sensor-null', 'Sensor-Upper'],
    ],
    ['IS_NULL(tags.location)', ['sensor-null']],
    ['tags.location = null', ['sensor-null']],
    ['IS_STRING(properties.reported.batteryLevel)', ['sensor-null']],
    ['IS_ARRAY(tags.zones) AND IS_OBJECT(properties.reported)', ['sensor-array']],
    ["STARTSWITH(deviceId, 'thermo') AND NOT ENDSWITH(deviceId, '-2')", ['thermostat-1', 'thermostat-3']],
    ["tags.zones[1] = 'south'", ['sensor-array']],
    ["tags.name = 'O\\'Brien \"the\" sensor'", ['sensor-quote']],
    ['tags.name = "O\'Brien \\"the\\" sensor"', ['sensor-quote']],
    ['version > 2', ['sensor-quote']],
    ["lastActivityTime > '2026-11-21'", ['thermostat-2']],
    ["(tags.role = 'gateway' OR tags.floor = 3) AND status = 'enabled'", ['gateway-1']],
  ])('WHERE %s', (condition, expected) => {
    expect(ids(`SELECT * FROM devices WHERE ${condition}`)).toEqual(expected);
  });

  test('matches attribute names case-insensitively, preferring an exact match', () => {
    expect(
      ids(
        "SELECT * FROM devices WHERE Tags.LOCATION.region = 'US' AND properties.reported.telemetryconfig.STATUS = 'Success'",
      ),
    ).toEqual(['myDeviceId', 'thermostat-1', 'Sensor-Upper']);
    const documents = [{ deviceId: 'a', tags: { x: 1, X: 2 } }];
    expect(ids('SELECT * FROM devices WHERE tags.X = 2', documents)).toEqual(['a']);
    expect(ids('SELECT * FROM devices WHERE tags.x = 1', documents)).toEqual(['a']);
  });

  test('compares values case-sensitively', () => {
    expect(ids("SELECT * FROM devices WHERE status = 'ENABLED'")).toEqual([]);
  });

  test('makes comparisons with undefined, objects, arrays or mismatched types false both ways', () => {
    for (const condition of [
      'tags.missing = 1',
      'tags.missing != 1',
      'NOT (tags.missing = 1)',
      "tags.location = 'US'",
      "tags.location != 'US'",
      'tags.zones = tags.zones',
      "tags.floor = '1'",
      "properties.reported.batteryLevel != 'x'",
      'tags.floor + "1" = 2',
      'tags.floor / 0 = 1',
      'capabilities.iotEdge < true',
    ]) {
      expect(ids(`SELECT * FROM devices WHERE ${condition}`), condition).not.toContain('thermostat-1');
    }
  });

  test('treats != null as "defined and not null"', () => {
    expect(ids('SELECT * FROM devices WHERE tags.role != null')).toEqual(['gateway-1']);
  });

  test('keeps three-valued logic for AND / OR', () => {
    expect(ids("SELECT * FROM devices WHERE tags.missing = 1 OR deviceId = 'gateway-1'")).toEqual(['gateway-1']);
    expect(ids("SELECT * FROM devices WHERE NOT (tags.missing = 1 AND deviceId = 'gateway-1')")).toEqual(
      deviceTwins.map((twin) => twin.deviceId).filter((id) => id !== 'gateway-1'),
    );
  });

  test('a non-boolean WHERE selects nothing', () => {
    expect(ids('SELECT * FROM devices WHERE version')).toEqual([]);
    expect(ids("SELECT * FROM devices WHERE 'true'")).toEqual([]);
  });

  test('filters module twins by moduleId and qualified paths', () => {
    expect(
      run(
        "SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'filter' AND tags.kind = 'filter'",
        moduleTwins,
      ).items,
    ).toEqual([moduleTwins[2]]);
  });
});

describe('evaluateQuery: projections, TOP and aggregates', () => {
  test('names nested projections by their last segment, or by their alias', () => {
    expect(
      run("SELECT deviceId, properties.reported.telemetryConfig.status FROM devices WHERE deviceId = 'thermostat-2'")
        .items,
    ).toEqual([{ deviceId: 'thermostat-2', status: 'Pending' }]);
    expect(run("SELECT tags.location.region AS r FROM devices WHERE STARTSWITH(deviceId, 'Sensor-')").items).toEqual([
      { r: 'US' },
    ]);
  });

  test('omits keys whose attribute is missing and keeps the document spelling', () => {
    expect(
      run(
        "SELECT deviceId, tags.location.region FROM devices WHERE STARTSWITH(deviceId, 'S') OR deviceId = 'sensor-untagged'",
      ).items,
    ).toEqual([{ deviceId: 'sensor-untagged' }, { deviceId: 'Sensor-Upper', Region: 'US' }]);
  });

  test('projects whole objects and array elements', () => {
    expect(
      run("SELECT tags.location, tags.zones[0] FROM devices WHERE deviceId = 'sensor-array' OR deviceId = 'gateway-1'")
        .items,
    ).toEqual([{ location: { region: 'US' } }, { $1: 'north' }]);
  });

  test('TOP caps SELECT *, projections and grouped rows', () => {
    expect(ids('SELECT TOP 3 * FROM devices')).toEqual(['myDeviceId', 'thermostat-1', 'thermostat-2']);
    expect(run("SELECT TOP 1 deviceId FROM devices WHERE status = 'disabled'").items).toEqual([
      { deviceId: 'thermostat-3' },
    ]);
    expect(run('SELECT TOP 0 * FROM devices').items).toEqual([]);
    expect(run('SELECT TOP 2 tags.floor, COUNT() AS n FROM devices GROUP BY tags.floor').items).toHaveLength(2);
  });

  test('keys unaliased aggregates $1, $2, ...', () => {
    expect(run('SELECT COUNT(), MAX(version) AS highest, SUM(version) FROM devices').items).toEqual([
      { $1: 10, highest: 9, $2: 27 },
    ]);
  });

  test('computes AVG, SUM, MIN and MAX over numbers, skipping everything else', () => {
    expect(
      run(
        'SELECT AVG(properties.reported.batteryLevel) AS avg, SUM(properties.reported.batteryLevel) AS sum, MIN(properties.reported.batteryLevel) AS min, MAX(properties.reported.batteryLevel) AS max FROM devices WHERE IS_NUMBER(properties.reported.batteryLevel)',
      ).items,
    ).toEqual([{ avg: 295 / 6, sum: 295, min: 10, max: 100 }]);
    // sensor-null reports '45', a string: SUM skips it rather than failing.
    expect(run('SELECT SUM(properties.reported.batteryLevel) AS s FROM devices').items).toEqual([{ s: 295 }]);
  });

  test('orders MIN and MAX across types as null < booleans < numbers < strings', () => {
    expect(run('SELECT MIN(tags.floor) AS lo, MAX(tags.floor) AS hi FROM devices').items).toEqual([
      { lo: -1, hi: '2' },
    ]);
    const documents = [{ a: true }, { a: null }, { a: false }, { a: { x: 1 } }];
    expect(run('SELECT MIN(a) AS lo, MAX(a) AS hi FROM devices', documents).items).toEqual([{ lo: null, hi: true }]);
  });

  test('aggregates over no documents: COUNT 0, SUM 0, AVG/MIN/MAX omitted', () => {
    expect(
      run(
        "SELECT COUNT() AS n, SUM(version) AS s, AVG(version) AS a, MIN(version) AS m FROM devices WHERE deviceId = 'none'",
      ).items,
    ).toEqual([{ n: 0, s: 0 }]);
  });

  test('GROUP BY gives one row per distinct value, telling types apart, with several aggregates', () => {
    expect(
      run(
        'SELECT tags.floor AS floor, COUNT() AS n, AVG(properties.reported.batteryLevel) AS battery FROM devices GROUP BY tags.floor',
      ).items,
    ).toEqual([
      { n: 3, battery: 55 },
      { floor: 1, n: 1, battery: 55 },
      { floor: 2, n: 2, battery: 55 },
      { floor: 3, n: 1, battery: 20 },
      { floor: '2', n: 1 },
      { floor: 1.5, n: 1 },
      { floor: -1, n: 1 },
    ]);
  });

  test('GROUP BY without aggregates lists distinct values; grouping by objects compares content', () => {
    expect(run('SELECT connectionState FROM devices GROUP BY connectionState').items).toEqual([
      { connectionState: 'Disconnected' },
      { connectionState: 'Connected' },
    ]);
    const documents = [{ tags: { a: 1, b: 2 } }, { tags: { b: 2, a: 1 } }, { tags: { a: 2 } }];
    expect(run('SELECT tags, COUNT() AS n FROM devices GROUP BY tags', documents).items).toEqual([
      { tags: { a: 1, b: 2 }, n: 2 },
      { tags: { a: 2 }, n: 1 },
    ]);
  });

  test('GROUP BY names the grouped key by the first document that has it, case-insensitively', () => {
    expect(
      run(
        'SELECT properties.reported.telemetryconfig.status, COUNT() AS n FROM devices GROUP BY properties.reported.TelemetryConfig.Status',
      ).items,
    ).toContainEqual({
      status: 'Success',
      n: 4,
    });
  });

  test('aggregates over module twins', () => {
    expect(run("SELECT COUNT() AS n FROM devices.modules WHERE deviceId = 'gateway-1'", moduleTwins).items).toEqual([
      { n: 3 },
    ]);
  });

  test('reads documents from any iterable', () => {
    function* twins() {
      yield* deviceTwins;
    }
    expect(evaluateQuery(parseQuery('SELECT COUNT() AS n FROM devices'), twins()).items).toEqual([{ n: 10 }]);
  });

  test('keeps a key spelled __proto__ as a plain key', () => {
    const document = JSON.parse('{"tags":{"__proto__":{"polluted":true}}}') as Record<string, unknown>;
    const [row] = run('SELECT tags.__proto__ FROM devices', [document]).items as Record<string, unknown>[];
    expect(Object.keys(row ?? {})).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
