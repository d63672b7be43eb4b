import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, test } from 'vitest';
import { deviceTwins } from './__fixtures__/twins';
import { compileCondition, evaluateCondition } from './compile-condition';

const matching = (text: string) => {
  const condition = compileCondition(text);
  return deviceTwins.filter((twin) => evaluateCondition(condition, twin)).map((twin) => twin.deviceId);
};

describe('compileCondition / evaluateCondition (twin dialect, job queryCondition)', () => {
  test("compiles a job's queryCondition and filters twins with it", () => {
    expect(matching("deviceId IN ['thermostat-1', 'gateway-1']")).toEqual(['thermostat-1', 'gateway-1']);
    expect(matching("tags.location.region = 'EU' AND properties.reported.batteryLevel > 50")).toEqual(['thermostat-2']);
  });

  test('strips the devices qualifier by default and the chosen collection qualifier when asked', () => {
    expect(matching("devices.tags.role = 'gateway'")).toEqual(['gateway-1']);
    const modules = compileCondition("devices.modules.moduleId = 'filter'", { collection: 'devices.modules' });
    expect(evaluateCondition(modules, { moduleId: 'filter' })).toBe(true);
  });

  test('keeps the text and dialect', () => {
    expect(compileCondition('a = 1')).toMatchObject({ text: 'a = 1', dialect: 'twin' });
  });

  test('is false, never throwing, for undefined or non-boolean results and for non-object documents', () => {
    const condition = compileCondition('tags.x = 1');
    for (const document of [null, undefined, 42, 'text', [], { tags: [] }, { tags: null }]) {
      expect(evaluateCondition(condition, document)).toBe(false);
    }
    expect(evaluateCondition(compileCondition('1 + 1'), {})).toBe(false);
    expect(evaluateCondition(compileCondition('true'), {})).toBe(true);
  });

  test.each([
    ['', /The text is empty/],
    ['WHERE a = 1', /Unexpected keyword WHERE at line 1, column 1/],
    ['a = 1 ORDER BY b', /Unexpected "ORDER" at line 1, column 7/],
    [
      "STARTS_WITH(deviceId, 'x')",
      /Unknown function STARTS_WITH \(twin queries spell it STARTSWITH\) at line 1, column 1/,
    ],
    ['a =', /Unexpected end of query at line 1, column 4/],
  ])('rejects %j with an ArgumentError', (text, message) => {
    expect(() => compileCondition(text)).toThrow(ArgumentError);
    expect(() => compileCondition(text)).toThrow(message);
  });
});

describe('compileCondition (routing dialect, reused later by routing)', () => {
  const message = {
    processingPath: 'hot',
    messageType: 'alerts',
    severity: '2',
    $connectionDeviceId: 'abc',
    $body: { Weather: { Temperature: 31.5, HistoricalData: [{ Month: 'Feb' }] } },
    $twin: { tags: { site: 'north' }, properties: { desired: { x: 1 }, reported: {} } },
  };
  const routes = (text: string) => evaluateCondition(compileCondition(text, { dialect: 'routing' }), message);

  test.each([
    "processingPath = 'hot'",
    "PROCESSINGPATH = 'hot'",
    '$body.Weather.Temperature > 30',
    "$body.Weather.HistoricalData[0].Month = 'Feb'",
    "$twin.tags.site = 'north'",
    'is_defined($twin.properties.desired.x)',
    "messageType = 'alerts' AND as_number(severity) <= 2",
    "$connectionDeviceId = 'abc' OR $connectionDeviceId = 'def'",
    "STARTS_WITH($connectionDeviceId, 'a') AND ENDS_WITH(processingPath, 't') AND CONTAINS(messageType, 'ler')",
    "LOWER(UPPER(processingPath)) = 'hot' AND LENGTH(processingPath) = 3 AND INDEX_OF(messageType, 'e') = 2",
    "CONCAT(processingPath, '-', messageType) = 'hot-alerts' AND SUBSTRING(messageType, 1, 3) = 'ler'",
    'ABS(-2) = 2 AND POWER(2, 3) = 8 AND SQUARE(3) = 9 AND CEILING(1.2) = 2 AND FLOOR(1.8) = 1',
    'SIGN(-5) = -1 AND SQRT(16) = 4 AND EXP(0) = 1 AND IS_ARRAY([1, 2])',
    '0x10 = 16',
    'true',
    'NOT IS_DEFINED(undefined)',
  ])('holds: %s', (text) => {
    expect(routes(text)).toBe(true);
  });

  test.each([
    "processingPath = 'HOT'",
    '$body.Weather.Missing > 1',
    'SQRT(-1) = 0',
    "AS_NUMBER('abc') = 0",
    'LENGTH(42) = 2',
  ])('does not hold: %s', (text) => {
    expect(routes(text)).toBe(false);
  });

  test('rejects the twin spelling STARTSWITH, naming the routing one', () => {
    expect(() => compileCondition("STARTSWITH(a, 'x')", { dialect: 'routing' })).toThrow(
      /Unknown function STARTSWITH \(routing conditions spell it STARTS_WITH\)/,
    );
  });

  test('does not strip a devices qualifier in routing', () => {
    expect(compileCondition('devices.x = 1', { dialect: 'routing' }).expression).toMatchObject({
      left: { kind: 'path', segments: ['devices', 'x'] },
    });
  });
});
