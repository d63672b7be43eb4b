/** Telemetry (device to cloud): the public message shape and its conversion to the transport's. */
import { utf8Encode } from '@fieldhub/protocol';
import type { ConnectionManager } from './connection-manager';
import { ArgumentError } from './errors';
import type { OperationOptions, OutgoingMessage } from './transport/transport';

/** A JSON value (a telemetry body given as an object or array is sent as JSON). */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** A telemetry message as applications write it. */
export interface TelemetryMessage {
  /**
   * Bytes are sent as they are and a string as UTF-8; an object or array is sent as JSON, with `contentType`
   * `application/json` and `contentEncoding` `utf-8` unless given (so that hub routing can read the body).
   */
  readonly body: Uint8Array | string | { readonly [key: string]: JsonValue } | readonly JsonValue[];
  /** Application properties (routing and filtering on the hub). */
  readonly properties?: Readonly<Record<string, string>>;
  readonly messageId?: string;
  readonly correlationId?: string;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly userId?: string;
  /** Absolute expiry, ISO 8601. */
  readonly expiryTimeUtc?: string;
}

/**
 * Converts an application message to the transport's shape.
 *
 * @throws ArgumentError when the message or its body is missing, or a property value is not a string.
 */
export function toOutgoingMessage(message: TelemetryMessage): OutgoingMessage {
  if (message === null || typeof message !== 'object' || message.body === undefined || message.body === null) {
    throw new ArgumentError('a telemetry message needs a body', { field: 'body' });
  }
  const { body } = message;
  let bytes: Uint8Array;
  let json = false;
  if (body instanceof Uint8Array) bytes = body;
  else if (typeof body === 'string') bytes = utf8Encode(body);
  else {
    bytes = utf8Encode(JSON.stringify(body));
    json = true;
  }
  if (message.properties !== undefined) {
    for (const [name, value] of Object.entries(message.properties)) {
      if (typeof value !== 'string') {
        throw new ArgumentError(`property '${name}' must be a string`, { field: `properties.${name}` });
      }
    }
  }
  const contentType = message.contentType ?? (json ? 'application/json' : undefined);
  const contentEncoding = message.contentEncoding ?? (json ? 'utf-8' : undefined);
  return {
    body: bytes,
    ...(message.properties !== undefined ? { properties: message.properties } : {}),
    ...(message.messageId !== undefined ? { messageId: message.messageId } : {}),
    ...(message.correlationId !== undefined ? { correlationId: message.correlationId } : {}),
    ...(contentType !== undefined ? { contentType } : {}),
    ...(contentEncoding !== undefined ? { contentEncoding } : {}),
    ...(message.userId !== undefined ? { userId: message.userId } : {}),
    ...(message.expiryTimeUtc !== undefined ? { expiryTimeUtc: message.expiryTimeUtc } : {}),
  };
}

/** The telemetry feature: one message or a batch, through the connection manager's offline queue. */
export class Telemetry {
  readonly #manager: ConnectionManager;

  constructor(manager: ConnectionManager) {
    this.#manager = manager;
  }

  /** See `DeviceClient.sendTelemetry`. */
  send(message: TelemetryMessage, options: OperationOptions = {}): Promise<void> {
    let outgoing: OutgoingMessage;
    try {
      outgoing = toOutgoingMessage(message);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#manager.sendTelemetry([outgoing], options);
  }

  /** See `DeviceClient.sendTelemetryBatch`. */
  sendBatch(messages: readonly TelemetryMessage[], options: OperationOptions = {}): Promise<void> {
    let outgoing: OutgoingMessage[];
    try {
      if (!Array.isArray(messages)) throw new ArgumentError('messages must be an array', { field: 'messages' });
      outgoing = messages.map(toOutgoingMessage);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#manager.sendTelemetry(outgoing, { ...options, batch: true });
  }
}
