import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { userAgent } from './user-agent';
import { packageVersion } from './version';

describe('packageVersion', () => {
  it('matches package.json', () => {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      name: string;
      version: string;
    };
    expect(packageVersion).toEqual({ name: manifest.name, version: manifest.version });
  });
});

describe('userAgent', () => {
  it('is shaped as the official SDK client-version, product info appended', () => {
    const environment = { runtime: 'node v20.20.2', platform: 'linux', architecture: 'x64' };
    expect(userAgent(undefined, environment)).toBe(
      `@fieldhub/transport-http/${packageVersion.version} (node v20.20.2; linux; x64)`,
    );
    expect(userAgent('my-app/2', environment)).toMatch(/\(node v20\.20\.2; linux; x64\) my-app\/2$/);
  });
});
