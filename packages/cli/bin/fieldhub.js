#!/usr/bin/env node
// The `fieldhub` command. The compiled CLI lives in dist/ (built by `npm ci`'s prepare step or `npm run build`).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('fieldhub: the CLI is not built yet; run `npm run build` at the repository root\n');
  process.exit(1);
}
await import(entry.href);
