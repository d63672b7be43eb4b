/**
 * The seams inside the AMQP head (protocol-device.md §3, protocol-service.md §3-4). The connection layer
 * (`amqp-head.ts`, `connection.ts`, `cbs.ts`) accepts AMQP 1.0 over TLS and over WebSockets, negotiates SASL (none,
 * ANONYMOUS, MSSBCBS, PLAIN), answers CBS `put-token`, keeps the principals each connection authorized, and routes
 * every link the peer attaches to the one {@link LinkRoute} whose `match` accepts its address. Routes translate
 * links into core calls: `device-links/` (telemetry, cloud-to-device, twin, methods), `service-links/`
 * (`/messages/devicebound`, feedback, file notifications), `event-hubs/` (the built-in endpoint as Event Hubs
 * speaks it: `$management` and partition receivers) and `dps-links/` (device registrations with the provisioning
 * service, protocol-device.md §5.3).
 *
 * Routes never see sockets, SASL or CBS: they ask the connection for a principal and serve the link they are given.
 */
import type { Logger } from 'pino';
import type { Receiver, Sender } from 'rhea';
import type { Permission } from '../../core/context';
import type { HubCore } from '../../core/hub-core';
import type { DpsPrincipal } from '../../dps/contract';
import type { SessionIdentity } from '../mqtt/session';

/** AMQP error conditions the hub sends (the Azure SDKs map these to typed errors, §3.4). */
export const AmqpErrorConditions = {
  unauthorizedAccess: 'amqp:unauthorized-access',
  notFound: 'amqp:not-found',
  notAllowed: 'amqp:not-allowed',
  notImplemented: 'amqp:not-implemented',
  internalError: 'amqp:internal-error',
  decodeError: 'amqp:decode-error',
  invalidField: 'amqp:invalid-field',
  resourceLimitExceeded: 'amqp:resource-limit-exceeded',
  messageSizeExceeded: 'amqp:link:message-size-exceeded',
  detachForced: 'amqp:link:detach-forced',
  linkStolen: 'amqp:link:stolen',
  connectionForced: 'amqp:connection:forced',
  argumentError: 'com.microsoft:argument-error',
  argumentOutOfRange: 'com.microsoft:argument-out-of-range',
  preconditionFailed: 'com.microsoft:precondition-failed',
  quotaExceeded: 'com.microsoft:quota-exceeded',
  throttled: 'com.microsoft:device-container-throttled',
  timeout: 'com.microsoft:timeout',
  messageLockLost: 'com.microsoft:message-lock-lost',
} as const;
export type AmqpErrorCondition = (typeof AmqpErrorConditions)[keyof typeof AmqpErrorConditions];

/** An AMQP error as sent in a detach, a close or a `rejected` outcome. */
export interface AmqpError {
  readonly condition: AmqpErrorCondition | string;
  readonly description: string;
  readonly info?: Record<string, unknown>;
}

/** A device or module authorized on a connection (CBS put-token, SASL PLAIN, or its TLS client certificate). */
export interface DevicePrincipal {
  readonly kind: 'device';
  readonly identity: SessionIdentity;
  /** When its token stops being accepted (ms since epoch, clock skew included); undefined for X.509. */
  readonly expiresAtMs: number | undefined;
}

/** A shared access policy authorized on a connection (CBS put-token or SASL PLAIN `{policy}@sas.root.{hub}`). */
export interface ServicePrincipal {
  readonly kind: 'service';
  readonly policyName: string;
  readonly permissions: readonly Permission[];
  /** When its token stops being accepted (ms since epoch, clock skew included); undefined for a SASL PLAIN key. */
  readonly expiresAtMs: number | undefined;
}

/**
 * A device registration authorized on a connection for the provisioning service (protocol-device.md §5.3): SASL
 * PLAIN `{idScope}/registrations/{registrationId}` with a registration SAS token, or the TLS client certificate.
 * A connection that holds one reaches nothing but that registration's links.
 */
export interface RegistrationPrincipal {
  readonly kind: 'registration';
  /** What the provisioning service authenticated (`core.dps.authenticate`). */
  readonly registration: DpsPrincipal;
  /** When its token stops being accepted (ms since epoch); undefined for X.509. */
  readonly expiresAtMs: number | undefined;
}

export type AmqpPrincipal = DevicePrincipal | ServicePrincipal | RegistrationPrincipal;

