import { ArgumentError } from '@fieldhub/protocol';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { deviceTwins } from './__fixtures__/twins';
import { compileCondition, evaluateCondition } from './compile-condition';
import { evaluateQuery } from './evaluate-query';
import { parseQuery } from './parse-query';

/** Fragments that make random text look like queries often enough to reach deep into the parser. */
const fragment = fc.constantFrom(
  'SELECT ',
  'TOP 3 ',
  '* ',
  'FROM devices ',
  'FROM devices.modules ',
  'FROM devices.jobs ',
  'WHERE ',
  'GROUP BY ',
  'AS n ',
  'AND ',
  'OR ',
  'NOT ',
  'IN ',
  'NIN ',
  '[',
  ']',
  '(',
  ')',
  ', ',
  '.',
  '= ',
  '<> ',
  '<= ',
  '+ ',
  '- ',
  '* ',
  '/ ',
  '% ',
  "'str' ",
  '"q\\"" ',
  '42 ',
  '0x1F ',
  '-1.5e3 ',
  'true ',
  'null ',
  'tags.floor ',
  'properties.reported.batteryLevel ',
  'deviceId ',
  'devices.tags.x ',
  'COUNT() ',
  'AVG(',
  'MAX(version) ',
  'IS_DEFINED(',
  'STARTSWITH(',
  'STARTS_WITH(',
  "'",
  '\\',
  '$x',
  '\n',
);
const queryLike = fc.array(fragment, { maxLength: 30 }).map((parts) => parts.join(''));
const anyText = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 100 }), queryLike);

/** Valid conditions built from the grammar, so random evaluation reaches every operator and function. */
const attributePath = fc.constantFrom(
  'a',
  'A',
  'b',
  'deviceId',
  'tags',
  'tags.g',
  'tags.v',
  'tags.z[0]',
  "tags['floor']",
  'properties.reported.x',
);
const literalText = fc.oneof(
  fc.string({ maxLength: 8 }).map((text) => JSON.stringify(text)),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
  fc.constantFrom('true', 'false', 'null'),
);
const { condition: conditionText } = fc.letrec<{ value: string; condition: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    attributePath,
    literalText,
    fc
      .tuple(tie('value'), fc.constantFrom('+', '-', '*', '/', '%'), tie('value'))
      .map(([left, operator, right]) => `(${left} ${operator} ${right})`),
    tie('value').map((value) => `-${value}`),
  ),
  condition: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc
      .tuple(tie('value'), fc.constantFrom('=', '!=', '<>', '<', '>', '<=', '>='), tie('value'))
      .map(([left, operator, right]) => `${left} ${operator} ${right}`),
    fc
      .tuple(tie('value'), fc.constantFrom('IN', 'NIN'), fc.array(tie('value'), { maxLength: 4 }))
      .map(([value, operator, list]) => `${value} ${operator} [${list.join(', ')}]`),
    fc
      .tuple(
        fc.constantFrom(
          'IS_DEFINED',
          'IS_NULL',
          'IS_BOOL',
          'IS_NUMBER',
          'IS_STRING',
          'IS_OBJECT',
          'IS_ARRAY',
          'IS_PRIMITIVE',
        ),
        tie('value'),
      )
      .map(([name, value]) => `${name}(${value})`),
    fc
      .tuple(fc.constantFrom('STARTSWITH', 'ENDSWITH'), tie('value'), tie('value'))
      .map(([name, left, right]) => `${name}(${left}, ${right})`),
    fc
      .tuple(tie('condition'), fc.constantFrom('AND', 'OR'), tie('condition'))
      .map(([left, operator, right]) => `(${left}) ${operator} (${right})`),
    tie('condition').map((condition) => `NOT (${condition})`),
    tie('value'),
  ),
}));

/** Queries that parse, to run over random documents. */
const validQueries = [
  'SELECT * FROM devices',
  "SELECT * FROM devices WHERE tags.location.region = 'US' OR tags.floor > 1 AND NOT IS_DEFINED(tags.x)",
  'SELECT deviceId, properties.reported.a.b AS ab, tags.z[0] FROM devices WHERE a.b + 1 * c - d / e % 2 >= 0',
  'SELECT COUNT() AS n, AVG(a) AS avg, SUM(a), MIN(a), MAX(a) FROM devices WHERE a IN [1, "x", null] OR b NIN [true]',
  'SELECT tags.g, COUNT() AS n, MAX(tags.v) AS m FROM devices GROUP BY tags.g',
  'SELECT TOP 2 * FROM devices WHERE STARTSWITH(deviceId, "a") OR ENDSWITH(a, b) OR IS_OBJECT(tags) OR -a < 0',
  'SELECT * FROM devices.jobs WHERE devices.jobs.status = "completed"',
];

