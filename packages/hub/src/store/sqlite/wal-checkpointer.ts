import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** What `PRAGMA wal_checkpoint` reports: frames in the WAL and frames copied into the database so far. */
export interface CheckpointResult {
  readonly busy: number;
  readonly log: number;
  readonly checkpointed: number;
}

/** Options of {@link startWalCheckpointer}. */
export interface WalCheckpointerOptions {
  /** The database file (already in WAL mode). */
  readonly path: string;
  readonly synchronous: 'NORMAL' | 'FULL';
  readonly busyTimeoutMs: number;
  /** How often the worker checkpoints while the database is being written. */
  readonly intervalMs: number;
  /** The longest pause between checks while nothing is written (default 1000 ms). */
  readonly idleIntervalMs?: number;
  readonly onCheckpoint: (result: CheckpointResult) => void;
  /** The worker failed and stopped; the caller falls back to checkpointing on its own connection. */
  readonly onError: (error: unknown) => void;
}

/** A running background checkpointer. */
export interface WalCheckpointer {
  /** Stops the worker and closes its connection. Idempotent. */
  close(): Promise<void>;
}

// Plain CommonJS for an `eval` worker, so that no extra file has to ship next to the bundle. PASSIVE never
// waits for (or blocks) the writer on the main thread: it copies what it can and reports.
// Idle costs nothing: `PRAGMA data_version` (a read of the shared WAL index) changes only when another
// connection committed, so the worker checkpoints only after writes (or while a checkpoint is unfinished), backs
// off to idleIntervalMs while nothing changes, and messages the main thread only when the WAL holds frames. An idle
// hub used to wake both threads ten times a second (~0.6% CPU).
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs, fileMustExist: true });
db.pragma('synchronous = ' + workerData.synchronous);
let seenVersion = -1;
let unfinished = false;
let delay = workerData.intervalMs;
let timer;
const tick = () => {
  const version = db.pragma('data_version', { simple: true });
  if (version !== seenVersion || unfinished) {
    seenVersion = version;
    const [result] = db.pragma('wal_checkpoint(PASSIVE)');
    unfinished = result.busy !== 0 || result.checkpointed < result.log;
    if (result.log > 0) parentPort.postMessage(result);
    delay = workerData.intervalMs;
  } else {
    delay = Math.min(delay * 2, workerData.idleIntervalMs);
  }
  timer = setTimeout(tick, delay);
};
timer = setTimeout(tick, delay);
parentPort.on('message', () => {
  clearTimeout(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Starts a worker thread that checkpoints the WAL on its own connection, so that the copy into the database
 * file and its fsyncs happen off the event loop (inline autocheckpoints cost the append path ~40% of its
 * throughput and block for milliseconds). Returns undefined when better-sqlite3 cannot be located for the
 * worker; the caller then keeps SQLite's inline autocheckpoint.
 */
export function startWalCheckpointer(options: WalCheckpointerOptions): WalCheckpointer | undefined {
  const driver = locateDriver();
  if (driver === undefined) return undefined;
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: {
      driver,
      path: options.path,
      synchronous: options.synchronous,
      busyTimeoutMs: options.busyTimeoutMs,
      intervalMs: options.intervalMs,
      idleIntervalMs: Math.max(options.intervalMs, options.idleIntervalMs ?? 1000),
    },
  });
  // A store left open must not keep the process alive just for its checkpointer.
  worker.unref();
  worker.on('message', (result: CheckpointResult) => options.onCheckpoint(result));
  worker.on('error', (error) => options.onError(error));

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (worker.threadId === -1) {
          resolve();
          return;
        }
        worker.once('exit', () => resolve());
        // Ask politely (the worker closes its connection); terminate if it does not go within a second.
        worker.postMessage('close');
        setTimeout(() => void worker.terminate(), 1000).unref();
      });
      return closing;
    },
  };
}

/**
 * The absolute path of better-sqlite3 as this module resolves it: an eval worker would resolve bare names
 * from the working directory instead. Works from the ESM and the CJS build (where `__filename` exists).
 */
function locateDriver(): string | undefined {
  try {
    const here = typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url);
    return createRequire(here).resolve('better-sqlite3');
  } catch {
    return undefined;
  }
}
