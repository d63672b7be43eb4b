import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../src/store/sqlite/sqlite-store';

// The child runs the real store code in plain Node: bundle the TypeScript with esbuild, better-sqlite3 external.
// The bundle goes to a temp folder inside the package so that it (and the store's checkpoint worker) resolve
// better-sqlite3 from node_modules as an installed hub would.
const here = fileURLToPath(new URL('.', import.meta.url));

let dir: string;
let storeModule: string;

beforeAll(async () => {
  dir = await mkdtemp(join(here, 'fixtures', 'store-crash-tmp-'));
  storeModule = join(dir, 'sqlite-store.mjs');
  await build({
    entryPoints: [join(here, '../src/store/sqlite/sqlite-store.ts')],
    outfile: storeModule,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'silent',
    external: ['better-sqlite3'],
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Collects complete stdout lines of the child; resolves `until` once `predicate` holds. */
function watch(child: ChildProcess, predicate: (lines: readonly string[]) => boolean) {
  const lines: string[] = [];
  let partial = '';
  const reached = new Promise<void>((resolve, reject) => {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      lines.push(...parts);
      if (predicate(lines)) resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`child exited early (${code ?? signal})`)));
  });
  return { lines, reached };
}

describe('SQLite store crash safety', () => {
  it('keeps every acknowledged append and write after SIGKILL mid-run', async () => {
    const path = join(dir, 'crash.db');
    const child = spawn(process.execPath, [join(here, 'fixtures/store-crash-child.mjs'), storeModule, path], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const events = (lines: readonly string[]) => lines.filter((line) => line.startsWith('event ')).length;
    const { lines, reached } = watch(child, (seen) => events(seen) >= 5000);
    try {
      await reached;
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }

    const store = await openSqliteStore({ path });
    try {
      const acknowledged = new Map<number, Map<number, string>>();
      let lastRevision = 0;
      for (const line of lines) {
        const [kind, a, b, body] = line.split(' ');
        if (kind === 'event') {
          const partition = Number(a);
          const bySequence = acknowledged.get(partition) ?? new Map<number, string>();
          bySequence.set(Number(b), body ?? '');
          acknowledged.set(partition, bySequence);
        } else if (kind === 'document') {
          lastRevision = Math.max(lastRevision, Number(a));
        }
      }
      expect(acknowledged.size).toBe(2);
      for (const [partition, bySequence] of acknowledged) {
        const stored = await store.log.read('crash-hub', partition, 'earliest', 1_000_000);
        // Gap-free from 0: nothing half-written, nothing lost in the middle.
        expect(stored.map((e) => e.sequenceNumber)).toEqual(stored.map((_, i) => i));
        const storedBodies = new Map(stored.map((e) => [e.sequenceNumber, Buffer.from(e.body).toString()]));
        for (const [sequence, body] of bySequence) expect(storedBodies.get(sequence)).toBe(body);
        // Appending after the crash continues the numbering.
        const [next] = await store.log.append('crash-hub', partition, [
          { body: new Uint8Array(0), properties: {}, systemProperties: {}, enqueuedTime: Date.now() },
        ]);
        expect(next?.sequenceNumber).toBe(stored.length);
      }
      const document = await store.documents.get<{ revision: number }>('crash-hub', 'counters', 'c');
      expect(document?.revision ?? 0).toBeGreaterThanOrEqual(lastRevision);
      expect(document?.value.revision).toBe(document?.revision);
    } finally {
      await store.close();
    }
  });
});
