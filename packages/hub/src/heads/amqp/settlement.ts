/**
 * Settling deliveries the hub received, without rhea 3.0.5 reporting the wrong outcome. rhea writes the
 * dispositions of one session in one connection turn (its `process.nextTick` flush) as ranges of consecutive
 * delivery ids, and its `write_dispositions` never compares the second delivery of a range with the first: a
 * `rejected` followed by an `accepted` in the same turn goes out as one range, both `rejected` (and the other way
 * round, a refused message reported `accepted`). The tests "gives each delivery its own outcome" (device links) and
 * "gives each cloud-to-device send its own outcome" (service links) show it on one session. The same bug makes the
 * official Node SDK fold a `released` into a preceding `rejected` when it settles cloud-to-device messages in one
 * turn; the hub cannot undo that on the device's side.
 *
 * So: within one flush of a connection only settlements of the same outcome (and the same error) are written;
 * one that differs waits for the next event-loop turn, after the flush. Every delivery the hub receives is settled
 * here (device links, `$cbs`, `/messages/devicebound`, `$management`): a settlement written directly would join
 * the flush unseen and could be folded with one of a different outcome.
 */
import type { Delivery } from 'rhea';
import type { AmqpError } from './contract';

interface Round {
  readonly kind: string;
}

const rounds = new WeakMap<object, Round>();

/**
 * Settles a received delivery: accepted, or rejected with `error` (its condition, description and info). A
 * pre-settled delivery, one that already has an outcome, or one whose link closed gets none.
 */
export function settleReceived(delivery: Delivery, error?: AmqpError): void {
  if (delivery.remote_settled || delivery.link.is_closed()) return;
  if ((delivery as { state?: unknown }).state !== undefined) return;
  const connection = delivery.link.connection as object;
  const kind = error === undefined ? 'accepted' : `rejected ${JSON.stringify(error, bigintAsText)}`;
  const round = rounds.get(connection);
  if (round !== undefined && round.kind !== kind) {
    setImmediate(() => settleReceived(delivery, error));
    return;
  }
  if (error === undefined) delivery.accept();
  else {
    const { condition, description, info } = error;
    delivery.reject(info === undefined ? { condition, description } : { condition, description, info });
  }
  if (round === undefined) {
    rounds.set(connection, { kind });
    // The settlement queued rhea's flush (or joined one already queued); this tick runs after it.
    process.nextTick(() => rounds.delete(connection));
  }
}

function bigintAsText(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
