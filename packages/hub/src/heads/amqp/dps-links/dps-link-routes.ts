/**
 * The link routes of device registrations with the provisioning service (protocol-device.md §5.3): the device's
 * sender (requests, the hub receives) and its receiver (responses, the hub sends), both on
 * `{idScope}/registrations/{registrationId}`. A route serves exactly the registration its address names, and only
 * when the connection authorized that registration (SASL PLAIN or the TLS client certificate, `context.registration`):
 * links to another registration's address are refused with `amqp:unauthorized-access`.
 */
import type { Receiver, Sender } from 'rhea';
import {
  type AmqpConnectionContext,
  type AmqpError,
  AmqpErrorConditions,
  type AmqpPrincipal,
  type LinkHandle,
  type LinkRoute,
  type RegistrationPrincipal,
} from '../contract';
import { parseRegistrationAddress, type RegistrationAddress, sameRegistration } from './addresses';
import { RegistrationChannel } from './registration-channel';

/** The principal of exactly the registration an address names, or the error the attach is refused with. */
async function authorizeRegistration(
  context: AmqpConnectionContext,
  address: RegistrationAddress,
): Promise<AmqpPrincipal | AmqpError> {
  const principal = await context.registration(address.idScope, address.registrationId);
  if (principal && sameRegistration(principal.registration, address)) return principal;
  return {
    condition: AmqpErrorConditions.unauthorizedAccess,
    description: `This connection is not authorized for registration '${address.registrationId}' in ID scope '${address.idScope}'`,
  };
}

function registrationRoute(
  name: string,
  direction: 'send' | 'receive',
  serve: (channel: RegistrationChannel, link: Sender | Receiver, principal: RegistrationPrincipal) => () => void,
): LinkRoute<RegistrationAddress> {
  return {
    name,
    direction,
    match: parseRegistrationAddress,
    authorize: authorizeRegistration,
    open(link, _match, context, principal): LinkHandle {
      const registration = principal as RegistrationPrincipal;
      const channel = RegistrationChannel.of(link.connection, registration, context);
      const stop = serve(channel, link, registration);
      return { close: stop };
    },
  };
}

/** The routes of the registration links, in match order. */
export function dpsLinkRoutes(): LinkRoute[] {
  const routes: LinkRoute<RegistrationAddress>[] = [
    registrationRoute('dps-requests', 'receive', (channel, link, principal) =>
      channel.addRequestLink(link as Receiver, principal),
    ),
    registrationRoute('dps-responses', 'send', (channel, link) => channel.addResponseLink(link as Sender)),
  ];
  return routes as LinkRoute[];
}
