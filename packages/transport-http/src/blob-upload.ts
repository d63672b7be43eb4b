/**
 * Puts one blob to Azure Storage's Blob service (or the hub's blob endpoint, which speaks the same dialect) through
 * the SAS URL of a file-upload target: one Put Blob for a body of at most one block, else Put Block for each 4 MiB
 * block, a few in flight, and Put Block List to commit them. Streams are read a block at a time (memory stays within
 * `(concurrency + 1)` blocks, never the whole file). Storage errors are mapped by status and `x-ms-error-code` (or the
 * `<Code>` of the XML body), never by message text.
 */
import { randomBytes } from 'node:crypto';
import type { FileUploadData, FileUploadTarget, PutBlobOptions } from '@fieldhub/device-core/transport';
import { blobUrlOf } from '@fieldhub/device-core/transport';
import {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ConnectionError,
  HubError,
  ThrottledError,
} from '@fieldhub/protocol';
import { type Dispatcher, Pool } from 'undici';
import { endpoint } from './endpoint';
import { requestFailure } from './http-error';
import { tlsConnector } from './tls-options';

/** The block size of staged uploads, and the largest body put in one request: 4 MiB. */
export const blockSize = 4 * 1024 * 1024;

/** The Blob service version requested (`x-ms-version`), as the official SDK's storage client sends it (captures/http.txt). */
export const storageVersion = '2020-10-02';

/** Settings of one blob upload beside the caller's {@link PutBlobOptions}. */
export interface BlobUploadSettings {
  readonly userAgent: string;
  /** How long one request may wait for its answer, ms. */
  readonly timeoutMs: number;
  /** Blocks in flight at most. */
  readonly concurrency: number;
  /** The block size; {@link blockSize} except in tests. */
  readonly blockSize?: number;
}

/**
 * Puts `data` as a block blob at the target's SAS URL; resolves once the store committed it. Progress is reported
 * after each block the store acknowledged (after the one Put Blob for a small body), `bytesUploaded` only growing.
 *
 * @throws AuthenticationError when the store refuses the SAS (401, 403 `AuthenticationFailed` and kin);
 * ArgumentError for requests the store refuses otherwise (4xx, its code in the message; `MessageTooLarge` for 413)
 * and for data that yields no bytes (`Uint8Array` chunks); ThrottledError (429, 503 `ServerBusy`); ConnectionError
 * when the store cannot be reached or does not answer in time; HubError `ServerError` for its 5xx; AbortError when
 * `signal` aborts. The data's own errors (a failing stream) pass through.
 */
