/**
 * The Store conformance suite: every Store implementation (SQLite now, PostgreSQL with scale-out) runs it, so
 * that core code can rely on the same semantics whichever store is configured.
 *
 * Usage, in a `*.test.ts` file:
 * ```ts
 * describeStoreConformance('sqlite', async () => {
 *   const dir = await mkdtemp(join(tmpdir(), 'store-'));
 *   const path = join(dir, 'hub.db');
 *   return {
 *     store: await openSqliteStore({ path }),
 *     reopen: () => openSqliteStore({ path }),
 *     cleanup: () => rm(dir, { recursive: true, force: true }),
 *   };
 * });
 * ```
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type LogEvent, type LogEventInput, RevisionConflict, type Store } from '../src/store/store';

/** What a test store factory returns. */
export interface StoreUnderTest {
  readonly store: Store;
  /**
   * Opens the same data again. The suite closes the previous store before calling it. Without it, the
   * persistence tests are skipped (e.g. for an in-memory store).
   */
  readonly reopen?: () => Promise<Store>;
  /** Removes what the factory created; the suite has closed every store it opened by then. */
  readonly cleanup: () => Promise<void>;
}

const hub = 'hub-a';
const otherHub = 'hub-b';

/** Keys that trip up LIKE patterns, path-like keys and UTF-16 vs UTF-8 ordering (U+FF5A vs U+1F600). */
const awkwardKeys = [
  'a',
  'a%',
  'a%b',
  'a_',
  'a_b',
  'ab',
  'a/b',
  'a/b/c',
  'A',
  'a b',
  'é',
  '日本',
  '日',
  'ｚ',
  '😀',
  'z',
];

/** SQLite's BINARY collation and PostgreSQL's "C" collation: UTF-8 byte order. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function event(body: Uint8Array | string, enqueuedTime = 1_000, extra: Partial<LogEventInput> = {}): LogEventInput {
  return {
    body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
    properties: {},
    systemProperties: {},
    enqueuedTime,
    ...extra,
  };
}

function bodies(events: readonly LogEvent[]): string[] {
  return events.map((e) => Buffer.from(e.body).toString('utf8'));
}

function sequences(events: readonly LogEvent[]): number[] {
  return events.map((e) => e.sequenceNumber);
}

async function expectConflict(promise: Promise<unknown>, expected: number, actual: number): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RevisionConflict);
  expect(error).toMatchObject({ expected, actual });
}

/**
 * Declares the conformance tests for one Store implementation. `open` is called before every test and must
 * return an empty store.
 */
