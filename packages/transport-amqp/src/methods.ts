/**
 * Direct-method requests and responses on the method links (protocol-device.md §3.6): a request carries the
 * request id as its `correlation_id` (an AMQP uuid from IoT Hub) and `IoThub-methodname`; the response echoes the
 * `correlation_id` exactly as it came, with `IoThub-status` as an AMQP int.
 */
import type { IncomingMethodRequest } from '@fieldhub/device-core/transport';
import { type Message, types } from 'rhea-promise';
import { bodyBytes, dataBody, decodeJson, idString } from './messages';

/** A received method request, and the `correlation_id` to answer it with, as it came. */
export interface ReceivedMethodRequest {
  readonly request: IncomingMethodRequest;
  readonly correlationId: NonNullable<Message['correlation_id']>;
}

/**
 * Reads a method request: the request id is the `correlation_id` as a string (a uuid in its canonical form), the
 * payload the JSON body (`null` when empty; the text when it is not JSON, rather than dropping a request the
 * service waits for). `undefined` without a correlation id or method name: nothing could answer it.
 */
export function readMethodRequest(message: Message): ReceivedMethodRequest | undefined {
  const requestId = idString(message.correlation_id);
  const methodName = message.application_properties?.['IoThub-methodname'];
  if (requestId === undefined || message.correlation_id === undefined || typeof methodName !== 'string') {
    return undefined;
  }
  const body = bodyBytes(message.body);
  let payload: unknown;
  try {
    payload = decodeJson(body);
  } catch {
    payload = new TextDecoder().decode(body);
  }
  return { request: { requestId, methodName, payload }, correlationId: message.correlation_id };
}

/** The response: the request's `correlation_id`, `IoThub-status` as an AMQP int, the JSON in one data section. */
export function methodResponse(
  correlationId: NonNullable<Message['correlation_id']>,
  status: number,
  json: string,
): Message {
  return {
    correlation_id: correlationId,
    application_properties: { 'IoThub-status': types.wrap_int(status) },
    body: dataBody(json),
  };
}
