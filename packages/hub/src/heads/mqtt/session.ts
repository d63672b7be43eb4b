/**
 * One MQTT 3.1.1 connection of a device or module (over TLS or WebSockets): the parser, the session state,
 * timers (CONNECT deadline, keep-alive, SAS expiry), flow control, and the dispatch of packets to one handler
 * per packet type (`handlers/*`, as MQTT.js v5 is laid out). It holds session state only: every feature is a
 * core call (ARCHITECTURE.md, "Heads translate").
 *
 * Flow control, so that a slow or hostile peer cannot grow hub memory without bound:
 * - reading pauses while too many telemetry appends of this session are pending, while authentication runs, and
 *   while the socket's write buffer is over its bound (twin responses are the device's own doing);
 * - cloud-to-device messages, desired-property patches and method requests wait for 'drain' instead.
 */

import type { Duplex } from 'node:stream';
import type { DetailedPeerCertificate } from 'node:tls';
import { Limits, type MessageSystemProperties } from '@fieldhub/protocol';
import { generate, type Packet } from 'mqtt-packet';
import type { Logger } from 'pino';
import type { CertificateAuthorities } from '../../core/certificate-authorities';
import type { HubCore } from '../../core/hub-core';
import type { ConnectionAuthMethod } from '../../core/telemetry';
import { AckQueue } from './ack-queue';
import type { CloudToDeviceDeliveries } from './cloud-to-device-deliveries';
import type { DesiredPropertiesForwarder } from './desired-properties';
import type { DpsSession } from './dps-session';
import { handleConnect } from './handlers/connect';
import { handleDisconnect } from './handlers/disconnect';
import { handlePingreq } from './handlers/pingreq';
import { handlePuback } from './handlers/puback';
import { handlePublish } from './handlers/publish';
import { handleSubscribe } from './handlers/subscribe';
import { handleUnsubscribe } from './handlers/unsubscribe';
import type { MethodResponder } from './method-responder';
import { createPacketParser, forgetConnect, type PacketParser } from './packet-parser';
import { endpointInput, TelemetryBatch } from './telemetry-ingest';

/** Who the session authenticated as. */
export interface SessionIdentity {
  readonly deviceId: string;
  readonly moduleId: string | undefined;
  /** `deviceId` or `deviceId/moduleId`: the key of eviction and of the bus subject `session.evict.<key>`. */
  readonly key: string;
  /** Stamped on telemetry as `iothub-connection-auth-method` (protocol-device.md §7). */
  readonly authMethod: ConnectionAuthMethod;
  /** The identity's generationId, stamped as `iothub-connection-auth-generation-id`. */
  readonly generationId: string;
}

/** Checks a client certificate chain against the hub's verified CAs (`core.certificateAuthorities` does). */
export type CertificateChainAuthenticator = Pick<CertificateAuthorities, 'authenticateDevice'>;

/** Tunables of the head; defaults in `mqtt-head.ts`. */
export interface MqttSessionSettings {
  /** The socket is dropped when no CONNECT arrives within this (default 10 s). */
  readonly connectTimeoutMs: number;
  /** Largest MQTT packet accepted (remaining length); bigger ones close the connection. */
  readonly maxPacketBytes: number;
  /** Reading pauses while this many telemetry appends of one session are pending. */
  readonly maxPendingAppends: number;
  /** Deliveries wait for 'drain' while the socket buffers more than this many bytes. */
  readonly writeHighWaterBytes: number;
  /** Unacknowledged cloud-to-device messages per session. */
  readonly cloudToDeviceWindow: number;
  /** Seconds a SAS token is accepted past its `se`, also added to the expiry timer (default 300, as verifySasToken). */
  readonly clockSkewSeconds: number;
  /** Desired-property patches held for a slow reader; one more closes the connection (the device re-reads the twin). */
  readonly maxQueuedDesiredPatches: number;
}

