/**
 * The embedded Blob-compatible store: block blobs on disk under `<dataDir>/blobs/<container>/<blobName>`.
 *
 * - Every write goes to a temp file under `<dataDir>/blob-state/tmp`, is fsynced, and is renamed into place: a
 *   reader sees the old blob or the new one, never a torn one, also after a crash.
 * - Uncommitted blocks (Put Block) wait in `<dataDir>/blob-state/<sha256 of container/blob>.blocks/<hex id>`
 *   until Put Block List commits them (Latest / Committed / Uncommitted) or Put Blob replaces the blob; Azure
 *   discards uncommitted blocks after a week, and so does {@link BlobStore.sweep}.
 * - Properties (content type, MD5, ..., the committed block list) sit next to the blocks in `<hash>.json`,
 *   tagged with the blob file's size and mtime: properties that do not match the file (a crash between the two
 *   renames) are ignored rather than served wrong. ETag and Last-Modified come from the file itself.
 * - The account (name and a random 256-bit key) is created once in `<dataDir>/blob-account.json`, so that SAS
 *   survive restarts.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { KeyedSerial } from '../core/keyed-serial';
import { StorageError } from './storage-error';

/** Standard HTTP properties of a blob (`x-ms-blob-content-*` on Put Block List, the headers on Put Blob). */
export interface BlobHttpProperties {
  readonly contentType?: string | undefined;
  readonly contentEncoding?: string | undefined;
  readonly contentLanguage?: string | undefined;
  readonly contentDisposition?: string | undefined;
  readonly cacheControl?: string | undefined;
  /** base64 */
  readonly contentMd5?: string | undefined;
}

/** A stored blob's properties. */
export interface BlobProperties extends BlobHttpProperties {
  readonly size: number;
  /** Quoted, e.g. `"0x8DBE1F2A3B4C5D6"`. */
  readonly etag: string;
  readonly lastModified: Date;
  readonly createdOn: Date;
}

/** One entry of a Put Block List body. */
export interface BlockListEntry {
  readonly kind: 'Latest' | 'Committed' | 'Uncommitted';
  /** base64, as sent. */
  readonly id: string;
}

interface StoredProperties extends BlobHttpProperties {
  readonly size: number;
  readonly mtimeNs: string;
  readonly createdOn: number;
  readonly committedBlocks: readonly { readonly id: string; readonly size: number }[];
}

/** Azure's limits: a block id decodes to at most 64 bytes; at most 50,000 blocks per blob. */
const maxBlockIdBytes = 64;
const maxCommittedBlocks = 50_000;
const maxUncommittedBlocks = 100_000;
const uncommittedBlockLifetimeMs = 7 * 24 * 60 * 60 * 1000;

/** The account of the embedded store. */
export interface EmbeddedAccount {
  readonly accountName: string;
  readonly accountKey: string;
}

/**
 * Reads the embedded account from `<dataDir>/blob-account.json`, creating it (name `accountName`, a random key)
 * on first use. The name stays what it was first: SAS issued earlier keep verifying.
 */
