/** Arbitraries and assertions shared by the property-based tests of the parsers. */
import fc from 'fast-check';
import { expect } from 'vitest';
import { ArgumentError } from '../errors';

/** Random UTF-16 code units, lone surrogates included. */
const codeUnits = fc
  .array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 60 })
  .map((units) => String.fromCharCode(...units));

/** Random bytes read as Latin-1, as a server might naively decode a frame. */
const latin1 = fc.uint8Array({ maxLength: 80 }).map((bytes) => String.fromCharCode(...bytes));

/** Characters that are meaningful to our grammars, so random strings hit the interesting paths. */
const grammarAlphabet = fc.constantFrom(
  '/', '?', '&', '=', '%', '%2', '%24', '%C3', '%E2%82', '%F0%9F%98%80', '%ZZ', '+', '#', '$', ';', ' ', '.', 'a', '1',
  '$rid', '$version', 'devices', 'modules', 'messages', 'events', 'devicebound', 'deviceBound', 'inputs',
  '$iothub', 'twin', 'res', 'GET', 'PATCH', 'properties', 'reported', 'desired', 'methods', 'POST', '$dps',
  'registrations', 'PUT', 'iotdps-register', 'iotdps-get-operationstatus', 'operationId', 'retry-after',
  'api-version', 'SharedAccessSignature', 'sr', 'sig', 'se', 'skn', 'HostName', 'DeviceId', 'ModuleId',
  'SharedAccessKey', 'SharedAccessKeyName', 'x509', 'true', 'GatewayHostName', '$.mid', 'iothub-ack', 'full',
  '200', '-1', '99999999999999999999', '\u0000', '\ud800', '\u00e9',
);
const grammarSoup = fc.array(grammarAlphabet, { maxLength: 25 }).map((parts) => parts.join(''));

/** Every kind of random string the parsers must survive. */
export const anyString: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  codeUnits,
  latin1,
  grammarSoup,
);

/**
 * Calls `parse`; passes when it returns or throws an ArgumentError that names a field, fails on any other
 * exception (TypeError, URIError, RangeError, ...).
 */
export function expectOnlyArgumentError(parse: () => unknown): void {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(ArgumentError);
    expect((error as ArgumentError).field).toEqual(expect.any(String));
  }
}

/** Runs `parse` on many random strings; see {@link expectOnlyArgumentError}. */
export function fuzzParser(parse: (input: string) => unknown, numRuns = 2000): void {
  fc.assert(
    fc.property(anyString, (input) => {
      expectOnlyArgumentError(() => parse(input));
    }),
    { numRuns },
  );
}

/** Identifier-like strings: no `/`, `#`, `+`, NUL; non-empty. */
export const identifier: fc.Arbitrary<string> = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 40 })
  .filter((s) => !/[/#+\u0000]/.test(s));

/** Opaque request ids as SDKs make them: integers or UUIDs. */
export const requestId: fc.Arbitrary<string> = fc.oneof(
  fc.nat().map(String),
  fc.uuid(),
  fc.stringMatching(/^[A-Za-z0-9._~-]{1,20}$/),
);

/** Large inputs that would expose quadratic work or catastrophic regex backtracking. */
export const largeInputs: readonly string[] = [
  'a'.repeat(200_000),
  '%'.repeat(200_000),
  '%C3'.repeat(70_000),
  '&='.repeat(100_000),
  '/'.repeat(200_000),
  `devices/${'d'.repeat(100_000)}/messages/events/${'k=v&'.repeat(50_000)}`,
  `$iothub/twin/res/200/?${'$rid=1&'.repeat(30_000)}`,
  `SharedAccessSignature ${'sr=a&'.repeat(40_000)}`,
  `HostName=h;SharedAccessKey=${'AAAA'.repeat(50_000)}!`,
  `h/d/?${'a=b&'.repeat(50_000)}`,
  '['.repeat(100_000),
];

/** Runs `parse` on each large input; passes when each finishes within `budgetMs` throwing only ArgumentError. */
export function expectLinearTime(parse: (input: string) => unknown, budgetMs = 2000): void {
  for (const input of largeInputs) {
    const started = Date.now();
    expectOnlyArgumentError(() => parse(input));
    expect(Date.now() - started).toBeLessThan(budgetMs);
  }
}
