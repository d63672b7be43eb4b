/**
 * One AMQP connection of the hub (protocol-device.md §3.1-3.2, protocol-service.md §0.5, §3.1, §4.2), over TLS or a
 * WebSocket: SASL (none, ANONYMOUS, MSSBCBS, EXTERNAL, PLAIN), CBS `put-token` on `$cbs`, the principals the
 * connection holds (renewed by a new put-token, expired on their token's `se` plus clock skew), and the routing of
 * every link the peer attaches to the {@link LinkRoute} whose `match` accepts its address.
 *
 * rhea opens a peer's link as soon as its attach arrives; the hub answers only after the route authorized it, so
 * the automatic attach is withdrawn and sent later: echoing the address (accepted) or with a null terminus followed
 * by a detach carrying the error (refused, AMQP 1.0 §2.6.3).
 *
 * Decisions where the reference is silent:
 * - EXTERNAL is offered and behaves as ANONYMOUS: the TLS client certificate authorizes its device when a route
 *   asks for it, exactly as without SASL.
 * - A connection holding a service principal whose policy grants DeviceConnect is authorized for every enabled
 *   device (a gateway multiplexing devices with the `device` policy), with authentication scope `hub`.
 * - Bad input closes the connection with an AMQP `close` carrying the error when the AMQP open was exchanged, and
 *   then the socket; before that, only the socket (after our protocol header for a bad header, §2.2).
 * - When the hub stops, sockets are dropped without an AMQP close: the Node SDK reconnects after a dropped socket
 *   but stays stuck after a close frame (the "a bare AMQP close leaves some clients stuck").
 * - Our side ends the socket and destroys it a second later if the peer does not close its side: no half-closed
 *   socket is left behind.
 * - A connection that authorized nothing within `authenticationTimeoutMs` is closed, unless its peer presented a
 *   TLS client certificate (an X.509 device authorizes on its first attach, which may come much later).
 * - A connection serves the hub or the provisioning service (§5.3), never both, as Azure's are separate hosts: the
 *   first principal decides. A provisioning connection (SASL PLAIN `{idScope}/registrations/{registrationId}`, or a
 *   certificate that first authorized a registration link) gets no device or service principal (CBS put-token is
 *   refused with 401, its certificate authorizes no device); a hub connection gets no registration principal.
 */
import type { Duplex } from 'node:stream';
import type { DetailedPeerCertificate } from 'node:tls';
import type { Logger } from 'pino';
import type { ConnectionOptions, EventContext, Message, Receiver, Sender } from 'rhea';
import type { Permission } from '../../core/context';
import type { HubCore } from '../../core/hub-core';
import { identityKey } from '../../core/registry-records';
import { authenticateCertificate, identityOf, recordsOf } from '../mqtt/authenticate';
import type { CertificateChainAuthenticator } from '../mqtt/session';
import { isCbsAddress, type PutTokenRequest, parsePutToken, putTokenResponse } from './cbs';
import {
  type AmqpConnectionContext,
  type AmqpError,
  AmqpErrorConditions,
  type AmqpHeadSettings,
  type AmqpPrincipal,
  type DevicePrincipal,
  type LinkHandle,
  type LinkRoute,
  type RegistrationPrincipal,
  type ServicePrincipal,
} from './contract';
import {
  type CredentialCheck,
  checkPlain,
  checkRegistration,
  checkToken,
  parseRegistrationUsername,
  peerCertificateChain,
} from './credentials';
import { FrameGuard, type FrameViolation } from './frame-guard';
import type {
  LinkInternals,
  RheaModule,
  SaslServerMechanism,
  ServerConnection,
  ServerContainer,
  SessionInternals,
  TransferFrame,
} from './rhea-internals';
import { settleReceived } from './settlement';

/** The transport under a connection (a TLS socket, or the one under a WebSocket). */
export interface ConnectionTransport {
  readonly protocol: 'amqp' | 'amqp-ws';
  readonly remoteAddress: string | undefined;
  /** The TLS client certificate with its chain, if the peer presented one. */
  peerCertificate(): DetailedPeerCertificate | undefined;
}

/** Limits of one connection beyond the contract's settings (defaults in `amqp-head.ts`). */
export interface AmqpConnectionLimits {
  /** The max-frame-size of the hub's open; bigger frames close the connection (`amqp:connection:framing-error`). */
  readonly maxFrameBytes: number;
  /** The idle-time-out of the hub's open (Azure: 4 minutes); rhea closes a connection silent for twice that. */
  readonly idleTimeoutMs: number;
  /** Sessions per connection (channel-max + 1); more close the connection (`amqp:resource-limit-exceeded`). */
  readonly maxSessions: number;
  /** Links per connection, refused ones not yet detached included; more close the connection. */
  readonly maxLinks: number;
  /** Credit on the `$cbs` link the peer sends put-token requests on. */
  readonly cbsCredit: number;
  /**
   * Bytes of messages received in part (multi-frame transfers not finished yet), over all links of a connection;
   * more closes the connection (`amqp:resource-limit-exceeded`).
   */
  readonly maxPartialBytes: number;
}

/** What the connections of one head share. */
export interface AmqpConnectionShared {
  readonly core: HubCore;
  readonly logger: Logger;
  readonly settings: AmqpHeadSettings;
  readonly limits: AmqpConnectionLimits;
  readonly routes: readonly LinkRoute[];
  readonly certificateAuthorities: CertificateChainAuthenticator;
  readonly rhea: RheaModule;
  /** The AMQP open was exchanged. */
  opened(connection: AmqpConnection): void;
  /** The socket closed; `cleanup` settles when every route handle closed. */
  closed(connection: AmqpConnection, cleanup: Promise<void>): void;
  /** Counts a connection refused or dropped, by reason (`sasl`, `authentication-timeout`, `protocol`). */
  dropped(connection: AmqpConnection, reason: string): void;
}

