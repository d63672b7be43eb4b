/**
 * This package's name and version, for the `User-Agent` header. Kept in code rather than read from package.json at
 * run time, so bundlers need no JSON import; `version.test.ts` fails when the two drift.
 */
export const packageVersion = { name: '@fieldhub/transport-http', version: '0.1.0' } as const;
