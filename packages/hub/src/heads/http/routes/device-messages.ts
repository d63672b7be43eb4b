/**
 * The device HTTPS API (protocol-device.md §4.1, §4.2; captures/http.txt): telemetry and polled cloud-to-device
 * messages, for `azure-iot-device-http` and any device that speaks plain HTTPS. Every request carries
 * `?api-version=` and is authenticated on its own (`authenticateDeviceRequest`: SAS header or TLS client
 * certificate; every refusal is 401 IotHubUnauthorizedAccess). Routes translate; the core does the work.
 *
 * - `POST /devices/:id/messages/events`, `POST /devices/:id/modules/:mid/messages/events`: one message (the body,
 *   byte for byte, whatever its Content-Type; properties in headers) or, with
 *   `Content-Type: application/vnd.microsoft.iothub.json`, a batch. 204 once every message is durably appended
 *   (one `ingest`: a batch is appended whole or not at all). A request body over 256 KB, or a message over it
 *   once its properties count, is 413 MessageTooLarge; bad properties or a malformed batch 400 ArgumentInvalid.
 * - `GET /devices/:id/messages/deviceBound` (the Node SDK spells it `devicebound`; both are served): 204 when
 *   nothing is deliverable, else 200 with the body, `ETag: "<lockToken>"` and `iothub-*` headers; the message
 *   stays locked (1 minute) until settled, and is delivered again, delivery count + 1, when the lock lapses.
 * - `DELETE .../deviceBound/:lockToken` completes (feedback `Success`); with `?reject` (any value) rejects
 *   (dead-lettered, feedback `Rejected`); `POST .../deviceBound/:lockToken/abandon` abandons (delivered again,
 *   delivery count + 1). 204 on success. `If-Match` (quoted or bare, as the Node SDK sends it) must name the
 *   path's lock token, else 412 PreconditionFailed. A lock token that locks nothing of this device (settled
 *   already, unknown, or taken by a later delivery after its lock lapsed) is 412 DeviceMessageLockLost (412002):
 *   the code Azure documents for a lost lock (the reference leaves 412 or 404 open).
 *
 * The routes live in an encapsulated plugin whose only body parser keeps bytes: the hub's global JSON parser
 * must not read a telemetry body a device labelled `application/json`.
 */
import { HubError, Limits } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import { requireApiVersion } from '../api-version';
import { authenticateDeviceRequest } from '../device-auth';
import {
  cloudToDeviceHeaders,
  type DeviceTelemetryMessage,
  telemetryBatchContentType,
  telemetryFromBatch,
  telemetryFromHeaders,
  telemetryInput,
} from '../device-message-headers';
import { parseIfMatch } from '../etag';

interface DeviceParams {
  id: string;
  mid?: string;
  lockToken?: string;
}

const cloudToDevicePaths = ['/devices/:id/messages/deviceBound', '/devices/:id/messages/devicebound'];

/** Registers the device telemetry and cloud-to-device routes on `app` (in their own body-parsing scope). */
export function registerDeviceMessageRoutes(app: FastifyInstance, core: HubCore): void {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    // Requests without a Content-Type (the Node SDK's single sendEvent) reach this parser too.
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    // §7: a message, and a whole batch, is at most 256 KB: nothing bigger is read into memory.
    const telemetryOptions = { bodyLimit: Math.max(Limits.telemetryMessageMaxBytes, Limits.telemetryBatchMaxBytes) };
    const telemetry = async (request: FastifyRequest, reply: FastifyReply) => {
      requireApiVersion(request);
      const { id: deviceId, mid: moduleId } = request.params as DeviceParams;
      const identity = await authenticateDeviceRequest(core, request, deviceId, moduleId);
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const messages: DeviceTelemetryMessage[] = isBatch(request)
        ? telemetryFromBatch(body)
        : [telemetryFromHeaders(request.raw.rawHeaders, body)];
      await core.telemetry.ingest(messages.map((message) => telemetryInput(identity, message)));
      touch(core, request, deviceId, moduleId);
      return reply.code(204).send();
    };
    scope.post('/devices/:id/messages/events', telemetryOptions, telemetry);
    scope.post('/devices/:id/modules/:mid/messages/events', telemetryOptions, telemetry);

    for (const path of cloudToDevicePaths) {
      // No automatic HEAD route: a HEAD would lock (and count a delivery of) a message nobody reads.
      scope.get(path, { exposeHeadRoute: false }, async (request, reply) => {
        requireApiVersion(request);
        const { id: deviceId } = request.params as DeviceParams;
        await authenticateDeviceRequest(core, request, deviceId);
        const delivery = await core.cloudToDevice.receive(deviceId);
        touch(core, request, deviceId, undefined);
        if (!delivery) return reply.code(204).send();
        const { body } = delivery.message;
        reply.code(200).headers(cloudToDeviceHeaders(delivery)).header('content-type', 'application/octet-stream');
        return reply.send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
      });

      scope.delete(`${path}/:lockToken`, async (request, reply) => {
        const { deviceId, lockToken } = await settlementOf(core, request);
        const query = request.query as Record<string, unknown>;
        // `&reject` without a value (the Node SDK) or with any value rejects.
        if (Object.hasOwn(query, 'reject')) await core.cloudToDevice.reject(deviceId, lockToken);
        else await core.cloudToDevice.complete(deviceId, lockToken);
        return reply.code(204).send();
      });

      scope.post(`${path}/:lockToken/abandon`, async (request, reply) => {
        const { deviceId, lockToken } = await settlementOf(core, request);
        await core.cloudToDevice.abandon(deviceId, lockToken);
        return reply.code(204).send();
      });
    }
  });
}

/** Whether the request is a batch (§4.1), whatever the parameters and case of its Content-Type. */
function isBatch(request: FastifyRequest): boolean {
  const type = request.headers['content-type'];
  return typeof type === 'string' && type.split(';')[0]?.trim().toLowerCase() === telemetryBatchContentType;
}

/**
 * Checks a settlement request: api-version, the device's credentials, and `If-Match` against the path's token.
 * @throws HubError PreconditionFailed (412001) when `If-Match` names another lock token.
 */
async function settlementOf(core: HubCore, request: FastifyRequest): Promise<{ deviceId: string; lockToken: string }> {
  requireApiVersion(request);
  const { id: deviceId, lockToken: rawToken = '' } = request.params as DeviceParams;
  await authenticateDeviceRequest(core, request, deviceId);
  const lockToken = rawToken.replace(/^"(.*)"$/, '$1');
  const ifMatch = parseIfMatch(request.headers['if-match']);
  if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== lockToken) {
    throw new HubError(
      'PreconditionFailed',
      `If-Match '${ifMatch.slice(0, 64)}' does not name lock token '${lockToken}'`,
    );
  }
  return { deviceId, lockToken };
}

/** Records the identity's activity (lastActivityTime); a failed write only costs that timestamp. */
function touch(core: HubCore, request: FastifyRequest, deviceId: string, moduleId: string | undefined): void {
  core.registry
    .touchActivity(deviceId, moduleId)
    .catch((error: unknown) => request.log.debug({ err: error }, 'activity update failed'));
}
