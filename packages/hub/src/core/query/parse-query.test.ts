import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, test } from 'vitest';
import type { Expression } from './ast';
import { parseQuery } from './parse-query';

const where = (condition: string): Expression | undefined =>
  parseQuery(`SELECT * FROM devices WHERE ${condition}`).where;
const path = (...segments: (string | number)[]) => ({ kind: 'path', segments });
const literal = (value: unknown) => ({ kind: 'literal', value });

function rejection(text: string): ArgumentError {
  try {
    parseQuery(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ArgumentError);
    return error as ArgumentError;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be rejected`);
}

describe('parseQuery: clauses', () => {
  test('parses SELECT * FROM devices with no other clause', () => {
    expect(parseQuery('SELECT * FROM devices')).toEqual({
      text: 'SELECT * FROM devices',
      collection: 'devices',
      top: undefined,
      selection: { kind: 'all' },
      where: undefined,
      groupBy: undefined,
    });
  });

  test.each([
    ['devices', 'devices'],
    ['devices.modules', 'devices.modules'],
    ['devices.jobs', 'devices.jobs'],
    ['DEVICES.Modules', 'devices.modules'],
  ])('reads FROM %s', (from, collection) => {
    expect(parseQuery(`SELECT * FROM ${from}`).collection).toBe(collection);
  });

  test('treats keywords case-insensitively', () => {
    const query = parseQuery("select top 5 * from Devices where Tags.x = 'a' and not IS_defined(y)");
    expect(query.top).toBe(5);
    expect(query.where).toEqual({
      kind: 'and',
      operands: [
        { kind: 'compare', operator: '=', left: path('Tags', 'x'), right: literal('a') },
        { kind: 'not', operand: { kind: 'call', name: 'IS_DEFINED', args: [path('y')] } },
      ],
    });
  });

  test('parses TOP n, including TOP 0', () => {
    expect(parseQuery('SELECT TOP 10 * FROM devices').top).toBe(10);
    expect(parseQuery('SELECT TOP 0 deviceId FROM devices').top).toBe(0);
  });

  test('parses projections with and without aliases', () => {
    expect(parseQuery('SELECT DeviceId, properties.reported.x AS x1, LastActivityTime FROM devices').selection).toEqual(
      {
        kind: 'projections',
        projections: [
          { kind: 'attribute', path: path('DeviceId'), alias: undefined },
          { kind: 'attribute', path: path('properties', 'reported', 'x'), alias: 'x1' },
          { kind: 'attribute', path: path('LastActivityTime'), alias: undefined },
        ],
      },
    );
  });

  test('parses every aggregate', () => {
    const query = parseQuery(
      'SELECT COUNT() AS n, AVG(properties.reported.b) AS a, SUM(version) AS s, MIN(version + 1) AS lo, max(version) FROM devices',
    );
    expect(query.selection).toEqual({
      kind: 'projections',
      projections: [
        { kind: 'aggregate', name: 'COUNT', argument: undefined, alias: 'n' },
        { kind: 'aggregate', name: 'AVG', argument: path('properties', 'reported', 'b'), alias: 'a' },
        { kind: 'aggregate', name: 'SUM', argument: path('version'), alias: 's' },
        {
          kind: 'aggregate',
          name: 'MIN',
          argument: { kind: 'arithmetic', operator: '+', left: path('version'), right: literal(1) },
          alias: 'lo',
        },
        { kind: 'aggregate', name: 'MAX', argument: path('version'), alias: undefined },
      ],
    });
  });

  test('parses GROUP BY', () => {
    const query = parseQuery('SELECT tags.floor, COUNT() AS n FROM devices GROUP BY tags.floor');
    expect(query.groupBy).toEqual(path('tags', 'floor'));
  });

  test('strips the collection qualifier from paths in every clause', () => {
    const devices = parseQuery(
      'SELECT devices.tags.floor, AVG(devices.version) AS v FROM devices WHERE devices.deviceId = 1 GROUP BY devices.tags.floor',
    );
    expect(devices.selection).toMatchObject({
      projections: [{ path: path('tags', 'floor') }, { argument: path('version') }],
    });
    expect(devices.where).toMatchObject({ left: path('deviceId') });
    expect(devices.groupBy).toEqual(path('tags', 'floor'));
    expect(parseQuery("SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'm'").where).toMatchObject({
      left: path('moduleId'),
    });
    expect(parseQuery("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j'").where).toMatchObject({
      left: path('jobId'),
    });
    expect(parseQuery("SELECT * FROM devices.modules WHERE devices.deviceId = 'd'").where).toMatchObject({
      left: path('deviceId'),
    });
  });

  test('keeps a lone "devices" attribute and reserved words after a dot', () => {
    expect(where('devices = 1')).toMatchObject({ left: path('devices') });
    expect(where('tags.from = 1')).toMatchObject({ left: path('tags', 'from') });
  });

  test('parses array indexes and quoted names in brackets', () => {
    expect(where("tags.zones[0] = 'north'")).toMatchObject({ left: path('tags', 'zones', 0) });
    expect(where("tags['a b'].c = 1")).toMatchObject({ left: path('tags', 'a b', 'c') });
  });
});

describe('parseQuery: expressions', () => {
  test.each([
    ['=', '='],
    ['!=', '!='],
    ['<>', '!='],
    ['<', '<'],
    ['>', '>'],
    ['<=', '<='],
    ['>=', '>='],
  ])('parses the comparison %s', (symbol, operator) => {
    expect(where(`version ${symbol} 2`)).toEqual({
      kind: 'compare',
      operator,
      left: path('version'),
      right: literal(2),
    });
  });

  test('gives * / % precedence over + - and arithmetic over comparison', () => {
    expect(where('a + b * c % 2 - 1 > 0')).toEqual({
      kind: 'compare',
      operator: '>',
      left: {
        kind: 'arithmetic',
        operator: '-',
        left: {
          kind: 'arithmetic',
          operator: '+',
          left: path('a'),
          right: {
            kind: 'arithmetic',
            operator: '%',
            left: { kind: 'arithmetic', operator: '*', left: path('b'), right: path('c') },
            right: literal(2),
          },
        },
        right: literal(1),
      },
      right: literal(0),
    });
  });

  test('binds AND tighter than OR, NOT tighter than AND, and honours parentheses', () => {
    expect(where('a = 1 OR b = 2 AND NOT c = 3')).toEqual({
      kind: 'or',
      operands: [
        { kind: 'compare', operator: '=', left: path('a'), right: literal(1) },
        {
          kind: 'and',
          operands: [
            { kind: 'compare', operator: '=', left: path('b'), right: literal(2) },
            { kind: 'not', operand: { kind: 'compare', operator: '=', left: path('c'), right: literal(3) } },
          ],
        },
      ],
    });
    expect(where('(a = 1 OR b = 2) AND c = 3')).toMatchObject({ kind: 'and', operands: [{ kind: 'or' }, {}] });
  });

  test('keeps long OR chains flat', () => {
    const condition = Array.from({ length: 300 }, (_, index) => `deviceId = 'd${index}'`).join(' OR ');
    const parsed = where(condition);
    expect(parsed?.kind === 'or' && parsed.operands).toHaveLength(300);
  });

  test('parses literals', () => {
    expect(where('a IN [\'s\', "d", 1, -2.5, true, FALSE, null]')).toEqual({
      kind: 'in',
      negated: false,
      operand: path('a'),
      list: [literal('s'), literal('d'), literal(1), literal(-2.5), literal(true), literal(false), literal(null)],
    });
  });

  test('parses NIN, parenthesised IN lists and empty lists', () => {
    expect(where('a NIN [1]')).toMatchObject({ kind: 'in', negated: true, list: [literal(1)] });
    expect(where("deviceId IN ('a', 'b')")).toMatchObject({ kind: 'in', list: [literal('a'), literal('b')] });
    expect(where('a IN []')).toMatchObject({ kind: 'in', list: [] });
  });

  test('parses unary minus over expressions', () => {
    expect(where('-a < 0')).toMatchObject({ left: { kind: 'negate', operand: path('a') } });
    expect(where('+3 = 3')).toMatchObject({ left: literal(3) });
  });

  test.each([
    'IS_DEFINED(a)',
    'IS_NULL(a)',
    'IS_BOOL(a)',
    'IS_NUMBER(a)',
    'IS_STRING(a)',
    'IS_OBJECT(a)',
    'IS_ARRAY(a)',
    'IS_PRIMITIVE(a)',
    "STARTSWITH(deviceId, 'x')",
    "endswith(deviceId, 'x')",
  ])('parses the twin function %s', (call) => {
    expect(where(call)).toMatchObject({ kind: 'call' });
  });
});

describe('parseQuery: errors', () => {
  test('rejects STARTS_WITH as Azure does, naming the twin spelling', () => {
    const error = rejection("SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'test')");
    expect(error.code).toBe('ArgumentInvalid');
    expect(error.status).toBe(400);
    expect(error.field).toBe('query');
    expect(error.message).toBe(
      'The query is invalid. Unknown function STARTS_WITH (twin queries spell it STARTSWITH) at line 1, column 29.',
    );
  });

  test.each([
    ['', /The text is empty/],
    ['   ', /The text is empty/],
    ['DELETE FROM devices', /Expected SELECT but found "DELETE" at line 1, column 1/],
    ['SELECT FROM devices', /Expected an attribute name but found "FROM" at line 1, column 8/],
    ['SELECT * devices', /Expected FROM but found "devices" at line 1, column 10/],
    [
      'SELECT * FROM things',
      /FROM expects devices, devices.modules or devices.jobs but found "things" at line 1, column 15/,
    ],
    [
      'SELECT * FROM devices.twins',
      /FROM expects devices.modules or devices.jobs but found "twins" at line 1, column 23/,
    ],
    ['SELECT * FROM devices WHERE', /Unexpected end of query at line 1, column 28/],
    ['SELECT * FROM devices WHERE a =', /Unexpected end of query at line 1, column 32/],
    ['SELECT * FROM devices WHERE (a = 1', /Expected "\)" but found end of query at line 1, column 35/],
    ['SELECT * FROM devices WHERE a = 1 b', /Unexpected "b" at line 1, column 35/],
    ['SELECT * FROM devices WHERE a IN 1', /IN expects a list in \[ \] but found "1" at line 1, column 34/],
    ['SELECT * FROM devices WHERE a IN [1, 2', /Expected "]" but found end of query/],
    ['SELECT * FROM devices WHERE LENGTH(a) = 1', /Unknown function LENGTH at line 1, column 29/],
    ['SELECT * FROM devices WHERE CONTAINS(a, 1)', /Unknown function CONTAINS/],
    ['SELECT * FROM devices WHERE toString(a)', /Unknown function toString/],
    ['SELECT * FROM devices WHERE IS_DEFINED(a, b)', /IS_DEFINED takes 1 argument, not 2 at line 1, column 29/],
    ['SELECT * FROM devices WHERE STARTSWITH(a)', /STARTSWITH takes 2 arguments, not 1/],
    [
      'SELECT * FROM devices WHERE COUNT() > 1',
      /The aggregate COUNT\(\) is only allowed in the SELECT list at line 1, column 29/,
    ],
    ['SELECT * FROM devices WHERE a = SELECT', /Unexpected keyword SELECT at line 1, column 33/],
    ['SELECT * FROM devices WHERE a.', /Expected an attribute name after "." but found end of query/],
    ['SELECT * FROM devices WHERE a[x] = 1', /Expected an array index or a quoted name inside \[ \] but found "x"/],
    ['SELECT * FROM devices WHERE a = )', /Unexpected "\)" at line 1, column 33/],
    ['SELECT TOP -1 * FROM devices', /TOP expects a non-negative integer but found "-" at line 1, column 12/],
    ['SELECT TOP 1.5 * FROM devices', /TOP expects a non-negative integer but found "1.5"/],
    ['SELECT COUNT(x) FROM devices', /COUNT\(\) takes no argument at line 1, column 14/],
    [
      'SELECT UPPER(x) FROM devices',
      /Only attribute paths and COUNT, AVG, SUM, MIN, MAX can be selected, not UPPER\(\)/,
    ],
    ['SELECT deviceId AS FROM devices', /AS expects a name but found "FROM" at line 1, column 20/],
    ['SELECT * FROM devices GROUP tags.x', /Expected BY but found "tags"/],
    ['SELECT * FROM devices GROUP BY tags.x', /SELECT \* cannot be grouped at line 1, column 23/],
    [
      'SELECT COUNT() FROM devices.modules GROUP BY moduleId',
      /GROUP BY is only supported FROM devices, not FROM devices.modules/,
    ],
    ['SELECT deviceId FROM devices.jobs', /Queries FROM devices.jobs only support SELECT \* at line 1, column 8/],
    ['SELECT COUNT() FROM devices.jobs', /Queries FROM devices.jobs only support SELECT \*/],
    [
      'SELECT deviceId, COUNT() FROM devices',
      /Attributes and aggregates cannot be mixed without GROUP BY at line 1, column 8/,
    ],
    [
      'SELECT deviceId, COUNT() AS n FROM devices GROUP BY tags.x',
      /With GROUP BY, every selected attribute must be the grouped attribute at line 1, column 8/,
    ],
    ['SELECT tags.x, properties.reported.X FROM devices', /The output name x is selected twice at line 1, column 16/],
    ['SELECT COUNT() AS n, SUM(version) AS N FROM devices', /The output name n is selected twice/],
    ["SELECT * FROM devices WHERE a = 'x", /Unterminated string literal at line 1, column 33/],
  ])('rejects %j', (text, message) => {
    expect(rejection(text).message).toMatch(message);
  });

  test('puts every message in the "The query is invalid." envelope', () => {
    expect(rejection('SELECT').message).toMatch(/^The query is invalid\. /);
  });

  test('reports line and column on multi-line queries', () => {
    expect(rejection('SELECT *\nFROM devices\nWHERE a = = 1').message).toMatch(/at line 3, column 11\.$/);
  });

  test('accepts 8,192 characters and rejects 8,193', () => {
    const base = "SELECT * FROM devices WHERE deviceId = ''";
    const fits = base.slice(0, -1) + 'x'.repeat(8192 - base.length) + "'";
    expect(fits).toHaveLength(8192);
    expect(() => parseQuery(fits)).not.toThrow();
    expect(rejection(`${fits} `).message).toMatch(/8193 characters long; the limit is 8192/);
  });

  test('refuses pathological nesting with ArgumentError instead of overflowing the stack', () => {
    expect(rejection(`SELECT * FROM devices WHERE ${'('.repeat(4000)}a = 1${')'.repeat(4000)}`).message).toMatch(
      /Nesting deeper than 64 levels/,
    );
    expect(rejection(`SELECT * FROM devices WHERE ${'NOT '.repeat(1500)}a`).message).toMatch(/Nesting deeper/);
    expect(rejection(`SELECT * FROM devices WHERE a = ${'-'.repeat(4000)}1`).message).toMatch(/Nesting deeper/);
    expect(rejection(`SELECT * FROM devices WHERE ${Array(2000).fill('a').join(' + ')} = 1`).message).toMatch(
      /Expression nested deeper than 256 levels/,
    );
  });
});
