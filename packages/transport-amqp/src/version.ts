/**
 * This package's name and version, for the `com.microsoft:client-version` link property (protocol-device.md
 * §3.3). Kept in code rather than read from package.json at run time, so bundlers need no JSON import;
 * `version.test.ts` fails when the two drift.
 */
export const packageVersion = { name: '@fieldhub/transport-amqp', version: '0.1.0' } as const;
