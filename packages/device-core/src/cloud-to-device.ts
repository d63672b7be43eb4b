/**
 * Cloud-to-device messages: an async iterator over a bounded buffer, and messages that settle with
 * `complete()` / `reject()` / `abandon()` where the transport can (MQTT: `complete` only, by PUBACK; §2.8).
 */
import { utf8Decode } from '@fieldhub/protocol';
import { sleep } from './clock';
import type { ConnectionFeature, ConnectionManager } from './connection-manager';
import { AbortError, ArgumentError, ConnectionError, UnsupportedFeatureError } from './errors';
import { SubscriptionBuffer } from './subscription-buffer';
import type {
  CloudToDeviceSettlement,
  IncomingCloudToDeviceMessage,
  OperationOptions,
  Transport,
} from './transport/transport';

/**
 * What a full cloud-to-device buffer does with one more message. A dropped message is abandoned where the
 * transport can abandon (the hub delivers it again), else left unsettled (the hub delivers it again after its
 * lock times out or the device reconnects, as over MQTT); it is never completed, so never lost.
 * - `'drop-newest'` (default): the arriving message is dropped.
 * - `'drop-oldest'`: the oldest buffered message is dropped, the new one buffered.
 */
export type CloudToDeviceOverflow = 'drop-newest' | 'drop-oldest';

/** The overflow policies, as values. */
export const CloudToDeviceOverflow = {
  dropNewest: 'drop-newest',
  dropOldest: 'drop-oldest',
} as const satisfies Record<string, CloudToDeviceOverflow>;

/** Options of the cloud-to-device feature (`createDeviceClient({ cloudToDevice })`). */
export interface CloudToDeviceOptions {
  /** Messages buffered while the application is busy. Default 100. */
  readonly bufferSize?: number;
  /** Default `'drop-newest'`. */
  readonly overflow?: CloudToDeviceOverflow;
  /** For polling transports (HTTPS): the pause after an empty poll. Default 10 000 ms. */
  readonly pollIntervalMs?: number;
}

/** The defaults of {@link CloudToDeviceOptions}. */
export const defaultCloudToDeviceOptions = {
  bufferSize: 100,
  overflow: 'drop-newest',
  pollIntervalMs: 10_000,
} as const;

/** A received cloud-to-device message. Settle it once; messages left unsettled are delivered again by the hub. */
export interface CloudToDeviceMessage {
  readonly body: Uint8Array;
  readonly properties: Readonly<Record<string, string>>;
  readonly messageId?: string;
  readonly correlationId?: string;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly userId?: string;
  readonly expiryTimeUtc?: string;
  readonly deliveryCount?: number;
  /** The body decoded as UTF-8. */
  text(): string;
  /**
   * Tells the hub the message was processed. Over MQTT this sends the PUBACK.
   * @throws UnsupportedFeatureError when the transport cannot; ArgumentError when already settled otherwise;
   * ConnectionError when the connection it arrived on is gone (the hub will deliver it again); AbortError.
   */
  complete(options?: OperationOptions): Promise<void>;
  /** Dead-letters the message. @throws as `complete()`; UnsupportedFeatureError over MQTT. */
  reject(options?: OperationOptions): Promise<void>;
  /** Hands the message back for redelivery. @throws as `complete()`; UnsupportedFeatureError over MQTT. */
  abandon(options?: OperationOptions): Promise<void>;
}

/** The cloud-to-device feature of a client. */
export class CloudToDevice implements ConnectionFeature {
  readonly #manager: ConnectionManager;
  readonly #buffer: SubscriptionBuffer<CloudToDeviceMessage>;
  readonly #pollIntervalMs: number;
  readonly #capacity: number;
  #wanted = false;