/** What the head gives its sessions. */
export interface MqttHeadContext {
  readonly core: HubCore;
  readonly logger: Logger;
  readonly settings: MqttSessionSettings;
  /** Checks chains of `certificateAuthority` devices. */
  readonly certificateAuthorities: CertificateChainAuthenticator;
  /** Makes `session` the current one of its identity, evicting an older session ([§2.1]). */
  claim(session: MqttSession): void;
  /** Whether `session` is still the current one of its identity. */
  isCurrent(session: MqttSession): boolean;
  /** Forgets `session` as current (no-op when another took over). */
  release(session: MqttSession): void;
  /** Runs connection-state writes of one identity one after another. */
  serialize(key: string, task: () => Promise<void>): Promise<void>;
  /** The session is connected (CONNACK 0 sent). */
  connected(session: MqttSession): void;
  /** The session's socket closed and its cleanup finished. */
  closed(session: MqttSession, cleanup: Promise<void>): void;
}

/** How the connection arrived. */
export interface TransportInfo {
  /** Metrics label: `mqtt` (TLS) or `mqtt-ws`. */
  readonly protocol: 'mqtt' | 'mqtt-ws';
  readonly remoteAddress: string | undefined;
  /** The TLS client certificate with its chain, if the peer presented one. */
  peerCertificate(): DetailedPeerCertificate | undefined;
}

/** Session states. */
export type SessionState = 'awaitingConnect' | 'authenticating' | 'connected' | 'closed';

/** The close reason of sessions ended by the hub's shutdown (no will then: the store is closing). */
export const hubStopping = 'hub stopping';

// Reasons to stop reading the socket (a bit mask: reading resumes when none holds).
const PauseReasons = { authentication: 1, appends: 2, writes: 4 } as const;

// setTimeout takes at most 2^31 - 1 ms; SAS tokens may live longer (a year is common).
const maxTimerMs = 2_147_483_647;

let nextSessionId = 1;

// The session of a socket and of a parser, for the listeners below: one function for all sessions instead of
// closures per connection (W5 counts the bytes of every idle connection).
const sessionOf = Symbol('mqttSession');
interface SessionCarrier {
  [sessionOf]: MqttSession;
}

function onSocketData(this: SessionCarrier, chunk: Buffer): void {
  this[sessionOf].onData(chunk);
}
function onSocketDrain(this: SessionCarrier): void {
  this[sessionOf].onDrain();
}
function onSocketError(this: SessionCarrier, error: Error): void {
  this[sessionOf].close(`socket error: ${error.message}`, 'debug');
}
function onSocketClose(this: SessionCarrier): void {
  this[sessionOf].onClose();
}
function onParsedPacket(this: SessionCarrier, packet: Packet): void {
  this[sessionOf].onPacket(packet);
}
function onParseError(this: SessionCarrier, error: Error): void {
  this[sessionOf].close(`malformed packet: ${error.message}`, 'warn');
}
function onConnectTimeout(session: MqttSession): void {
  session.close('no CONNECT in time', 'debug');
}
function onSessionTimer(session: MqttSession): void {
  session.onTimer();
}

// CONNACK 0 (accepted, no session present), the same bytes for every connection.
const connackAccepted = Buffer.from([0x20, 0x02, 0x00, 0x00]);

