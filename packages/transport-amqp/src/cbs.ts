/**
 * CBS put-token, the way IoT Hub authenticates an AMQP connection (protocol-device.md §3.2): a request on the
 * `$cbs` sender and its answer on the `$cbs` receiver, matched by `correlation_id` = the request's `message_id`.
 */
import type { HubError } from '@fieldhub/protocol';
import type { Message } from 'rhea-promise';
import { cbsStatusError } from './amqp-error';
import { numberOf } from './messages';

/** The address of both CBS links. */
export const cbsAddress = '$cbs';

/** The token type as the Node SDK sends it (.NET sends `azure-devices.net:sastoken`; the hub takes both). */
export const cbsTokenType = 'servicebus.windows.net:sastoken';

/**
 * The put-token request: `message_id` a UUID string (not an AMQP uuid), `to` `$cbs`, `reply_to` `cbs`, the
 * `operation`/`type`/`name` application properties with the audience as `name`, and the token as an AMQP string
 * value (captures/amqp-amqp.txt: `body_type=string`).
 */
export function putTokenRequest(messageId: string, token: string, audience: string): Message {
  return {
    message_id: messageId,
    to: cbsAddress,
    reply_to: 'cbs',
    application_properties: { operation: 'put-token', type: cbsTokenType, name: audience },
    body: token,
  };
}

/**
 * What a put-token answer says: `undefined` when the hub took the token (`status-code` 200, or 202 as some CBS
 * implementations answer), else the error (see `cbsStatusError`).
 */
export function putTokenOutcome(response: Message): HubError | undefined {
  const properties = response.application_properties ?? {};
  const status = numberOf(properties['status-code']);
  if (status === 200 || status === 202) return undefined;
  const description = properties['status-description'];
  return cbsStatusError(status, typeof description === 'string' ? description : undefined);
}