  /** @throws ArgumentError when `bufferSize` is not a positive integer or `overflow` is unknown. */
  constructor(manager: ConnectionManager, options: CloudToDeviceOptions = {}) {
    this.#manager = manager;
    const capacity = options.bufferSize ?? defaultCloudToDeviceOptions.bufferSize;
    const overflow = options.overflow ?? defaultCloudToDeviceOptions.overflow;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new ArgumentError('cloudToDevice.bufferSize must be a positive integer', { field: 'bufferSize' });
    }
    if (overflow !== 'drop-newest' && overflow !== 'drop-oldest') {
      throw new ArgumentError(`unknown cloudToDevice.overflow '${String(overflow)}'`, { field: 'overflow' });
    }
    this.#capacity = capacity;
    this.#pollIntervalMs = options.pollIntervalMs ?? defaultCloudToDeviceOptions.pollIntervalMs;
    this.#buffer = new SubscriptionBuffer({
      capacity,
      overflow,
      onDrop: (message) => this.#dropped(message),
    });
    manager.addFeature(this);
    manager.setIncomingHandlers({ cloudToDeviceMessage: (message) => this.#receive(message) });
  }

  /** Messages waiting in the buffer. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /**
   * See `DeviceClient.cloudToDeviceMessages`.
   * @throws UnsupportedFeatureError when the transport receives no cloud-to-device messages.
   */
  messages(options: OperationOptions = {}): AsyncIterableIterator<CloudToDeviceMessage> {
    const mode = this.#manager.capabilities.cloudToDevice;
    this.#manager.requireCapability(mode !== 'none', 'cloud-to-device messages');
    if (!this.#wanted) {
      this.#wanted = true;
      if (mode === 'push') {
        this.#manager
          .whenConnected((transport, signal) => transport.enableCloudToDevice({ signal }))
          .catch((error: unknown) => this.#manager.reportError(error, 'could not enable cloud-to-device messages'));
      } else {
        void this.#poll();
      }
    }
    let done = false;
    const iterator: AsyncIterableIterator<CloudToDeviceMessage> = {
      next: () => {
        if (options.signal?.aborted) return Promise.reject(new AbortError());
        return done ? Promise.resolve({ value: undefined, done: true }) : this.#buffer.next(options.signal);
      },
      return: () => {
        done = true;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** @internal */
  async onConnected(transport: Transport, signal: AbortSignal): Promise<void> {
    if (this.#wanted && this.#manager.capabilities.cloudToDevice === 'push') {
      await transport.enableCloudToDevice({ signal });
    }
  }

  /** @internal */
  onClose(): void {
    // Buffered messages stay unsettled: the hub delivers them again to the next connection.
    this.#buffer.end();
  }

  #receive(incoming: IncomingCloudToDeviceMessage): void {
    this.#buffer.push(this.#wrap(incoming));
  }

  #wrap(incoming: IncomingCloudToDeviceMessage): CloudToDeviceMessage {
    const manager = this.#manager;
    const connectionId = manager.connectionId;
    const { lockToken: _lockToken, ...fields } = incoming;
    let settledWith: CloudToDeviceSettlement | undefined;
    let settling: Promise<void> | undefined;
    const settle = (settlement: CloudToDeviceSettlement, options: OperationOptions = {}): Promise<void> => {
      if (!manager.capabilities.cloudToDeviceSettlements.includes(settlement)) {
        return Promise.reject(
          new UnsupportedFeatureError(`the ${manager.transport.name} transport cannot ${settlement} a message`),
        );
      }
      if (settledWith === settlement && settling) return settling;
      if (settledWith !== undefined) {
        return Promise.reject(new ArgumentError(`the message was settled already (${settledWith})`));
      }
      if (manager.connectionId !== connectionId) {
        return Promise.reject(
          new ConnectionError('the message arrived on an earlier connection; the hub will deliver it again', {
            retryable: false,
          }),
        );
      }
      settledWith = settlement;
      settling = manager.ifConnected(
        (transport, signal) => transport.settleCloudToDevice(incoming.lockToken, settlement, { signal }),
        options,
      );
      return settling;
    };
    return {
      ...fields,
      text: () => utf8Decode(incoming.body),
      complete: (options) => settle('complete', options),
      reject: (options) => settle('reject', options),
      abandon: (options) => settle('abandon', options),
    };
  }

  #dropped(message: CloudToDeviceMessage): void {
    this.#manager.logger.warn?.('cloud-to-device buffer full: message left for redelivery', {
      messageId: message.messageId,
    });
    if (this.#manager.capabilities.cloudToDeviceSettlements.includes('abandon')) {
      message.abandon().catch(() => {});
    }
  }

  async #poll(): Promise<void> {
    const signal = this.#manager.closedSignal;
    while (!signal.aborted) {
      // Backpressure: a polling transport leaves messages on the hub while the buffer is full.
      if (this.#buffer.length < this.#capacity && (await this.#pollOnce())) continue;
      try {
        await sleep(this.#manager.clock, this.#pollIntervalMs, signal);
      } catch {
        return;
      }
    }
  }

  // Whether a message came.
  async #pollOnce(): Promise<boolean> {
    try {
      const message = await this.#manager.whenConnected(async (transport, signal) =>
        transport.receiveCloudToDevice ? transport.receiveCloudToDevice({ signal }) : undefined,
      );
      if (message) this.#receive(message);
      return message !== undefined;
    } catch (error) {
      if (!this.#manager.closedSignal.aborted) {
        this.#manager.logger.warn?.('polling for cloud-to-device messages failed', { error });
      }
      return false;
    }
  }
}