export async function uploadBlob(
  target: FileUploadTarget,
  data: FileUploadData,
  options: PutBlobOptions,
  settings: BlobUploadSettings,
): Promise<void> {
  const signal = options.signal;
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
  const url = new URL(blobUrlOf(target));
  const store = endpoint(target.hostName);
  const size = settings.blockSize ?? blockSize;
  const pool = new Pool(store.origin, {
    connect: tlsConnector(store, { ca: options.ca, timeoutMs: settings.timeoutMs }),
    connections: settings.concurrency,
    headersTimeout: settings.timeoutMs,
    bodyTimeout: settings.timeoutMs,
  });
  // Aborts the blocks in flight once one failed (or the caller aborted).
  const failed = new AbortController();
  const onAbort = (): void => failed.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const totalBytes = data instanceof Uint8Array ? data.byteLength : options.length;
  let bytesUploaded = 0;
  const progress = (bytes: number): void => {
    bytesUploaded += bytes;
    try {
      options.onProgress?.(totalBytes === undefined ? { bytesUploaded } : { bytesUploaded, totalBytes });
    } catch {
      // onProgress must not throw (PutBlobOptions); the upload does not fail for it.
    }
  };
  const put = async (query: string, headers: Record<string, string>, body: Uint8Array): Promise<void> => {
    const what = `PUT ${store.origin}${url.pathname}`;
    let response: Dispatcher.ResponseData;
    try {
      response = await pool.request({
        method: 'PUT',
        path: `${url.pathname}${url.search}${query}`,
        headers: { 'x-ms-version': storageVersion, 'user-agent': settings.userAgent, ...headers },
        body,
        signal: failed.signal,
      });
    } catch (error) {
      throw requestFailure(error, what, signal);
    }
    let text = '';
    try {
      text = await response.body.text();
    } catch (error) {
      throw requestFailure(error, what, signal);
    }
    if (response.statusCode !== 201 && !(response.statusCode >= 200 && response.statusCode < 300)) {
      throw storageError(response.statusCode, response.headers, text);
    }
  };

  const blocks = blocksOf(data, size)[Symbol.asyncIterator]();
  try {
    const first = await blocks.next();
    const second = first.done ? first : await blocks.next();
    if (second.done) {
      // One request for the whole body (empty included).
      const body = first.done ? new Uint8Array(0) : first.value;
      await put('', { 'x-ms-blob-type': 'BlockBlob', 'content-type': 'application/octet-stream' }, body);
      progress(body.byteLength);
      return;
    }
    const prefix = randomBytes(8).toString('hex');
    const ids: string[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const stage = (block: Uint8Array): void => {
      // Ids of one blob must have equal lengths (Azure Storage Put Block): a fixed prefix and six digits.
      const id = Buffer.from(`${prefix}-${String(ids.length).padStart(6, '0')}`).toString('base64');
      ids.push(id);
      const staged = put(`&comp=block&blockid=${encodeURIComponent(id)}`, {}, block).then(
        () => progress(block.byteLength),
        (error: unknown) => {
          failure ??= error;
          failed.abort(error);
        },
      );
      inFlight.add(staged);
      void staged.finally(() => inFlight.delete(staged));
    };
    stage(first.value as Uint8Array);
    stage(second.value);
    for (;;) {
      while (inFlight.size >= settings.concurrency && failure === undefined) await Promise.race(inFlight);
      if (failure !== undefined) break;
      const next = await blocks.next();
      if (next.done) break;
      stage(next.value);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    const list = `<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map((id) => `<Latest>${id}</Latest>`).join('')}</BlockList>`;
    await put('&comp=blocklist', { 'content-type': 'application/xml' }, Buffer.from(list));
  } catch (error) {
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason ?? error });
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // Ends the reading of a stream the upload gave up on (a Node Readable is destroyed).
    await blocks.return?.(undefined).catch(() => undefined);
    await pool.destroy().catch(() => undefined);
  }
}

/**
 * The blocks of `data`: slices of a byte array (no copy), or a stream's chunks gathered into blocks of `size` bytes
 * (the last one shorter).
 */
async function* blocksOf(data: FileUploadData, size: number): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    for (let offset = 0; offset < data.byteLength; offset += size) yield data.subarray(offset, offset + size);
    return;
  }
  let block = new Uint8Array(size);
  let filled = 0;
  for await (const chunk of data as AsyncIterable<unknown>) {
    if (!(chunk instanceof Uint8Array)) {
      throw new ArgumentError(`data must yield Uint8Array chunks, not ${typeof chunk}`, { field: 'data' });
    }
    let offset = 0;
    while (offset < chunk.byteLength) {
      const take = Math.min(size - filled, chunk.byteLength - offset);
      block.set(chunk.subarray(offset, offset + take), filled);
      filled += take;
      offset += take;
      if (filled === size) {
        yield block;
        block = new Uint8Array(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield block.subarray(0, filled);
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

/**
 * The HubError for a failed answer of the store, by status and Azure Storage's error code (`x-ms-error-code`, else
 * `<Error><Code>` of the body).
 */
export function storageError(status: number, headers: Headers, body: string): HubError {
  const header = headers['x-ms-error-code'];
  const code = (Array.isArray(header) ? header[0] : header) ?? /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? undefined;
  const message = `the store answered ${status}${code === undefined ? '' : ` ${code}`}`;
  if (status === 401 || status === 403) return new AuthenticationError(message);
  if (status === 413 || code === 'RequestBodyTooLarge') return new ArgumentError(message, { code: 'MessageTooLarge' });
  if (status === 429 || code === 'ServerBusy') return new ThrottledError(message, { retryable: true });
  if (status === 503) return new ConnectionError(message);
  if (status >= 500) return new HubError('ServerError', message);
  return new ArgumentError(message);
}
