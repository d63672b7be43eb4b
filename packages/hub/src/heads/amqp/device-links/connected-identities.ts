/**
 * Which devices and modules are connected over AMQP (protocol-device.md §3.3, §3.7; the MQTT head's §2.1 rules):
 * an identity counts as connected on a connection while at least one of its device links is open there. The
 * first link reports `Connected` (registry `connectionState` and a `deviceConnected` event) and the last one
 * `Disconnected`, one identity's writes one after another.
 *
 * Eviction: a newer connection of the same identity, over AMQP or MQTT, takes over. The attachment announces
 * itself on the bus subject the MQTT head uses (`session.evict.<key>`, payload `{ sessionId }`) and listens on
 * it; a notice from another session detaches this connection's links of the identity with `amqp:link:stolen`,
 * and the evicted attachment reports nothing (its successor reported `Connected`).
 *
 * The state is per hub core (a WeakMap), so every connection of the head shares it whichever way the
 * connection layer builds its routes.
 */
import type { Receiver, Sender } from 'rhea';
import type { HubCore } from '../../../core/hub-core';
import type { SessionIdentity } from '../../mqtt/session';
import { type AmqpConnectionContext, AmqpErrorConditions } from '../contract';
import type { MethodChannel } from './method-links';
import type { TwinChannel } from './twin-links';

/** A device link as an attachment tracks it. */
type DeviceLink = Sender | Receiver;

let nextAttachmentId = 1;

/** One identity on one AMQP connection. */
export class IdentityAttachment {
  /** Tells this attachment's eviction notice from a newer session's (MQTT sessions use `<pid>-<n>`). */
  readonly id = `${process.pid}-amqp-${nextAttachmentId++}`;
  /** Set when a newer session of the identity took over: no disconnect report then. */
  evicted = false;
  /** Set once `Connected` was reported: only then is `Disconnected` reported. */
  connectReported = false;
  /** The twin request/response pair of this identity on this connection, while one of its links is open. */
  twin: TwinChannel | undefined;
  /** The direct-method pair of this identity on this connection, while one of its links is open. */
  methods: MethodChannel | undefined;
  private readonly links = new Map<DeviceLink, () => unknown>();
  private unsubscribeEvict: (() => void) | undefined;
  private ended = false;

  constructor(
    private readonly owner: ConnectedIdentities,
    readonly connection: object,
    readonly identity: SessionIdentity,
    readonly context: AmqpConnectionContext,
  ) {}

  /** Whether the attachment still serves links (not evicted, not ended). */
  get active(): boolean {
    return !this.ended && !this.evicted;
  }

  /** @internal Adds a link; `stop` ends the route's handling of it (its LinkHandle's close). */
  add(link: DeviceLink, stop: () => unknown): void {
    this.links.set(link, stop);
  }

  /** @internal Starts listening for eviction notices and announces this attachment. */
  start(): void {
    const { bus, hubName } = this.context.core.context;
    const subject = `session.evict.${this.identity.key}`;
    this.unsubscribeEvict = bus.subscribe(hubName, subject, (payload) => {
      const notice = payload as { sessionId?: unknown } | null;
      if (notice?.sessionId !== this.id) this.evict();
    });
    bus.publish(hubName, subject, { sessionId: this.id });
  }

  /**
   * A link of this attachment stopped; the last one ends the attachment. Resolves when the bookkeeping this
   * caused (a `Disconnected` report) is written. Idempotent per link.
   */
  remove(link: DeviceLink): Promise<void> {
    if (!this.links.delete(link)) return Promise.resolve();
    if (this.links.size === 0) return this.end();
    return Promise.resolve();
  }

  /** A newer session of the identity connected: detach every link of it here with `amqp:link:stolen`. */
  evict(): void {
    if (this.ended || this.evicted) return;
    this.evicted = true;
    if (this.context.logger.isLevelEnabled('info')) {
      this.context.logger.info(
        { ...this.context.describe(), deviceId: this.identity.deviceId, moduleId: this.identity.moduleId },
        'amqp device links evicted by a newer connection of the same identity',
      );
    }
    for (const [link, stop] of [...this.links]) {
      stop();
      if (!link.is_closed()) {
        link.close({
          condition: AmqpErrorConditions.linkStolen,
          description: 'A newer connection of the same device or module took over its links.',
        });
      }
    }
    // stop() removed each link, which ended the attachment; this covers an attachment without links.
    void this.end();
  }

  private end(): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.ended = true;
    this.unsubscribeEvict?.();
    this.unsubscribeEvict = undefined;
    return this.owner.ended(this);
  }
}

/** The AMQP-connected identities of one hub core. */
export class ConnectedIdentities {
  /** The newest attachment of each identity key (the one that reports `Disconnected`). */
  private readonly current = new Map<string, IdentityAttachment>();
  private readonly byConnection = new WeakMap<object, Map<string, IdentityAttachment>>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly connectedByProtocol = { amqp: 0, 'amqp-ws': 0 };
  private readonly countWatchers = new Set<(protocol: 'amqp' | 'amqp-ws', count: number) => void>();