/** Tunables of the AMQP head (defaults in `amqp-head.ts`). */
export interface AmqpHeadSettings {
  /** Largest message accepted on any link, in bytes (Azure: 256 KB telemetry plus properties; 1 MiB max). */
  readonly maxMessageBytes: number;
  /** Credit the hub grants on links it receives on (telemetry, twin requests, C2D sends). */
  readonly receiverCredit: number;
  /** Unsettled cloud-to-device deliveries per link. */
  readonly cloudToDeviceWindow: number;
  /** Seconds a SAS token is accepted past its `se`. */
  readonly clockSkewSeconds: number;
  /** A connection that authorizes nothing (no CBS, no PLAIN, no certificate) within this is closed. */
  readonly authenticationTimeoutMs: number;
}

/** What a route gets from the connection its link arrived on. */
export interface AmqpConnectionContext {
  readonly core: HubCore;
  readonly logger: Logger;
  readonly settings: AmqpHeadSettings;
  /** `amqp` (TLS) or `amqp-ws`: the metrics label and `describe()`'s protocol. */
  readonly protocol: 'amqp' | 'amqp-ws';
  /** Log fields naming the connection (never secrets). */
  describe(): Record<string, unknown>;
  /**
   * The unexpired principal of this device or module on this connection: authorized by CBS or SASL PLAIN (device
   * token or DeviceConnect policy token), or by the connection's TLS client certificate (checked against the
   * registry on first use). Undefined when nothing authorizes it.
   */
  device(deviceId: string, moduleId: string | undefined): Promise<DevicePrincipal | undefined>;
  /** An unexpired service principal on this connection whose policy grants `permission`, if any. */
  service(permission: Permission): ServicePrincipal | undefined;
  /**
   * The unexpired principal of this device registration on this connection: authorized by SASL PLAIN
   * (`{idScope}/registrations/{registrationId}`), or by the connection's TLS client certificate (checked by the
   * provisioning service on first use). Undefined when nothing authorizes it, or when the connection already serves
   * hub identities (a connection is for the hub or for provisioning, never both).
   */
  registration(idScope: string, registrationId: string): Promise<RegistrationPrincipal | undefined>;
}

/** A link a route serves: closed by the connection layer on detach, connection close or principal expiry. */
export interface LinkHandle {
  /**
   * Stops serving (unsubscribe, forget in-flight state). Idempotent; the link itself is detached by the caller. A
   * returned promise is awaited when the hub stops (its rejection is logged).
   */
  close(): void | Promise<void>;
}

/**
 * One kind of link. `direction: 'send'` means the hub sends on it (the peer attached a receiver: its `source`
 * address is matched); `'receive'` means the hub receives on it (the peer attached a sender: its `target`).
 */
export interface LinkRoute<Match = unknown> {
  /** For logs and metrics, e.g. `device-telemetry`. */
  readonly name: string;
  readonly direction: 'send' | 'receive';
  /**
   * Who grants credit on `'receive'` links: `'connection'` (the default) grants `settings.receiverCredit` when the
   * link opens and tops it up as messages arrive; `'route'` leaves the link without credit for the route to grant.
   */
  readonly flowControl?: 'connection' | 'route';
  /** Parses the peer's address (case-insensitively, URL-decoded where Azure allows it); undefined when not ours. */
  match(address: string): Match | undefined;
  /**
   * Whether this connection may attach the link: the principal it serves under, or the error the attach is refused
   * with (`amqp:unauthorized-access` when no principal covers it, `amqp:not-found` for unknown entities).
   */
  authorize(context: AmqpConnectionContext, match: Match): Promise<AmqpPrincipal | AmqpError>;
  /**
   * Serves the link after the connection layer has opened it with the peer's address echoed (the attach goes out
   * after `open` returns: the route may still adjust the local attach). For `'receive'` links the connection layer
   * adds credit (`settings.receiverCredit`) unless the route takes over flow control (`flowControl: 'route'`).
   * Deliveries the hub receives are never accepted automatically: the route settles each one. Messages over
   * `settings.maxMessageBytes` never reach the route (the link is detached with `amqp:link:message-size-exceeded`).
   * Exceptions thrown here or from the link's event listeners detach the link with `amqp:internal-error`.
   */
  open(link: Sender | Receiver, match: Match, context: AmqpConnectionContext, principal: AmqpPrincipal): LinkHandle;
}
