/**
 * Twin requests and what the twin receiver gets (protocol-device.md §3.5): requests carry the `operation` and
 * `resource` annotations and a UUID-string `correlation_id`; responses echo it with `status` (int) and `version`
 * (long) annotations; desired-property pushes come without a correlation id.
 */
import type { TwinProperties } from '@fieldhub/device-core/transport';
import { HubError } from '@fieldhub/protocol';
import type { Message } from 'rhea-promise';
import { bodyBytes, dataBody, decodeJson, idString, isRecord, numberOf } from './messages';

/** Twin request operations. */
export type TwinOperation = 'GET' | 'PATCH' | 'PUT' | 'DELETE';

/** The resources twin requests name. PUT / DELETE on `desiredNotifications` subscribe / unsubscribe. */
export const TwinResources = {
  reported: '/properties/reported',
  desiredNotifications: '/notifications/twin/properties/desired',
} as const;

/** A twin request; GET, PUT and DELETE carry the one-space body the Node SDK sends. */
export function twinRequest(
  correlationId: string,
  operation: TwinOperation,
  resource: string | undefined,
  body = ' ',
): Message {
  return {
    correlation_id: correlationId,
    message_annotations: { operation, ...(resource === undefined ? {} : { resource }) },
    body: dataBody(body),
  };
}

/** What arrived on the twin receiver. */
export type TwinMessage =
  | {
      readonly kind: 'response';
      readonly correlationId: string;
      readonly status: number;
      readonly version: number | undefined;
      readonly body: Uint8Array;
    }
  | { readonly kind: 'desired'; readonly patch: Record<string, unknown>; readonly version: number };

/**
 * Reads a twin response (it has a `correlation_id`; a missing `status` counts as 200) or a desired-properties push
 * (none: the body is the patch, its version the `version` annotation or the body's `$version`, which is dropped
 * from the patch). `undefined` for a push that is no JSON object or has no version: the Node SDK drops those too.
 */
export function readTwinMessage(message: Message): TwinMessage | undefined {
  const annotations = message.message_annotations ?? {};
  const version = numberOf(annotations.version);
  const body = bodyBytes(message.body);
  const correlationId = idString(message.correlation_id);
  if (correlationId !== undefined) {
    return { kind: 'response', correlationId, status: numberOf(annotations.status) ?? 200, version, body };
  }
  let patch: unknown;
  try {
    patch = decodeJson(body);
  } catch {
    return undefined;
  }
  if (!isRecord(patch)) return undefined;
  const { $version, ...rest } = patch;
  const pushed = version ?? numberOf($version);
  return pushed === undefined ? undefined : { kind: 'desired', patch: rest, version: pushed };
}

function twinSection(value: unknown): (Record<string, unknown> & { $version: number }) | undefined {
  return isRecord(value) && typeof value.$version === 'number'
    ? (value as Record<string, unknown> & { $version: number })
    : undefined;
}

/**
 * The twin of a GET response body: `{"desired":{...},"reported":{...}}`, each with its `$version`.
 *
 * @throws HubError `ServerError` when the body is not JSON or lacks a section or its `$version`.
 */
export function twinProperties(body: Uint8Array): TwinProperties {
  let parsed: unknown;
  try {
    parsed = decodeJson(body);
  } catch (error) {
    throw new HubError('ServerError', 'the twin the hub sent is not JSON', { cause: error });
  }
  const desired = isRecord(parsed) ? twinSection(parsed.desired) : undefined;
  const reported = isRecord(parsed) ? twinSection(parsed.reported) : undefined;
  if (desired === undefined || reported === undefined) {
    throw new HubError('ServerError', 'the twin the hub sent lacks desired or reported properties with $version');
  }
  return { desired, reported };
}
