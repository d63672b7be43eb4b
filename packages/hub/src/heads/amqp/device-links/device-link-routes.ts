/**
 * The device and module link routes of the AMQP head (protocol-device.md §3.3-3.7): telemetry, cloud-to-device,
 * module inputs, twin and direct methods, each a {@link LinkRoute} of contract.ts. Every route serves exactly the
 * identity its address names, and only when the connection authorized that identity (CBS put-token, SASL PLAIN
 * or the TLS client certificate): links to another device's addresses are refused with
 * `amqp:unauthorized-access`. Several devices may share one connection, each with its own principal: state is
 * kept per identity and connection (connected-identities.ts).
 */
import type { Receiver, Sender } from 'rhea';
import type { SessionIdentity } from '../../mqtt/session';
import {
  type AmqpConnectionContext,
  type AmqpError,
  AmqpErrorConditions,
  type AmqpPrincipal,
  type DevicePrincipal,
  type LinkHandle,
  type LinkRoute,
} from '../contract';
import { type DeviceAddress, type DeviceLinkKind, parseDeviceAddress } from './addresses';
import { CloudToDeviceLink } from './cloud-to-device-link';
import { ConnectedIdentities, type IdentityAttachment } from './connected-identities';
import { MethodChannel } from './method-links';
import { TelemetryLink } from './telemetry-link';
import { TwinChannel } from './twin-links';

/** Starts serving a link for its attachment; returns the function that stops it (a promise: work to finish). */
type Serve = (link: Sender | Receiver, attachment: IdentityAttachment) => () => void | Promise<void>;

/** The principal of exactly the identity an address names, or `amqp:unauthorized-access`. */
async function authorizeDevice(
  context: AmqpConnectionContext,
  address: DeviceAddress,
): Promise<AmqpPrincipal | AmqpError> {
  const principal = await context.device(address.deviceId, address.moduleId);
  if (
    principal?.kind === 'device' &&
    principal.identity.deviceId === address.deviceId &&
    principal.identity.moduleId === address.moduleId
  ) {
    return principal;
  }
  const who = address.moduleId === undefined ? address.deviceId : `${address.deviceId}/${address.moduleId}`;
  return {
    condition: AmqpErrorConditions.unauthorizedAccess,
    description: `This connection is not authorized for '${who}' (put a token for it on $cbs first).`,
  };
}

/** A device link route: match by kind and device/module form, authorize the named identity, serve. */
function deviceRoute(
  name: string,
  direction: 'send' | 'receive',
  accepts: (address: DeviceAddress) => boolean,
  serve: Serve,
  flowControl: 'connection' | 'route' = 'connection',
): LinkRoute<DeviceAddress> {
  return {
    name,
    direction,
    flowControl,
    match(address) {
      const parsed = parseDeviceAddress(address);
      return parsed && accepts(parsed) ? parsed : undefined;
    },
    authorize: authorizeDevice,
    open(link, _match, context, principal): LinkHandle {
      const identity: SessionIdentity = (principal as DevicePrincipal).identity;
      let stopFeature: (() => void | Promise<void>) | undefined;
      let closing: Promise<void> | undefined;
      // Called by the connection layer (detach, connection close, expiry) and by eviction; resolves when the
      // link's pending work (telemetry appends) and the identity's `Disconnected` report are written.
      const close = (): Promise<void> => {
        if (closing) return closing;
        let finished: unknown;
        try {
          finished = stopFeature?.();
        } catch (error) {
          context.logger.error({ err: error, ...context.describe() }, 'amqp device link cleanup failed');
        }
        closing = Promise.all([finished, attachment.remove(link)]).then(() => undefined);
        return closing;
      };
      const attachment = ConnectedIdentities.of(context.core).attach(link.connection, identity, context, link, close);
      try {
        stopFeature = serve(link, attachment);
      } catch (error) {
        void attachment.remove(link);
        throw error;
      }
      return { close };
    },
  };
}

const is =
  (kind: DeviceLinkKind, form: 'device' | 'module' | 'any') =>
  (address: DeviceAddress): boolean =>
    address.kind === kind && (form === 'any' || (form === 'module') === (address.moduleId !== undefined));

/** The routes of the device links, in match order. */
export function deviceLinkRoutes(): LinkRoute[] {
  const routes: LinkRoute<DeviceAddress>[] = [
    deviceRoute(
      'device-telemetry',
      'receive',
      is('events', 'any'),
      (link, attachment) => {
        const telemetry = new TelemetryLink(link as Receiver, attachment.identity, attachment.context);
        return () => telemetry.stop();
      },
      'route',
    ),
    deviceRoute('device-cloud-to-device', 'send', is('devicebound', 'device'), (link, attachment) => {
      const deliveries = new CloudToDeviceLink(link as Sender, attachment.identity, attachment.context);
      return () => deliveries.stop();
    }),
    // Module inputs (§3.3, §3.7): Node attaches its input receiver to `.../modules/{m}/messages/events`, Edge
    // templates name `.../modules/{m}/messages/devicebound`. IoT Hub routes nothing to module inputs (that is
    // IoT Edge's job) and delivers no cloud-to-device messages to modules: the link stays open and idle, as MQTT
    // grants the inputs subscription.
    deviceRoute(
      'module-inputs',
      'send',
      (address) => address.moduleId !== undefined && (address.kind === 'events' || address.kind === 'devicebound'),
      () => () => {},
    ),
    deviceRoute('device-twin-requests', 'receive', is('twin', 'any'), (link, attachment) =>
      TwinChannel.of(attachment).addRequestLink(link as Receiver),
    ),
    deviceRoute('device-twin-responses', 'send', is('twin', 'any'), (link, attachment) =>
      TwinChannel.of(attachment).addResponseLink(link as Sender),
    ),
    deviceRoute('device-method-responses', 'receive', is('methods', 'any'), (link, attachment) =>
      MethodChannel.of(attachment).addResponseLink(link as Receiver),
    ),
    deviceRoute('device-method-requests', 'send', is('methods', 'any'), (link, attachment) =>
      MethodChannel.of(attachment).addRequestLink(link as Sender),
    ),
  ];
  return routes as LinkRoute[];
}
