/**
 * This package's name and version, for the MQTT `ClientVersion` and the HTTPS `User-Agent`. Kept in code rather than
 * read from package.json at run time, so bundlers need no JSON import; `version.test.ts` fails when the two drift.
 */
export const packageVersion = { name: '@fieldhub/provisioning', version: '0.1.0' } as const;

/** The client's product string, `@fieldhub/provisioning/0.1.0`, shaped as the official `azure-iot-provisioning-device/1.9.1`. */
export const userAgent = `${packageVersion.name}/${packageVersion.version}`;
