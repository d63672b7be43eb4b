/**
 * The embedded store's HTTP face: the Azure Blob REST calls `@azure/storage-blob` makes for an upload and a read,
 * served on the hub's HTTPS port under `/{containerName}/{blobName}` (path-style, as Azurite does), each authorized
 * by a service SAS in the query (no other authorization is accepted):
 * - Put Blob (`PUT`, `x-ms-blob-type: BlockBlob`) -> 201; Put Block (`PUT ?comp=block&blockid=`) -> 201;
 *   Put Block List (`PUT ?comp=blocklist`, XML body) -> 201; Get Block List (`GET ?comp=blocklist`) -> 200;
 * - Get Blob (`GET`, optional `Range` / `x-ms-range`) -> 200 / 206; Get Blob Properties (`HEAD`) -> 200;
 * - Delete Blob (`DELETE`) -> 202.
 * Write operations need `w` (or `c` for a blob that does not exist yet), reads `r`, deletes `d`.
 *
 * The routes sit in an encapsulated fastify plugin with their own body parser (which leaves the body unread, so
 * that the handlers stream it to disk: nothing is buffered) and their own error handler, answering Azure Storage's
 * XML error with `x-ms-error-code` instead of the hub's JSON envelope.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { type BlobSasRefusal, verifyBlobSas } from './blob-sas';
import {
  type BlobHttpProperties,
  type BlobProperties,
  type BlobStore,
  type BlockListEntry,
  checkBlobName,
} from './blob-store';
import { escapeXml, StorageError, storageErrorXml } from './storage-error';

/** What the endpoint serves. */
export interface BlobEndpointOptions {
  readonly store: BlobStore;
  readonly accountName: string;
  readonly accountKey: string;
  readonly containerName: string;
  readonly now: () => number;
  readonly logger: Logger;
  /** Tolerated clock difference for SAS start and expiry (ms). Default 5 minutes (Azure Storage's). */
  readonly clockSkewMs?: number;
}

/** The storage service version the endpoint answers with (`x-ms-version`). */
const serviceVersion = '2020-10-02';
const maxBlockListBytes = 8 * 1024 * 1024;

