/**
 * One MCU behind one serial port (PROTOCOL.md §5): the link, the MCU's identity, and one device client of our
 * SDK per identity. Maps every application message to the client and back: telemetry with its system properties
 * (acknowledged to the MCU only after the hub), cloud-to-device messages with their settlement, the twin, direct
 * methods, time, SAS signing by the MCU, STATUS on every change and ERROR per §3 / §5.9.
 *
 * The client outlives a cable pull (same `bootId` and identity): telemetry queues in the client meanwhile and
 * cloud-to-device messages wait at the hub. An MCU that rebooted (new `bootId`) gets a fresh client.
 */
import {
  amqp,
  type CloudToDeviceMessage,
  createDeviceClient,
  type DeviceClient,
  type DeviceClientOptions,
  type DirectMethodRequest,
  type DirectMethodResponse,
  HubError,
  type Logger,
  mqtt,
  sasTokenCredentialProvider,
  type TelemetryMessage,
  type TransportFactory,
} from '@fieldhub/device';
import {
  AuthenticationError,
  base64Encode,
  ConnectionError,
  formatSasToken,
  sasStringToSign,
} from '@fieldhub/protocol';
import type { DeviceEntry, HubSettings } from './config';
import {
  type BridgeMessage,
  Capability,
  ErrorCode,
  type HelloFields,
  LinkState,
  type MessageOf,
  type Properties,
  SettleOutcome,
} from './frame/index';
import { Link, type LinkSettings, type LinkTimers } from './link';

/** How many confirmed `(bootId, id)` pairs are remembered per identity (§5.3). */
export const telemetryDedupSize = 64;
/** Direct-method requests wait this long for the MCU at most (IoT Hub's own limit is 300 s). */
const methodTimeoutMs = 300_000;
/** SIGN_REQUEST waits this long for SIGN_RESPONSE. */
const signTimeoutMs = 10_000;
/** Lifetime of the SAS tokens the MCU signs; renewed 15 minutes before expiry by the client. */
const sasTtlSeconds = 3600;

/** System properties as spelled on the MQTT topic and in `props` (§5.1), to the SDK's message fields. */
const systemProperties = {
  '$.mid': 'messageId',
  '$.cid': 'correlationId',
  '$.ct': 'contentType',
  '$.ce': 'contentEncoding',
  '$.uid': 'userId',
  '$.exp': 'expiryTimeUtc',
} as const;
type SystemField = (typeof systemProperties)[keyof typeof systemProperties];

/** What a session reports outside (the gateway's events; tests observe them). */
export interface McuSessionEvents {
  /** The MCU announced (or re-announced) this identity. */
  identity?(identity: { deviceId: string; moduleId?: string; auth: number; bootId: number }): void;
  /** A `STATUS` was sent (or would have been, with the link down). */
  status?(status: { state: number; status: number; detail: string }): void;
  /** The gateway asked the MCU to sign (§5.8). */
  signRequested?(request: { rid: number; stringToSign: string }): void;
  /** A telemetry message was confirmed to the MCU (`status` 200) or refused. */
  telemetryAcknowledged?(ack: { id: number; status: number; duplicate: boolean }): void;
  /** The link went up or down. */
  link?(state: 'up' | 'down'): void;
}

/** Options of {@link McuSession}. */
export interface McuSessionOptions {
  /** Where the port's bytes go. */
  readonly write: (bytes: Uint8Array) => void;
  readonly hub: HubSettings;
  /** Identities this port's MCUs may announce with `auth` 0 (the keys). `auth` 1 identities need no entry. */
  readonly devices: readonly DeviceEntry[];
  readonly logger: Logger;
  /** A name for logs (the port path). */
  readonly name: string;
  readonly link?: Partial<LinkSettings>;
  readonly timers?: LinkTimers;
  readonly events?: McuSessionEvents;
  /** Passed to every device client (tests shorten the retry policy). */
  readonly clientOptions?: Partial<Pick<DeviceClientOptions, 'retryPolicy' | 'offlineQueue' | 'connectTimeoutMs'>>;
}

interface Identity {
  readonly deviceId: string;
  readonly moduleId: string;
  readonly auth: number;
}

