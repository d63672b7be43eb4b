/**
 * Service REST routes of cloud-to-device messaging. Routes only translate to `core.cloudToDevice`;
 * ServiceConnect is required everywhere (§1.1).
 *
 * Azure's routes (protocol-service.md §2.3, §3.3), with `?api-version=`:
 * - `DELETE /devices/:id/commands` -> 200 `{ totalMessagesPurged, deviceId, moduleId: null }`.
 * - `GET /messages/serviceBound/feedback` -> 200 with a JSON array of feedback records (at most 64) and the batch's
 *   lock token in `ETag` (quoted), or 204 when none waits. The path also matches `servicebound` (docs spell it so).
 * - `DELETE /messages/serviceBound/feedback/:lockToken` -> 204 (complete);
 *   `POST /messages/serviceBound/feedback/:lockToken/abandon` -> 204. A quoted token is accepted. An unknown or
 *   already settled token -> 412 DeviceMessageLockLost (412002).
 *
 * Fieldhub extension (until the AMQP head's `/messages/devicebound` link exists), no `api-version` needed
 * (extensions are versioned by their `/fieldhub/` path; a given one is ignored):
 * - `POST /fieldhub/devices/:id/messages/devicebound` -> 202 `{ messageId, sequenceNumber, enqueuedTimeUtc,
 *   expiryTimeUtc }`. The request body, byte for byte, is the message body. Headers map to the message:
 *   `iothub-messageid`, `iothub-correlationid`, `iothub-userid`, `iothub-ack` (`none|positive|negative|full`),
 *   `iothub-expiry` (absolute expiry, ISO 8601), `iothub-contenttype` (else the request's `Content-Type`),
 *   `iothub-contentencoding`, and `iothub-app-<name>: <value>` per application property. HTTP header names are
 *   case-insensitive, so property names arrive lower-cased; values may be percent-encoded (decoded once).
 *   Errors as Azure's AMQP send: 404001 DeviceNotFound, 403004 DeviceMaximumQueueDepthExceeded,
 *   413001 MessageTooLarge (64 KB), 400004 ArgumentInvalid.
 */
import { ArgumentError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CloudToDeviceAck, CloudToDeviceMessageInput } from '../../../core/cloud-to-device';
import type { HubCore } from '../../../core/hub-core';
import { requireApiVersion } from '../api-version';
import { requirePermission } from '../service-auth';
import { identityParams, sendJson } from './registry';

/** Registers the purge, feedback and (extension) send routes. */
export function registerCloudToDeviceRoutes(app: FastifyInstance, core: HubCore): void {
  app.delete('/devices/:id/commands', async (request, reply) => {
    requireApiVersion(request);
    await requirePermission(core, request, 'ServiceConnect');
    const { deviceId } = identityParams(request);
    return sendJson(reply, 200, await core.cloudToDevice.purge(deviceId));
  });

  for (const base of ['/messages/serviceBound/feedback', '/messages/servicebound/feedback']) {
    app.get(base, async (request, reply) => {
      requireApiVersion(request);
      await requirePermission(core, request, 'ServiceConnect');
      const batch = await core.cloudToDevice.receiveFeedback();
      if (!batch) return reply.code(204).send();
      reply.header('etag', `"${batch.lockToken}"`);
      return sendJson(reply, 200, batch.records);
    });

    app.delete(`${base}/:lockToken`, async (request, reply) => {
      requireApiVersion(request);
      await requirePermission(core, request, 'ServiceConnect');
      await core.cloudToDevice.completeFeedback(lockTokenParam(request));
      return reply.code(204).send();
    });

    app.post(`${base}/:lockToken/abandon`, async (request, reply) => {
      requireApiVersion(request);
      await requirePermission(core, request, 'ServiceConnect');
      await core.cloudToDevice.abandonFeedback(lockTokenParam(request));
      return reply.code(204).send();
    });
  }

  // Encapsulated so that this route alone reads every body as raw bytes, JSON included: the body is the message.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    scope.post('/fieldhub/devices/:id/messages/devicebound', async (request, reply) => {
      await requirePermission(core, request, 'ServiceConnect');
      const { deviceId } = identityParams(request);
      const result = await core.cloudToDevice.send(deviceId, toMessage(request));
      return sendJson(reply, 202, {
        messageId: result.messageId,
        sequenceNumber: result.sequenceNumber,
        enqueuedTimeUtc: new Date(result.enqueuedTimeUtc).toISOString(),
        expiryTimeUtc: new Date(result.expiryTimeUtc).toISOString(),
      });
    });
  });
}

function lockTokenParam(request: FastifyRequest): string {
  const token = (request.params as { lockToken: string }).lockToken;
  return token.replace(/^"(.*)"$/, '$1');
}

const acks: readonly string[] = ['none', 'positive', 'negative', 'full'];

/** Translates the extension's request (body + `iothub-*` headers) into a message. */
function toMessage(request: FastifyRequest): CloudToDeviceMessageInput {
  const header = (name: string): string | undefined => {
    const value = request.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const body = Buffer.isBuffer(request.body) ? new Uint8Array(request.body) : new Uint8Array();
  const properties: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (!name.startsWith('iothub-app-') || value === undefined) continue;
    properties[name.slice('iothub-app-'.length)] = decodeValue(Array.isArray(value) ? value.join(',') : value, name);
  }
  const ack = header('iothub-ack');
  if (ack !== undefined && !acks.includes(ack)) {
    throw new ArgumentError(`Invalid iothub-ack '${ack}': none, positive, negative or full`, { field: 'iothub-ack' });
  }
  const expiry = header('iothub-expiry');
  let expiryTimeUtc: number | undefined;
  if (expiry !== undefined) {
    expiryTimeUtc = Date.parse(expiry);
    if (Number.isNaN(expiryTimeUtc)) {
      throw new ArgumentError(`Invalid iothub-expiry '${expiry}': an ISO 8601 time is expected`, {
        field: 'iothub-expiry',
      });
    }
  }
  return {
    body,
    messageId: header('iothub-messageid'),
    correlationId: header('iothub-correlationid'),
    userId: header('iothub-userid'),
    contentType: header('iothub-contenttype') ?? header('content-type'),
    contentEncoding: header('iothub-contentencoding'),
    properties,
    expiryTimeUtc,
    ack: ack as CloudToDeviceAck | undefined,
  };
}

function decodeValue(value: string, name: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new ArgumentError(`Header ${name} is not valid percent-encoding`, { field: name });
  }
}