/** One device connection. Created by the head for each TLS or WebSocket connection. */
export class MqttSession {
  private readonly serial = nextSessionId++;
  state: SessionState = 'awaitingConnect';
  identity: SessionIdentity | undefined;
  /** Set when a newer session of the same identity took over: no disconnect event then. */
  evicted = false;
  /** Set once the connect was reported (registry + event): only then is a disconnect reported. */
  connectReported = false;
  /** The will message of the CONNECT, validated as the identity's own telemetry (§2.2). */
  will: { body: Buffer; properties: Record<string, string>; systemProperties: MessageSystemProperties } | undefined;
  /** Whether the client sent DISCONNECT (a clean close). */
  cleanDisconnect = false;
  /** Telemetry appends in flight (QoS 0 and 1), counted per message. */
  pendingAppends = 0;
  /** Subscribed to `$iothub/twin/res/#`. */
  twinResponses = false;
  desired: DesiredPropertiesForwarder | undefined;
  methods: MethodResponder | undefined;
  cloudToDevice: CloudToDeviceDeliveries | undefined;
  /** Set on a provisioning connection (`dps-session.ts`): no identity then, only `$dps` topics. */
  provisioning: DpsSession | undefined;
  /** Packets that arrived while the CONNECT was being authenticated ([MQTT-3.1.4-5]: processed after). */
  private backlog: Packet[] | undefined;
  private readonly parser: PacketParser;
  private pauses = 0;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  // One timer for keep-alive and token expiry, armed for the nearer of the two (see armTimer).
  private timer: ReturnType<typeof setTimeout> | undefined;
  private keepAliveMs = 0;
  private lastReceived = Date.now();
  private expiresAtMs = Number.POSITIVE_INFINITY;
  private unsubscribeEvict: (() => void) | undefined;
  private drainWaiters: (() => void)[] | undefined;
  private closeReason: string | undefined;
  // Allocated on first use: most idle devices never send telemetry.
  private ackQueue: AckQueue | undefined;
  private telemetryBatch: TelemetryBatch | undefined;

  constructor(
    readonly head: MqttHeadContext,
    readonly socket: Duplex,
    readonly transport: TransportInfo,
  ) {
    this.parser = createPacketParser(head.settings.maxPacketBytes);
    (this.parser as unknown as SessionCarrier)[sessionOf] = this;
    this.parser.on('packet', onParsedPacket);
    this.parser.on('error', onParseError);
    (socket as unknown as SessionCarrier)[sessionOf] = this;
    socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    this.connectTimer = setTimeout(onConnectTimeout, head.settings.connectTimeoutMs, this);
  }

  /** Unique in this process: tells the bus eviction notice of this session from a newer one's. */
  get id(): string {
    return `${process.pid}-${this.serial}`;
  }

  /** PUBACKs owed for QoS 1 telemetry, in arrival order. */
  get acks(): AckQueue {
    this.ackQueue ??= new AckQueue(32);
    return this.ackQueue;
  }

  /** Telemetry of the current turn, appended as one batch at its end. */
  get telemetry(): TelemetryBatch {
    this.telemetryBatch ??= new TelemetryBatch(this);
    return this.telemetryBatch;
  }

  /** @internal A chunk from the socket. */
  onData(chunk: Buffer): void {
    this.lastReceived = Date.now();
    this.parser.parse(chunk);
  }

  /** The core services. */
  get core(): HubCore {
    return this.head.core;
  }

  /** The logger, with the session's identity when known. */
  get logger(): Logger {
    return this.head.logger;
  }

  /** Log fields naming this session (never secrets). */
  describe(): Record<string, unknown> {
    return {
      deviceId: this.identity?.deviceId,
      moduleId: this.identity?.moduleId,
      registrationId: this.provisioning?.principal.registrationId,
      remoteAddress: this.transport.remoteAddress,
      protocol: this.transport.protocol,
    };
  }

  // ---- reading -----------------------------------------------------------------------------------------------

  /** @internal A packet from the parser. */
  onPacket(packet: Packet): void {
    if (this.state === 'closed') return;
    if (this.state === 'awaitingConnect') {
      if (packet.cmd !== 'connect') {
        // [MQTT-3.1.0-1]: the first packet must be CONNECT.
        this.close(`first packet was ${packet.cmd}, not CONNECT`, 'warn');
        return;
      }
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      this.state = 'authenticating';
      this.backlog = [];
      // The handler has the packet; the parser need not keep it (it holds the SAS token, W5).
      forgetConnect(this.parser);
      this.setPaused(PauseReasons.authentication, true);
      handleConnect(this, packet).catch((error: unknown) => {
        this.logger.error({ err: error, ...this.describe() }, 'mqtt CONNECT handling failed');
        this.close('internal error during CONNECT', 'error');
      });
      return;
    }
    if (this.state === 'authenticating') {
      this.backlog?.push(packet);
      return;
    }
    this.dispatch(packet);
  }