interface ClientSlot {
  readonly identity: Identity;
  readonly bootId: number;
  readonly abort: AbortController;
  readonly ready: Promise<DeviceClient>;
  client?: DeviceClient;
  failure?: HubError;
  closed: boolean;
  /** A desired patch could not be pushed (link down, too large): tell the MCU to re-read on the next link-up. */
  missedDesiredVersion: number | undefined;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  timer: unknown;
}

function identityKey(identity: Identity): string {
  return `${identity.deviceId}\u0000${identity.moduleId}\u0000${identity.auth}`;
}

function statusOf(error: unknown): number {
  return HubError.is(error) ? error.status : 500;
}

/** The session of one serial port: see the file comment. */
export class McuSession {
  readonly #options: McuSessionOptions;
  readonly #link: Link;
  readonly #log: Logger;
  readonly #timers: LinkTimers;
  #peer: HelloFields | undefined;
  /** The identity announced on the current link; application frames before it get `ERROR NoIdentity`. */
  #identity: Identity | undefined;
  #slot: ClientSlot | undefined;
  #lastStatus: { state: number; status: number; detail: string } = { state: LinkState.offline, status: 0, detail: '' };
  /** Confirmed `bootId:id` keys per identity, oldest first. */
  readonly #confirmed = new Map<string, string[]>();
  /** Telemetry on its way to the hub, by `bootId:id`: a re-sent copy waits for the first. */
  readonly #telemetryInFlight = new Map<string, Promise<number>>();
  readonly #signWaiters = new Map<number, Waiter<{ status: number; signature: Uint8Array }>>();
  readonly #methodWaiters = new Map<number, Waiter<{ status: number; json: string }>>();
  readonly #settleWaiters = new Map<number, (outcome: number, seq: number) => void>();
  readonly #linkUpWaiters = new Set<() => void>();
  #nextRid = 1;
  #nextTag = 1;
  #closed = false;

