/**
 * An event of the built-in endpoint as an Event Hubs AMQP message (protocol-service.md §4.3): the body as one
 * data section; `message_id`, `correlation_id`, `user_id`, `content_type`, `content_encoding` as the device sent
 * them; application properties as sent; message annotations `iothub-*` (and whatever else the hub's events carry,
 * e.g. `dt-dataschema`) plus Event Hubs' `x-opt-sequence-number` (long), `x-opt-offset` (string) and
 * `x-opt-enqueued-time` (timestamp). `iothub-enqueuedtime` is a timestamp too, as Azure sends it.
 *
 * With the receiver runtime metric (`com.microsoft:enable-receiver-runtime-metric`), every delivery carries the
 * partition's last enqueued event in its delivery annotations (`last_enqueued_sequence_number`,
 * `last_enqueued_offset`, `last_enqueued_time_utc`, `runtime_info_retrieval_time_utc`), which `@azure/event-hubs`
 * reads into `lastEnqueuedEventProperties` (`eventData.js`).
 */
import type { Message } from 'rhea';
import rhea from 'rhea';
import { type EndpointEvent, SystemPropertyNames } from '../../../core/telemetry';

/** System properties that travel as AMQP message properties, not as annotations. */
const propertyNames: ReadonlySet<string> = new Set([
  SystemPropertyNames.messageId,
  SystemPropertyNames.correlationId,
  SystemPropertyNames.userId,
  SystemPropertyNames.contentType,
  SystemPropertyNames.contentEncoding,
]);

/** Annotations whose stored value (ms since epoch) goes on the wire as an AMQP timestamp. */
const timestampNames: ReadonlySet<string> = new Set([
  SystemPropertyNames.enqueuedTime,
  SystemPropertyNames.eventHubsEnqueuedTime,
]);

/** The partition's newest event, for the runtime metric's delivery annotations. */
export interface LastEnqueued {
  readonly sequenceNumber: number;
  readonly offset: string;
  /** ms since epoch; 0 when the partition never held an event. */
  readonly enqueuedTime: number;
  /** When this was read (ms since epoch). */
  readonly retrievedAt: number;
}

/** The AMQP message of one endpoint event; `lastEnqueued` adds the runtime metric's delivery annotations. */
export function toEventHubsMessage(event: EndpointEvent, lastEnqueued?: LastEnqueued): Message {
  const annotations: Record<string, unknown> = {};
  const system = event.systemProperties;
  for (const name in system) {
    if (propertyNames.has(name)) continue;
    const value = system[name] as string | number | boolean;
    annotations[name] =
      timestampNames.has(name) && typeof value === 'number' ? rhea.types.wrap_timestamp(value) : value;
  }
  // Always the event's own position, whatever the stored map holds.
  annotations[SystemPropertyNames.sequenceNumber] = rhea.types.wrap_long(event.sequenceNumber);
  annotations[SystemPropertyNames.offset] = event.offset;
  annotations[SystemPropertyNames.eventHubsEnqueuedTime] = rhea.types.wrap_timestamp(event.enqueuedTime);
  const message: Message = {
    body: rhea.message.data_section(Buffer.from(event.body.buffer, event.body.byteOffset, event.body.byteLength)),
    message_annotations: annotations,
    application_properties: { ...event.properties },
  };
  if (event.messageId !== undefined) message.message_id = event.messageId;
  if (event.correlationId !== undefined) message.correlation_id = event.correlationId;
  if (event.userId !== undefined) message.user_id = Buffer.from(event.userId, 'utf8') as unknown as string;
  if (event.contentType !== undefined) message.content_type = event.contentType;
  if (event.contentEncoding !== undefined) message.content_encoding = event.contentEncoding;
  if (lastEnqueued) {
    message.delivery_annotations = {
      last_enqueued_sequence_number: rhea.types.wrap_long(lastEnqueued.sequenceNumber),
      last_enqueued_offset: lastEnqueued.offset,
      last_enqueued_time_utc: rhea.types.wrap_timestamp(lastEnqueued.enqueuedTime),
      runtime_info_retrieval_time_utc: rhea.types.wrap_timestamp(lastEnqueued.retrievedAt),
    };
  }
  return message;
}
