#!/usr/bin/env node
// Checks that the dependency rules of ARCHITECTURE.md ("Dependency direction") hold for every workspace package:
// which @fieldhub packages each may depend on and import, which may use Node APIs, that imports are declared in
// package.json, and that cross-package imports use only `exports`-listed subpaths.
// Usage: node scripts/check-dependency-rules.mjs [--root DIR]. Exit 1 with one line per violation.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';

/** What each package may depend on inside the monorepo. `*` = anything published (not the leaf packages). */
const allowedInternal = {
  protocol: [],
  auth: ['protocol'],
  'device-core': ['protocol'],
  'transport-*': ['device-core', 'protocol'],
  'transport-testing': ['*'],
  device: ['device-core', 'transport-mqtt', 'transport-amqp', 'transport-http', 'auth', 'protocol'],
  provisioning: ['protocol', 'auth'],
  service: ['protocol', 'auth'],
  hub: ['protocol', 'auth'],
  slim: ['protocol'],
  cli: ['*'],
};
/** Packages that must run without Node APIs (portable subset). */
const portable = new Set(['protocol', 'device-core', 'slim']);
/** Files of a portable package that are host adapters for Node itself (exported on their own subpath). */
const nodeHostFiles = new Set(['packages/slim/src/hosts/node.ts']);
/** Leaves: nothing may depend on them. */
const leaves = new Set(['cli', 'transport-testing']);
const nodeBuiltins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

function rulesFor(name) {
  if (name in allowedInternal) return allowedInternal[name];
  if (name.startsWith('transport-')) return allowedInternal['transport-*'];
  return undefined;
}

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist' || entry === '__fixtures__') continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (/\.(c|m)?(t|j)sx?$/.test(entry)) out.push(path);
  }
  return out;
}

const importPattern =
  /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'"`;]*?\s+from\s+)?['"]([^'"]+)['"]|(?:import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/gm;

function importsOf(source) {
  const specifiers = [];
  for (const match of source.matchAll(importPattern)) specifiers.push(match[1] ?? match[2]);
  return specifiers;
}

function packageNameOf(specifier) {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function isTestFile(path) {
  return /\.(test|spec)\.[cm]?[tj]sx?$/.test(path) || /[\\/](test|__tests__)[\\/]/.test(path);
}

/** @returns {string[]} violations */
export function checkDependencyRules(root) {
  const violations = [];
  const packagesDir = join(root, 'packages');
  if (!existsSync(packagesDir)) return violations;
  const packages = new Map();
  for (const folder of readdirSync(packagesDir)) {
    const manifestPath = join(packagesDir, folder, 'package.json');
    if (!existsSync(manifestPath)) continue;
    packages.set(folder, {
      folder,
      dir: join(packagesDir, folder),
      manifest: JSON.parse(readFileSync(manifestPath, 'utf8')),
    });
  }
  const byName = new Map([...packages.values()].map((pkg) => [pkg.manifest.name, pkg]));

  for (const pkg of packages.values()) {
    const { folder, manifest, dir } = pkg;
    const where = `packages/${folder}`;
    if (manifest.name !== `@fieldhub/${folder}`) {
      violations.push(
        `${where}: package name ${manifest.name} does not match its folder (expected @fieldhub/${folder})`,
      );
    }
    const rules = rulesFor(folder);
    if (!rules) {
      violations.push(`${where}: no dependency rule in ARCHITECTURE.md covers this package; add one to the rule table`);
      continue;
    }
    const runtimeDeps = { ...manifest.dependencies, ...manifest.peerDependencies, ...manifest.optionalDependencies };
    const allDeps = { ...runtimeDeps, ...manifest.devDependencies };
    const allowedName = (name) => {
      const target = name.slice('@fieldhub/'.length);
      if (leaves.has(target)) return false;
      return rules.includes('*') || rules.includes(target);
    };

    for (const dep of Object.keys(runtimeDeps)) {
      if (dep.startsWith('@fieldhub/') && !allowedName(dep)) {
        violations.push(`${where}: depends on ${dep}, which ARCHITECTURE.md forbids for ${manifest.name}`);
      }
    }
    if (folder === 'protocol' && Object.keys(runtimeDeps).length > 0) {
      violations.push(
        `${where}: @fieldhub/protocol must have no dependencies (has ${Object.keys(runtimeDeps).join(', ')})`,
      );
    }
    if (folder.startsWith('transport-') && folder !== 'transport-testing') {
      const wire = Object.keys(runtimeDeps).filter((dep) => !dep.startsWith('@fieldhub/'));
      if (wire.length > 1)
        violations.push(`${where}: a transport has exactly one wire library, found ${wire.join(', ')}`);
    }

    for (const file of walk(join(dir, 'src'))) {
      const rel = relative(root, file);
      const test = isTestFile(file);
      for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
        if (specifier.startsWith('.') || specifier.startsWith('/')) continue;
        if (nodeBuiltins.has(specifier) || nodeBuiltins.has(specifier.split('/')[0])) {
          if (portable.has(folder) && !test && !nodeHostFiles.has(rel.split('\\').join('/'))) {
            violations.push(`${rel}: imports ${specifier}, but ${manifest.name} must not use Node APIs`);
          }
          continue;
        }
        const name = packageNameOf(specifier);
        if (name === manifest.name) continue;
        if (name.startsWith('@fieldhub/')) {
          if (!test && !allowedName(name)) {
            violations.push(`${rel}: imports ${specifier}, which ARCHITECTURE.md forbids for ${manifest.name}`);
          }
          const target = byName.get(name);
          if (target) {
            const subpath = `.${specifier.slice(name.length)}`;
            const exportsMap = target.manifest.exports ?? { '.': target.manifest.main };
            if (!(subpath in exportsMap)) {
              violations.push(`${rel}: imports ${specifier}, but ${name} does not list "${subpath}" in its exports`);
            }
          }
        }
        if (
          !(name in (test ? allDeps : runtimeDeps)) &&
          !(test && name === 'vitest') &&
          !(test && name === 'fast-check')
        ) {
          violations.push(`${rel}: imports ${name}, which ${where}/package.json does not declare`);
        }
      }
    }
  }

  // Nothing may depend on a leaf (cli, examples, tests, gateway): check every workspace manifest outside packages/.
  for (const group of ['examples', 'test', 'firmware-bridge']) {
    const groupDir = join(root, group);
    if (!existsSync(groupDir)) continue;
    for (const folder of readdirSync(groupDir)) {
      const manifestPath = join(groupDir, folder, 'package.json');
      if (!existsSync(manifestPath)) continue;
      const leafName = JSON.parse(readFileSync(manifestPath, 'utf8')).name;
      for (const pkg of packages.values()) {
        const deps = { ...pkg.manifest.dependencies, ...pkg.manifest.devDependencies };
        if (leafName && leafName in deps) violations.push(`packages/${pkg.folder}: depends on ${leafName}, a leaf`);
      }
    }
  }
  return violations;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rootIndex = process.argv.indexOf('--root');
  const root = rootIndex > 0 ? process.argv[rootIndex + 1] : new URL('..', import.meta.url).pathname;
  const violations = checkDependencyRules(root);
  for (const violation of violations) console.error(violation);
  if (violations.length > 0) {
    console.error(`dependency rules: ${violations.length} violation(s); see ARCHITECTURE.md, "Dependency direction"`);
    process.exit(1);
  }
  console.log('dependency rules: ok');
}