/** Registers the blob endpoint on the hub's HTTPS app. */
export function registerBlobEndpoint(app: FastifyInstance, options: BlobEndpointOptions): void {
  const { store, containerName } = options;
  const clockSkewMs = options.clockSkewMs ?? 5 * 60 * 1000;
  const prefix = `/${containerName}/`;

  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    // Leaves the body unread: the handlers stream `request.raw` themselves.
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

    scope.setErrorHandler((raw: Error, request, reply) => {
      const error =
        raw instanceof StorageError
          ? raw
          : new StorageError(
              500,
              'InternalError',
              'Server encountered an internal error. Please try again after some time.',
            );
      // The path only: the query holds the SAS, a credential.
      const url = request.url.split('?')[0];
      if (error.status >= 500) options.logger.error({ err: raw, url }, 'blob request failed');
      else options.logger.debug({ code: error.code, url, reason: raw.message }, 'blob request refused');
      // The body may be unread (a refusal before streaming): drain it so the connection stays usable.
      if (!request.raw.readableEnded) request.raw.resume();
      const requestId = String(reply.getHeader('x-ms-request-id') ?? randomUUID());
      reply.code(error.status).header('x-ms-error-code', error.code).header('x-ms-request-id', requestId);
      if (request.method === 'HEAD') return reply.send();
      return reply.header('content-type', 'application/xml').send(storageErrorXml(error, requestId));
    });

    scope.addHook('onRequest', async (request, reply) => {
      reply.header('x-ms-request-id', randomUUID());
      reply.header('x-ms-version', serviceVersion);
      reply.header('date', new Date(options.now()).toUTCString());
      const clientRequestId = request.headers['x-ms-client-request-id'];
      if (typeof clientRequestId === 'string') reply.header('x-ms-client-request-id', clientRequestId);
    });

    const blobOf = (request: FastifyRequest): { blobName: string; query: URLSearchParams } => {
      const url = request.raw.url ?? '/';
      const question = url.indexOf('?');
      const path = question === -1 ? url : url.slice(0, question);
      const query = new URLSearchParams(question === -1 ? '' : url.slice(question + 1));
      let blobName: string;
      try {
        blobName = decodeURIComponent(path.slice(prefix.length));
      } catch {
        throw new StorageError(400, 'InvalidUri', 'The requested URI does not represent any resource on the server.');
      }
      checkBlobName(blobName);
      return { blobName, query };
    };

    const authorize = (request: FastifyRequest, query: URLSearchParams, blobName: string, permission: string) => {
      const refusal: BlobSasRefusal | undefined = verifyBlobSas(query, {
        accountName: options.accountName,
        accountKeys: [options.accountKey],
        containerName,
        blobName,
        permission,
        now: options.now(),
        clockSkewMs,
        clientAddress: request.raw.socket.remoteAddress ?? '',
      });
      if (!refusal) return;
      options.logger.debug({ url: request.url.split('?')[0], reason: refusal.reason }, 'blob SAS refused');
      const message =
        refusal.code === 'AuthenticationFailed'
          ? 'Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.'
          : 'This request is not authorized to perform this operation using this permission.';
      throw new StorageError(403, refusal.code, message);
    };

    /** `w`, or `c` when the blob does not exist yet (Azure's create permission). */
    const authorizeWrite = async (request: FastifyRequest, query: URLSearchParams, blobName: string) => {
      const sp = query.get('sp') ?? '';
      if (!sp.includes('w') && sp.includes('c') && !(await store.properties(containerName, blobName))) {
        authorize(request, query, blobName, 'c');
        return;
      }
      authorize(request, query, blobName, 'w');
    };

    scope.route({
      method: ['PUT', 'GET', 'HEAD', 'DELETE'],
      url: `${prefix}*`,
      exposeHeadRoute: false,
      handler: async (request, reply) => {
        const { blobName, query } = blobOf(request);
        const comp = query.get('comp');
        switch (request.method) {
          case 'PUT':
            await authorizeWrite(request, query, blobName);
            if (comp === 'block') return putBlock(request, reply, blobName, query);
            if (comp === 'blocklist') return putBlockList(request, reply, blobName);
            if (comp !== null) throw unsupportedComp(comp);
            return putBlob(request, reply, blobName);
          case 'GET':
          case 'HEAD':
            authorize(request, query, blobName, 'r');
            if (comp === 'blocklist' && request.method === 'GET') return getBlockList(reply, blobName, query);
            if (comp !== null) throw unsupportedComp(comp);
            return getBlob(request, reply, blobName);
          default: {
            authorize(request, query, blobName, 'd');
            if (comp !== null) throw unsupportedComp(comp);
            await checkConditions(request, await store.properties(containerName, blobName));
            if (!(await store.delete(containerName, blobName))) throw blobNotFound();
            return reply.code(202).header('x-ms-delete-type-permanent', 'true').send();
          }
        }
      },
    });

    // The container itself (container SAS operations, listing) is not served.
    scope.all(`/${containerName}`, async () => {
      throw new StorageError(403, 'AuthorizationResourceTypeMismatch', 'Only blob operations are served here.');
    });

    async function putBlob(request: FastifyRequest, reply: FastifyReply, blobName: string) {
      const blobType = header(request, 'x-ms-blob-type');
      if (blobType === undefined) {
        throw new StorageError(
          400,
          'MissingRequiredHeader',
          'An HTTP header that is mandatory for this request is not specified (x-ms-blob-type).',
        );
      }
      if (blobType !== 'BlockBlob') {
        throw new StorageError(
          400,
          'InvalidHeaderValue',
          `The embedded store serves block blobs only, not ${blobType}.`,
        );
      }
      await checkConditions(request, await store.properties(containerName, blobName));
      const properties = await store.putBlob(containerName, blobName, request.raw, {
        contentLength: contentLength(request),
        properties: {
          contentType: header(request, 'x-ms-blob-content-type') ?? header(request, 'content-type'),
          contentEncoding: header(request, 'x-ms-blob-content-encoding') ?? header(request, 'content-encoding'),
          contentLanguage: header(request, 'x-ms-blob-content-language') ?? header(request, 'content-language'),
          contentDisposition: header(request, 'x-ms-blob-content-disposition'),
          cacheControl: header(request, 'x-ms-blob-cache-control') ?? header(request, 'cache-control'),
          contentMd5: header(request, 'x-ms-blob-content-md5') ?? header(request, 'content-md5'),
        },
      });
      writeHeaders(reply, properties);
      if (properties.contentMd5) reply.header('content-md5', properties.contentMd5);
      return reply.code(201).header('x-ms-request-server-encrypted', 'true').send();
    }

    async function putBlock(request: FastifyRequest, reply: FastifyReply, blobName: string, query: URLSearchParams) {
      const blockId = query.get('blockid');
      if (blockId === null) {
        throw new StorageError(
          400,
          'MissingRequiredQueryParameter',
          'A query parameter that is mandatory for this request is not specified (blockid).',
        );
      }
      const md5 = await store.putBlock(containerName, blobName, blockId, request.raw, {
        contentLength: contentLength(request),
        contentMd5: header(request, 'content-md5'),
      });
      return reply.code(201).header('content-md5', md5).header('x-ms-request-server-encrypted', 'true').send();
    }

    async function putBlockList(request: FastifyRequest, reply: FastifyReply, blobName: string) {
      await checkConditions(request, await store.properties(containerName, blobName));
      const text = await readText(request, maxBlockListBytes);
      const entries = parseBlockList(text);
      const properties = await store.putBlockList(containerName, blobName, entries, blobHttpProperties(request));
      writeHeaders(reply, properties);
      return reply.code(201).header('x-ms-request-server-encrypted', 'true').send();
    }

    async function getBlockList(reply: FastifyReply, blobName: string, query: URLSearchParams) {
      const type = (query.get('blocklisttype') ?? 'committed').toLowerCase();
      const properties = await store.properties(containerName, blobName);
      const committed = type === 'uncommitted' ? [] : await store.committedBlocks(containerName, blobName);
      const uncommitted = type === 'committed' ? [] : await store.uncommittedBlocks(containerName, blobName);
      if (!properties && uncommitted.length === 0) throw blobNotFound();
      const blocks = (list: readonly { id: string; size: number }[]) =>
        list.map((block) => `<Block><Name>${escapeXml(block.id)}</Name><Size>${block.size}</Size></Block>`).join('');
      if (properties) writeHeaders(reply, properties);
      reply.header('x-ms-blob-content-length', String(properties?.size ?? 0));
      return reply
        .code(200)
        .header('content-type', 'application/xml')
        .send(
          `<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks>${blocks(committed)}</CommittedBlocks><UncommittedBlocks>${blocks(uncommitted)}</UncommittedBlocks></BlockList>`,
        );
    }

    async function getBlob(request: FastifyRequest, reply: FastifyReply, blobName: string) {
      const properties = await store.properties(containerName, blobName);
      if (!properties) throw blobNotFound();
      await checkConditions(request, properties);
      writeHeaders(reply, properties);
      reply
        .header('content-type', properties.contentType ?? 'application/octet-stream')
        .header('x-ms-blob-type', 'BlockBlob')
        .header('x-ms-creation-time', properties.createdOn.toUTCString())
        .header('x-ms-lease-state', 'available')
        .header('x-ms-lease-status', 'unlocked')
        .header('x-ms-server-encrypted', 'true')
        .header('accept-ranges', 'bytes');
      if (properties.contentEncoding) reply.header('content-encoding', properties.contentEncoding);
      if (properties.contentLanguage) reply.header('content-language', properties.contentLanguage);
      if (properties.contentDisposition) reply.header('content-disposition', properties.contentDisposition);
      if (properties.cacheControl) reply.header('cache-control', properties.cacheControl);
      const range = parseRange(header(request, 'x-ms-range') ?? header(request, 'range'), properties.size);
      if (range) {
        reply
          .code(206)
          .header('content-length', String(range.end - range.start + 1))
          .header('content-range', `bytes ${range.start}-${range.end}/${properties.size}`);
        if (properties.contentMd5) reply.header('x-ms-blob-content-md5', properties.contentMd5);
      } else {
        reply.code(200).header('content-length', String(properties.size));
        if (properties.contentMd5) reply.header('content-md5', properties.contentMd5);
      }
      if (request.method === 'HEAD' || properties.size === 0) return reply.send();
      return reply.send(store.read(containerName, blobName, range));
    }
  });
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function contentLength(request: FastifyRequest): number | undefined {
  const value = header(request, 'content-length');
  if (value === undefined) return undefined;
  const number = Number(value);
  return Number.isSafeInteger(number) && number >= 0 ? number : undefined;
}

