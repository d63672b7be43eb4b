import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { openSqliteStore, prefixUpperBound } from '../src/store/sqlite/sqlite-store';
import { describeStoreConformance } from './store-conformance';

describeStoreConformance('sqlite (file)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fieldhub-sqlite-'));
  const path = join(dir, 'data', 'hub.db');
  return {
    store: await openSqliteStore({ path }),
    reopen: () => openSqliteStore({ path }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describeStoreConformance('sqlite (:memory:)', async () => ({
  store: await openSqliteStore({ path: ':memory:' }),
  cleanup: async () => {},
}));

describe('SQLite store', () => {
  it('rejects every operation after close', async () => {
    const store = await openSqliteStore({ path: ':memory:' });
    await store.close();
    await expect(store.documents.get('h', 'c', 'k')).rejects.toThrow(/closed/);
    await expect(store.log.append('h', 0, [])).rejects.toThrow(/closed/);
  });

  it('rejects a bad partition or event without disturbing the appends grouped with it', async () => {
    const store = await openSqliteStore({ path: ':memory:' });
    const event = { body: new Uint8Array([1]), properties: {}, systemProperties: {}, enqueuedTime: 1 };
    const good = store.log.append('h', 0, [event]);
    const badPartition = store.log.append('h', -1, [event]);
    const badBody = store.log.append('h', 0, [{ ...event, body: 'text' as unknown as Uint8Array }]);
    await expect(badPartition).rejects.toThrow(RangeError);
    await expect(badBody).rejects.toThrow(TypeError);
    expect((await good)[0]?.sequenceNumber).toBe(0);
    await store.close();
  });

  it('migrates once and reopens a migrated file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fieldhub-sqlite-'));
    try {
      const path = join(dir, 'hub.db');
      await (await openSqliteStore({ path })).close();
      const store = await openSqliteStore({ path, synchronous: 'full' });
      expect(await store.documents.put('h', 'c', 'k', 1, 0)).toBe(1);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('computes the exclusive upper bound of a key prefix in code point order', () => {
    expect(prefixUpperBound('')).toBeUndefined();
    expect(prefixUpperBound('a')).toBe('b');
    expect(prefixUpperBound('a%')).toBe('a&');
    expect(prefixUpperBound('\ud7ff')).toBe('\ue000');
    expect(prefixUpperBound('x\u{10ffff}')).toBe('y');
    expect(prefixUpperBound('\u{10ffff}')).toBeUndefined();
    expect(prefixUpperBound('日')).toBe(String.fromCodePoint(('日'.codePointAt(0) as number) + 1));
  });
});

describe('SQLite store background checkpoint', () => {
  it('copies the WAL into the database file off the event loop', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fieldhub-sqlite-'));
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
    const path = join(dir, 'hub.db');
    const store = await openSqliteStore({ path, logger });
    try {
      expect(lines.some((line) => line.includes('"backgroundCheckpoint":true'))).toBe(true);
      const body = new Uint8Array(256);
      const event = { body, properties: {}, systemProperties: {}, enqueuedTime: 1 };
      await Promise.all(Array.from({ length: 2000 }, () => store.log.append('h', 0, [event])));
      // The main connection never checkpoints (autocheckpoint off, and 600 KB is below SQLite's inline
      // threshold anyway): the data reaches the database file only if the worker copied it.
      await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(2000 * 256), { timeout: 5000, interval: 50 });
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('checkpoints what was written after a pause, and reports nothing while idle', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fieldhub-sqlite-'));
    const path = join(dir, 'hub.db');
    const store = await openSqliteStore({ path });
    try {
      const event = { body: new Uint8Array(256), properties: {}, systemProperties: {}, enqueuedTime: 1 };
      await Promise.all(Array.from({ length: 500 }, () => store.log.append('h', 0, [event])));
      await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(500 * 256), { timeout: 5000, interval: 50 });
      // Idle for longer than the back-off reaches (1 s): a write after it is still copied promptly.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const before = statSync(path).size;
      await Promise.all(Array.from({ length: 2000 }, () => store.log.append('h', 1, [event])));
      await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(before + 2000 * 256), {
        timeout: 5000,
        interval: 50,
      });
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps the WAL bounded under sustained appends', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fieldhub-sqlite-'));
    const path = join(dir, 'hub.db');
    const store = await openSqliteStore({ path, walRestartFrames: 64 });
    try {
      const body = new Uint8Array(1024);
      const event = { body, properties: {}, systemProperties: {}, enqueuedTime: 1 };
      const deadline = Date.now() + 1500;
      // ~1 s of back-to-back appends: the writer commits during every background checkpoint.
      while (Date.now() < deadline) {
        await Promise.all(Array.from({ length: 50 }, () => store.log.append('h', 0, [event])));
      }
      const { lastSequenceNumber } = await store.log.info('h', 0);
      const written = (lastSequenceNumber + 1) * 1024;
      expect(written).toBeGreaterThan(2 * 1024 * 1024);
      // Without the forced RESTART the WAL would hold everything written; with it, a few times the limit.
      expect(statSync(`${path}-wal`).size).toBeLessThan(written / 2);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