export function ensureEmbeddedAccount(dataDir: string, accountName: string): EmbeddedAccount {
  const path = join(dataDir, 'blob-account.json');
  if (existsSync(path)) {
    const stored = JSON.parse(readFileSync(path, 'utf8')) as EmbeddedAccount;
    if (typeof stored.accountName === 'string' && typeof stored.accountKey === 'string') return stored;
  }
  const account: EmbeddedAccount = { accountName, accountKey: randomBytes(32).toString('base64') };
  mkdirSync(dataDir, { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(account, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, path);
  return account;
}

/**
 * Checks a blob name the way the store needs it: 1 to 1024 characters, no empty, `.` or `..` segment, no
 * backslash or control character (such names would leave the container's folder or collide on disk).
 * @throws StorageError 400 InvalidResourceName.
 */
export function checkBlobName(blobName: string): void {
  const segments = blobName.split('/');
  const bad =
    blobName.length === 0 ||
    blobName.length > 1024 ||
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
    /[\\\u0000-\u001f\u007f]/.test(blobName) ||
    segments.some((segment) => segment === '' || segment === '.' || segment === '..');
  if (bad)
    throw new StorageError(400, 'InvalidResourceName', 'The specified resource name contains invalid characters.');
}

/** The embedded store. One per hub; serialises writes per blob within the process. */
export class BlobStore {
  private readonly blobsRoot: string;
  private readonly stateRoot: string;
  private readonly temporaryRoot: string;
  private readonly turns = new KeyedSerial();

  constructor(
    dataDir: string,
    private readonly maxBlobBytes: number,
  ) {
    this.blobsRoot = join(dataDir, 'blobs');
    this.stateRoot = join(dataDir, 'blob-state');
    this.temporaryRoot = join(this.stateRoot, 'tmp');
    mkdirSync(this.temporaryRoot, { recursive: true });
  }

  /** Where a blob's bytes live. */
  blobPath(containerName: string, blobName: string): string {
    checkBlobName(blobName);
    return join(this.blobsRoot, containerName, ...blobName.split('/'));
  }

  /** The blob's properties, or `undefined` when it does not exist. */
  async properties(containerName: string, blobName: string): Promise<BlobProperties | undefined> {
    const path = this.blobPath(containerName, blobName);
    const file = await stat(path, { bigint: true }).catch(() => undefined);
    if (!file?.isFile()) return undefined;
    const stored = await this.readProperties(containerName, blobName);
    const current =
      stored && stored.size === Number(file.size) && stored.mtimeNs === String(file.mtimeNs) ? stored : undefined;
    return {
      size: Number(file.size),
      etag: `"0x${file.mtimeNs.toString(16).toUpperCase()}"`,
      lastModified: new Date(Number(file.mtimeMs)),
      createdOn: new Date(current?.createdOn ?? Number(file.birthtimeMs || file.mtimeMs)),
      contentType: current?.contentType ?? 'application/octet-stream',
      contentEncoding: current?.contentEncoding,
      contentLanguage: current?.contentLanguage,
      contentDisposition: current?.contentDisposition,
      cacheControl: current?.cacheControl,
      contentMd5: current?.contentMd5,
    };
  }

  /**
   * Put Blob: replaces the blob with the request body and drops its uncommitted blocks.
   * @throws StorageError 413 RequestBodyTooLarge over the size cap, 400 Md5Mismatch when `Content-MD5` was given
   * and does not match, 400 InvalidResourceName, 409 when the path collides with a folder of other blobs.
   */
  putBlob(
    containerName: string,
    blobName: string,
    body: Readable,
    options: { contentLength: number | undefined; properties: BlobHttpProperties },
  ): Promise<BlobProperties> {
    return this.turn(containerName, blobName, async () => {
      const temporary = await this.receive(
        body,
        options.contentLength,
        this.maxBlobBytes,
        options.properties.contentMd5,
      );
      const md5 = options.properties.contentMd5 ?? temporary.md5;
      await this.commit(containerName, blobName, temporary.path, { ...options.properties, contentMd5: md5 }, []);
      await rm(this.blocksDir(containerName, blobName), { recursive: true, force: true });
      const properties = await this.properties(containerName, blobName);
      if (!properties) throw new StorageError(500, 'InternalError', 'The blob vanished after it was written.');
      return { ...properties, contentMd5: md5 };
    });
  }

  /**
   * Put Block: stores one uncommitted block.
   * @returns the block's MD5 (base64).
   * @throws StorageError 400 InvalidQueryParameterValue for a bad block id, 413 RequestBodyTooLarge, 400 Md5Mismatch.
   */
  async putBlock(
    containerName: string,
    blobName: string,
    blockId: string,
    body: Readable,
    options: { contentLength: number | undefined; contentMd5: string | undefined },
  ): Promise<string> {
    checkBlobName(blobName);
    const idBytes = blockIdBytes(blockId);
    const directory = this.blocksDir(containerName, blobName);
    await mkdir(directory, { recursive: true });
    const existing = await readdir(directory).catch(() => [] as string[]);
    if (existing.length >= maxUncommittedBlocks) {
      throw new StorageError(409, 'BlockCountExceedsLimit', 'The uncommitted block count cannot exceed 100,000.');
    }
    const temporary = await this.receive(body, options.contentLength, this.maxBlobBytes, options.contentMd5);
    await rename(temporary.path, join(directory, idBytes.toString('hex')));
    return temporary.md5;
  }

  /**
   * Put Block List: commits the listed blocks, in order, as the blob's content; uncommitted blocks not listed are
   * discarded (as Azure does).
   * @throws StorageError 400 InvalidBlockList when a block is missing, 413 RequestBodyTooLarge over the size cap.
   */
  putBlockList(
    containerName: string,
    blobName: string,
    entries: readonly BlockListEntry[],
    properties: BlobHttpProperties,
  ): Promise<BlobProperties> {
    return this.turn(containerName, blobName, async () => {
      if (entries.length > maxCommittedBlocks) {
        throw new StorageError(409, 'BlockCountExceedsLimit', 'The committed block count cannot exceed 50,000.');
      }
      const directory = this.blocksDir(containerName, blobName);
      const stored = await this.readProperties(containerName, blobName);
      const current = await this.properties(containerName, blobName);
      const committed = new Map<string, { offset: number; size: number }>();
      if (stored && current && stored.size === current.size) {
        let offset = 0;
        for (const block of stored.committedBlocks) {
          committed.set(block.id, { offset, size: block.size });
          offset += block.size;
        }
      }
      type Source = { id: string; file: string; start: number; size: number };
      const sources: Source[] = [];
      let total = 0;
      for (const entry of entries) {
        const hex = blockIdBytes(entry.id).toString('hex');
        const uncommittedPath = join(directory, hex);
        const uncommitted = entry.kind === 'Committed' ? undefined : await stat(uncommittedPath).catch(() => undefined);
        const previous = entry.kind === 'Uncommitted' ? undefined : committed.get(entry.id);
        let source: Source | undefined;
        if (uncommitted?.isFile()) source = { id: entry.id, file: uncommittedPath, start: 0, size: uncommitted.size };
        else if (previous) {
          source = {
            id: entry.id,
            file: this.blobPath(containerName, blobName),
            start: previous.offset,
            size: previous.size,
          };
        }
        if (!source) throw new StorageError(400, 'InvalidBlockList', 'The specified block list is invalid.');
        total += source.size;
        if (total > this.maxBlobBytes) {
          throw new StorageError(413, 'RequestBodyTooLarge', `The blob would exceed ${this.maxBlobBytes} bytes.`);
        }
        sources.push(source);
      }
      const temporaryPath = join(this.temporaryRoot, randomUUID());
      const handle = await open(temporaryPath, 'w');
      try {
        for (const source of sources) {
          if (source.size === 0) continue;
          const stream = createReadStream(source.file, { start: source.start, end: source.start + source.size - 1 });
          for await (const chunk of stream) await writeAll(handle, chunk as Buffer);
        }
        await handle.sync();
      } catch (error) {
        await handle.close().catch(() => undefined);
        await rm(temporaryPath, { force: true });
        throw error;
      }
      await handle.close();
      await this.commit(
        containerName,
        blobName,
        temporaryPath,
        properties,
        sources.map((source) => ({ id: source.id, size: source.size })),
      );
      await rm(directory, { recursive: true, force: true });
      const result = await this.properties(containerName, blobName);
      if (!result) throw new StorageError(500, 'InternalError', 'The blob vanished after it was written.');
      return result;
    });
  }

  /** The committed block list (Get Block List). */
  async committedBlocks(
    containerName: string,
    blobName: string,
  ): Promise<readonly { readonly id: string; readonly size: number }[]> {
    const stored = await this.readProperties(containerName, blobName);
    const current = await this.properties(containerName, blobName);
    return stored && current && stored.size === current.size ? stored.committedBlocks : [];
  }

  /** The uncommitted blocks (Get Block List), as base64 ids with sizes. */
  async uncommittedBlocks(containerName: string, blobName: string): Promise<{ id: string; size: number }[]> {
    const directory = this.blocksDir(containerName, blobName);
    const names = await readdir(directory).catch(() => [] as string[]);
    const blocks: { id: string; size: number }[] = [];
    for (const name of names) {
      const file = await stat(join(directory, name)).catch(() => undefined);
      if (file?.isFile()) blocks.push({ id: Buffer.from(name, 'hex').toString('base64'), size: file.size });
    }
    return blocks;
  }

  /** A read stream over the blob's bytes `[start, end]` (inclusive). */
  read(containerName: string, blobName: string, range?: { start: number; end: number }): Readable {
    return createReadStream(
      this.blobPath(containerName, blobName),
      range ? { start: range.start, end: range.end } : {},
    );
  }

  /** Deletes a blob, its properties and its uncommitted blocks. @returns whether the blob existed. */
  delete(containerName: string, blobName: string): Promise<boolean> {
    return this.turn(containerName, blobName, async () => {
      const path = this.blobPath(containerName, blobName);
      const existed = (await stat(path).catch(() => undefined))?.isFile() === true;
      await rm(path, { force: true });
      await rm(this.propertiesPath(containerName, blobName), { force: true });
      await rm(this.blocksDir(containerName, blobName), { recursive: true, force: true });
      return existed;
    });
  }

  /** Drops uncommitted blocks older than a week and temp files older than a day (left by a crash). */
  async sweep(now: number): Promise<void> {
    for (const name of await readdir(this.stateRoot).catch(() => [] as string[])) {
      if (!name.endsWith('.blocks')) continue;
      const path = join(this.stateRoot, name);
      const info = await stat(path).catch(() => undefined);
      if (info && info.mtimeMs < now - uncommittedBlockLifetimeMs) await rm(path, { recursive: true, force: true });
    }
    for (const name of await readdir(this.temporaryRoot).catch(() => [] as string[])) {
      const path = join(this.temporaryRoot, name);
      const info = await stat(path).catch(() => undefined);
      if (info && info.mtimeMs < now - 24 * 60 * 60 * 1000) await rm(path, { force: true });
    }
  }

  private stateKey(containerName: string, blobName: string): string {
    return createHash('sha256').update(`${containerName}/${blobName}`).digest('hex');
  }

  private blocksDir(containerName: string, blobName: string): string {
    return join(this.stateRoot, `${this.stateKey(containerName, blobName)}.blocks`);
  }

  private propertiesPath(containerName: string, blobName: string): string {
    return join(this.stateRoot, `${this.stateKey(containerName, blobName)}.json`);
  }

  private async readProperties(containerName: string, blobName: string): Promise<StoredProperties | undefined> {
    try {
      return JSON.parse(await readFile(this.propertiesPath(containerName, blobName), 'utf8')) as StoredProperties;
    } catch {
      return undefined;
    }
  }

  /** Moves a complete temp file into place, then records its properties. */
  private async commit(
    containerName: string,
    blobName: string,
    temporaryPath: string,
    properties: BlobHttpProperties,
    committedBlocks: readonly { id: string; size: number }[],
  ): Promise<void> {
    const path = this.blobPath(containerName, blobName);
    const previous = await this.readProperties(containerName, blobName);
    try {
      await mkdir(dirname(path), { recursive: true });
      const existing = await stat(path).catch(() => undefined);
      if (existing?.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      await rename(temporaryPath, path);
    } catch (error) {
      await rm(temporaryPath, { force: true });
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST' || code === 'ENOTEMPTY') {
        // A blob `a/b` and a blob `a` cannot both live on a file system.
        throw new StorageError(
          409,
          'InvalidBlobOrBlock',
          `The blob name '${blobName}' collides with the folder of another blob in the embedded store.`,
        );
      }
      throw error;
    }
    const file = await stat(path, { bigint: true });
    const stored: StoredProperties = {
      ...properties,
      size: Number(file.size),
      mtimeNs: String(file.mtimeNs),
      createdOn: previous?.createdOn ?? Date.now(),
      committedBlocks,
    };
    const target = this.propertiesPath(containerName, blobName);
    const temporary = join(this.temporaryRoot, randomUUID());
    await writeFileAtomic(temporary, target, JSON.stringify(stored));
  }

  /**
   * Streams a request body into a temp file, counting and hashing as it goes.
   * @throws StorageError 413 over `maxBytes`, 400 Md5Mismatch, 400 InvalidInput when fewer bytes than
   * Content-Length arrived.
   */
  private async receive(
    body: Readable,
    contentLength: number | undefined,
    maxBytes: number,
    expectedMd5: string | undefined,
  ): Promise<{ path: string; size: number; md5: string }> {
    if (contentLength !== undefined && contentLength > maxBytes) {
      body.resume();
      throw new StorageError(413, 'RequestBodyTooLarge', `The request body is larger than ${maxBytes} bytes.`);
    }
    const path = join(this.temporaryRoot, randomUUID());
    const hash = createHash('md5');
    let size = 0;
    const handle = await open(path, 'w');
    try {
      for await (const chunk of body) {
        const buffer = chunk as Buffer;
        size += buffer.length;
        if (size > maxBytes) {
          throw new StorageError(413, 'RequestBodyTooLarge', `The request body is larger than ${maxBytes} bytes.`);
        }
        hash.update(buffer);
        await writeAll(handle, buffer);
      }
      if (contentLength !== undefined && size !== contentLength) {
        throw new StorageError(400, 'InvalidInput', `Received ${size} of ${contentLength} bytes.`);
      }
      await handle.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(path, { force: true });
      throw error;
    }
    await handle.close();
    const md5 = hash.digest('base64');
    if (expectedMd5 !== undefined && expectedMd5 !== md5) {
      await rm(path, { force: true });
      throw new StorageError(
        400,
        'Md5Mismatch',
        'The MD5 value specified in the request did not match with the MD5 value calculated by the server.',
      );
    }
    return { path, size, md5 };
  }

  /** Runs writes to one blob one after another (in this process). */
  private turn<T>(containerName: string, blobName: string, operation: () => Promise<T>): Promise<T> {
    checkBlobName(blobName);
    return this.turns.run(`${containerName}/${blobName}`, operation);
  }
}

/**
 * Decodes a block id: base64 of at most 64 bytes.
 * @throws StorageError 400 InvalidQueryParameterValue.
 */
function blockIdBytes(blockId: string): Buffer {
  const bytes = Buffer.from(blockId, 'base64');
  if (
    blockId === '' ||
    !/^[A-Za-z0-9+/]+={0,2}$/.test(blockId) ||
    bytes.length === 0 ||
    bytes.length > maxBlockIdBytes
  ) {
    throw new StorageError(
      400,
      'InvalidQueryParameterValue',
      `Value for one of the query parameters specified in the request URI is invalid (blockid '${blockId}').`,
    );
  }
  return bytes;
}

async function writeAll(handle: FileHandle, buffer: Buffer): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset);
    offset += bytesWritten;
  }
}

async function writeFileAtomic(temporary: string, target: string, text: string): Promise<void> {
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, target);
}