  constructor(options: McuSessionOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.#timers = options.timers ?? {
      now: () => Date.now(),
      setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
      clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    };
    this.#link = new Link({
      write: options.write,
      ...(options.link !== undefined ? { settings: options.link } : {}),
      ...(options.timers !== undefined ? { timers: options.timers } : {}),
      events: {
        up: (peer) => this.#onLinkUp(peer),
        down: (reason) => this.#onLinkDown(reason),
        message: (message, seq) => this.#onMessage(message, seq),
      },
    });
  }

  /** The link of this session (state, peer). */
  get link(): Link {
    return this.#link;
  }

  /** The device client of the current identity, once connected. */
  get client(): DeviceClient | undefined {
    return this.#slot?.client;
  }

  /** The port opened: reset the MCU's link (§4.1). */
  opened(): void {
    this.#link.opened();
  }

  /** The port closed (cable pull): the link is down; the client stays for the same MCU. */
  closed(): void {
    this.#link.closed();
  }

  /** Bytes from the port. */
  receive(bytes: Uint8Array): void {
    this.#link.receive(bytes);
  }

  /** Closes the client and stops the link. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#link.dispose();
    this.#failWaiters('gateway closed');
    await this.#dropSlot();
  }

  // ---- link events ------------------------------------------------------------------------------------------------

  #onLinkUp(peer: HelloFields): void {
    this.#peer = peer;
    this.#identity = undefined;
    this.#options.events?.link?.('up');
    this.#log.info?.('link up', { port: this.#options.name, bootId: peer.bootId, capabilities: peer.capabilities });
    // §5.7: TIME unasked after each link-up.
    this.#send({ kind: 'time', unixMs: this.#timers.now() });
    for (const wake of [...this.#linkUpWaiters]) wake();
  }

  #onLinkDown(reason: string): void {
    this.#identity = undefined;
    this.#options.events?.link?.('down');
    this.#log.info?.('link down', { port: this.#options.name, reason });
    // Nothing sent before the link went down will be answered on this link (§4.1: both sides restart).
    this.#failWaiters('link down');
  }

  #failWaiters(reason: string): void {
    for (const [rid, waiter] of this.#signWaiters) {
      this.#timers.clearTimeout(waiter.timer);
      waiter.reject(new ConnectionError(`the MCU could not sign: ${reason}`));
      this.#signWaiters.delete(rid);
    }
    for (const [rid, waiter] of this.#methodWaiters) {
      this.#timers.clearTimeout(waiter.timer);
      waiter.resolve({ status: 404, json: JSON.stringify({ message: `the MCU is unreachable: ${reason}` }) });
      this.#methodWaiters.delete(rid);
    }
    for (const [tag, settle] of this.#settleWaiters) {
      this.#settleWaiters.delete(tag);
      settle(-1, 0);
    }
  }

  // ---- dispatch ---------------------------------------------------------------------------------------------------

  #onMessage(message: BridgeMessage, seq: number): void {
    if (message.kind === 'identity') {
      this.#onIdentity(message, seq);
      return;
    }
    if (message.kind === 'error') {
      this.#log.warn?.('the MCU reported an error', { port: this.#options.name, ...message });
      return;
    }
    if (message.kind === 'timeRequest') {
      this.#send({ kind: 'time', unixMs: this.#timers.now() });
      return;
    }
    if (message.kind === 'signResponse') {
      const waiter = this.#signWaiters.get(message.rid);
      if (waiter === undefined) return; // late or unknown: dropped
      this.#signWaiters.delete(message.rid);
      this.#timers.clearTimeout(waiter.timer);
      waiter.resolve({ status: message.status, signature: message.signature });
      return;
    }
    if (message.kind === 'methodResponse') {
      const waiter = this.#methodWaiters.get(message.rid);
      if (waiter === undefined) return; // §5.6: a late response is dropped
      this.#methodWaiters.delete(message.rid);
      this.#timers.clearTimeout(waiter.timer);
      waiter.resolve({ status: message.status, json: message.json });
      return;
    }
    const fromMcu = ['telemetry', 'cloudToDeviceSettle', 'twinGet', 'twinReported'] as const;
    if (!(fromMcu as readonly string[]).includes(message.kind)) {
      // A gateway-to-MCU type sent by the MCU: it parses, but this side has nothing to do with it.
      this.#sendError(seq, ErrorCode.unsupported, `${message.kind} is not sent to the gateway`);
      return;
    }
    const slot = this.#slot;
    if (this.#identity === undefined || slot === undefined) {
      this.#sendError(seq, ErrorCode.noIdentity, 'send IDENTITY first');
      return;
    }
    switch (message.kind) {
      case 'telemetry':
        this.#onTelemetry(slot, message);
        break;
      case 'cloudToDeviceSettle': {
        const settle = this.#settleWaiters.get(message.tag);
        if (settle === undefined) {
          this.#log.debug?.('settlement of an unknown tag ignored', { port: this.#options.name, tag: message.tag });
          return;
        }
        settle(message.outcome, seq);
        break;
      }
      case 'twinGet':
        this.#onTwinGet(slot, message.rid);
        break;
      case 'twinReported':
        this.#onTwinReported(slot, message.rid, message.json);
        break;
    }
  }

  #send(message: BridgeMessage): boolean {
    const result = this.#link.send(message);
    if (result === 'sent' || result === 'queued') return true;
    if (result !== 'down')
      this.#log.warn?.('a frame to the MCU was not sent', { port: this.#options.name, kind: message.kind, result });
    return false;
  }

  #sendError(refSeq: number, code: number, detail: string): void {
    this.#send({ kind: 'error', refSeq, code, detail });
  }

  #sendStatus(state: number, status: number, detail: string): void {
    this.#lastStatus = { state, status, detail };
    this.#options.events?.status?.(this.#lastStatus);
    this.#send({ kind: 'status', state, status, detail: detail.slice(0, 200) });
  }

  // ---- identity and the device client ----------------------------------------------------------------------------

  #onIdentity(message: MessageOf<'identity'>, seq: number): void {
    const peer = this.#peer;
    if (peer === undefined) return;
    const identity: Identity = { deviceId: message.deviceId, moduleId: message.moduleId, auth: message.auth };
    this.#options.events?.identity?.({
      deviceId: identity.deviceId,
      ...(identity.moduleId !== '' ? { moduleId: identity.moduleId } : {}),
      auth: identity.auth,
      bootId: peer.bootId,
    });
    if (identity.deviceId === '' || (identity.auth !== 0 && identity.auth !== 1)) {
      this.#sendError(seq, ErrorCode.malformed, 'IDENTITY needs a deviceId and auth 0 or 1');
      return;
    }
    if (identity.auth === 1 && (peer.capabilities & Capability.sign) === 0) {
      this.#sendError(seq, ErrorCode.unsupported, 'auth 1 needs the SIGN capability');
      this.#sendStatus(LinkState.refused, 401, 'auth 1 without the SIGN capability');
      return;
    }
    this.#identity = identity;
    const slot = this.#slot;
    if (
      slot !== undefined &&
      !slot.closed &&
      slot.failure === undefined &&
      identityKey(slot.identity) === identityKey(identity) &&
      slot.bootId === peer.bootId
    ) {
      // The same MCU after a cable pull: keep the client; tell the MCU where it stands. A client that failed for
      // good (refused credentials) is not kept: each link-up tries again, so that a fixed registry entry is picked up.
      this.#sendStatus(this.#lastStatus.state, this.#lastStatus.status, this.#lastStatus.detail);
      this.#afterIdentity(slot);
      return;
    }
    // The new slot is in place at once, so that frames right behind IDENTITY (re-sent telemetry) find it; its
    // client connects once the previous one has closed (two clients of one identity would evict each other).
    this.#openSlot(identity, peer.bootId, this.#dropSlot());
  }

  /** What every link-up with an identity gets: a missed desired patch turned into "read the twin" (§5.5). */
  #afterIdentity(slot: ClientSlot): void {
    if (slot.missedDesiredVersion !== undefined && this.#wants(Capability.twin)) {
      if (this.#send({ kind: 'twinDesired', version: slot.missedDesiredVersion, json: '{}' })) {
        slot.missedDesiredVersion = undefined;
      }
    }
  }

  #wants(capability: number): boolean {
    return this.#peer !== undefined && (this.#peer.capabilities & capability) !== 0;
  }

  async #dropSlot(): Promise<void> {
    const slot = this.#slot;
    if (slot === undefined) return;
    this.#slot = undefined;
    slot.closed = true;
    slot.abort.abort();
    await slot.ready.then(
      (client) => client.close(),
      () => undefined,
    );
  }

  #openSlot(identity: Identity, bootId: number, previousClosed: Promise<void>): void {
    const abort = new AbortController();
    const slot: ClientSlot = {
      identity,
      bootId,
      abort,
      closed: false,
      missedDesiredVersion: undefined,
      ready: Promise.resolve(undefined as unknown as DeviceClient),
    };
    const connecting = previousClosed.then(() => {
      if (slot.closed) throw new ConnectionError('replaced before it connected');
      return this.#createClient(slot);
    });
    Object.assign(slot, { ready: connecting });
    this.#slot = slot;
    this.#sendStatus(LinkState.connecting, 0, `connecting to ${this.#options.hub.hostName}`);
    connecting.then(
      (client) => {
        if (slot.closed) return;
        slot.client = client;
        this.#log.info?.('device client connected', { port: this.#options.name, deviceId: identity.deviceId });
        this.#sendStatus(LinkState.online, 0, `connected to ${this.#options.hub.hostName}`);
        client.on('connected', () => {
          if (!slot.closed) this.#sendStatus(LinkState.online, 0, `connected to ${this.#options.hub.hostName}`);
        });
        client.on('disconnected', (error) => {
          if (!slot.closed) this.#sendStatus(LinkState.offline, error?.status ?? 0, error?.message ?? 'disconnected');
        });
        client.on('reconnecting', (event) => {
          if (!slot.closed) this.#sendStatus(LinkState.connecting, event.error?.status ?? 0, 'reconnecting');
        });
        // Every method name goes to the MCU (it may announce METHODS at any link-up): the SDK's default handler.
        client.onDefaultDirectMethod((request) => this.#onMethodRequest(request));
        this.#afterIdentity(slot);
        if (this.#wants(Capability.cloudToDevice)) void this.#pumpCloudToDevice(slot, client);
        if (this.#wants(Capability.twin)) void this.#pumpDesired(slot, client);
      },
      (error: unknown) => {
        if (slot.closed) return;
        const hubError = HubError.is(error) ? error : undefined;
        slot.failure = hubError ?? new ConnectionError(String(error));
        this.#log.warn?.('device client failed', {
          port: this.#options.name,
          deviceId: identity.deviceId,
          code: hubError?.code,
          message: error instanceof Error ? error.message : String(error),
        });
        const refused = error instanceof AuthenticationError || hubError?.status === 401 || hubError?.status === 403;
        this.#sendStatus(
          refused ? LinkState.refused : LinkState.error,
          hubError?.status ?? 500,
          error instanceof Error ? error.message : String(error),
        );
      },
    );
  }

  #transport(): TransportFactory {
    const { hub } = this.#options;
    const port = hub.port !== undefined ? { port: hub.port } : {};
    return hub.transport === 'mqtt' ? mqtt(port) : amqp(port);
  }

  #createClient(slot: ClientSlot): Promise<DeviceClient> {
    const { hub } = this.#options;
    const { identity } = slot;
    const common: Omit<DeviceClientOptions, 'connectionString' | 'sasTokenProvider'> = {
      transport: this.#transport(),
      ...(hub.ca !== undefined ? { ca: hub.ca } : {}),
      logger: this.#log,
      signal: slot.abort.signal,
      ...this.#options.clientOptions,
    };
    if (identity.auth === 1) {
      return createDeviceClient({
        ...common,
        sasTokenProvider: sasTokenCredentialProvider({
          hostName: hub.hostName,
          deviceId: identity.deviceId,
          ...(identity.moduleId !== '' ? { moduleId: identity.moduleId } : {}),
          ...(hub.connectHost !== undefined ? { gatewayHostName: hub.connectHost } : {}),
          getToken: ({ resourceUri }) => this.#signToken(resourceUri),
        }),
      });
    }
    const entry = this.#options.devices.find(
      (device) => device.deviceId === identity.deviceId && (device.moduleId ?? '') === identity.moduleId,
    );
    if (entry === undefined) {
      return Promise.reject(
        new AuthenticationError(
          `no key for ${identity.deviceId}${identity.moduleId ? `/${identity.moduleId}` : ''} in the gateway config (auth 0)`,
        ),
      );
    }
    return createDeviceClient({ ...common, connectionString: connectionStringOf(hub, entry) });
  }

  /** §5.8: the MCU signs IoT Hub's string to sign; the key never crosses the link. */
  async #signToken(resourceUri: string): Promise<string> {
    const expiry = Math.floor(this.#timers.now() / 1000) + sasTtlSeconds;
    const stringToSign = sasStringToSign(resourceUri, expiry);
    if (!this.#link.isUp) await this.#waitForLink(signTimeoutMs);
    const rid = this.#rid();
    const answer = new Promise<{ status: number; signature: Uint8Array }>((resolve, reject) => {
      const timer = this.#timers.setTimeout(() => {
        this.#signWaiters.delete(rid);
        reject(new ConnectionError('the MCU did not answer SIGN_REQUEST in time'));
      }, signTimeoutMs);
      this.#signWaiters.set(rid, { resolve, reject, timer });
    });
    this.#options.events?.signRequested?.({ rid, stringToSign });
    if (!this.#send({ kind: 'signRequest', rid, stringToSign })) {
      const waiter = this.#signWaiters.get(rid);
      this.#signWaiters.delete(rid);
      if (waiter) this.#timers.clearTimeout(waiter.timer);
      throw new ConnectionError('the MCU link is down: no signature');
    }
    const { status, signature } = await answer;
    if (status !== 0 || signature.length !== 32) {
      // §5.8: the gateway reports STATUS refused; AuthenticationError stops the client's retries.
      throw new AuthenticationError(`the MCU refused to sign (status ${status}, ${signature.length} signature bytes)`);
    }
    return formatSasToken({ resourceUri, signature: base64Encode(signature), expiry });
  }

  #waitForLink(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        this.#linkUpWaiters.delete(wake);
        this.#timers.clearTimeout(timer);
        resolve();
      };
      const timer = this.#timers.setTimeout(() => {
        this.#linkUpWaiters.delete(wake);
        reject(new ConnectionError('the MCU link is down'));
      }, timeoutMs);
      this.#linkUpWaiters.add(wake);
    });
  }

  #rid(): number {
    const rid = this.#nextRid;
    this.#nextRid = rid >= 0xffff ? 1 : rid + 1;
    return rid;
  }

  // ---- telemetry --------------------------------------------------------------------------------------------------

  #onTelemetry(slot: ClientSlot, message: MessageOf<'telemetry'>): void {
    const key = `${slot.bootId}:${message.id}`;
    const confirmed = this.#confirmed.get(identityKey(slot.identity)) ?? [];
    if (confirmed.includes(key)) {
      // §5.3: a re-sent message the hub has already: confirmed again, not sent again.
      this.#ackTelemetry(slot, message.id, 200, true);
      return;
    }
    let pending = this.#telemetryInFlight.get(key);
    if (pending === undefined) {
      pending = this.#sendTelemetry(slot, message).finally(() => this.#telemetryInFlight.delete(key));
      this.#telemetryInFlight.set(key, pending);
      pending.then((status) => {
        if (status !== 200) return;
        const list = this.#confirmed.get(identityKey(slot.identity)) ?? [];
        list.push(key);
        if (list.length > telemetryDedupSize) list.splice(0, list.length - telemetryDedupSize);
        this.#confirmed.set(identityKey(slot.identity), list);
      });
    }
    void pending.then((status) => this.#ackTelemetry(slot, message.id, status, false));
  }

  async #sendTelemetry(slot: ClientSlot, message: MessageOf<'telemetry'>): Promise<number> {
    let outgoing: TelemetryMessage;
    try {
      outgoing = toTelemetryMessage(message.properties, message.body);
    } catch (error) {
      this.#log.warn?.('telemetry refused', { port: this.#options.name, error });
      return 400;
    }
    try {
      const client = await slot.ready;
      await client.sendTelemetry(outgoing);
      return 200;
    } catch (error) {
      this.#log.warn?.('telemetry failed', { port: this.#options.name, id: message.id, status: statusOf(error) });
      return statusOf(error);
    }
  }

  #ackTelemetry(slot: ClientSlot, id: number, status: number, duplicate: boolean): void {
    // With the link down the ACK is lost: the MCU re-sends after link-up and the dedup answers (§5.3).
    this.#answer(slot, { kind: 'telemetryAck', id, status }, () =>
      this.#options.events?.telemetryAcknowledged?.({ id, status, duplicate }),
    );
  }

  /**
   * Sends an answer the MCU waits for (TELEMETRY_ACK, TWIN, TWIN_RESULT). Behind a full window and queue it waits for
   * room (retrying every 100 ms while the link stays up) rather than being dropped: the MCU would wait for it until
   * its next link-up. An answer for a slot that is no longer current is dropped: it was asked by a previous boot or
   * identity of the MCU, whose ids and rids the new one may reuse for other requests.
   */
  #answer(slot: ClientSlot, message: BridgeMessage, sent?: () => void): void {
    if (this.#slot !== slot) return;
    const result = this.#link.send(message);
    if (result === 'sent' || result === 'queued') sent?.();
    else if (result === 'busy' && !this.#closed) {
      this.#timers.setTimeout(() => {
        if (this.#link.isUp) this.#answer(slot, message, sent);
      }, 100);
    } else if (result === 'tooLarge') {
      this.#log.warn?.('an answer exceeds the MCU maxFrame', { port: this.#options.name, kind: message.kind });
    }
  }

  // ---- cloud-to-device ---------------------------------------------------------------------------------------------

  async #pumpCloudToDevice(slot: ClientSlot, client: DeviceClient): Promise<void> {
    try {
      for await (const message of client.cloudToDeviceMessages({ signal: slot.abort.signal })) {
        await this.#deliverCloudToDevice(slot, client, message);
        if (slot.closed) return;
      }
    } catch (error) {
      if (!slot.closed) this.#log.warn?.('cloud-to-device delivery stopped', { port: this.#options.name, error });
    }
  }

  /** Delivers one message and waits for its settlement; one message at a time keeps the MCU's buffers small. */
  async #deliverCloudToDevice(slot: ClientSlot, client: DeviceClient, message: CloudToDeviceMessage): Promise<void> {
    const settlements = client.capabilities.cloudToDeviceSettlements;
    for (;;) {
      if (!this.#link.isUp || this.#identity === undefined) await this.#waitForIdentity(slot);
      if (slot.closed) return;
      const tag = this.#nextTag;
      this.#nextTag = tag >= 0xffffffff ? 1 : tag + 1;
      const result = this.#link.send({
        kind: 'cloudToDevice',
        tag,
        properties: cloudToDeviceProperties(message),
        body: message.body,
      });
      if (result === 'tooLarge') {
        // It can never reach this MCU: dead-lettered where the transport can, else completed (and logged).
        this.#log.warn?.('a cloud-to-device message exceeds the MCU maxFrame', {
          port: this.#options.name,
          messageId: message.messageId,
        });
        await (settlements.includes('reject') ? message.reject() : message.complete()).catch(() => undefined);
        return;
      }
      if (result === 'down' || result === 'busy') {
        await new Promise((resolve) => this.#timers.setTimeout(() => resolve(undefined), 100));
        continue;
      }
      for (;;) {
        const { outcome, seq } = await this.#nextSettlement(tag);
        if (outcome === -1) {
          // The link went down before the MCU settled: abandon where the transport can (the hub redelivers),
          // else (MQTT) deliver the same message again after the next link-up (§5.4).
          if (settlements.includes('abandon')) {
            await message.abandon().catch(() => undefined);
            return;
          }
          break;
        }
        const settlement = settlementOf(outcome);
        if (settlement === undefined) {
          this.#sendError(seq, ErrorCode.malformed, `unknown settle outcome ${outcome}`);
          continue;
        }
        if (!settlements.includes(settlement)) {
          // §5.9: the MCU may settle again with an outcome the transport has.
          this.#sendError(
            seq,
            ErrorCode.unsupported,
            `cannot ${settlement} over ${client.capabilities.cloudToDeviceSettlements.join('/')}`,
          );
          continue;
        }
        try {
          await message[settlement]();
        } catch (error) {
          this.#log.warn?.('settling a cloud-to-device message failed', {
            port: this.#options.name,
            settlement,
            error,
          });
        }
        return;
      }
    }
  }

  /** The next C2D_SETTLE for `tag`; outcome -1 when the link goes down first. */
  #nextSettlement(tag: number): Promise<{ outcome: number; seq: number }> {
    return new Promise((resolve) => {
      this.#settleWaiters.set(tag, (outcome, seq) => {
        this.#settleWaiters.delete(tag);
        resolve({ outcome, seq });
      });
    });
  }

  #waitForIdentity(slot: ClientSlot): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (slot.closed || (this.#link.isUp && this.#identity !== undefined)) {
          this.#timers.clearTimeout(timer);
          resolve();
          return;
        }
        timer = this.#timers.setTimeout(check, 50);
      };
      let timer: unknown = this.#timers.setTimeout(check, 0);
    });
  }

  // ---- twin -------------------------------------------------------------------------------------------------------

  #onTwinGet(slot: ClientSlot, rid: number): void {
    void slot.ready
      .then((client) => client.getTwin())
      .then(
        (twin) => {
          const json = JSON.stringify({ desired: twin.desired, reported: twin.reported });
          const size = new TextEncoder().encode(json).length + 4;
          if (!this.#link.fits(size)) this.#answer(slot, { kind: 'twin', rid, status: 413, json: '' });
          else this.#answer(slot, { kind: 'twin', rid, status: 200, json });
        },
        (error: unknown) => this.#answer(slot, { kind: 'twin', rid, status: statusOf(error), json: '' }),
      );
  }

  #onTwinReported(slot: ClientSlot, rid: number, json: string): void {
    let patch: unknown;
    try {
      patch = JSON.parse(json);
    } catch {
      patch = undefined;
    }
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
      this.#answer(slot, { kind: 'twinResult', rid, status: 400, version: 0 });
      return;
    }
    void slot.ready
      .then((client) => client.updateReportedProperties(patch as Record<string, unknown>))
      .then(
        (version) => this.#answer(slot, { kind: 'twinResult', rid, status: 204, version }),
        (error: unknown) => this.#answer(slot, { kind: 'twinResult', rid, status: statusOf(error), version: 0 }),
      );
  }

  async #pumpDesired(slot: ClientSlot, client: DeviceClient): Promise<void> {
    try {
      for await (const patch of client.desiredPropertyUpdates({ signal: slot.abort.signal })) {
        const version = patch.$version;
        const json = JSON.stringify(patch);
        const fits = this.#link.fits(new TextEncoder().encode(json).length + 4);
        // §5.5: a patch that does not fit becomes `{}` ("read the twin"); one missed while the link is down too.
        if (
          !this.#link.isUp ||
          this.#identity === undefined ||
          !this.#send({ kind: 'twinDesired', version, json: fits ? json : '{}' })
        ) {
          slot.missedDesiredVersion = version;
        }
      }
    } catch (error) {
      if (!slot.closed) this.#log.warn?.('desired-property delivery stopped', { port: this.#options.name, error });
    }
  }

  // ---- direct methods ---------------------------------------------------------------------------------------------

  async #onMethodRequest(request: DirectMethodRequest): Promise<DirectMethodResponse> {
    if (!this.#wants(Capability.methods) || !this.#link.isUp || this.#identity === undefined) {
      // §5.6: as a device with no handler would answer.
      return { status: 404, payload: { message: `method '${request.methodName}' is not available on this device` } };
    }
    const rid = this.#rid();
    const json = request.payload === null || request.payload === undefined ? '' : JSON.stringify(request.payload);
    const answer = new Promise<{ status: number; json: string }>((resolve, reject) => {
      const timer = this.#timers.setTimeout(() => {
        // The hub has answered the caller with 504 long before; a later response is dropped (§5.6).
        this.#methodWaiters.delete(rid);
        resolve({ status: 504, json: '' });
      }, methodTimeoutMs);
      this.#methodWaiters.set(rid, { resolve, reject, timer });
    });
    const result = this.#link.send({ kind: 'methodRequest', rid, name: request.methodName, json });
    if (result !== 'sent' && result !== 'queued') {
      const waiter = this.#methodWaiters.get(rid);
      this.#methodWaiters.delete(rid);
      if (waiter) this.#timers.clearTimeout(waiter.timer);
      const status = result === 'tooLarge' ? 413 : result === 'busy' ? 503 : 404;
      return { status, payload: { message: `the request could not reach the MCU (${result})` } };
    }
    const response = await answer;
    let payload: unknown = null;
    if (response.json !== '') {
      try {
        payload = JSON.parse(response.json);
      } catch {
        // Not JSON: handed to the caller as a string rather than lost.
        payload = response.json;
      }
    }
    return { status: response.status, payload };
  }
}

