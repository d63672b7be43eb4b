/** Verbatim DPS bodies from /work/shared/reference/captures/dps.txt. */

/** Register request body the device sent (MQTT and HTTPS). */
export const registerRequestBody = '{"registrationId":"demo-dps-dev1"}';

/** 202 answer while assigning. */
export const assigningBody = '{"operationId":"op-1","status":"assigning"}';

/** 200 answer once assigned (MQTT). */
export const assignedBody =
  '{"operationId":"op-1","status":"assigned","registrationState":{"registrationId":"demo-dps-dev1","createdDateTimeUtc":"2026-11-27T10:24:21.237Z","assignedHub":"localhost","deviceId":"demo-dps-dev1","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2026-11-27T10:24:21.237Z","etag":"\\"1\\""}}';

/** Body of the status poll: Node sends `" "` over MQTT and `{}` over HTTPS. */
export const pollBodies = { mqtt: ' ', https: '{}' } as const;
