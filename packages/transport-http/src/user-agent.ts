import { packageVersion } from './version';

/** What the user agent describes: the runtime, overridable for tests. */
export interface UserAgentEnvironment {
  readonly runtime: string;
  readonly platform: string;
  readonly architecture: string;
}

function currentEnvironment(): UserAgentEnvironment {
  const process = (globalThis as { process?: { version?: string; platform?: string; arch?: string } }).process;
  return {
    runtime: process?.version === undefined ? 'unknown' : `node ${process.version}`,
    platform: process?.platform ?? 'unknown',
    architecture: process?.arch ?? 'unknown',
  };
}

/**
 * The `User-Agent` of every request, shaped as the official SDK's (`azure-iot-device/1.18.4 (node v20.20.2; Debian
 * 12; x64)`, captures/http.txt): `@fieldhub/transport-http/0.1.0 (node v20.20.2; linux; x64)`, with the caller's
 * product info appended.
 */
export function userAgent(productInfo?: string, environment: UserAgentEnvironment = currentEnvironment()): string {
  const base = `${packageVersion.name}/${packageVersion.version} (${environment.runtime}; ${environment.platform}; ${environment.architecture})`;
  return productInfo === undefined || productInfo === '' ? base : `${base} ${productInfo}`;
}