  private dispatch(packet: Packet): void {
    switch (packet.cmd) {
      case 'publish':
        handlePublish(this, packet);
        return;
      case 'puback':
        handlePuback(this, packet);
        return;
      case 'subscribe':
        handleSubscribe(this, packet);
        return;
      case 'unsubscribe':
        handleUnsubscribe(this, packet);
        return;
      case 'pingreq':
        handlePingreq(this);
        return;
      case 'disconnect':
        handleDisconnect(this);
        return;
      case 'connect':
        // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
        this.close('second CONNECT', 'warn');
        return;
      default:
        // PUBREC/PUBREL/PUBCOMP (QoS 2, which IoT Hub does not support, §2.3) and server-to-client packets.
        this.close(`unexpected ${packet.cmd} packet`, 'warn');
    }
  }

  /**
   * Called by the CONNECT handler after CONNACK 0: the session is live. Starts the keep-alive and token expiry
   * timers and processes the packets that arrived meanwhile.
   */
  accept(identity: SessionIdentity, keepAliveSeconds: number, expiresAtMs: number | undefined): void {
    this.identity = identity;
    this.unsubscribeEvict = this.core.context.bus.subscribe(
      this.core.context.hubName,
      `session.evict.${identity.key}`,
      (payload) => {
        const notice = payload as { sessionId?: unknown } | null;
        if (notice?.sessionId !== this.id) this.evict();
      },
    );
    this.start(keepAliveSeconds, expiresAtMs);
  }

  /**
   * Called by the provisioning CONNECT handler after CONNACK 0 (`dps-session.ts`): the same timers and backlog as
   * {@link accept}, without an identity (nothing to evict: a registration may have several connections).
   */
  acceptProvisioning(keepAliveSeconds: number, expiresAtMs: number | undefined): void {
    this.start(keepAliveSeconds, expiresAtMs);
  }

  private start(keepAliveSeconds: number, expiresAtMs: number | undefined): void {
    this.state = 'connected';
    // Keep-alive: the hub drops a connection silent for 1.5 × the client's keep-alive [MQTT-3.1.2-24], capped
    // at 1767 s (protocol-device.md §2.2, §7); 0 means none. SAS expiry: IoT Hub severs the connection (§1.3).
    if (keepAliveSeconds > 0)
      this.keepAliveMs = Math.min(keepAliveSeconds * 1500, Limits.mqttKeepAliveMaxSeconds * 1000);
    if (expiresAtMs !== undefined) this.expiresAtMs = expiresAtMs;
    this.armTimer();
    const backlog = this.backlog ?? [];
    this.backlog = undefined;
    this.setPaused(PauseReasons.authentication, false);
    for (const packet of backlog) {
      if (this.state !== 'connected') return;
      this.dispatch(packet);
    }
  }

  /** Closes this session because a newer one of the same identity connected (IoT Hub 400027, §2.1). */
  evict(): void {
    if (this.state === 'closed') return;
    this.evicted = true;
    this.close('evicted by a newer connection of the same identity', 'info');
  }

  /** Counts telemetry appends in flight; reading pauses at the session's bound. */
  appendsStarted(count: number): void {
    this.pendingAppends += count;
    if (this.pendingAppends >= this.head.settings.maxPendingAppends) this.setPaused(PauseReasons.appends, true);
  }

  /** Appends finished (either way). */
  appendsFinished(count: number): void {
    this.pendingAppends -= count;
    if (this.pendingAppends <= this.head.settings.maxPendingAppends >> 1) this.setPaused(PauseReasons.appends, false);
  }

