/**
 * Which topics a device session may publish on and subscribe to (protocol-device.md §2.4, §2.9). Pure: the
 * session closes the connection on `refused`, as IoT Hub does ("MQTT terminates the connection").
 */
import { HubError, type MessageSystemProperties, parseDeviceTopic, parseTopicFilter } from '@fieldhub/protocol';

/** The identity a session authenticated as. */
export interface SessionIds {
  readonly deviceId: string;
  readonly moduleId?: string | undefined;
}

/** What a PUBLISH from the device asks for. */
export type PublishRoute =
  | {
      readonly kind: 'telemetry';
      readonly properties: Record<string, string>;
      readonly systemProperties: MessageSystemProperties;
    }
  | { readonly kind: 'twinGet'; readonly rid: string }
  | { readonly kind: 'twinReportedPatch'; readonly rid: string }
  | { readonly kind: 'methodResponse'; readonly status: number; readonly rid: string }
  | { readonly kind: 'refused'; readonly reason: string };

/** What a SUBSCRIBE topic filter asks for. */
export type SubscriptionRoute =
  | { readonly kind: 'cloudToDevice' }
  | { readonly kind: 'moduleInputs' }
  | { readonly kind: 'twinResponses' }
  | { readonly kind: 'desiredProperties' }
  | { readonly kind: 'methods' }
  /** Answered with SUBACK failure (0x80), the connection stays: a module asking for cloud-to-device messages. */
  | { readonly kind: 'failure'; readonly reason: string }
  | { readonly kind: 'refused'; readonly reason: string };

function ownsTelemetry(ids: SessionIds, deviceId: string, moduleId: string | undefined): boolean {
  return deviceId === ids.deviceId && moduleId === ids.moduleId;
}

/**
 * Routes a topic the device published on. Its own telemetry topic (device or module, exactly its identity),
 * twin GET, reported patch and method responses are allowed; anything else (another identity's topic, a topic
 * the hub publishes on, an unknown or malformed topic) is refused.
 */
export function routePublish(topic: string, ids: SessionIds): PublishRoute {
  let parsed: ReturnType<typeof parseDeviceTopic>;
  try {
    parsed = parseDeviceTopic(topic);
  } catch (error) {
    return { kind: 'refused', reason: `malformed topic: ${HubError.is(error) ? error.message : String(error)}` };
  }
  switch (parsed.kind) {
    case 'telemetry':
      if (!ownsTelemetry(ids, parsed.deviceId, parsed.moduleId)) {
        return { kind: 'refused', reason: 'telemetry topic of another identity' };
      }
      return { kind: 'telemetry', properties: parsed.properties, systemProperties: parsed.systemProperties };
    case 'twinGet':
      return { kind: 'twinGet', rid: parsed.rid };
    case 'twinReportedPatch':
      return { kind: 'twinReportedPatch', rid: parsed.rid };
    case 'methodResponse':
      return { kind: 'methodResponse', status: parsed.status, rid: parsed.rid };
    default:
      return { kind: 'refused', reason: `a device may not publish on '${parsed.kind}' topics` };
  }
}

/**
 * Routes a SUBSCRIBE topic filter: the documented filters of the session's own identity. Cloud-to-device
 * messages are per device (IoT Hub has none for modules), so a module asking for them gets a SUBACK failure;
 * another identity's filter or an unknown filter is refused.
 */
export function routeSubscription(filter: string, ids: SessionIds): SubscriptionRoute {
  let parsed: ReturnType<typeof parseTopicFilter>;
  try {
    parsed = parseTopicFilter(filter);
  } catch (error) {
    return { kind: 'refused', reason: `malformed filter: ${HubError.is(error) ? error.message : String(error)}` };
  }
  switch (parsed.kind) {
    case 'cloudToDevice':
      if (parsed.deviceId !== ids.deviceId) return { kind: 'refused', reason: 'filter of another device' };
      if (ids.moduleId !== undefined) return { kind: 'failure', reason: 'modules receive no cloud-to-device messages' };
      return { kind: 'cloudToDevice' };
    case 'moduleInputs':
      if (parsed.deviceId !== ids.deviceId || parsed.moduleId !== ids.moduleId) {
        return { kind: 'refused', reason: 'filter of another identity' };
      }
      return { kind: 'moduleInputs' };
    case 'twinResponses':
    case 'desiredProperties':
    case 'methods':
      return { kind: parsed.kind };
    default:
      return { kind: 'refused', reason: `unsupported topic filter '${filter}'` };
  }
}
