import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, test } from 'vitest';
import { tokenize } from './tokenize';

const kinds = (text: string) => tokenize(text).map((token) => [token.kind, token.text]);

describe('tokenize', () => {
  test('splits keywords, identifiers, operators and literals, ending with an end token', () => {
    expect(kinds("SELECT * FROM devices WHERE a.b <> 'x'")).toEqual([
      ['identifier', 'SELECT'],
      ['symbol', '*'],
      ['identifier', 'FROM'],
      ['identifier', 'devices'],
      ['identifier', 'WHERE'],
      ['identifier', 'a'],
      ['symbol', '.'],
      ['identifier', 'b'],
      ['symbol', '<>'],
      ['string', "'x'"],
      ['end', ''],
    ]);
  });

  test('prefers two-character operators', () => {
    expect(kinds('a<=b>=c!=d<e>f').filter(([kind]) => kind === 'symbol')).toEqual([
      ['symbol', '<='],
      ['symbol', '>='],
      ['symbol', '!='],
      ['symbol', '<'],
      ['symbol', '>'],
    ]);
  });

  test('reads $-names and unicode letters as identifiers', () => {
    expect(kinds('$body.$version tëmp_1')).toEqual([
      ['identifier', '$body'],
      ['symbol', '.'],
      ['identifier', '$version'],
      ['identifier', 'tëmp_1'],
      ['end', ''],
    ]);
  });

  test.each([
    ['42', 42],
    ['3.25', 3.25],
    ['.5', 0.5],
    ['1e3', 1000],
    ['2.5E-1', 0.25],
    ['0x1F', 31],
  ])('reads the number %s', (text, value) => {
    expect(tokenize(text)[0]).toMatchObject({ kind: 'number', value });
  });

  test.each([
    [String.raw`'it\'s'`, "it's"],
    [String.raw`"say \"hi\""`, 'say "hi"'],
    [`"it's"`, "it's"],
    [String.raw`'a\\b\/c\n\t'`, 'a\\b/c\n\t'],
    [String.raw`'\u00e9\u20AC'`, 'é€'],
    ["''", ''],
  ])('unescapes the string %s', (text, value) => {
    expect(tokenize(text)[0]).toMatchObject({ kind: 'string', value });
  });

  test.each([
    ["'open", /Unterminated string literal at line 1, column 1/],
    [String.raw`'\q'`, /Invalid escape sequence "\\\\q" at line 1, column 2/],
    [String.raw`'\u12'`, /Invalid escape sequence/],
    ['a # b', /Unexpected character "#" at line 1, column 3/],
    ['12abc', /Malformed number "12a" at line 1, column 1/],
    ['0x', /Malformed hexadecimal number/],
    ['1e+', /Malformed number exponent at line 1, column 2/],
    ['1e999', /Number out of range/],
    ['a\n  @', /line 2, column 3/],
  ])('rejects %j with a positioned ArgumentError', (text, message) => {
    expect(() => tokenize(text)).toThrow(ArgumentError);
    expect(() => tokenize(text)).toThrow(message);
  });
});
