import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileQueue } from './file-queue';

const encoder = new TextEncoder();
let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'fieldhub-file-queue-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('fileQueue', () => {
  it('gives a later run what an earlier one appended and did not remove, oldest first, fields intact', async () => {
    const path = join(directory, 'nested', 'queue.jsonl');
    const first = fileQueue(path);
    expect(await first.load()).toEqual([]);
    const a = await first.append({
      body: encoder.encode('a'),
      messageId: 'm-a',
      correlationId: 'c-a',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      userId: 'u',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
      properties: { k: 'v' },
    });
    const b = await first.append({ body: new Uint8Array([0, 255, 1]) });
    const c = await first.append({ body: encoder.encode('c') });
    await first.remove(b);

    const second = fileQueue(path);
    const loaded = await second.load();
    expect(loaded.map((entry) => entry.key)).toEqual([a, c]);
    expect(loaded[0]?.message).toEqual({
      body: encoder.encode('a'),
      messageId: 'm-a',
      correlationId: 'c-a',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      userId: 'u',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
      properties: { k: 'v' },
    });
    // New keys never collide with stored ones.
    const d = await second.append({ body: encoder.encode('d') });
    expect([a, c]).not.toContain(d);
    // load() is what earlier runs left, not what this run appended.
    expect((await second.load()).map((entry) => entry.key)).toEqual([a, c]);
  });

  it('ignores a torn last line left by a crash mid-write', async () => {
    const path = join(directory, 'queue.jsonl');
    const first = fileQueue(path);
    const key = await first.append({ body: encoder.encode('kept') });
    await appendFile(path, '{"op":"append","key":"99","message":{"bo');
    const loaded = await fileQueue(path).load();
    expect(loaded.map((entry) => entry.key)).toEqual([key]);
  });

  it('makes every append durable under concurrency, sharing fsyncs', async () => {
    const path = join(directory, 'queue.jsonl');
    const queue = fileQueue(path);
    const keys = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => queue.append({ body: encoder.encode(String(i)) })),
    );
    expect(new Set(keys).size).toBe(2000);
    const loaded = await fileQueue(path).load();
    expect(loaded.map((entry) => new TextDecoder().decode(entry.message.body))).toEqual(
      Array.from({ length: 2000 }, (_, i) => String(i)),
    );
  });

  it('compacts the file once removals pile up', async () => {
    const path = join(directory, 'queue.jsonl');
    const queue = fileQueue(path, { compactAfterRemovals: 50 });
    const keys: string[] = [];
    for (let i = 0; i < 200; i++) keys.push(await queue.append({ body: new Uint8Array(100) }));
    const before = (await stat(path)).size;
    for (const key of keys.slice(0, 199)) await queue.remove(key);
    await queue.append({ body: encoder.encode('last') });
    const after = (await stat(path)).size;
    expect(after).toBeLessThan(before / 2);
    const loaded = await fileQueue(path).load();
    expect(loaded.map((entry) => entry.key)).toHaveLength(2);
    expect(loaded[0]?.key).toBe(keys[199]);
    const text = await readFile(path, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
  });

  it('treats removing an unknown key as done', async () => {
    const queue = fileQueue(join(directory, 'queue.jsonl'));
    await expect(queue.remove('nope')).resolves.toBeUndefined();
  });

  it('refuses an empty path with ArgumentError', () => {
    expect(() => fileQueue('')).toThrow(expect.objectContaining({ name: 'ArgumentError', field: 'path' }));
  });
});