function blobHttpProperties(request: FastifyRequest): BlobHttpProperties {
  return {
    contentType: header(request, 'x-ms-blob-content-type') ?? 'application/octet-stream',
    contentEncoding: header(request, 'x-ms-blob-content-encoding'),
    contentLanguage: header(request, 'x-ms-blob-content-language'),
    contentDisposition: header(request, 'x-ms-blob-content-disposition'),
    cacheControl: header(request, 'x-ms-blob-cache-control'),
    contentMd5: header(request, 'x-ms-blob-content-md5'),
  };
}

function writeHeaders(reply: FastifyReply, properties: BlobProperties): void {
  reply.header('etag', properties.etag).header('last-modified', properties.lastModified.toUTCString());
}

function blobNotFound(): StorageError {
  return new StorageError(404, 'BlobNotFound', 'The specified blob does not exist.');
}

function unsupportedComp(comp: string): StorageError {
  return new StorageError(400, 'InvalidQueryParameterValue', `The embedded store does not serve comp=${comp}.`);
}

/** If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since against the current blob. */
async function checkConditions(request: FastifyRequest, current: BlobProperties | undefined): Promise<void> {
  const ifMatch = header(request, 'if-match');
  const ifNoneMatch = header(request, 'if-none-match');
  const write = request.method === 'PUT' || request.method === 'DELETE';
  if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== current?.etag) {
    throw new StorageError(
      412,
      'ConditionNotMet',
      'The condition specified using HTTP conditional header(s) is not met.',
    );
  }
  if (ifMatch === '*' && !current)
    throw new StorageError(
      412,
      'ConditionNotMet',
      'The condition specified using HTTP conditional header(s) is not met.',
    );
  if (ifNoneMatch !== undefined && current && (ifNoneMatch === '*' || ifNoneMatch === current.etag)) {
    if (write && ifNoneMatch === '*')
      throw new StorageError(409, 'BlobAlreadyExists', 'The specified blob already exists.');
    throw new StorageError(
      write ? 412 : 304,
      'ConditionNotMet',
      'The condition specified using HTTP conditional header(s) is not met.',
    );
  }
}

