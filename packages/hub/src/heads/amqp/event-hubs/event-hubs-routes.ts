/**
 * The built-in endpoint as Event Hubs speaks it (protocol-service.md §4): `$management` (`management.ts`) and
 * partition receivers (`partition-receivers.ts`), so that `@azure/event-hubs` clients, given the hub's Event
 * Hubs-compatible connection string (`Endpoint=sb://{host}/;...;EntityPath={hubName}`), read telemetry and hub
 * events. The entity path is the hub name; IoT Hub's `/messages/events/...` addresses are accepted too. Azure
 * redirects these links to a separate Event Hubs namespace (`amqp:link:redirect`, §4.1); Fieldhub serves them on
 * its own host instead (option (a) of §4.1), so no redirect is ever sent.
 */
import type { HubCore } from '../../../core/hub-core';
import type { AmqpConnectionContext, LinkRoute } from '../contract';
import { EpochRegistry } from './epochs';
import { managementRoutes } from './management';
import { partitionReceiverRoute } from './partition-receivers';

// One epoch registry per hub core, whichever head (TLS, WebSockets) or route list the link arrived through.
const registries = new WeakMap<HubCore, EpochRegistry>();

function epochsOf(context: AmqpConnectionContext): EpochRegistry {
  let registry = registries.get(context.core);
  if (!registry) {
    registry = new EpochRegistry();
    registries.set(context.core, registry);
  }
  return registry;
}

/** The routes of the Event Hubs-compatible endpoint, in match order. */
export function eventHubsRoutes(): LinkRoute[] {
  return [partitionReceiverRoute(epochsOf), ...managementRoutes()];
}
