/**
 * Device and module links of the AMQP head (protocol-device.md §3.3-3.7): telemetry, cloud-to-device, twin and
 * direct methods.
 */
import type { LinkRoute } from '../contract';

/** The routes of the device links, in match order. */
export function deviceLinkRoutes(): LinkRoute[] {
  return [];
}
