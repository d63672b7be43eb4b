/**
 * `/messages/serviceBound/filenotifications`: file-upload notifications for the service (protocol-service.md §3.4,
 * §8). The `azure-iothub` SDK attaches a receiver with exactly that source; Azure's docs spell it
 * `/messages/servicebound/fileuploadnotifications`; both are accepted, case-insensitively.
 *
 * Each AMQP message carries one notification the core locked with `receiveNotification`, as `feedback.ts` sends
 * feedback batches:
 * - `content_type` `application/vnd.microsoft.iothub.filenotification.json`, `user_id` the hub name, `message_id`
 *   and the 16-byte delivery tag the notification's lock token, application property
 *   `iothub-interface-name: filenotifications`;
 * - body: one data section, the JSON record (`deviceId`, `blobUri`, `blobName`, `lastUpdatedTime`,
 *   `blobSizeInBytes`, `enqueuedTimeUtc`); `azure-iothub` consumers parse it with `JSON.parse(msg.getData())`.
 * The link (`locked-queue-link.ts`, shared with feedback) sends no more than the peer's credit; the client's
 * disposition settles each notification: `accepted` completes, `released` / `modified` abandon (delivered again, with
 * the delivery count up to `notificationMaxDeliveryCount`), `rejected` dead-letters (completes: there is no queue a
 * service could read dead letters from).
 *
 * Decisions where the reference is silent (as for feedback): the link wakes on the core's `file-notifications` bus
 * notice and every 15 s (locks that lapsed elsewhere); a closing link completes what the client accepted or rejected
 * (also in the same read as its detach) and abandons the rest of what it holds unsettled; a peer asking for
 * pre-settled deliveries gets at-most-once.
 */
// rhea is CommonJS: its values come through the default import (Node's ESM loader finds no named exports).
import rhea, { type Message, type Sender } from 'rhea';
import { type FileNotificationDelivery, fileNotificationsSubject } from '../../../core/file-uploads';
import type { AmqpConnectionContext, LinkRoute } from '../contract';
import { type LockedQueue, openLockedQueueLink } from './locked-queue-link';
import { authorizeServiceConnect } from './service-errors';

/** What `match` returns for a file-notification address. */
export interface FileNotificationsMatch {
  readonly address: string;
}

/** The content type of file-upload notifications (protocol-service.md §3.4). */
export const fileNotificationContentType = 'application/vnd.microsoft.iothub.filenotification.json';

const addressPattern = /^\/messages\/servicebound\/(?:filenotifications|fileuploadnotifications)\/?$/i;

/** The AMQP message of one notification. */
export function fileNotificationMessage(delivery: FileNotificationDelivery, hubName: string): Message {
  return {
    message_id: delivery.lockToken,
    user_id: hubName,
    content_type: fileNotificationContentType,
    application_properties: { 'iothub-interface-name': 'filenotifications' },
    body: rhea.message.data_section(Buffer.from(JSON.stringify(delivery.notification), 'utf8')),
  };
}

/** The route of `/messages/serviceBound/filenotifications` (the hub sends). */
export function fileNotificationsRoute(): LinkRoute<FileNotificationsMatch> {
  return {
    name: 'service-file-notifications',
    direction: 'send',
    match: (address) => (addressPattern.test(address) ? { address } : undefined),
    authorize: async (context) => authorizeServiceConnect(context),
    open: (link, _match, context) => openLockedQueueLink(link as Sender, context, fileNotificationsQueue(context)),
  };
}

/** The core's file-upload notifications as the link sends them. */
function fileNotificationsQueue(context: AmqpConnectionContext): LockedQueue<FileNotificationDelivery> {
  const { fileUploads, context: core } = context.core;
  return {
    itemName: 'file notification',
    subject: fileNotificationsSubject,
    receive: () => fileUploads.receiveNotification(),
    lockToken: (next) => next.lockToken,
    message: (next) => fileNotificationMessage(next, core.hubName),
    describe: (next) => ({ blobName: next.notification.blobName }),
    settle: (lockToken, settlement) =>
      settlement === 'complete'
        ? fileUploads.completeNotification(lockToken)
        : fileUploads.abandonNotification(lockToken),
  };
}
