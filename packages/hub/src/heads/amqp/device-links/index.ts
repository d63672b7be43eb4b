/**
 * Device and module links of the AMQP head (protocol-device.md §3.3-3.7): telemetry, cloud-to-device, twin and
 * direct methods.
 */
export { ConnectedIdentities } from './connected-identities';
export { deviceLinkRoutes } from './device-link-routes';