interface LinkRecord {
  readonly link: LinkInternals;
  readonly direction: 'send' | 'receive';
  readonly address: string | undefined;
  readonly routeName: string;
  /** `authorizing` until the hub answered the attach; `closed` once either side detached. */
  phase: 'authorizing' | 'open' | 'closed';
  handle: LinkHandle | undefined;
  /** The key of the connection principal the link was authorized under. */
  principalKey: string | undefined;
}

interface HeldPrincipal {
  readonly principal: AmqpPrincipal;
  timer: NodeJS.Timeout | undefined;
}

interface TransferState {
  bytes: number;
  dropping: boolean;
}

// setTimeout's ceiling (~24.8 days): a later expiry is re-checked when the timer fires.
const maxTimerMs = 2 ** 31 - 1;
// How long the hub waits for the peer to close its side after ending ours before destroying the socket.
const closeGraceMs = 1000;
let connectionCounter = 0;

/** One AMQP connection; created by the head for every accepted socket. */
export class AmqpConnection implements AmqpConnectionContext {
  readonly core: HubCore;
  readonly logger: Logger;
  readonly settings: AmqpHeadSettings;
  readonly protocol: 'amqp' | 'amqp-ws';
  readonly id = `amqp-${++connectionCounter}`;

  private readonly connection: ServerConnection;
  private readonly guard: FrameGuard;
  private readonly links = new Map<LinkInternals, LinkRecord>();
  private readonly cbsSenders = new Set<Sender>();
  /** Links refused and not yet detached by the peer. */
  private readonly refused = new Set<LinkInternals>();
  private readonly sessions = new Set<SessionInternals>();
  /** CBS responses waiting for credit, per `$cbs` sender. */
  private readonly cbsWaiting = new WeakMap<Sender, Message[]>();
  private readonly principals = new Map<string, HeldPrincipal>();
  /** Device principals made from a DeviceConnect service principal -> that principal's key. */
  private readonly backing = new WeakMap<AmqpPrincipal, string>();
  private readonly certificates = new Map<string, Promise<DevicePrincipal | undefined>>();
  private readonly registrationCertificates = new Map<string, Promise<RegistrationPrincipal | undefined>>();
  /** Whom the connection serves, decided by its first principal (see the file comment). */
  private purpose: 'hub' | 'provisioning' | undefined;
  private readonly transfers = new WeakMap<LinkInternals, TransferState>();
  private readonly cleanups = new Set<Promise<void>>();
  private readonly authenticationTimer: NodeJS.Timeout;
  /** Bytes of messages received in part (their first frames buffered by rhea), over all links. */
  private partialBytes = 0;
  private everAuthorized = false;
  private isOpen = false;
  private ending = false;
  private isClosed = false;
  private dropReason: string | undefined;

  constructor(
    private readonly shared: AmqpConnectionShared,
    private readonly socket: Duplex,
    private readonly transport: ConnectionTransport,
  ) {
    this.core = shared.core;
    this.logger = shared.logger;
    this.settings = shared.settings;
    this.protocol = transport.protocol;
    const { rhea, limits } = shared;
    this.guard = new FrameGuard(limits.maxFrameBytes);

    // One container per connection: rhea's SASL mechanisms are per container and PLAIN needs this connection.
    const container = rhea.create_container({ id: shared.core.context.hubName }) as ServerContainer;
    container.sasl_server_mechanisms = {
      MSSBCBS: () => this.anonymousMechanism('MSSBCBS'),
      PLAIN: () => this.plainMechanism(),
      ANONYMOUS: () => this.anonymousMechanism('anonymous'),
      EXTERNAL: () => this.anonymousMechanism('external'),
    };
    // A stray error must never reach an EventEmitter without listeners (it would throw out of rhea's reader).
    container.on('error', (error: unknown) => this.logger.warn({ err: error, ...this.describe() }, 'amqp error'));
    this.connection = container.create_connection({
      id: this.id,
      container_id: shared.core.context.hubName,
      max_frame_size: limits.maxFrameBytes,
      channel_max: limits.maxSessions - 1,
      idle_time_out: limits.idleTimeoutMs,
      // Routes grant credit and settle themselves (contract.ts).
      credit_window: 0,
      autoaccept: false,
      reconnect: false,
    } as unknown as ConnectionOptions) as unknown as ServerConnection;
    this.watchConnection();

    this.connection.accept(socket);
    // Ahead of rhea's reader: frame sizes and protocol headers are checked before rhea buffers anything.
    socket.prependListener('data', (chunk: Buffer) => this.inspect(chunk));
    // After rhea's reader: an unknown SASL mechanism leaves rhea with an outcome it never writes.
    socket.on('data', () => this.afterInput());
    socket.on('finish', () => this.scheduleDestroy());
    socket.on('error', (error: Error) => this.logger.debug({ err: error, ...this.describe() }, 'amqp socket error'));
    socket.on('close', () => this.teardown());

    this.authenticationTimer = setTimeout(() => {
      if (this.everAuthorized || this.isClosed) return;
      // A device with a client certificate is authorized by it when it first attaches a link, which the Node SDK
      // does only when the application first sends or subscribes: such a connection stays (the idle timeout
      // still applies).
      if (this.isOpen && this.transport.peerCertificate()) return;
      this.logger.info(
        { ...this.describe(), timeoutMs: this.settings.authenticationTimeoutMs },
        'amqp connection authorized nothing in time; closing it',
      );
      this.drop(
        {
          condition: AmqpErrorConditions.unauthorizedAccess,
          description: 'No CBS put-token, SASL PLAIN or client certificate authorized anything in time',
        },
        'authentication-timeout',
      );
    }, this.settings.authenticationTimeoutMs);
    this.authenticationTimer.unref();
  }

