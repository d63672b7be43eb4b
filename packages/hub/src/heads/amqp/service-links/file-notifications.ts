/**
 * `/messages/serviceBound/filenotifications`: file-upload notifications for the service (protocol-service.md §3.4,
 * §8). The `azure-iothub` SDK attaches a receiver with exactly that source; Azure's docs spell it
 * `/messages/servicebound/fileuploadnotifications`; both are accepted, case-insensitively.
 *
 * The hub has no file upload yet (issue #9), so the core produces no notifications: the link attaches (so that
 * `client.getFileNotificationReceiver()` succeeds, as against Azure with nothing uploaded) and stays open with
 * nothing to deliver. When file upload lands, this route serves the core's notifications the way `feedback.ts`
 * serves feedback batches (one JSON record per message).
 */
import type { LinkHandle, LinkRoute } from '../contract';
import { authorizeServiceConnect } from './service-errors';

/** What `match` returns for a file-notification address. */
export interface FileNotificationsMatch {
  readonly address: string;
}

const addressPattern = /^\/messages\/servicebound\/(?:filenotifications|fileuploadnotifications)\/?$/i;

/** The route of `/messages/serviceBound/filenotifications` (the hub sends). */
export function fileNotificationsRoute(): LinkRoute<FileNotificationsMatch> {
  return {
    name: 'service-file-notifications',
    direction: 'send',
    match: (address) => (addressPattern.test(address) ? { address } : undefined),
    authorize: async (context) => authorizeServiceConnect(context),
    open: (): LinkHandle => ({ close() {} }),
  };
}
