/**
 * Exclusive readers of a consumer group's partition (protocol-service.md §4.2, link property `com.microsoft:epoch`,
 * `ownerLevel` in `@azure/event-hubs`), with Event Hubs' rules:
 * - a receiver with epoch `e` detaches every receiver of the same group and partition that has no epoch or an epoch
 *   `<= e` (`amqp:link:stolen`);
 * - a receiver is refused (`amqp:link:stolen`) while one with a higher epoch is open, and a receiver without epoch
 *   is refused while any receiver with an epoch is open;
 * - at most {@link maxReadersPerPartition} receivers per group and partition (Event Hubs' quota, refused with
 *   `amqp:resource-limit-exceeded`).
 *
 * Decision where the reference is silent: the registry is per hub process. With several hub processes (scale-out)
 * each enforces epochs among its own connections; the bus does not carry them.
 */
import { type AmqpError, AmqpErrorConditions } from '../contract';

/** Event Hubs' limit of concurrent receivers per consumer group and partition. */
export const maxReadersPerPartition = 5;

/** One open receiver. */
export interface EpochHolder {
  readonly epoch: number | undefined;
  /** Detaches the receiver with `error` (it lost its partition to a higher epoch). */
  steal(error: AmqpError): void;
}

/** Open receivers per `{group}/{partition}` key, with the epoch rules above. */
export class EpochRegistry {
  private readonly holders = new Map<string, Set<EpochHolder>>();

  /**
   * Registers a new receiver: detaches the ones it outranks and returns undefined, or returns the error it is
   * refused with (and registers nothing).
   */
  acquire(key: string, holder: EpochHolder): AmqpError | undefined {
    const current = this.holders.get(key) ?? new Set<EpochHolder>();
    const epoch = holder.epoch;
    if (epoch === undefined) {
      const owner = [...current].find((other) => other.epoch !== undefined);
      if (owner) {
        return {
          condition: AmqpErrorConditions.linkStolen,
          description: `A receiver with epoch ${owner.epoch} is open on ${key}; a receiver without epoch cannot be created`,
        };
      }
    } else {
      const higher = [...current].find((other) => other.epoch !== undefined && other.epoch > epoch);
      if (higher) {
        return {
          condition: AmqpErrorConditions.linkStolen,
          description: `A receiver with a higher epoch ${higher.epoch} is open on ${key}; a receiver with epoch ${epoch} cannot be created`,
        };
      }
      for (const other of [...current]) {
        current.delete(other);
        other.steal({
          condition: AmqpErrorConditions.linkStolen,
          description: `A receiver with epoch ${epoch} took over ${key}; this receiver (epoch ${other.epoch ?? 'none'}) was detached`,
        });
      }
    }
    if (current.size >= maxReadersPerPartition) {
      return {
        condition: AmqpErrorConditions.resourceLimitExceeded,
        description: `At most ${maxReadersPerPartition} receivers may read ${key} at once`,
      };
    }
    current.add(holder);
    this.holders.set(key, current);
    return undefined;
  }

  /** Forgets a receiver (closed or stolen). Idempotent. */
  release(key: string, holder: EpochHolder): void {
    const current = this.holders.get(key);
    if (!current) return;
    current.delete(holder);
    if (current.size === 0) this.holders.delete(key);
  }
}