  /** Log fields naming the connection (never secrets). */
  describe(): Record<string, unknown> {
    const open = this.connection?.remote?.open as { container_id?: unknown } | undefined;
    return {
      connection: this.id,
      protocol: this.protocol,
      remoteAddress: this.transport.remoteAddress,
      ...(typeof open?.container_id === 'string' ? { container: open.container_id } : {}),
    };
  }

  async device(deviceId: string, moduleId: string | undefined): Promise<DevicePrincipal | undefined> {
    if (this.purpose === 'provisioning') return undefined;
    const key = identityKey(deviceId, moduleId);
    const held = this.principals.get(`device:${key}`)?.principal;
    if (held?.kind === 'device' && this.isLive(held)) return held;

    for (const [principalKey, entry] of this.principals) {
      const principal = entry.principal;
      if (principal.kind !== 'service' || !this.isLive(principal)) continue;
      if (!principal.permissions.includes('DeviceConnect')) continue;
      const records = await recordsOf(this.core, deviceId, moduleId);
      if (typeof records === 'string') return undefined;
      const identity = identityOf(deviceId, moduleId, records.record, { scope: 'hub', type: 'sas', issuer: 'iothub' });
      const derived: DevicePrincipal = { kind: 'device', identity, expiresAtMs: principal.expiresAtMs };
      this.backing.set(derived, principalKey);
      return derived;
    }

    const certificate = this.transport.peerCertificate();
    if (!certificate) return undefined;
    let pending = this.certificates.get(key);
    if (!pending) {
      pending = this.authenticateWithCertificate(deviceId, moduleId, certificate);
      // One check per identity and connection (a certificate does not change); bounded like the links.
      if (this.certificates.size < this.shared.limits.maxLinks) {
        this.certificates.set(key, pending);
        pending.catch(() => this.certificates.delete(key));
      }
    }
    const principal = await pending;
    return principal && this.principals.has(`device:${key}`) ? principal : undefined;
  }

  service(permission: Permission): ServicePrincipal | undefined {
    if (this.purpose === 'provisioning') return undefined;
    for (const { principal } of this.principals.values()) {
      if (principal.kind === 'service' && this.isLive(principal) && principal.permissions.includes(permission)) {
        return principal;
      }
    }
    return undefined;
  }

  async registration(idScope: string, registrationId: string): Promise<RegistrationPrincipal | undefined> {
    if (this.purpose === 'hub') return undefined;
    const key = registrationKey(idScope, registrationId);
    const held = this.principals.get(key)?.principal;
    if (held?.kind === 'registration' && this.isLive(held)) return held;

    const certificate = this.transport.peerCertificate();
    if (!certificate) return undefined;
    let pending = this.registrationCertificates.get(key);
    if (!pending) {
      pending = this.authenticateRegistration(idScope, registrationId, certificate);
      if (this.registrationCertificates.size < this.shared.limits.maxLinks) {
        this.registrationCertificates.set(key, pending);
        pending.catch(() => this.registrationCertificates.delete(key));
      }
    }
    const principal = await pending;
    return principal && this.principals.has(key) ? principal : undefined;
  }

  /**
   * Drops the connection as the hub stops: the socket is destroyed without an AMQP close. The Node SDK
   * (azure-iot-device-amqp 1.14) stays stuck after any close frame from the hub, whatever its error, and never
   * reconnects; after a dropped socket its retry policy reconnects, as after a network failure or a hub restart.
   */
  close(): void {
    if (this.isClosed) return;
    this.ending = true;
    this.logger.debug(this.describe(), 'amqp dropping connection: the hub is stopping');
    this.socket.destroy();
  }

  /** Settles when the socket closed and every route handle closed. */
  get cleanup(): Promise<void> {
    return Promise.allSettled([...this.cleanups]).then(() => undefined);
  }

  // --- connection events ------------------------------------------------------------------------------------

  private watchConnection(): void {
    const connection = this.connection;
    // AMQP 1.0 §2.4.1: nothing but open comes first. rhea would start a session on a begin before open.
    const onBegin = connection.on_begin;
    connection.on_begin = (frame: unknown) => {
      if (!connection.remote.open) throw protocolError('begin before open');
      onBegin.call(connection, frame);
    };
    connection.on('connection_open', () => {
      this.isOpen = true;
      this.shared.opened(this);
      this.logger.debug(this.describe(), 'amqp connection opened');
    });
    connection.on('connection_close', (context: EventContext) => {
      const error = context.connection.error as { condition?: string; description?: string } | undefined;
      if (error) this.logger.info({ ...this.describe(), condition: error.condition }, 'amqp peer closed with error');
      else this.logger.debug(this.describe(), 'amqp peer closed the connection');
    });
    connection.on('connection_error', () => undefined);
    connection.on('disconnected', () => undefined);
    connection.on('protocol_error', (error: Error) => this.onBadInput(error));
    connection.on('error', (error: Error) => this.onBadInput(error));
    connection.on('session_open', (context: EventContext) => {
      const session = context.session as SessionInternals | undefined;
      if (!session) return;
      this.sessions.add(session);
      // rhea does not hold the peer to our channel-max; each session costs buffers.
      if (this.sessions.size > this.shared.limits.maxSessions) {
        this.logger.warn(this.describe(), 'amqp connection opened too many sessions; dropping the client');
        this.drop(
          {
            condition: AmqpErrorConditions.resourceLimitExceeded,
            description: `at most ${this.shared.limits.maxSessions} sessions per connection`,
          },
          'protocol',
        );
        return;
      }
      this.guardTransfers(session);
    });
    connection.on('session_error', () => undefined);
    connection.on('session_close', (context: EventContext) => {
      if (context.session) this.sessions.delete(context.session as SessionInternals);
    });
    connection.on('sender_open', (context: EventContext) => {
      if (context.sender) this.onAttach(context.sender as LinkInternals, 'send');
    });
    connection.on('receiver_open', (context: EventContext) => {
      if (context.receiver) this.onAttach(context.receiver as LinkInternals, 'receive');
    });
    for (const name of ['sender_error', 'receiver_error', 'sender_close', 'receiver_close']) {
      connection.on(name, () => undefined);
    }
  }