/** `props` and body of a TELEMETRY frame as the SDK's message (§5.1). */
export function toTelemetryMessage(properties: Properties, body: Uint8Array): TelemetryMessage {
  const system: Partial<Record<SystemField, string>> = {};
  const application: Record<string, string> = {};
  for (const [name, value] of properties) {
    const field = (systemProperties as Record<string, SystemField | undefined>)[name];
    if (field !== undefined) system[field] = value;
    else application[name] = value;
  }
  return {
    body,
    ...(Object.keys(application).length > 0 ? { properties: application } : {}),
    ...system,
  };
}

/** A cloud-to-device message's system and application properties as `props` (§5.1, §5.4). */
export function cloudToDeviceProperties(message: CloudToDeviceMessage): Properties {
  const out: [string, string][] = [];
  for (const [name, field] of Object.entries(systemProperties)) {
    const value = message[field];
    if (typeof value === 'string') out.push([name, value]);
  }
  for (const [name, value] of Object.entries(message.properties)) out.push([name, value]);
  return out.slice(0, 255);
}

function settlementOf(outcome: number): 'complete' | 'reject' | 'abandon' | undefined {
  if (outcome === SettleOutcome.complete) return 'complete';
  if (outcome === SettleOutcome.reject) return 'reject';
  if (outcome === SettleOutcome.abandon) return 'abandon';
  return undefined;
}

/** The connection string of an `auth` 0 identity from the config. */
function connectionStringOf(hub: HubSettings, entry: DeviceEntry): string {
  if (entry.connectionString !== undefined) return entry.connectionString;
  const parts = [
    `HostName=${hub.hostName}`,
    `DeviceId=${entry.deviceId}`,
    ...(entry.moduleId !== undefined ? [`ModuleId=${entry.moduleId}`] : []),
    `SharedAccessKey=${entry.sharedAccessKey}`,
    ...(hub.connectHost !== undefined ? [`GatewayHostName=${hub.connectHost}`] : []),
  ];
  return parts.join(';');
}
