/**
 * The built-in endpoint as Event Hubs speaks it (protocol-service.md §4): `$management` and partition receivers.
 */
export { eventHubsRoutes } from './event-hubs-routes';