/** Reads a small body (the block list) as text. @throws StorageError 413 over `maxBytes`. */
async function readText(request: FastifyRequest, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.raw) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new StorageError(413, 'RequestBodyTooLarge', 'The block list is too large.');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Parses a Put Block List body: `<BlockList>` with `<Latest>`, `<Committed>` and `<Uncommitted>` entries in order.
 * @throws StorageError 400 InvalidXmlDocument.
 */
export function parseBlockList(text: string): BlockListEntry[] {
  const body = /<BlockList>([\s\S]*)<\/BlockList>/.exec(text.replace(/^\uFEFF/, ''));
  if (!body) throw new StorageError(400, 'InvalidXmlDocument', 'XML specified is not syntactically valid.');
  const entries: BlockListEntry[] = [];
  const pattern = /<(Latest|Committed|Uncommitted)>([^<]*)<\/\1>|(\S)/g;
  for (const match of (body[1] ?? '').matchAll(pattern)) {
    if (match[3] !== undefined || match[1] === undefined) {
      throw new StorageError(400, 'InvalidXmlDocument', 'XML specified is not syntactically valid.');
    }
    entries.push({ kind: match[1] as BlockListEntry['kind'], id: (match[2] ?? '').trim() });
  }
  return entries;
}

/**
 * `bytes=start-end`, `bytes=start-` or `bytes=-suffix`, clamped to the blob; `undefined` for no or an unusable
 * range on an empty blob.
 * @throws StorageError 416 InvalidRange when the range starts beyond the blob.
 */
function parseRange(value: string | undefined, size: number): { start: number; end: number } | undefined {
  if (value === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    start = Math.max(size - suffix, 0);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || end < start) {
    throw new StorageError(416, 'InvalidRange', 'The range specified is invalid for the current size of the resource.');
  }
  return { start, end };
}