  private constructor(private readonly core: HubCore) {}

  private static readonly ofCore = new WeakMap<HubCore, ConnectedIdentities>();

  /** The registry of `core` (created on first use). */
  static of(core: HubCore): ConnectedIdentities {
    let found = ConnectedIdentities.ofCore.get(core);
    if (!found) {
      found = new ConnectedIdentities(core);
      ConnectedIdentities.ofCore.set(core, found);
    }
    return found;
  }

  /** The live attachment of `identity` on `connection`, if any. */
  find(connection: object, identity: SessionIdentity): IdentityAttachment | undefined {
    return this.byConnection.get(connection)?.get(identity.key);
  }

  /**
   * Registers an opened device link of `identity` on `connection` and returns its attachment. The first link of
   * the identity there evicts older sessions of it and reports `Connected`. `stop` is called when the link is
   * evicted; the route calls `attachment.remove(link)` when the link stops for any reason.
   */
  attach(
    connection: object,
    identity: SessionIdentity,
    context: AmqpConnectionContext,
    link: DeviceLink,
    stop: () => unknown,
  ): IdentityAttachment {
    let links = this.byConnection.get(connection);
    if (!links) {
      links = new Map();
      this.byConnection.set(connection, links);
    }
    const existing = links.get(identity.key);
    if (existing?.active) {
      existing.add(link, stop);
      return existing;
    }
    const attachment = new IdentityAttachment(this, connection, identity, context);
    attachment.add(link, stop);
    links.set(identity.key, attachment);
    const previous = this.current.get(identity.key);
    this.current.set(identity.key, attachment);
    previous?.evict();
    attachment.start();
    this.countChanged(context.protocol, 1);
    this.report(attachment, true);
    if (context.logger.isLevelEnabled('info')) {
      context.logger.info(
        {
          ...context.describe(),
          deviceId: identity.deviceId,
          moduleId: identity.moduleId,
          auth: identity.authMethod.type,
        },
        'amqp device connected',
      );
    }
    return attachment;
  }

  /** @internal An attachment's last link stopped, or it was evicted. Resolves when its report is written. */
  ended(attachment: IdentityAttachment): Promise<void> {
    const { identity, connection, context } = attachment;
    const links = this.byConnection.get(connection);
    if (links?.get(identity.key) === attachment) {
      links.delete(identity.key);
      if (links.size === 0) this.byConnection.delete(connection);
    }
    this.countChanged(context.protocol, -1);
    if (attachment.evicted || this.current.get(identity.key) !== attachment) return Promise.resolve();
    this.current.delete(identity.key);
    return this.report(attachment, false);
  }

  private report(attachment: IdentityAttachment, connected: boolean): Promise<void> {
    const { core } = this;
    const { identity, context } = attachment;
    const ids = { deviceId: identity.deviceId, moduleId: identity.moduleId };
    return this.serialize(identity.key, async () => {
      if (connected) {
        // An attachment evicted in the meantime reports nothing: its successor does.
        if (attachment.evicted) return;
        attachment.connectReported = true;
        await core.registry.setConnectionState(identity.deviceId, identity.moduleId, true);
        await core.events.connectionState('deviceConnected', ids);
      } else {
        if (!attachment.connectReported) return;
        await core.registry.setConnectionState(identity.deviceId, identity.moduleId, false);
        await core.events.connectionState('deviceDisconnected', ids);
      }
    }).catch((error: unknown) =>
      context.logger.error({ err: error, ...context.describe(), ...ids }, 'amqp connection state update failed'),
    );
  }

  /** Runs connection-state writes of one identity one after another. */
  private serialize(key: string, task: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(key) ?? Promise.resolve();
    const run = previous.then(task, task);
    const tail = run.catch(() => undefined);
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return run;
  }

  /**
   * Identities connected over `protocol` now (each device or module once per connection it has links on): what
   * the `fieldhub_connected_devices` gauge shows for AMQP (the head owns the metrics and watches this).
   */
  count(protocol: 'amqp' | 'amqp-ws'): number {
    return this.connectedByProtocol[protocol];
  }

  /**
   * Calls `watcher` with the new {@link count} of a protocol each time it changes (the head sets its metrics
   * gauge with it). Returns the function that stops watching.
   */
  watchCount(watcher: (protocol: 'amqp' | 'amqp-ws', count: number) => void): () => void {
    this.countWatchers.add(watcher);
    return () => this.countWatchers.delete(watcher);
  }

  private countChanged(protocol: 'amqp' | 'amqp-ws', delta: number): void {
    this.connectedByProtocol[protocol] += delta;
    const count = this.connectedByProtocol[protocol];
    for (const watcher of this.countWatchers) watcher(protocol, count);
  }
}
