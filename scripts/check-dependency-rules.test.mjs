import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkDependencyRules } from './check-dependency-rules.mjs';

const roots = [];
function tree(files) {
  const root = mkdtempSync(join(tmpdir(), 'fieldhub-deprules-'));
  roots.push(root);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return root;
}
const manifest = (name, dependencies = {}, exports = { '.': './dist/index.js' }) => ({ name, dependencies, exports });
const good = {
  'packages/protocol/package.json': manifest('@fieldhub/protocol'),
  'packages/protocol/src/index.ts': "export * from './topics';\n",
  'packages/auth/package.json': manifest('@fieldhub/auth', { '@fieldhub/protocol': '0.1.0', 'node-forge': '^1' }),
  'packages/auth/src/index.ts':
    "import forge from 'node-forge';\nimport { ArgumentError } from '@fieldhub/protocol';\nimport { createHmac } from 'node:crypto';\n",
  'packages/hub/package.json': manifest('@fieldhub/hub', { '@fieldhub/protocol': '0.1.0', '@fieldhub/auth': '0.1.0' }),
  'packages/hub/src/index.ts':
    "import type { HubError } from '@fieldhub/protocol';\nexport { createSasToken } from '@fieldhub/auth';\n",
};

afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

describe('dependency-rule check', () => {
  it('accepts a tree that follows ARCHITECTURE.md', () => {
    expect(checkDependencyRules(tree(good))).toEqual([]);
  });

  it('rejects a hub that imports device-core', () => {
    const violations = checkDependencyRules(
      tree({
        ...good,
        'packages/device-core/package.json': manifest('@fieldhub/device-core', { '@fieldhub/protocol': '0.1.0' }),
        'packages/device-core/src/index.ts': 'export {};\n',
        'packages/hub/package.json': manifest('@fieldhub/hub', { '@fieldhub/device-core': '0.1.0' }),
        'packages/hub/src/index.ts': "import { x } from '@fieldhub/device-core';\n",
      }),
    );
    expect(violations.join('\n')).toMatch(/hub.*device-core.*forbids/);
  });

  it('rejects Node APIs and dependencies in protocol', () => {
    const violations = checkDependencyRules(
      tree({
        ...good,
        'packages/protocol/package.json': manifest('@fieldhub/protocol', { uuid: '^9' }),
        'packages/protocol/src/index.ts': "import { readFileSync } from 'node:fs';\nimport { v4 } from 'uuid';\n",
      }),
    );
    expect(violations.some((v) => v.includes('must not use Node APIs'))).toBe(true);
    expect(violations.some((v) => v.includes('must have no dependencies'))).toBe(true);
  });

  it('rejects an undeclared import and a subpath missing from exports', () => {
    const violations = checkDependencyRules(
      tree({
        ...good,
        'packages/auth/src/index.ts': "import { x } from '@fieldhub/protocol/internal';\nimport y from 'left-pad';\n",
      }),
    );
    expect(violations.some((v) => v.includes('does not list "./internal"'))).toBe(true);
    expect(violations.some((v) => v.includes('imports left-pad'))).toBe(true);
  });

  it('rejects a transport that imports another transport or carries two wire libraries', () => {
    const violations = checkDependencyRules(
      tree({
        ...good,
        'packages/transport-mqtt/package.json': manifest('@fieldhub/transport-mqtt', { mqtt: '^5', ws: '^8' }),
        'packages/transport-mqtt/src/index.ts': 'export {};\n',
        'packages/transport-amqp/package.json': manifest('@fieldhub/transport-amqp', {
          '@fieldhub/transport-mqtt': '0.1.0',
        }),
        'packages/transport-amqp/src/index.ts': "import { m } from '@fieldhub/transport-mqtt';\n",
      }),
    );
    expect(violations.some((v) => v.includes('exactly one wire library'))).toBe(true);
    expect(violations.some((v) => v.includes('transport-amqp') && v.includes('forbids'))).toBe(true);
  });

  it('lets device depend on both transports, and on no other package outside its rule', () => {
    const device = (dependencies) => ({
      ...good,
      'packages/device-core/package.json': manifest('@fieldhub/device-core', { '@fieldhub/protocol': '0.1.0' }),
      'packages/transport-mqtt/package.json': manifest('@fieldhub/transport-mqtt', { mqtt: '^5' }),
      'packages/transport-amqp/package.json': manifest('@fieldhub/transport-amqp', { 'rhea-promise': '^3' }),
      'packages/device/package.json': manifest('@fieldhub/device', dependencies),
      'packages/device/src/index.ts':
        "export { mqtt } from '@fieldhub/transport-mqtt';\nexport { amqp } from '@fieldhub/transport-amqp';\n",
    });
    const transports = { '@fieldhub/transport-mqtt': '0.1.0', '@fieldhub/transport-amqp': '0.1.0' };
    expect(checkDependencyRules(tree(device(transports)))).toEqual([]);
    const violations = checkDependencyRules(tree(device({ ...transports, '@fieldhub/hub': '0.1.0' })));
    expect(violations.some((v) => v.includes('device') && v.includes('@fieldhub/hub') && v.includes('forbids'))).toBe(
      true,
    );
  });

  it('rejects a package no rule covers, and a dependency on a leaf', () => {
    const violations = checkDependencyRules(
      tree({
        ...good,
        'packages/mystery/package.json': manifest('@fieldhub/mystery'),
        'packages/cli/package.json': manifest('@fieldhub/cli'),
        'packages/auth/package.json': manifest('@fieldhub/auth', { '@fieldhub/cli': '0.1.0', 'node-forge': '^1' }),
      }),
    );
    expect(violations.some((v) => v.includes('no dependency rule'))).toBe(true);
    expect(violations.some((v) => v.includes('@fieldhub/cli'))).toBe(true);
  });

  it('passes on this repository', () => {
    expect(checkDependencyRules(new URL('..', import.meta.url).pathname)).toEqual([]);
  });
});
