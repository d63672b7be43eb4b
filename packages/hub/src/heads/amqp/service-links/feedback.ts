/**
 * `/messages/serviceBound/feedback`: cloud-to-device feedback for the service (protocol-service.md §3.3;
 * captures/service-amqp.txt). The peer attaches a receiver with source `/messages/serviceBound/feedback` (matched
 * case-insensitively; the HTTP docs spell it `servicebound`). Each AMQP message is one batch the core locked with
 * `receiveFeedback` (up to 64 records), as Azure sends it:
 * - `content_type` `application/vnd.microsoft.iothub.feedback.json`, `user_id` the hub name, `message_id` and the
 *   16-byte delivery tag the batch's lock token, application property `iothub-interface-name: feedback`;
 * - body: one data section, the JSON array of records (`originalMessageId`, `enqueuedTimeUtc`, `statusCode`,
 *   `description`, `deviceId`, `deviceGenerationId`).
 * The link (`locked-queue-link.ts`) sends no more than the peer's credit and keeps each batch unsettled until the
 * client disposes: `accepted` completes it, `released` / `modified` abandon it (the records are delivered again),
 * `rejected` dead-letters it (completes: Azure's feedback has no dead-letter queue a service could read).
 *
 * Decisions where the reference is silent:
 * - A batch is sent as soon as a record waits (Azure waits up to 15 s to fill a batch); records that accumulate
 *   while the link has no credit or is busy go out together.
 * - The link wakes on the core's `c2d-feedback` bus notice (a settlement wrote records, an abandon returned some)
 *   and, for locks that lapsed elsewhere (a receiver that vanished without settling, a restart), every 15 s.
 * - When the link closes, a batch the client accepted or rejected (also in the same read as its detach) is
 *   completed and the other unsettled batches are abandoned at once instead of waiting for their locks to lapse.
 * - A peer that asks for pre-settled deliveries (`snd-settle-mode` settled) gets at-most-once: the batch is completed
 *   when sent.
 */
// rhea is CommonJS: its values come through the default import (Node's ESM loader finds no named exports).
import rhea, { type Message, type Sender } from 'rhea';
import { cloudToDeviceFeedbackSubject, type FeedbackBatch } from '../../../core/cloud-to-device';
import type { AmqpConnectionContext, LinkRoute } from '../contract';
import { type LockedQueue, openLockedQueueLink } from './locked-queue-link';
import { authorizeServiceConnect } from './service-errors';

/** What `match` returns for the feedback address. */
export interface FeedbackMatch {
  readonly address: string;
}

/** Azure's content type of feedback batches (§3.3). */
export const feedbackContentType = 'application/vnd.microsoft.iothub.feedback.json';

const addressPattern = /^\/messages\/servicebound\/feedback\/?$/i;

/** The AMQP message of one feedback batch. */
export function feedbackMessage(batch: FeedbackBatch, hubName: string): Message {
  return {
    message_id: batch.lockToken,
    // rhea encodes the string as AMQP binary (UTF-8), the field's type.
    user_id: hubName,
    content_type: feedbackContentType,
    application_properties: { 'iothub-interface-name': 'feedback' },
    body: rhea.message.data_section(Buffer.from(JSON.stringify(batch.records), 'utf8')),
  };
}

/** The route of `/messages/serviceBound/feedback` (the hub sends). */
export function feedbackRoute(): LinkRoute<FeedbackMatch> {
  return {
    name: 'service-feedback',
    direction: 'send',
    match: (address) => (addressPattern.test(address) ? { address } : undefined),
    authorize: async (context) => authorizeServiceConnect(context),
    open: (link, _match, context) => openLockedQueueLink(link as Sender, context, feedbackQueue(context)),
  };
}

/** The core's feedback batches as the link sends them. */
function feedbackQueue(context: AmqpConnectionContext): LockedQueue<FeedbackBatch> {
  const { cloudToDevice, context: core } = context.core;
  return {
    itemName: 'feedback batch',
    subject: cloudToDeviceFeedbackSubject,
    receive: () => cloudToDevice.receiveFeedback(),
    lockToken: (batch) => batch.lockToken,
    message: (batch) => feedbackMessage(batch, core.hubName),
    describe: (batch) => ({ records: batch.records.length }),
    settle: (lockToken, settlement) =>
      settlement === 'complete' ? cloudToDevice.completeFeedback(lockToken) : cloudToDevice.abandonFeedback(lockToken),
  };
}
