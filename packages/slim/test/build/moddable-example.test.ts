import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'acorn';
import { simple } from 'acorn-walk';
import { describe, expect, it } from 'vitest';

// examples/moddable cannot be built here (mcconfig and the ESP32 toolchain come from the Moddable SDK's own
// sources), so this checks what a build would trip on first: every module main.js imports is provided by a
// manifest the example includes, and every resource it opens is listed.

const example = (path: string) => new URL(`../../../../examples/moddable/${path}`, import.meta.url);
const bundleManifest = new URL('../../dist/moddable/manifest.json', import.meta.url);

/**
 * Which Moddable SDK manifests provide a module (read in the SDK sources): `modules/io/manifest.json` maps
 * `embedded:io/socket/{tcp,udp}` but no DNS resolver, which `examples/io/udp/dns/manifest_dns.json` maps;
 * `examples/io/tcp/tlssocket/manifest.json` includes `modules/crypt/tls_419.json` -> `tls_common.json`, which maps
 * `hmac` and includes `crypt/digest` (`crypt`); `examples/manifest_base.json` has `Resource` and `timer`.
 */
const providers: Record<string, string[]> = {
  Resource: ['$(MODDABLE)/examples/manifest_base.json', '$(MODDABLE)/modules/files/resource/manifest.json'],
  timer: ['$(MODDABLE)/examples/manifest_base.json'],
  'embedded:io/socket/tcp': ['$(MODDABLE)/modules/io/manifest.json'],
  'embedded:io/socket/udp': ['$(MODDABLE)/modules/io/manifest.json'],
  'embedded:io/socket/tcp/tls': ['$(MODDABLE)/examples/io/tcp/tlssocket/manifest.json'],
  'embedded:network/dns/resolver/udp': ['$(MODDABLE)/examples/io/udp/dns/manifest_dns.json'],
  crypt: ['$(MODDABLE)/examples/io/tcp/tlssocket/manifest.json', '$(MODDABLE)/modules/crypt/digest/manifest.json'],
  hmac: ['$(MODDABLE)/examples/io/tcp/tlssocket/manifest.json', '$(MODDABLE)/modules/crypt/tls_419.json'],
  'fieldhub-slim': ['./fieldhub-slim/manifest.json'],
};

interface Manifest {
  include?: string[];
  resources?: Record<string, string[]>;
  data?: Record<string, string[]>;
}

const readJson = (url: URL) => JSON.parse(readFileSync(url, 'utf8')) as Manifest;

describe('the Moddable example', () => {
  const main = readFileSync(example('main.js'), 'utf8');
  const manifest = readJson(example('manifest.json'));

  it('includes a manifest providing each module main.js imports (its own and the bundle manifest)', () => {
    if (!existsSync(bundleManifest)) {
      throw new Error(`${bundleManifest.pathname} is missing: run npm run build -w @fieldhub/slim first`);
    }
    // The example includes ./fieldhub-slim/manifest.json, a copy of the bundle's manifest.
    const included = new Set([...(manifest.include ?? []), ...(readJson(bundleManifest).include ?? [])]);
    const imports: string[] = [];
    simple(parse(main, { ecmaVersion: 'latest', sourceType: 'module' }), {
      ImportDeclaration(node) {
        imports.push(String(node.source.value));
      },
    });
    expect(imports.length).toBeGreaterThan(0);
    const unprovided = imports.filter((specifier) => !(providers[specifier] ?? []).some((m) => included.has(m)));
    expect(unprovided).toEqual([]);
  });

  it('lists every resource main.js opens', () => {
    const listed = Object.values({ ...manifest.resources, ...manifest.data })
      .flat()
      .map((path) => path.slice(path.lastIndexOf('/') + 1));
    const opened = [...main.matchAll(/new Resource\(['"]([^'"]+)['"]\)/g)].map((match) => match[1] as string);
    expect(opened.length).toBeGreaterThan(0);
    // Moddable manifests name resources without their extension.
    expect(opened.filter((name) => !listed.includes(name.replace(/\.[^.]+$/, '')))).toEqual([]);
  });
});
