import { mkdirSync } from 'node:fs';
import { type FileHandle, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DurableQueue, DurableQueueEntry, OutgoingMessage } from '@fieldhub/device-core';
import { ArgumentError } from '@fieldhub/protocol';

/** Options of {@link fileQueue}. */
export interface FileQueueOptions {
  /**
   * Rewrite the file without removed messages once this many remove records accumulated and they outnumber the
   * live messages. Default 1000.
   */
  readonly compactAfterRemovals?: number;
}

/** One line of the file. */
type Line =
  | { readonly op: 'append'; readonly key: string; readonly message: StoredMessage }
  | { readonly op: 'remove'; readonly key: string };

/** An OutgoingMessage as JSON: the body in base64. */
interface StoredMessage {
  readonly body: string;
  readonly properties?: Readonly<Record<string, string>>;
  readonly messageId?: string;
  readonly correlationId?: string;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly userId?: string;
  readonly expiryTimeUtc?: string;
}

const optionalFields = [
  'messageId',
  'correlationId',
  'contentType',
  'contentEncoding',
  'userId',
  'expiryTimeUtc',
] as const satisfies readonly (keyof OutgoingMessage & keyof StoredMessage)[];

function store(message: OutgoingMessage): StoredMessage {
  const stored: Record<string, unknown> = { body: Buffer.from(message.body).toString('base64') };
  if (message.properties !== undefined) stored.properties = { ...message.properties };
  for (const field of optionalFields) if (message[field] !== undefined) stored[field] = message[field];
  return stored as unknown as StoredMessage;
}

function restore(stored: StoredMessage): OutgoingMessage {
  const message: Record<string, unknown> = { body: new Uint8Array(Buffer.from(stored.body, 'base64')) };
  if (stored.properties !== undefined) message.properties = stored.properties;
  for (const field of optionalFields) if (typeof stored[field] === 'string') message[field] = stored[field];
  return message as unknown as OutgoingMessage;
}

function parseLine(text: string): Line | undefined {
  try {
    const value = JSON.parse(text) as Partial<Record<string, unknown>>;
    if (typeof value.key !== 'string') return undefined;
    if (value.op === 'remove') return { op: 'remove', key: value.key };
    const message = value.message as Partial<StoredMessage> | undefined;
    if (value.op === 'append' && typeof message?.body === 'string') {
      return { op: 'append', key: value.key, message: message as StoredMessage };
    }
  } catch {
    // A torn last line (the process died while writing it): its append never resolved, so nothing is lost.
  }
  return undefined;
}

interface Pending {
  readonly text: string;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * A durable offline queue in one file, for Node: append-only JSON lines (`{"op":"append","key","message"}` and
 * `{"op":"remove","key"}`), fsynced before `append` resolves, so that a message the client accepted survives a
 * crash or power loss. Writes that arrive together share one write and one fsync (group commit). The file is
 * compacted (rewritten with only the live messages, then renamed over the old one) when it is opened and when
 * removals pile up.
 *
 * One queue per file and per process: two clients must not share a path.
 *
 * @example
 * ```ts
 * const client = await createDeviceClient({ connectionString, offlineQueue: { durable: fileQueue('./telemetry.jsonl') } });
 * ```
 * @param path the file; its directory is created when missing.
 * @throws ArgumentError when `path` is empty. File-system errors reject the queue's operations (the client
 * reports them and keeps the message in memory).
 */
export function fileQueue(path: string, options: FileQueueOptions = {}): DurableQueue {
  if (typeof path !== 'string' || path === '')
    throw new ArgumentError('path must be a non-empty string', { field: 'path' });
  const compactAfterRemovals = options.compactAfterRemovals ?? 1000;
  const live = new Map<string, OutgoingMessage>();
  let earlier: DurableQueueEntry[] = [];
  let nextKey = 1;
  let removals = 0;
  let handle: FileHandle | undefined;
  let queue: Pending[] = [];
  let flushing = false;
  let compactRequested = false;

  async function openFile(): Promise<void> {
    mkdirSync(dirname(path), { recursive: true });
    let text = '';
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    for (const raw of text.split('\n')) {
      if (raw.trim() === '') continue;
      const line = parseLine(raw);
      if (line === undefined) continue;
      const numeric = Number(line.key);
      if (Number.isSafeInteger(numeric) && numeric >= nextKey) nextKey = numeric + 1;
      if (line.op === 'append') live.set(line.key, restore(line.message));
      else live.delete(line.key);
    }
    earlier = [...live].map(([key, message]) => ({ key, message }));
    await rewrite();
  }

  /** Writes the live messages to a new file, fsyncs it and renames it over the old one. */
  async function rewrite(): Promise<void> {
    const temporary = `${path}.${process.pid}.compact`;
    const next = await open(temporary, 'w');
    try {
      const lines = [...live].map(
        ([key, message]) => `${JSON.stringify({ op: 'append', key, message: store(message) })}\n`,
      );
      if (lines.length > 0) await next.writeFile(lines.join(''));
      await next.sync();
    } finally {
      await next.close();
    }
    await handle?.close();
    await rename(temporary, path);
    // The rename is durable once the directory is synced.
    const directory = await open(dirname(path), 'r');
    try {
      await directory.sync();
    } catch {
      // Some file systems refuse fsync on a directory; the rename still happened.
    } finally {
      await directory.close();
    }
    handle = await open(path, 'a');
    removals = 0;
  }

  let ready: Promise<void> | undefined;
  const opened = (): Promise<void> => {
    ready ??= openFile();
    return ready;
  };

  /**
   * Writes what is queued, one write and one fsync per batch, and compacts between batches when asked: one loop
   * owns the file, so a compaction never races a write.
   */
  async function flush(): Promise<void> {
    for (;;) {
      if (compactRequested) {
        compactRequested = false;
        try {
          await rewrite();
        } catch {
          // Compaction is an optimisation: the append-only file stays valid without it.
        }
      }
      if (queue.length === 0) break;
      const batch = queue;
      queue = [];
      try {
        await (handle as FileHandle).write(batch.map((entry) => entry.text).join(''));
        await (handle as FileHandle).datasync();
        for (const entry of batch) entry.resolve();
      } catch (error) {
        for (const entry of batch) entry.reject(error);
      }
    }
    flushing = false;
  }

  async function write(line: Line): Promise<void> {
    await opened();
    await new Promise<void>((resolve, reject) => {
      queue.push({ text: `${JSON.stringify(line)}\n`, resolve, reject });
      if (!flushing) {
        flushing = true;
        void flush();
      }
    });
  }

  return {
    async append(message) {
      await opened();
      const key = String(nextKey++);
      live.set(key, message);
      await write({ op: 'append', key, message: store(message) });
      return key;
    },
    async remove(key) {
      await opened();
      if (!live.delete(key)) return;
      removals++;
      if (removals >= compactAfterRemovals && removals >= live.size) compactRequested = true;
      await write({ op: 'remove', key });
    },
    async load() {
      await opened();
      return earlier.filter((entry) => live.has(entry.key));
    },
  };
}
