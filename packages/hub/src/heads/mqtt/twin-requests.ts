/**
 * Twin requests over MQTT (protocol-device.md §2.6): GET answers `$iothub/twin/res/200/?$rid=` with
 * `{ desired, reported }`; a reported patch answers `res/204/?$rid=..&$version=<new reported version>`; errors
 * answer `res/<status>/?$rid=` with `{ errorCode, message }` (Node looks at `errorCode` in the body). Responses
 * go out only while the device is subscribed to `$iothub/twin/res/#` (a server must not publish on topics the
 * client has not subscribed to).
 */
import { HubError, twinResponseTopic } from '@fieldhub/protocol';
import type { MqttSession } from './session';

const emptyPayload = Buffer.alloc(0);

function respond(session: MqttSession, status: number, rid: string, payload: Buffer | string, version?: number): void {
  if (!session.twinResponses) {
    session.logger.debug({ ...session.describe(), rid }, 'twin request without a $iothub/twin/res/# subscription');
    return;
  }
  let topic: string;
  try {
    topic = twinResponseTopic(version === undefined ? { status, rid } : { status, rid, version });
  } catch {
    // A `$rid` that cannot be echoed safely (§2.4 builders refuse it): the device cannot match an answer anyway.
    session.logger.debug({ ...session.describe() }, 'twin request with an unusable $rid');
    return;
  }
  session.publish(topic, payload);
}

function respondWithError(session: MqttSession, rid: string, error: unknown): void {
  const hubError = HubError.is(error)
    ? error
    : new HubError('ServerError', 'An internal error occurred', { cause: error });
  if (hubError.status >= 500) session.logger.error({ err: error, ...session.describe() }, 'twin request failed');
  const body = JSON.stringify({ errorCode: hubError.hubCode, message: hubError.message });
  respond(session, hubError.status, rid, body);
}

/** `$iothub/twin/GET/?$rid=`: the body is ignored (Node sends a single space). */
export function handleTwinGet(session: MqttSession, rid: string): void {
  const identity = session.identity;
  if (!identity) return;
  session.core.twins.getForDevice(identity.deviceId, identity.moduleId).then(
    (twin) => respond(session, 200, rid, JSON.stringify(twin)),
    (error: unknown) => respondWithError(session, rid, error),
  );
}

/** `$iothub/twin/PATCH/properties/reported/?$rid=`: body = the JSON patch. */
export function handleReportedPatch(session: MqttSession, rid: string, payload: Buffer): void {
  const identity = session.identity;
  if (!identity) return;
  let patch: unknown;
  try {
    patch = JSON.parse(payload.toString('utf8'));
  } catch (error) {
    respondWithError(
      session,
      rid,
      new HubError('IotHubFormatError', 'The reported properties are not valid JSON', { cause: error }),
    );
    return;
  }
  session.core.twins.updateReported(identity.deviceId, identity.moduleId, patch).then(
    ({ version }) => respond(session, 204, rid, emptyPayload, version),
    (error: unknown) => respondWithError(session, rid, error),
  );
  session.core.registry
    .touchActivity(identity.deviceId, identity.moduleId)
    .catch((error: unknown) => session.logger.debug({ err: error }, 'activity update failed'));
}
