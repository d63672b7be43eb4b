/**
 * Service links of the AMQP head (protocol-service.md §3): `/messages/devicebound` (cloud-to-device send),
 * `/messages/serviceBound/feedback` and `/messages/serviceBound/filenotifications`.
 */
import type { LinkRoute } from '../contract';

/** The routes of the service links, in match order. */
export function serviceLinkRoutes(): LinkRoute[] {
  return [];
}
