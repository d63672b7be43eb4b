/**
 * The built-in endpoint as Event Hubs speaks it (protocol-service.md §4): `$management` and partition receivers.
 */
import type { LinkRoute } from '../contract';

/** The routes of the Event Hubs-compatible endpoint, in match order. */
export function eventHubsRoutes(): LinkRoute[] {
  return [];
}