  private setPaused(reason: number, on: boolean): void {
    const before = this.pauses;
    this.pauses = on ? this.pauses | reason : this.pauses & ~reason;
    if (this.state === 'closed') return;
    if (before === 0 && this.pauses !== 0) this.socket.pause();
    else if (before !== 0 && this.pauses === 0) this.socket.resume();
  }

  // ---- writing -----------------------------------------------------------------------------------------------

  /** Writes CONNACK 0 (accepted, no session present). */
  sendConnackAccepted(): void {
    this.write(connackAccepted);
  }

  /** Writes encoded bytes; pauses reading while the write buffer is over its bound. */
  write(bytes: Buffer): void {
    if (this.state === 'closed') return;
    this.socket.write(bytes);
    if (this.socket.writableLength > this.head.settings.writeHighWaterBytes) this.setPaused(PauseReasons.writes, true);
  }

  /**
   * Marks the telemetry appends of QoS 1 PUBLISHes durable (their tickets from `acks.push`) and writes every
   * PUBACK that may now go out, in arrival order, as one write.
   */
  acknowledge(tickets: readonly number[]): void {
    let ids: number[] | undefined;
    let single = -1;
    const release = (packetId: number): void => {
      if (single < 0) {
        single = packetId;
        return;
      }
      ids ??= [single];
      ids.push(packetId);
    };
    for (const ticket of tickets) this.acks.complete(ticket, release);
    if (this.state === 'closed') return;
    if (ids === undefined) {
      if (single >= 0) this.write(pubackOf(single));
      return;
    }
    const bytes = Buffer.allocUnsafe(ids.length * 4);
    for (let i = 0; i < ids.length; i++) writePuback(bytes, i * 4, ids[i] as number);
    this.write(bytes);
  }

  /** Encodes and writes a packet. */
  send(packet: Packet): void {
    this.write(generate(packet));
  }

  /** Publishes to the device (QoS 0 unless a packet id is given, then QoS 1). */
  publish(topic: string, payload: Buffer | string, messageId?: number): void {
    if (messageId === undefined) {
      this.send({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false });
    } else {
      this.send({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false, messageId });
    }
  }

  /** Whether the socket's write buffer is over its bound (deliveries should wait for {@link whenWritable}). */
  get congested(): boolean {
    return this.socket.writableLength > this.head.settings.writeHighWaterBytes;
  }

  /** Resolves when the write buffer is under its bound, or the session closed. */
  whenWritable(): Promise<void> {
    if (!this.congested || this.state === 'closed') return Promise.resolve();
    return new Promise((resolve) => {
      this.drainWaiters ??= [];
      this.drainWaiters.push(resolve);
    });
  }

  /** @internal The socket's write buffer drained. */
  onDrain(): void {
    this.setPaused(PauseReasons.writes, false);
    const waiters = this.drainWaiters;
    if (waiters === undefined) return;
    this.drainWaiters = undefined;
    for (const resolve of waiters) resolve();
  }

  // ---- timers ------------------------------------------------------------------------------------------------

  /**
   * Arms the session's one timer for the nearer of the keep-alive deadline and the token expiry. It is re-armed
   * only when it fires, not on every packet: `lastReceived` is a number written per data chunk.
   */
  private armTimer(): void {
    const keepAliveDue = this.keepAliveMs > 0 ? this.lastReceived + this.keepAliveMs : Number.POSITIVE_INFINITY;
    const due = Math.min(keepAliveDue, this.expiresAtMs);
    if (due === Number.POSITIVE_INFINITY) return;
    const delay = Math.max(0, Math.min(due - Date.now(), maxTimerMs));
    this.timer = setTimeout(onSessionTimer, delay, this);
  }

  /** @internal The keep-alive or expiry timer fired. */
  onTimer(): void {
    this.timer = undefined;
    if (this.state === 'closed') return;
    const now = Date.now();
    if (now >= this.expiresAtMs) {
      this.close('SAS token expired', 'info');
      return;
    }
    const idle = now - this.lastReceived;
    if (this.keepAliveMs > 0 && idle >= this.keepAliveMs) {
      this.close(`keep-alive expired (${Math.round(idle / 1000)} s silent)`, 'debug');
      return;
    }
    this.armTimer();
  }

