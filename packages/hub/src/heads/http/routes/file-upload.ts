/**
 * File upload, device side (protocol-device.md §4.3; captures/http.txt). Routes only translate to
 * `core.fileUploads`; the device authenticates each request (`Authorization` SAS or its TLS client certificate).
 *
 * - `POST /devices/:id/files` `{"blobName":"<name>"}` -> 200 `{ correlationId, hostName, containerName,
 *   blobName: "<deviceId>/<name>", sasToken: "?sv=..." }`; 400004 for a missing or bad blob name, 403006
 *   DeviceMaximumActiveFileUploadLimitExceeded at 10 active uploads.
 * - `POST /devices/:id/files/notifications` `{"correlationId","isSuccess","statusCode","statusDescription"}` and the
 *   Node SDK's form `POST /devices/:id/files/notifications/:correlationId` (body without `correlationId`, header
 *   `iothub-name`) -> 204; 400015 InvalidFileUploadCorrelationId, 400016 ExpiredFileUploadCorrelationId, 400019
 *   InvalidFileUploadCompletionStatus.
 * - Modules cannot upload files (Azure): `/devices/:id/modules/:mid/files[...]` -> 400004.
 */
import { ArgumentError } from '@fieldhub/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import { requireApiVersion } from '../api-version';
import { authenticateDeviceRequest } from '../device-auth';
import { sendJson } from './registry';

/** Registers the device's file upload routes. */
export function registerFileUploadRoutes(app: FastifyInstance, core: HubCore): void {
  app.post('/devices/:id/files', async (request, reply) => {
    requireApiVersion(request);
    const deviceId = deviceIdOf(request);
    await authenticateDeviceRequest(core, request, deviceId);
    const body = bodyOf(request);
    return sendJson(reply, 200, await core.fileUploads.createUpload(deviceId, body.blobName));
  });

  app.post('/devices/:id/files/notifications', async (request, reply) => {
    requireApiVersion(request);
    const deviceId = deviceIdOf(request);
    await authenticateDeviceRequest(core, request, deviceId);
    const body = bodyOf(request);
    await core.fileUploads.completeUpload(deviceId, body.correlationId, body);
    return reply.code(204).send();
  });

  app.post('/devices/:id/files/notifications/:correlationId', async (request, reply) => {
    requireApiVersion(request);
    const deviceId = deviceIdOf(request);
    await authenticateDeviceRequest(core, request, deviceId);
    const { correlationId } = request.params as { correlationId: string };
    await core.fileUploads.completeUpload(deviceId, correlationId, bodyOf(request));
    return reply.code(204).send();
  });

  const refuseModule = async (request: FastifyRequest) => {
    requireApiVersion(request);
    throw new ArgumentError('Modules cannot upload files: file upload is for devices only', { field: 'moduleId' });
  };
  app.post('/devices/:id/modules/:mid/files', refuseModule);
  app.post('/devices/:id/modules/:mid/files/notifications', refuseModule);
  app.post('/devices/:id/modules/:mid/files/notifications/:correlationId', refuseModule);
}

function deviceIdOf(request: FastifyRequest): string {
  return (request.params as { id: string }).id;
}

/** The JSON body as an object (an absent or non-object body reads as `{}`: the core names what is missing). */
function bodyOf(request: FastifyRequest): Record<string, unknown> {
  const body = request.body;
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body) || Buffer.isBuffer(body)) {
    throw new ArgumentError('The request body must be a JSON object', { field: 'body' });
  }
  return body as Record<string, unknown>;
}