/** Random JSON wrapped in twin-like shapes, with names the queries ask for. */
const documentArbitrary = fc.oneof(
  fc.dictionary(fc.string(), fc.jsonValue()),
  fc.record({
    deviceId: fc.jsonValue(),
    tags: fc.oneof(
      fc.jsonValue(),
      fc.dictionary(fc.constantFrom('g', 'v', 'z', 'floor', 'location', 'X'), fc.jsonValue()),
    ),
    a: fc.jsonValue(),
    b: fc.jsonValue(),
    properties: fc.jsonValue(),
  }),
);

describe('properties', () => {
  test('parseQuery throws only ArgumentError on arbitrary text, and terminates', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        try {
          parseQuery(text);
        } catch (error) {
          if (!(error instanceof ArgumentError)) throw error;
          expect(error.message).toMatch(/^The query is invalid\. /);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('compileCondition throws only ArgumentError on arbitrary text, in both dialects', () => {
    fc.assert(
      fc.property(anyText, fc.constantFrom('twin' as const, 'routing' as const), (text, dialect) => {
        try {
          compileCondition(text, { dialect });
        } catch (error) {
          if (!(error instanceof ArgumentError)) throw error;
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('parseQuery rejects over-long and deeply nested text quickly', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('(', 'NOT ', '-', '[', 'IS_NULL('),
        fc.integer({ min: 100, max: 3000 }),
        (unit, count) => {
          const started = performance.now();
          expect(() => parseQuery(`SELECT * FROM devices WHERE ${unit.repeat(count)}a`)).toThrow(ArgumentError);
          expect(performance.now() - started).toBeLessThan(1000);
        },
      ),
      { numRuns: 50 },
    );
  });

  test('evaluation never throws on random JSON documents', () => {
    const queries = validQueries.map((text) => parseQuery(text));
    fc.assert(
      fc.property(fc.array(documentArbitrary, { maxLength: 8 }), (documents) => {
        for (const query of queries) {
          const result = evaluateQuery(query, documents);
          expect(Array.isArray(result.items)).toBe(true);
          expect(() => JSON.stringify(result.items)).not.toThrow();
        }
      }),
      { numRuns: 500 },
    );
  });

  test('conditions parsed from random query-like text evaluate without throwing on random documents', () => {
    fc.assert(
      fc.property(queryLike, documentArbitrary, (text, document) => {
        let condition: ReturnType<typeof compileCondition>;
        try {
          condition = compileCondition(text);
        } catch {
          return;
        }
        expect(typeof evaluateCondition(condition, document)).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  test('grammar-built conditions always parse and evaluate to a boolean on random documents', () => {
    fc.assert(
      fc.property(conditionText, fc.array(documentArbitrary, { maxLength: 4 }), (text, documents) => {
        const condition = compileCondition(text);
        for (const document of documents) expect(typeof evaluateCondition(condition, document)).toBe('boolean');
        const query = parseQuery(`SELECT * FROM devices WHERE ${text}`);
        expect(evaluateQuery(query, documents).items).toEqual(
          documents.filter((document) => evaluateCondition(condition, document)),
        );
      }),
      { numRuns: 1000 },
    );
  });

  test('SELECT * WHERE c keeps exactly the documents for which evaluateCondition(c) holds', () => {
    const conditions = [
      "tags.floor >= 2 OR deviceId = 'gateway-1'",
      'NOT IS_DEFINED(tags.location)',
      'version % 2 = 1',
    ];
    for (const text of conditions) {
      const viaQuery = evaluateQuery(parseQuery(`SELECT * FROM devices WHERE ${text}`), deviceTwins).items;
      const condition = compileCondition(text);
      expect(viaQuery).toEqual(deviceTwins.filter((twin) => evaluateCondition(condition, twin)));
    }
  });
});
