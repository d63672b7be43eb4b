/**
 * Fieldhub extension: reading the built-in endpoint over HTTPS (until the AMQP head serves Event Hubs clients),
 * and managing its consumer groups. ServiceConnect is required; no `api-version` (extensions are versioned by
 * their `/fieldhub/` path; a given one is ignored). Routes only translate to `core.telemetry`.
 *
 * `GET /fieldhub/events?consumerGroup=$Default&from=earliest|latest|seq:<n>|time:<ISO>&partition=<n>&live=true`
 * answers `text/event-stream`: one `data: <JSON>` line per event, blank-line separated, with
 * `{ deviceId, moduleId, messageId, correlationId, userId, contentType, contentEncoding, properties,
 * systemProperties, body, bodyEncoding, enqueuedTime, sequenceNumber, offset, partition }` (absent values are
 * `null`). `body` is the UTF-8 text when the content type is JSON or `text/*` or the content encoding is UTF-8
 * and the bytes are valid UTF-8 (`bodyEncoding: "utf-8"`), else base64 (`bodyEncoding: "base64"`).
 * - `from`: default `earliest`; `seq:<n>` starts after sequence number n (Event Hubs' exclusive position) in
 *   every partition read; `time:<ISO>` after that enqueued time.
 * - `partition`: one partition; all partitions merged by enqueued time when absent.
 * - `live=false` ends the stream once caught up; otherwise it stays open and follows new appends, with a
 *   `: keep-alive` comment every 15 s.
 * - Backpressure: events go out in batches of at most 256 per write; once 1 MB waits in the socket, the next batch
 *   is read from the store only after the socket drained, so a slow client costs one bounded reader and about
 *   1 MB, never hub memory growing with the backlog. The reader closes when the client goes away.
 * - No `id:` fields: resume with `from=seq:<n>` and `partition=<n>` from the last event seen.
 *
 * Consumer groups (names case-insensitive; `$Default` always exists and cannot be deleted):
 * `GET /fieldhub/consumergroups` -> 200 `[{ name, createdTime? }]`; `PUT /fieldhub/consumergroups/:name` -> 200
 * (idempotent); `GET /fieldhub/consumergroups/:name` -> 200 / 404 ResourceNotFound;
 * `DELETE /fieldhub/consumergroups/:name` -> 204 / 404 ResourceNotFound.
 */