  // ---- closing -----------------------------------------------------------------------------------------------

  /**
   * Refuses a CONNECT: CONNACK with the return code, then closes ([MQTT-3.2.2-5]). Logged as a warning with the
   * reason (never credentials).
   */
  refuse(returnCode: 1 | 2 | 3 | 4 | 5, reason: string, fields: Record<string, unknown> = {}): void {
    if (this.state === 'closed') return;
    this.logger.warn({ ...this.describe(), ...fields, returnCode, reason }, 'mqtt connection refused');
    this.closeReason = reason;
    this.state = 'closed';
    this.socket.end(Buffer.from([0x20, 0x02, 0x00, returnCode]));
    // A peer that never reads must not keep the socket half-open.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.cleanup();
  }

  /** Closes the connection (idempotent). Protocol violations are logged at warn, as the brief asks. */
  close(reason: string, level: 'debug' | 'info' | 'warn' | 'error' = 'debug'): void {
    if (this.state === 'closed') return;
    this.closeReason = reason;
    if (this.logger.isLevelEnabled(level)) this.logger[level]({ ...this.describe(), reason }, 'mqtt connection closed');
    this.state = 'closed';
    this.socket.destroy();
    this.cleanup();
  }

  /** @internal The socket closed. */
  onClose(): void {
    if (this.state !== 'closed') {
      this.state = 'closed';
      if (this.logger.isLevelEnabled('debug'))
        this.logger.debug({ ...this.describe(), clean: this.cleanDisconnect }, 'mqtt connection ended by peer');
      this.cleanup();
    }
  }

  private cleaned = false;

  private cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    clearTimeout(this.connectTimer);
    clearTimeout(this.timer);
    this.unsubscribeEvict?.();
    // Telemetry parsed before the close is still appended (as it was received), and before the will.
    this.telemetryBatch?.flush();
    this.ackQueue?.clear();
    this.backlog = undefined;
    this.desired?.stop();
    this.methods?.stop();
    this.cloudToDevice?.stop();
    this.onDrain();
    this.head.closed(this, this.finish());
  }

  /** Reports the disconnect, only if this session is still the identity's current one. */
  private async finish(): Promise<void> {
    const identity = this.identity;
    if (identity && this.will && !this.cleanDisconnect && this.closeReason !== hubStopping) {
      // §2.2: on an unclean disconnect the hub forwards the will as telemetry marked `iothub-MessageType=Will`.
      const { body, properties, systemProperties } = this.will;
      const input = endpointInput(identity, body, { ...properties, 'iothub-MessageType': 'Will' }, systemProperties);
      await this.core.telemetry
        .append(input)
        .catch((error: unknown) => this.logger.error({ err: error, ...this.describe() }, 'will append failed'));
    }
    if (!identity || this.evicted || !this.head.isCurrent(this)) return;
    this.head.release(this);
    const { core } = this;
    const ids = { deviceId: identity.deviceId, moduleId: identity.moduleId };
    await this.head.serialize(identity.key, async () => {
      if (!this.connectReported) return;
      await core.registry.setConnectionState(identity.deviceId, identity.moduleId, false);
      await core.events.connectionState('deviceDisconnected', ids);
    });
    if (this.logger.isLevelEnabled('debug')) {
      this.logger.debug({ ...this.describe(), reason: this.closeReason }, 'mqtt session ended');
    }
  }
}

function writePuback(target: Buffer, offset: number, packetId: number): void {
  target[offset] = 0x40;
  target[offset + 1] = 0x02;
  target.writeUInt16BE(packetId, offset + 2);
}

function pubackOf(packetId: number): Buffer {
  const bytes = Buffer.allocUnsafe(4);
  writePuback(bytes, 0, packetId);
  return bytes;
}