export function describeStoreConformance(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`Store conformance: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: Store;
    const opened: Store[] = [];

    /** Closes the current store and opens the same data again (returns undefined when the store cannot). */
    async function reopen(): Promise<Store | undefined> {
      if (subject.reopen === undefined) return undefined;
      await store.close();
      store = await subject.reopen();
      opened.push(store);
      return store;
    }

    beforeEach(async () => {
      subject = await open();
      store = subject.store;
      opened.push(store);
    });

    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      await subject.cleanup();
    });

    describe('documents', () => {
      it('returns undefined for a missing document', async () => {
        expect(await store.documents.get(hub, 'devices', 'nope')).toBeUndefined();
      });

      it('creates at revision 1 and increments the revision on every write', async () => {
        expect(await store.documents.put(hub, 'devices', 'd1', { n: 1 })).toBe(1);
        expect(await store.documents.put(hub, 'devices', 'd1', { n: 2 })).toBe(2);
        expect(await store.documents.get(hub, 'devices', 'd1')).toEqual({ key: 'd1', revision: 2, value: { n: 2 } });
      });

      it('round-trips JSON values of every shape', async () => {
        const values = [{ a: [1, 'two', null, { b: true }] }, 'text', 42, 1.5, null, [], true, { 'ü n i': '😀' }];
        for (const [i, value] of values.entries()) await store.documents.put(hub, 'values', `k${i}`, value);
        for (const [i, value] of values.entries()) {
          expect((await store.documents.get(hub, 'values', `k${i}`))?.value).toEqual(value);
        }
      });

      it('create-only (expected revision 0) succeeds once, then conflicts with the actual revision', async () => {
        expect(await store.documents.put(hub, 'devices', 'd1', 'first', 0)).toBe(1);
        await expectConflict(store.documents.put(hub, 'devices', 'd1', 'second', 0), 0, 1);
        expect((await store.documents.get(hub, 'devices', 'd1'))?.value).toBe('first');
      });

      it('writes when the expected revision matches and rejects a stale one with RevisionConflict', async () => {
        await store.documents.put(hub, 'devices', 'd1', 'v1');
        expect(await store.documents.put(hub, 'devices', 'd1', 'v2', 1)).toBe(2);
        const error = await store.documents.put(hub, 'devices', 'd1', 'stale', 1).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(RevisionConflict);
        expect(error).toMatchObject({ collection: 'devices', key: 'd1', expected: 1, actual: 2 });
        expect(await store.documents.get(hub, 'devices', 'd1')).toMatchObject({ revision: 2, value: 'v2' });
      });

      it('rejects an expected revision on a missing document with actual 0', async () => {
        await expectConflict(store.documents.put(hub, 'devices', 'ghost', 'x', 3), 3, 0);
        expect(await store.documents.get(hub, 'devices', 'ghost')).toBeUndefined();
      });

      it('deletes, reports whether the document existed, and honours the expected revision', async () => {
        await store.documents.put(hub, 'devices', 'd1', 'v1');
        await store.documents.put(hub, 'devices', 'd1', 'v2');
        await expectConflict(store.documents.delete(hub, 'devices', 'd1', 1), 1, 2);
        expect(await store.documents.get(hub, 'devices', 'd1')).toBeDefined();
        expect(await store.documents.delete(hub, 'devices', 'd1', 2)).toBe(true);
        expect(await store.documents.get(hub, 'devices', 'd1')).toBeUndefined();
        expect(await store.documents.delete(hub, 'devices', 'd1')).toBe(false);
        expect(await store.documents.delete(hub, 'devices', 'd1', 0)).toBe(false);
        await expectConflict(store.documents.delete(hub, 'devices', 'd1', 1), 1, 0);
      });

      it('recreates a deleted document with create-only', async () => {
        await store.documents.put(hub, 'devices', 'd1', 'old');
        await store.documents.delete(hub, 'devices', 'd1');
        expect(await store.documents.put(hub, 'devices', 'd1', 'new', 0)).toBeGreaterThanOrEqual(1);
        expect((await store.documents.get(hub, 'devices', 'd1'))?.value).toBe('new');
      });

      it('applies a batch across collections and returns each revision (0 for deletes)', async () => {
        await store.documents.put(hub, 'twins', 't1', 'old');
        await store.documents.put(hub, 'gone', 'g1', 'x');
        const revisions = await store.documents.batch(hub, [
          { op: 'put', collection: 'devices', key: 'd1', value: { a: 1 }, expectedRevision: 0 },
          { op: 'put', collection: 'twins', key: 't1', value: 'new', expectedRevision: 1 },
          { op: 'delete', collection: 'gone', key: 'g1', expectedRevision: 1 },
        ]);
        expect(revisions).toEqual([1, 2, 0]);
        expect((await store.documents.get(hub, 'devices', 'd1'))?.value).toEqual({ a: 1 });
        expect((await store.documents.get(hub, 'twins', 't1'))?.value).toBe('new');
        expect(await store.documents.get(hub, 'gone', 'g1')).toBeUndefined();
      });

      it('applies writes to the same key in a batch in order', async () => {
        const revisions = await store.documents.batch(hub, [
          { op: 'put', collection: 'c', key: 'k', value: 1, expectedRevision: 0 },
          { op: 'put', collection: 'c', key: 'k', value: 2, expectedRevision: 1 },
        ]);
        expect(revisions).toEqual([1, 2]);
        expect(await store.documents.get(hub, 'c', 'k')).toMatchObject({ revision: 2, value: 2 });
      });

      it('applies nothing of a batch when one condition fails', async () => {
        await store.documents.put(hub, 'devices', 'exists', 'keep');
        await store.documents.put(hub, 'twins', 't1', 'keep');
        const attempt = store.documents.batch(hub, [
          { op: 'put', collection: 'devices', key: 'new', value: 'no', expectedRevision: 0 },
          { op: 'put', collection: 'twins', key: 't1', value: 'no' },
          { op: 'delete', collection: 'devices', key: 'exists' },
          { op: 'put', collection: 'devices', key: 'exists', value: 'no', expectedRevision: 7 },
        ]);
        await expectConflict(attempt, 7, 0);
        expect(await store.documents.get(hub, 'devices', 'new')).toBeUndefined();
        expect(await store.documents.get(hub, 'devices', 'exists')).toMatchObject({ revision: 1, value: 'keep' });
        expect(await store.documents.get(hub, 'twins', 't1')).toMatchObject({ revision: 1, value: 'keep' });
      });

      it('accepts an empty batch', async () => {
        expect(await store.documents.batch(hub, [])).toEqual([]);
      });

      it('lists a collection in UTF-8 byte order, whatever the keys contain', async () => {
        for (const key of [...awkwardKeys].reverse()) await store.documents.put(hub, 'keys', key, key);
        await store.documents.put(hub, 'other', 'a', 'other collection');
        const listed = await store.documents.list<string>(hub, 'keys');
        expect(listed.map((d) => d.key)).toEqual([...awkwardKeys].sort(byteOrder));
        expect(listed.every((d) => d.value === d.key && d.revision === 1)).toBe(true);
      });

      it('treats % and _ in a prefix literally', async () => {
        for (const key of awkwardKeys) await store.documents.put(hub, 'keys', key, key);
        const keys = async (prefix: string) => (await store.documents.list(hub, 'keys', { prefix })).map((d) => d.key);
        expect(await keys('a%')).toEqual(['a%', 'a%b']);
        expect(await keys('a_')).toEqual(['a_', 'a_b']);
        expect(await keys('a/')).toEqual(['a/b', 'a/b/c']);
        expect(await keys('日')).toEqual(['日', '日本']);
        expect(await keys('😀')).toEqual(['😀']);
        expect(await keys('nothing')).toEqual([]);
        expect(await keys('')).toHaveLength(awkwardKeys.length);
      });

      it('pages with after and limit, also within a prefix', async () => {
        for (const key of awkwardKeys) await store.documents.put(hub, 'keys', key, key);
        const sorted = [...awkwardKeys].sort(byteOrder);
        const pages: string[][] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.documents.list(
            hub,
            'keys',
            after === undefined ? { limit: 5 } : { limit: 5, after },
          );
          if (page.length === 0) break;
          pages.push(page.map((d) => d.key));
          after = page[page.length - 1]?.key;
        }
        expect(pages.flat()).toEqual(sorted);
        expect(pages[0]).toHaveLength(5);

        const inPrefix = await store.documents.list(hub, 'keys', { prefix: 'a', after: 'a%b', limit: 2 });
        expect(inPrefix.map((d) => d.key)).toEqual(
          sorted.filter((k) => k.startsWith('a') && byteOrder(k, 'a%b') > 0).slice(0, 2),
        );
        // An `after` before the prefix does not widen the scan beyond the prefix.
        expect((await store.documents.list(hub, 'keys', { prefix: 'a/', after: 'A' })).map((d) => d.key)).toEqual([
          'a/b',
          'a/b/c',
        ]);
        expect(await store.documents.list(hub, 'keys', { prefix: 'a/', after: 'a/b/c' })).toEqual([]);
        expect(await store.documents.list(hub, 'keys', { limit: 0 })).toEqual([]);
      });

      it('counts a collection and a prefix of it', async () => {
        for (const key of awkwardKeys) await store.documents.put(hub, 'keys', key, key);
        await store.documents.put(hub, 'other', 'a', 1);
        expect(await store.documents.count(hub, 'keys')).toBe(awkwardKeys.length);
        expect(await store.documents.count(hub, 'keys', 'a%')).toBe(2);
        expect(await store.documents.count(hub, 'keys', 'a_')).toBe(2);
        expect(await store.documents.count(hub, 'keys', 'a')).toBe(awkwardKeys.filter((k) => k.startsWith('a')).length);
        expect(await store.documents.count(hub, 'empty')).toBe(0);
      });

      it('deletes by prefix literally and only in that collection', async () => {
        for (const key of awkwardKeys) await store.documents.put(hub, 'keys', key, key);
        await store.documents.put(hub, 'other', 'a%x', 1);
        expect(await store.documents.deletePrefix(hub, 'keys', 'a%')).toBe(2);
        expect(await store.documents.deletePrefix(hub, 'keys', 'a_')).toBe(2);
        expect(await store.documents.deletePrefix(hub, 'keys', 'missing')).toBe(0);
        expect(await store.documents.count(hub, 'keys')).toBe(awkwardKeys.length - 4);
        expect(await store.documents.get(hub, 'keys', 'ab')).toBeDefined();
        expect(await store.documents.get(hub, 'other', 'a%x')).toBeDefined();
        expect(await store.documents.deletePrefix(hub, 'keys', '')).toBe(awkwardKeys.length - 4);
        expect(await store.documents.count(hub, 'keys')).toBe(0);
      });

      it('keeps the documents of two hubs apart', async () => {
        await store.documents.put(hub, 'devices', 'd1', 'a');
        await store.documents.put(hub, 'devices', 'd1', 'a2');
        expect(await store.documents.get(otherHub, 'devices', 'd1')).toBeUndefined();
        expect(await store.documents.put(otherHub, 'devices', 'd1', 'b', 0)).toBe(1);
        expect((await store.documents.get(hub, 'devices', 'd1'))?.revision).toBe(2);
        expect(await store.documents.list(otherHub, 'devices')).toEqual([{ key: 'd1', revision: 1, value: 'b' }]);
        expect(await store.documents.count(otherHub, 'devices')).toBe(1);
        expect(await store.documents.deletePrefix(otherHub, 'devices', '')).toBe(1);
        expect((await store.documents.get(hub, 'devices', 'd1'))?.value).toBe('a2');
        await store.documents.batch(otherHub, [{ op: 'put', collection: 'devices', key: 'd2', value: 1 }]);
        expect(await store.documents.get(hub, 'devices', 'd2')).toBeUndefined();
      });

      it('keeps documents across close and reopen', async (context) => {
        await store.documents.put(hub, 'devices', 'd1', { enabled: true });
        await store.documents.put(hub, 'devices', 'd1', { enabled: false });
        await store.documents.batch(hub, [{ op: 'put', collection: 'twins', key: 'd1', value: { v: 1 } }]);
        const again = await reopen();
        if (again === undefined) return context.skip();
        expect(await again.documents.get(hub, 'devices', 'd1')).toEqual({
          key: 'd1',
          revision: 2,
          value: { enabled: false },
        });
        expect(await again.documents.put(hub, 'devices', 'd1', 'next', 2)).toBe(3);
        expect((await again.documents.get(hub, 'twins', 'd1'))?.value).toEqual({ v: 1 });
      });
    });

    describe('event log', () => {
      it('reports a partition that was never appended to as empty', async () => {
        expect(await store.log.info(hub, 0)).toEqual({
          partition: 0,
          beginSequenceNumber: 0,
          lastSequenceNumber: -1,
          lastEnqueuedTime: undefined,
          isEmpty: true,
        });
        expect(await store.log.read(hub, 0, 'earliest', 10)).toEqual([]);
      });

      it('numbers appended events from 0 per partition and returns them as stored', async () => {
        const appended = await store.log.append(hub, 1, [
          event('a', 100, { properties: { p: 'v' }, systemProperties: { 'message-id': 'm1', n: 3, ok: true } }),
          event('b', 101),
        ]);
        expect(appended.map((e) => [e.partition, e.sequenceNumber, e.enqueuedTime])).toEqual([
          [1, 0, 100],
          [1, 1, 101],
        ]);
        expect(sequences(await store.log.append(hub, 1, [event('c', 102)]))).toEqual([2]);
        expect(sequences(await store.log.append(hub, 2, [event('x', 102)]))).toEqual([0]);

        const read = await store.log.read(hub, 1, 'earliest', 10);
        expect(bodies(read)).toEqual(['a', 'b', 'c']);
        expect(read[0]).toMatchObject({
          partition: 1,
          sequenceNumber: 0,
          enqueuedTime: 100,
          properties: { p: 'v' },
          systemProperties: { 'message-id': 'm1', n: 3, ok: true },
        });
      });

      it('resolves an empty append without consuming a sequence number', async () => {
        expect(await store.log.append(hub, 0, [])).toEqual([]);
        expect(sequences(await store.log.append(hub, 0, [event('a')]))).toEqual([0]);
      });

      it('reads from earliest, from a sequence number (exclusive by default) and with a limit', async () => {
        await store.log.append(
          hub,
          0,
          ['e0', 'e1', 'e2', 'e3', 'e4'].map((b, i) => event(b, 1000 + i)),
        );
        expect(bodies(await store.log.read(hub, 0, 'earliest', 2))).toEqual(['e0', 'e1']);
        expect(bodies(await store.log.read(hub, 0, { sequenceNumber: 1 }, 10))).toEqual(['e2', 'e3', 'e4']);
        expect(bodies(await store.log.read(hub, 0, { sequenceNumber: 1, inclusive: true }, 2))).toEqual(['e1', 'e2']);
        expect(bodies(await store.log.read(hub, 0, { sequenceNumber: 4 }, 10))).toEqual([]);
        expect(bodies(await store.log.read(hub, 0, { sequenceNumber: 99, inclusive: true }, 10))).toEqual([]);
        expect(await store.log.read(hub, 0, 'earliest', 0)).toEqual([]);
      });

      it('reads from an enqueued time: the events enqueued after it', async () => {
        await store.log.append(hub, 0, [event('t10', 10), event('t20', 20), event('t20b', 20), event('t30', 30)]);
        expect(bodies(await store.log.read(hub, 0, { enqueuedTime: 15 }, 10))).toEqual(['t20', 't20b', 't30']);
        expect(bodies(await store.log.read(hub, 0, { enqueuedTime: 20 }, 10))).toEqual(['t30']);
        expect(bodies(await store.log.read(hub, 0, { enqueuedTime: 0 }, 10))).toHaveLength(4);
        expect(await store.log.read(hub, 0, { enqueuedTime: 30 }, 10)).toEqual([]);
      });

      it("reads nothing from 'latest'; the next append follows the last sequence number", async () => {
        await store.log.append(hub, 0, [event('old1'), event('old2')]);
        expect(await store.log.read(hub, 0, 'latest', 10)).toEqual([]);
        const { lastSequenceNumber } = await store.log.info(hub, 0);
        await store.log.append(hub, 0, [event('new')]);
        expect(bodies(await store.log.read(hub, 0, { sequenceNumber: lastSequenceNumber }, 10))).toEqual(['new']);
      });

      it('reports begin, last, last enqueued time and emptiness', async () => {
        await store.log.append(hub, 3, [event('a', 5), event('b', 7)]);
        expect(await store.log.info(hub, 3)).toEqual({
          partition: 3,
          beginSequenceNumber: 0,
          lastSequenceNumber: 1,
          lastEnqueuedTime: 7,
          isEmpty: false,
        });
      });

      it('trims the events enqueued before a time and moves the beginning', async () => {
        await store.log.append(hub, 0, [event('a', 10), event('b', 20), event('c', 30)]);
        expect(await store.log.trim(hub, 0, 20)).toBe(1);
        expect(bodies(await store.log.read(hub, 0, 'earliest', 10))).toEqual(['b', 'c']);
        expect(await store.log.info(hub, 0)).toMatchObject({ beginSequenceNumber: 1, lastSequenceNumber: 2 });
        expect(await store.log.trim(hub, 0, 20)).toBe(0);
        expect(await store.log.trim(hub, 0, 31)).toBe(2);
        expect(await store.log.info(hub, 0)).toEqual({
          partition: 0,
          beginSequenceNumber: 3,
          lastSequenceNumber: 2,
          lastEnqueuedTime: 30,
          isEmpty: true,
        });
        expect(sequences(await store.log.append(hub, 0, [event('d', 40)]))).toEqual([3]);
        expect(bodies(await store.log.read(hub, 0, 'earliest', 10))).toEqual(['d']);
      });

      it('trims only a prefix, so a partition never has holes', async () => {
        // Out-of-order enqueued times (a clock step back): retention stops at the first event to keep.
        await store.log.append(hub, 0, [event('a', 10), event('b', 50), event('c', 20), event('d', 60)]);
        expect(await store.log.trim(hub, 0, 40)).toBe(1);
        expect(bodies(await store.log.read(hub, 0, 'earliest', 10))).toEqual(['b', 'c', 'd']);
        expect(await store.log.info(hub, 0)).toMatchObject({ beginSequenceNumber: 1, lastSequenceNumber: 3 });
      });

      it('finds the start by enqueued time in a long partition, also after a trim', async () => {
        const many = Array.from({ length: 1000 }, (_, i) => event(`t${i}`, 10_000 + i));
        for (let i = 0; i < many.length; i += 100) await store.log.append(hub, 0, many.slice(i, i + 100));
        expect(sequences(await store.log.read(hub, 0, { enqueuedTime: 10_500 }, 3))).toEqual([501, 502, 503]);
        expect(sequences(await store.log.read(hub, 0, { enqueuedTime: 9_000 }, 1))).toEqual([0]);
        expect(await store.log.read(hub, 0, { enqueuedTime: 10_999 }, 1)).toEqual([]);
        expect(await store.log.trim(hub, 0, 10_700)).toBe(700);
        expect(sequences(await store.log.read(hub, 0, { enqueuedTime: 10_500 }, 1))).toEqual([700]);
        expect(sequences(await store.log.read(hub, 0, { enqueuedTime: 10_800 }, 1))).toEqual([801]);
        expect(bodies(await store.log.read(hub, 0, 'earliest', 1))).toEqual(['t700']);
      });

      it('never reuses sequence numbers after trimming everything and reopening', async (context) => {
        await store.log.append(hub, 0, [event('a', 1), event('b', 2)]);
        expect(await store.log.trim(hub, 0, Number.MAX_SAFE_INTEGER)).toBe(2);
        const again = await reopen();
        if (again === undefined) return context.skip();
        expect(await again.log.info(hub, 0)).toMatchObject({
          beginSequenceNumber: 2,
          lastSequenceNumber: 1,
          isEmpty: true,
        });
        expect(sequences(await again.log.append(hub, 0, [event('c', 3)]))).toEqual([2]);
      });

      it('keeps events across close and reopen', async (context) => {
        await store.log.append(hub, 0, [
          event('a', 1, { properties: { k: 'v' } }),
          event(new Uint8Array([0, 255, 1]), 2),
        ]);
        const again = await reopen();
        if (again === undefined) return context.skip();
        const read = await again.log.read(hub, 0, 'earliest', 10);
        expect(sequences(read)).toEqual([0, 1]);
        expect(read[0]?.properties).toEqual({ k: 'v' });
        expect([...(read[1]?.body ?? [])]).toEqual([0, 255, 1]);
        expect(await again.log.info(hub, 0)).toMatchObject({ lastSequenceNumber: 1, lastEnqueuedTime: 2 });
      });

      it('keeps the logs of two hubs apart', async () => {
        await store.log.append(hub, 0, [event('a'), event('b')]);
        expect((await store.log.info(otherHub, 0)).isEmpty).toBe(true);
        expect(await store.log.read(otherHub, 0, 'earliest', 10)).toEqual([]);
        expect(sequences(await store.log.append(otherHub, 0, [event('x')]))).toEqual([0]);
        expect(await store.log.trim(otherHub, 0, Number.MAX_SAFE_INTEGER)).toBe(1);
        expect(bodies(await store.log.read(hub, 0, 'earliest', 10))).toEqual(['a', 'b']);
      });

      it('gives concurrent appends from many callers distinct, gap-free sequence numbers', async () => {
        const callers = 50;
        const rounds = 4;
        const results: Promise<LogEvent[]>[] = [];
        for (let round = 0; round < rounds; round++) {
          for (let caller = 0; caller < callers; caller++) {
            const size = 1 + ((caller + round) % 3);
            const batch = Array.from({ length: size }, (_, i) => event(`${round}/${caller}/${i}`));
            results.push(store.log.append(hub, caller % 2, batch));
          }
          // Spread the callers over several event-loop turns, as socket reads would.
          await new Promise((resolve) => setImmediate(resolve));
        }
        const settled = await Promise.all(results);
        for (const partition of [0, 1]) {
          const mine = settled.filter((events) => events[0]?.partition === partition);
          const all = mine.flatMap(sequences);
          expect(new Set(all).size).toBe(all.length);
          expect([...all].sort((a, b) => a - b)).toEqual(all.map((_, i) => i));
          // Each caller's events are consecutive, and callers are numbered in the order they called.
          for (const events of mine) {
            const first = events[0]?.sequenceNumber ?? 0;
            expect(sequences(events)).toEqual(events.map((_, i) => first + i));
          }
          expect(all).toEqual([...all].sort((a, b) => a - b));
          const stored = await store.log.read(hub, partition, 'earliest', 10_000);
          expect(bodies(stored)).toEqual(mine.flatMap(bodies));
        }
      });

      it('stores a 256 KB body and an empty body intact', async () => {
        const large = new Uint8Array(256 * 1024);
        for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
        await store.log.append(hub, 0, [event(large), event(new Uint8Array(0))]);
        const [big, empty] = await store.log.read(hub, 0, 'earliest', 10);
        expect(big?.body.byteLength).toBe(large.length);
        expect(Buffer.from(big?.body ?? []).equals(Buffer.from(large))).toBe(true);
        expect(empty?.body).toBeInstanceOf(Uint8Array);
        expect(empty?.body.byteLength).toBe(0);
      });

      it('stores the bytes of a Uint8Array view, not its whole buffer', async () => {
        const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
        await store.log.append(hub, 0, [event(backing.subarray(2, 5))]);
        const [read] = await store.log.read(hub, 0, 'earliest', 1);
        expect([...(read?.body ?? [])]).toEqual([1, 2, 3]);
      });

      it('acknowledges appends still pending when the store is closed', async (context) => {
        const pending = store.log.append(hub, 0, [event('last words')]);
        await store.close();
        expect(sequences(await pending)).toEqual([0]);
        await store.close();
        const again = await reopen();
        if (again === undefined) return context.skip();
        expect(bodies(await again.log.read(hub, 0, 'earliest', 10))).toEqual(['last words']);
      });
    });
  });
}
