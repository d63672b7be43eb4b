/**
 * Service links of the AMQP head (protocol-service.md §3): `/messages/devicebound` (cloud-to-device send),
 * `/messages/serviceBound/feedback` and `/messages/serviceBound/filenotifications`. Each needs a shared access
 * policy with ServiceConnect on the connection.
 */
import type { LinkRoute } from '../contract';
import { cloudToDeviceSendRoute } from './cloud-to-device-send';
import { feedbackRoute } from './feedback';
import { fileNotificationsRoute } from './file-notifications';

export { type CloudToDeviceSendMatch, cloudToDeviceSendRoute } from './cloud-to-device-send';
export { type FeedbackMatch, feedbackContentType, feedbackRoute } from './feedback';
export { type FileNotificationsMatch, fileNotificationsRoute } from './file-notifications';

/** The routes of the service links, in match order (their addresses do not overlap). */
export function serviceLinkRoutes(): LinkRoute[] {
  return [cloudToDeviceSendRoute(), feedbackRoute(), fileNotificationsRoute()] as LinkRoute[];
}