import type { Socket } from 'node:net';
import { ArgumentError, HubError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import type { EndpointEvent, StartPosition, TelemetryReader } from '../../../core/telemetry';
import { requirePermission } from '../service-auth';
import { sendJson } from './registry';

const keepAliveMs = 15_000;
/**
 * Events serialised into one socket write. With the socket's own buffer this bounds what a slow client costs
 * (~256 KB at 1 KB per 256-byte telemetry event), whatever the backlog in the store.
 */
const maxEventsPerWrite = 256;
/**
 * Bytes a stream may leave in its socket's write buffer before it waits for 'drain', and write in one event loop
 * turn before it yields. Waiting at the socket's 16 KB high-water mark allowed one batch per turn, too few for a
 * hub under full telemetry load; this bound is what a slow client costs at most, plus one batch.
 */
const maxBufferedBytes = 1024 * 1024;

/** Registers the event stream and the consumer group routes. */
export function registerTelemetryStreamRoutes(app: FastifyInstance, core: HubCore): void {
  const open = new Set<TelemetryReader>();
  // Streams never end by themselves: close them before the server waits for its connections to finish.
  app.addHook('preClose', (done) => {
    for (const reader of open) reader.close();
    done();
  });

  app.get('/fieldhub/events', async (request, reply) => {
    await requirePermission(core, request, 'ServiceConnect');
    const query = (request.query ?? {}) as Record<string, string | undefined>;
    // Opening the reader validates the group, partition and position before any byte of the stream is sent.
    const reader = await core.telemetry.read({
      consumerGroup: query.consumerGroup,
      partition: parsePartition(query.partition),
      from: parseFrom(query.from),
      live: query.live !== 'false',
      // Fewer, larger store reads: the stream sends up to `maxEventsPerWrite` events per write anyway.
      bufferSize: maxEventsPerWrite,
    });
    open.add(reader);
    reply.hijack();
    try {
      await stream(request, reply, reader);
    } finally {
      open.delete(reader);
      reader.close();
    }
  });

  app.get('/fieldhub/consumergroups', async (request, reply) => {
    await requirePermission(core, request, 'ServiceConnect');
    return sendJson(reply, 200, await core.telemetry.listConsumerGroups());
  });

  app.get('/fieldhub/consumergroups/:name', async (request, reply) => {
    await requirePermission(core, request, 'ServiceConnect');
    return sendJson(reply, 200, await core.telemetry.getConsumerGroup(nameParam(request)));
  });

  app.put('/fieldhub/consumergroups/:name', async (request, reply) => {
    await requirePermission(core, request, 'ServiceConnect');
    return sendJson(reply, 200, await core.telemetry.createConsumerGroup(nameParam(request)));
  });

  app.delete('/fieldhub/consumergroups/:name', async (request, reply) => {
    await requirePermission(core, request, 'ServiceConnect');
    const name = nameParam(request);
    if (!(await core.telemetry.deleteConsumerGroup(name))) {
      throw new HubError('ResourceNotFound', `Consumer group '${name}' does not exist`);
    }
    return reply.code(204).send();
  });
}

/** Writes the events as server-sent events until the reader ends or the client goes away. */
async function stream(request: FastifyRequest, reply: FastifyReply, reader: TelemetryReader): Promise<void> {
  const response = reply.raw;
  let gone = false;
  const onGone = () => {
    gone = true;
    reader.close();
  };
  response.once('close', onGone);
  request.raw.once('close', () => {
    if (!response.writableFinished) onGone();
  });
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  response.write(': fieldhub events\n\n');
  // Events go straight to the socket, framed here as HTTP chunks when the response is chunked: the response's own
  // write corks the socket until the next tick, which put every event behind all the work its commit queued (the
  // devices' PUBACKs, ~100 us on a busy hub). Everything else (head, keep-alives, the last chunk) goes through
  // `response`, in order on the same socket.
  const socket = response.socket;
  const chunked = response.chunkedEncoding;
  const keepAlive = setInterval(() => {
    if (!gone) response.write(': keep-alive\n\n');
  }, keepAliveMs);
  keepAlive.unref();
  let writtenThisTurn = 0;
  try {
    while (!gone && socket !== null) {
      // Caught up: wait for the next commit; this continuation is the first to run after it, so the events of
      // that commit are taken from the window and written in that same microtask.
      let events = reader.takeAvailable(maxEventsPerWrite);
      if (events !== undefined && events.length === 0) {
        await reader.waitForAppend();
        writtenThisTurn = 0;
        continue;
      }
      if (events === undefined) {
        const batch = await reader.nextBatch(maxEventsPerWrite);
        if (batch.done) break;
        events = batch.value;
      }
      if (gone) break;
      // One socket write (one TLS record run, one syscall) per batch: a write and a drain wait per event kept a
      // busy hub's reader at a few hundred events/s, one event loop turn per 16 KB.
      const bytes = encodeEvents(events, chunked);
      socket.write(bytes);
      writtenThisTurn += bytes.length;
      if (socket.writableLength > maxBufferedBytes) {
        // Backpressure: pull the next batch from the store only once the socket took what is buffered.
        await drained(socket);
        writtenThisTurn = 0;
      } else if (writtenThisTurn > maxBufferedBytes) {
        // A fast client of a long backlog would otherwise keep this loop in microtasks and starve the devices.
        await new Promise<void>((resolve) => setImmediate(resolve));
        writtenThisTurn = 0;
      }
    }
  } catch (error) {
    // Headers are sent: the error envelope is no longer possible; end the stream (the client sees it close).
    request.log.warn({ err: error }, 'event stream ended by an error');
  } finally {
    clearInterval(keepAlive);
    response.off('close', onGone);
    if (!gone) response.end();
  }
}

/** Resolves when the socket drained or closed; leaves no listener behind (a long stream waits many times). */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

const eventPrefix = 'data: ';
const eventSuffix = '\n\n';
/** A chunk's size line, fixed width (HTTP/1.1 allows leading zeros): written once the size is known. */
const chunkHeadBytes = 10;

/**
 * The SSE lines of a batch as one Buffer, each event's JSON encoded straight into it, framed as one HTTP chunk when
 * `chunked`. Cheaper than one string: http's write measures a string's UTF-8 length and encodes it again, and a
 * string concatenated from hundreds of pieces is flattened first each time; together that cost more than
 * serialising the events. The body is kept out of `JSON.stringify`: a base64 body is ASCII and needs no escaping, so
 * it is copied in as latin1 (no JSON scan and no UTF-8 transcoding of a 4 KB payload's 5.5 KB of text), and the
 * exact size of each event is known, so the Buffer is allocated once at its size (not three times the text).
 */
function encodeEvents(events: readonly EndpointEvent[], chunked: boolean): Buffer {
  const parts = events.map(toJsonParts);
  let capacity = chunked ? chunkHeadBytes + 2 : 0;
  for (const part of parts) {
    capacity += eventPrefix.length + Buffer.byteLength(part.head) + bodyKey.length + Buffer.byteLength(part.tail);
    capacity += part.base64 ? part.body.length + 2 : Buffer.byteLength(part.body);
    capacity += eventSuffix.length;
  }
  const bytes = Buffer.allocUnsafe(capacity);
  let offset = chunked ? chunkHeadBytes : 0;
  for (const part of parts) {
    offset += bytes.write(eventPrefix, offset, 'latin1');
    offset += bytes.write(part.head, offset, 'utf8');
    offset += bytes.write(bodyKey, offset, 'latin1');
    if (part.base64) {
      bytes[offset++] = 0x22; // "
      offset += bytes.write(part.body, offset, 'latin1');
      bytes[offset++] = 0x22;
    } else {
      offset += bytes.write(part.body, offset, 'utf8');
    }
    offset += bytes.write(part.tail, offset, 'utf8');
    offset += bytes.write(eventSuffix, offset, 'latin1');
  }
  if (!chunked) return bytes.subarray(0, offset);
  bytes.write(`${(offset - chunkHeadBytes).toString(16).padStart(chunkHeadBytes - 2, '0')}\r\n`, 0, 'latin1');
  offset += bytes.write('\r\n', offset, 'latin1');
  return bytes.subarray(0, offset);
}

const bodyKey = ',"body":';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One event's JSON in three pieces, `head + bodyKey + body + tail`, the same text as `JSON.stringify` of
 * `{ deviceId, moduleId, messageId, correlationId, userId, contentType, contentEncoding, properties,
 * systemProperties, body, bodyEncoding, enqueuedTime, sequenceNumber, offset, partition }`. `body` is the raw
 * base64 text (to be quoted) when `base64`, else already JSON.
 */
function toJsonParts(event: EndpointEvent): { head: string; body: string; base64: boolean; tail: string } {
  const { body, bodyEncoding } = encodeBody(event);
  const head = JSON.stringify({
    deviceId: event.deviceId ?? null,
    moduleId: event.moduleId ?? null,
    messageId: event.messageId ?? null,
    correlationId: event.correlationId ?? null,
    userId: event.userId ?? null,
    contentType: event.contentType ?? null,
    contentEncoding: event.contentEncoding ?? null,
    properties: event.properties,
    systemProperties: event.systemProperties,
  });
  const tail = JSON.stringify({
    bodyEncoding,
    enqueuedTime: new Date(event.enqueuedTime).toISOString(),
    sequenceNumber: event.sequenceNumber,
    offset: event.offset,
    partition: event.partition,
  });
  const base64 = bodyEncoding === 'base64';
  return {
    head: head.slice(0, -1),
    body: base64 ? body : JSON.stringify(body),
    base64,
    tail: `,${tail.slice(1)}`,
  };
}

function encodeBody(event: EndpointEvent): { body: string; bodyEncoding: 'utf-8' | 'base64' } {
  const type = (event.contentType ?? '').toLowerCase();
  const encoding = (event.contentEncoding ?? '').toLowerCase().replace('-', '');
  const textual = type.includes('json') || type.startsWith('text/') || encoding === 'utf8';
  if (textual) {
    try {
      return { body: utf8.decode(event.body), bodyEncoding: 'utf-8' };
    } catch {
      // Declared as text but not valid UTF-8: fall through to base64 rather than mangle it.
    }
  }
  // A view, not Buffer.from(body), which would copy the bytes first.
  const { buffer, byteOffset, byteLength } = event.body;
  return { body: Buffer.from(buffer, byteOffset, byteLength).toString('base64'), bodyEncoding: 'base64' };
}

function parsePartition(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new ArgumentError(`Invalid partition '${value}'`, { field: 'partition' });
  return Number(value);
}

function parseFrom(value: string | undefined): StartPosition {
  if (value === undefined || value === '' || value === 'earliest') return 'earliest';
  if (value === 'latest') return 'latest';
  if (value.startsWith('seq:') && /^seq:-?\d+$/.test(value)) return { sequenceNumber: Number(value.slice(4)) };
  if (value.startsWith('time:')) {
    const time = Date.parse(value.slice(5));
    if (!Number.isNaN(time)) return { enqueuedTime: time };
  }
  throw new ArgumentError(`Invalid from '${value}': earliest, latest, seq:<n> or time:<ISO 8601>`, { field: 'from' });
}

function nameParam(request: FastifyRequest): string {
  return (request.params as { name: string }).name;
}