  /** Frame sizes and protocol headers, ahead of rhea. */
  private inspect(chunk: Buffer): void {
    if (this.ending) return;
    const violation = this.guard.push(chunk);
    if (!violation) return;
    // rhea reads this chunk after us; it must not keep reading afterwards.
    this.socket.removeAllListeners('data');
    this.onViolation(violation);
  }

  private onViolation(violation: FrameViolation): void {
    this.logger.warn(
      { ...this.describe(), condition: violation.condition, reason: violation.description },
      'amqp bad input; dropping the client',
    );
    if (violation.inHeader && !this.isOpen) {
      // §2.2: answer an unsupported header with the one we speak, then close the socket.
      this.dropReason ??= 'protocol';
      this.shared.dropped(this, 'protocol');
      if (this.socket.writable) this.socket.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]));
      this.end();
      return;
    }
    this.drop({ condition: violation.condition, description: violation.description }, 'protocol', 'silent', true);
  }

  /** A decode or protocol error in rhea's reader (rhea ends the socket right after this returns). */
  private onBadInput(error: Error): void {
    if (this.ending) return;
    this.logger.warn({ ...this.describe(), reason: error.message }, 'amqp bad input; dropping the client');
    this.drop({ condition: AmqpErrorConditions.decodeError, description: error.message }, 'protocol', 'silent', true);
  }

  private afterInput(): void {
    if (this.ending) return;
    const sasl = this.connection.sasl_transport;
    const server = sasl?.transports?.[3] ?? sasl;
    if (server?.outcome !== undefined && server.outcome !== 0) {
      this.logger.info(this.describe(), 'amqp SASL failed (unsupported mechanism); dropping the client');
      this.connection.output();
      this.shared.dropped(this, 'sasl');
      this.dropReason = 'sasl';
      this.end();
    }
  }

  /**
   * Drops the client: an AMQP close carrying `error` when the open was exchanged (written now when `now`, as rhea
   * ends the socket right after a reader error), then the socket.
   */
  private drop(
    error: AmqpError,
    reason: string | undefined,
    level: 'info' | 'debug' | 'silent' = 'info',
    now = false,
  ): void {
    if (this.ending) return;
    this.ending = true;
    if (reason !== undefined) {
      this.dropReason = reason;
      this.shared.dropped(this, reason);
    }
    if (level !== 'silent')
      this.logger[level]({ ...this.describe(), condition: error.condition }, 'amqp closing connection');
    if (this.isOpen && !this.connection.is_closed()) {
      this.connection.close(toRheaError(error));
      if (now) {
        try {
          this.connection._process();
        } catch {
          // The transport is broken: the socket goes anyway.
        }
      }
    }
    // rhea writes the close frame on the next tick; the socket ends after it.
    setImmediate(() => this.end());
  }

  /** Ends our side now; the socket is destroyed once the peer closed its side or after a grace period. */
  private end(): void {
    this.ending = true;
    if (this.socket.destroyed) return;
    if (this.socket.writableEnded) this.scheduleDestroy();
    else this.socket.end();
  }

  private scheduleDestroy(): void {
    this.ending = true;
    if (this.socket.destroyed) return;
    const timer = setTimeout(() => this.socket.destroy(), closeGraceMs);
    timer.unref();
    this.socket.once('close', () => clearTimeout(timer));
  }

  private teardown(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.ending = true;
    clearTimeout(this.authenticationTimer);
    for (const entry of this.principals.values()) clearTimeout(entry.timer);
    this.principals.clear();
    for (const record of [...this.links.values()]) {
      record.phase = 'closed';
      this.closeHandle(record);
    }
    this.links.clear();
    this.refused.clear();
    this.sessions.clear();
    this.cbsSenders.clear();
    this.logger.debug({ ...this.describe(), reason: this.dropReason }, 'amqp connection closed');
    this.shared.closed(this, this.cleanup);
  }

  // --- SASL -------------------------------------------------------------------------------------------------

  private anonymousMechanism(name: string): SaslServerMechanism {
    return {
      outcome: undefined,
      username: undefined,
      start(response) {
        this.outcome = true;
        this.username = response && response.length > 0 ? response.toString('utf8') : name;
      },
    };
  }

  private plainMechanism(): SaslServerMechanism {
    const mechanism: SaslServerMechanism = {
      outcome: undefined,
      username: undefined,
      start: async (response) => {
        // RFC 4616: [authzid] NUL authcid NUL passwd.
        const fields = response ? response.toString('utf8').split('\u0000') : [];
        const username = fields[1] ?? '';
        const password = fields[2] ?? '';
        let reason: string;
        if (fields.length !== 3 || username === '') {
          reason = 'malformed PLAIN response';
        } else {
          try {
            // §5.3: a device registering with the provisioning service names its registration as the username.
            const registration = parseRegistrationUsername(username);
            const check = registration
              ? await checkRegistration(
                  registration.idScope,
                  registration.registrationId,
                  { kind: 'sas', token: password },
                  this.core,
                )
              : await checkPlain(username, password, {
                  core: this.core,
                  clockSkewSeconds: this.settings.clockSkewSeconds,
                });
            if (check.ok) {
              if (!this.isClosed) this.hold(check.principal);
              mechanism.outcome = true;
              mechanism.username = username;
              this.logger.debug({ ...this.describe(), username }, 'amqp SASL PLAIN accepted');
              return;
            }
            reason = check.reason;
          } catch (error) {
            this.logger.error({ err: error, ...this.describe() }, 'amqp SASL PLAIN check failed');
            reason = 'internal error';
          }
        }
        mechanism.outcome = false;
        this.logger.info({ ...this.describe(), username, reason }, 'amqp SASL PLAIN refused; dropping the client');
        this.ending = true;
        this.dropReason = 'sasl';
        this.shared.dropped(this, 'sasl');
        // rhea writes the outcome (auth) in a continuation of this promise; the socket ends after it.
        setImmediate(() => this.end());
      },
    };
    return mechanism;
  }

  // --- principals -------------------------------------------------------------------------------------------

  private keyOf(principal: AmqpPrincipal): string {
    const backing = this.backing.get(principal);
    if (backing !== undefined) return backing;
    switch (principal.kind) {
      case 'device':
        return `device:${principal.identity.key}`;
      case 'service':
        return `service:${principal.policyName}`;
      case 'registration':
        return registrationKey(principal.registration.idScope, principal.registration.registrationId);
    }
  }

  private isLive(principal: AmqpPrincipal): boolean {
    return principal.expiresAtMs === undefined || principal.expiresAtMs > this.core.context.now();
  }

  /** Holds a principal (a new one, or a renewal of the same identity or policy) until its expiry. */
  private hold(principal: AmqpPrincipal): void {
    const key = this.keyOf(principal);
    const previous = this.principals.get(key);
    if (previous) clearTimeout(previous.timer);
    const entry: HeldPrincipal = { principal, timer: undefined };
    this.principals.set(key, entry);
    this.schedule(key, entry);
    this.purpose ??= principal.kind === 'registration' ? 'provisioning' : 'hub';
    this.everAuthorized = true;
    clearTimeout(this.authenticationTimer);
  }

  private schedule(key: string, entry: HeldPrincipal): void {
    const { expiresAtMs } = entry.principal;
    if (expiresAtMs === undefined) return;
    const delay = Math.min(Math.max(expiresAtMs - this.core.context.now(), 0), maxTimerMs);
    entry.timer = setTimeout(() => this.expire(key, entry), delay);
    entry.timer.unref();
  }

  private expire(key: string, entry: HeldPrincipal): void {
    if (this.principals.get(key) !== entry || this.isClosed) return;
    if (this.isLive(entry.principal)) {
      this.schedule(key, entry);
      return;
    }
    this.principals.delete(key);
    const covered = [...this.links.values()].filter((record) => record.principalKey === key);
    this.logger.info({ ...this.describe(), principal: key, links: covered.length }, 'amqp token expired');
    for (const record of covered) {
      this.detach(record, {
        condition: AmqpErrorConditions.unauthorizedAccess,
        description: 'The token that authorized this link expired and was not renewed',
      });
    }
  }

  private async authenticateWithCertificate(
    deviceId: string,
    moduleId: string | undefined,
    peerCertificate: DetailedPeerCertificate,
  ): Promise<DevicePrincipal | undefined> {
    const records = await recordsOf(this.core, deviceId, moduleId);
    if (typeof records === 'string') {
      this.logger.info({ ...this.describe(), deviceId, moduleId, reason: records }, 'amqp X.509 refused');
      return undefined;
    }
    const scope = moduleId === undefined ? 'device' : 'module';
    const identity = identityOf(deviceId, moduleId, records.record, { scope, type: 'x509', issuer: 'iothub' });
    const result = await authenticateCertificate(
      records.record,
      deviceId,
      moduleId,
      {
        core: this.core,
        peerCertificate,
        certificateAuthorities: this.shared.certificateAuthorities,
        clockSkewSeconds: this.settings.clockSkewSeconds,
      },
      identity,
    );
    if (!result.ok) {
      this.logger.info({ ...this.describe(), deviceId, moduleId, reason: result.reason }, 'amqp X.509 refused');
      return undefined;
    }
    const principal: DevicePrincipal = { kind: 'device', identity: result.identity, expiresAtMs: undefined };
    // A registration principal held meanwhile made this a provisioning connection.
    if (this.isClosed || this.purpose === 'provisioning') return undefined;
    this.hold(principal);
    return principal;
  }

  private async authenticateRegistration(
    idScope: string,
    registrationId: string,
    peerCertificate: DetailedPeerCertificate,
  ): Promise<RegistrationPrincipal | undefined> {
    const check = await checkRegistration(
      idScope,
      registrationId,
      { kind: 'x509', chain: peerCertificateChain(peerCertificate) },
      this.core,
    );
    if (!check.ok || check.principal.kind !== 'registration') {
      const reason = check.ok ? 'not a registration' : check.reason;
      this.logger.info({ ...this.describe(), idScope, registrationId, reason }, 'amqp registration X.509 refused');
      return undefined;
    }
    // A device principal held meanwhile (its own first attach) made this a hub connection.
    if (this.isClosed || this.purpose === 'hub') return undefined;
    this.hold(check.principal);
    return check.principal;
  }

  // --- links ------------------------------------------------------------------------------------------------

  private onAttach(link: LinkInternals, direction: 'send' | 'receive'): void {
    // rhea already opened our end (link.on_attach); the attach goes out only once the route authorized the link.
    link.state.local_open = false;
    link.state.open_requests = Math.max(0, link.state.open_requests - 1);
    if (this.ending) return;

    const terminus = (direction === 'send' ? link.remote.attach?.source : link.remote.attach?.target) as
      | { address?: unknown }
      | undefined;
    const address = typeof terminus?.address === 'string' ? terminus.address : undefined;
    const record: LinkRecord = {
      link,
      direction,
      address,
      routeName: '',
      phase: 'authorizing',
      handle: undefined,
      principalKey: undefined,
    };
    this.watchLink(record);
    if (this.links.size + this.refused.size >= this.shared.limits.maxLinks) {
      // Refused links the peer never detaches count too: past the limit the connection goes, not just the link.
      this.logger.warn(this.describe(), 'amqp connection attached too many links; dropping the client');
      this.drop(
        {
          condition: AmqpErrorConditions.resourceLimitExceeded,
          description: `at most ${this.shared.limits.maxLinks} links per connection`,
        },
        'protocol',
      );
      return;
    }
    this.links.set(link, record);

    if (isCbsAddress(address)) {
      this.openCbs(record);
      return;
    }
    if (address === undefined) {
      this.refuse(record, {
        condition: AmqpErrorConditions.invalidField,
        description: `attach without a ${direction === 'send' ? 'source' : 'target'} address`,
      });
      return;
    }
    for (const route of this.shared.routes) {
      if (route.direction !== direction) continue;
      let match: unknown;
      try {
        match = route.match(address);
      } catch (error) {
        this.logger.error({ err: error, ...this.describe(), route: route.name, address }, 'amqp route match threw');
        continue;
      }
      if (match === undefined) continue;
      void this.authorizeLink(record, route, match);
      return;
    }
    this.logger.debug({ ...this.describe(), address, direction }, 'amqp attach to an unknown address');
    this.refuse(record, {
      condition: AmqpErrorConditions.notFound,
      description: `No ${direction === 'send' ? 'source' : 'target'} '${address}' on this hub`,
    });
  }

  private async authorizeLink(record: LinkRecord, route: LinkRoute, match: unknown): Promise<void> {
    (record as { routeName: string }).routeName = route.name;
    let result: AmqpPrincipal | AmqpError;
    try {
      result = await route.authorize(this, match);
    } catch (error) {
      this.logger.error({ err: error, ...this.describe(), route: route.name }, 'amqp route authorize threw');
      result = { condition: AmqpErrorConditions.internalError, description: 'The hub failed to authorize the link' };
    }
    if (record.phase !== 'authorizing' || this.isClosed) return;
    if ('condition' in result) {
      this.logger.debug(
        { ...this.describe(), route: route.name, address: record.address, condition: result.condition },
        'amqp attach refused',
      );
      this.refuse(record, result);
      return;
    }
    const { link } = record;
    record.principalKey = this.keyOf(result);
    this.accept(record);
    if (route.direction === 'receive' && route.flowControl !== 'route') {
      const receiver = link as Receiver & { set_credit_window(window: number): void };
      receiver.set_credit_window(this.settings.receiverCredit);
      receiver.add_credit(this.settings.receiverCredit);
    }
    try {
      record.handle = route.open(link as unknown as Sender | Receiver, match, this, result);
    } catch (error) {
      this.failLink(record, error);
      return;
    }
    this.logger.debug({ ...this.describe(), route: route.name, address: record.address }, 'amqp link attached');
  }

  /** Answers the attach: address echoed, max message size, open. */
  private accept(record: LinkRecord): void {
    const { link } = record;
    const remote = link.remote.attach;
    const source = remote?.source as { address?: unknown } | undefined;
    const target = remote?.target as { address?: unknown } | undefined;
    if (source) link.set_source(typeof source.address === 'string' ? { address: source.address } : {});
    if (target) link.set_target(typeof target.address === 'string' ? { address: target.address } : {});
    link.local.attach.max_message_size = this.settings.maxMessageBytes;
    record.phase = 'open';
    link.open();
  }

  /** Refuses an attach (AMQP 1.0 §2.6.3): our attach with a null terminus, then a detach carrying the error. */
  private refuse(record: LinkRecord, error: AmqpError): void {
    const { link } = record;
    link.local.attach.source = null;
    link.local.attach.target = null;
    record.phase = 'closed';
    this.links.delete(link);
    if (link.is_remote_open()) this.refused.add(link);
    link.open();
    link.close(toRheaError(error));
    // Forgotten by its session after rhea wrote both frames (rhea removes links only on the peer's detach).
    process.nextTick(() => {
      if (!link.is_remote_open()) link.remove();
    });
  }

  /** Detaches an open link with `error` and stops its route. */
  private detach(record: LinkRecord, error: AmqpError): void {
    if (record.phase === 'closed') return;
    if (record.phase === 'authorizing') {
      this.refuse(record, error);
      return;
    }
    record.phase = 'closed';
    this.links.delete(record.link);
    this.forgetPartial(record.link);
    this.closeHandle(record);
    record.link.close(toRheaError(error));
  }

  private failLink(record: LinkRecord, error: unknown): void {
    this.logger.error(
      { err: error, ...this.describe(), route: record.routeName, address: record.address },
      'amqp route failed; detaching its link',
    );
    this.detach(record, {
      condition: AmqpErrorConditions.internalError,
      description: 'The hub failed serving this link',
    });
  }

  private closeHandle(record: LinkRecord): void {
    const handle = record.handle;
    record.handle = undefined;
    if (!handle) return;
    try {
      const done = handle.close();
      if (done instanceof Promise) {
        const tracked = done.catch((error: unknown) =>
          this.logger.error({ err: error, ...this.describe(), route: record.routeName }, 'amqp route close failed'),
        );
        this.cleanups.add(tracked);
        void tracked.then(() => this.cleanups.delete(tracked));
      }
    } catch (error) {
      this.logger.error({ err: error, ...this.describe(), route: record.routeName }, 'amqp route close threw');
    }
  }

  /** Link-level listeners: the peer's detach, and exceptions from route listeners isolated to their link. */
  private watchLink(record: LinkRecord): void {
    const { link } = record;
    const onClose = () => {
      this.refused.delete(link);
      if (record.phase === 'closed') return;
      if (record.phase === 'authorizing') {
        // The peer gave up before we answered: answer and detach in one go.
        record.phase = 'closed';
        this.links.delete(link);
        link.open();
        link.close();
        process.nextTick(() => link.remove());
        return;
      }
      record.phase = 'closed';
      this.links.delete(link);
      if (link.is_sender()) this.cbsSenders.delete(link as Sender);
      else this.forgetPartial(link);
      this.closeHandle(record);
    };
    const events = link.is_sender() ? ['sender_close', 'sender_error'] : ['receiver_close', 'receiver_error'];
    for (const name of events) link.on(name, onClose);
    const dispatch = link.dispatch;
    link.dispatch = (name: string, ...args: unknown[]) => {
      try {
        return dispatch.call(link, name, ...args);
      } catch (error) {
        if (record.phase !== 'closed') this.failLink(record, error);
        else
          this.logger.error({ err: error, ...this.describe(), route: record.routeName }, 'amqp route listener threw');
        return true;
      }
    };
  }

  // --- transfers --------------------------------------------------------------------------------------------

  /**
   * Wraps the session's incoming transfers: a message over `maxMessageBytes` (counted over all its frames) is
   * dropped as it arrives and its link detached with `amqp:link:message-size-exceeded`; transfers beyond the
   * credit granted, or on a link the hub has not attached or already detached, are dropped too. A dropped
   * delivery is still registered with rhea without its payload, so delivery ids stay in step.
   */
  private guardTransfers(session: SessionInternals): void {
    const incoming = session.incoming;
    const original = incoming.on_transfer.bind(incoming);
    const max = this.settings.maxMessageBytes;
    const endDropped = (receiver: LinkInternals, state: TransferState) => {
      const delivery = receiver._incomplete;
      receiver._incomplete = undefined;
      if (delivery) {
        delivery.settled = true;
        delivery.frames = [];
      }
      state.dropping = false;
      state.bytes = 0;
    };
    const skip = (frame: TransferFrame, receiver: LinkInternals, state: TransferState) => {
      incoming.next_transfer_id++;
      if (!frame.performative.more) endDropped(receiver, state);
    };
    const dropFirst = (frame: TransferFrame, receiver: LinkInternals, state: TransferState) => {
      const last = !frame.performative.more;
      frame.payload = undefined;
      frame.performative.more = true;
      original(frame, receiver);
      state.dropping = true;
      if (last) endDropped(receiver, state);
    };
    incoming.on_transfer = (frame, receiver) => {
      if (!receiver.is_receiver()) throw protocolError('transfer on a link the hub sends on');
      if (!receiver.is_remote_open()) {
        original(frame, receiver);
        return;
      }
      const state = this.transferState(receiver);
      const length = frame.payload?.length ?? 0;
      const continuing = receiver._incomplete !== undefined;
      if (continuing) {
        // The rest of a message on a link the hub detached meanwhile.
        if (!state.dropping && !receiver.is_open()) this.forgetPartial(receiver);
        if (state.dropping) {
          skip(frame, receiver, state);
          return;
        }
      } else {
        state.bytes = 0;
        if (!receiver.is_open()) {
          dropFirst(frame, receiver, state);
          return;
        }
        if (receiver.credit <= 0) {
          dropFirst(frame, receiver, state);
          this.detachLink(receiver, {
            condition: 'amqp:link:transfer-limit-exceeded',
            description: 'transfer without link credit',
          });
          return;
        }
      }
      state.bytes += length;
      if (state.bytes > max) {
        if (continuing) {
          this.partialBytes -= state.bytes - length;
          state.dropping = true;
          if (receiver._incomplete) receiver._incomplete.frames = [];
          skip(frame, receiver, state);
        } else {
          dropFirst(frame, receiver, state);
        }
        this.logger.info(
          { ...this.describe(), address: this.links.get(receiver)?.address, max },
          'amqp message too large',
        );
        this.detachLink(receiver, {
          condition: AmqpErrorConditions.messageSizeExceeded,
          description: `Message larger than ${max} bytes`,
        });
        return;
      }
      if (frame.performative.more) this.partialBytes += length;
      else if (continuing) this.partialBytes -= state.bytes - length;
      original(frame, receiver);
      if (this.partialBytes > this.shared.limits.maxPartialBytes) {
        this.logger.warn(
          { ...this.describe(), bytes: this.partialBytes },
          'amqp connection holds too many unfinished messages; dropping the client',
        );
        this.drop(
          {
            condition: AmqpErrorConditions.resourceLimitExceeded,
            description: `More than ${this.shared.limits.maxPartialBytes} bytes of unfinished messages`,
          },
          'protocol',
        );
      }
    };
  }

  private transferState(receiver: LinkInternals): TransferState {
    let state = this.transfers.get(receiver);
    if (!state) {
      state = { bytes: 0, dropping: false };
      this.transfers.set(receiver, state);
    }
    return state;
  }

  /** A link closed mid-message: its buffered frames no longer count, the rest of the message is skipped. */
  private forgetPartial(link: LinkInternals): void {
    const state = this.transfers.get(link);
    if (!state || state.dropping || link._incomplete === undefined) return;
    this.partialBytes -= state.bytes;
    state.bytes = 0;
    state.dropping = true;
    link._incomplete.frames = [];
  }

  private detachLink(link: LinkInternals, error: AmqpError): void {
    const record = this.links.get(link);
    if (record) this.detach(record, error);
    else if (link.is_open()) link.close(toRheaError(error));
  }

  // --- CBS --------------------------------------------------------------------------------------------------

  private openCbs(record: LinkRecord): void {
    (record as { routeName: string }).routeName = 'cbs';
    const { link } = record;
    this.accept(record);
    if (record.direction === 'send') {
      this.cbsSenders.add(link as Sender);
      return;
    }
    const receiver = link as Receiver & { set_credit_window(window: number): void };
    receiver.set_credit_window(this.shared.limits.cbsCredit);
    receiver.add_credit(this.shared.limits.cbsCredit);
    receiver.on('message', (context: EventContext) => {
      const { message, delivery } = context;
      // Accepted at once, whatever the token: the verdict travels as the response.
      if (delivery) settleReceived(delivery);
      if (!message) return;
      const request = parsePutToken(message);
      if ('malformed' in request) {
        this.logger.info({ ...this.describe(), reason: request.malformed }, 'amqp CBS request malformed');
        const replyTo = typeof message.reply_to === 'string' ? message.reply_to : undefined;
        this.replyCbs({ messageId: message.message_id, replyTo }, 400, request.malformed);
        return;
      }
      void this.putToken(request);
    });
  }

  private async putToken(request: PutTokenRequest): Promise<void> {
    let status: 200 | 400 | 401 | 500;
    let description: string;
    try {
      const check: CredentialCheck =
        this.purpose === 'provisioning'
          ? { ok: false, status: 401, reason: 'a provisioning connection reaches only its registration' }
          : await checkToken(request.audience, request.token, {
              core: this.core,
              clockSkewSeconds: this.settings.clockSkewSeconds,
            });
      if (this.isClosed) return;
      if (check.ok) {
        this.hold(check.principal);
        status = 200;
        description = 'OK';
        this.logger.debug({ ...this.describe(), audience: request.audience }, 'amqp CBS put-token accepted');
      } else {
        status = check.status;
        description = check.reason;
        this.logger.info(
          { ...this.describe(), audience: request.audience, reason: check.reason },
          'amqp CBS put-token refused',
        );
      }
    } catch (error) {
      this.logger.error({ err: error, ...this.describe() }, 'amqp CBS put-token failed');
      status = 500;
      description = 'The hub failed to check the token';
    }
    this.replyCbs(request, status, description);
  }

  private replyCbs(
    request: { readonly messageId: unknown; readonly replyTo: string | undefined },
    status: 200 | 400 | 401 | 500,
    description: string,
  ): void {
    if (this.isClosed) return;
    let sender: Sender | undefined;
    for (const candidate of this.cbsSenders) {
      if (!candidate.is_open()) continue;
      const target = (candidate as unknown as LinkInternals).remote.attach?.target as { address?: unknown } | undefined;
      if (sender === undefined || (request.replyTo !== undefined && target?.address === request.replyTo)) {
        sender = candidate;
      }
    }
    if (!sender) {
      this.logger.info(this.describe(), 'amqp CBS response dropped: no $cbs receiver attached');
      return;
    }
    const response = putTokenResponse(this.shared.rhea, request, status, description);
    if (sender.sendable()) {
      sender.send(response);
      return;
    }
    // The peer's credit may still be on its way (it often sends the request first): replies wait for it, at most
    // as many as the requests the hub accepts at once.
    let waiting = this.cbsWaiting.get(sender);
    if (!waiting) {
      waiting = [];
      this.cbsWaiting.set(sender, waiting);
      const queue = waiting;
      sender.on('sendable', () => {
        while (queue.length > 0 && sender.sendable()) sender.send(queue.shift() as Message);
      });
    }
    if (waiting.length >= this.shared.limits.cbsCredit) {
      this.logger.info(this.describe(), 'amqp CBS response dropped: the peer grants no credit on its $cbs receiver');
      return;
    }
    waiting.push(response);
  }
}

/** The key of a registration's principal: DPS compares ID scopes and registration ids without case (§5.4). */
function registrationKey(idScope: string, registrationId: string): string {
  return `registration:${idScope.toLowerCase()}/${registrationId.toLowerCase()}`;
}

function toRheaError(error: AmqpError): { condition: string; description: string; info?: Record<string, unknown> } {
  return error.info === undefined
    ? { condition: error.condition, description: error.description }
    : { condition: error.condition, description: error.description, info: error.info };
}

function protocolError(message: string): Error {
  const error = new Error(message);
  // rhea's reader reports errors of this name as `protocol_error`.
  error.name = 'ProtocolError';
  return error;
}
