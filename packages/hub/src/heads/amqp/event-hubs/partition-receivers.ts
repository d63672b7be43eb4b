/**
 * Partition receivers of the built-in endpoint as Event Hubs serves them (protocol-service.md §4.2-4.3): the client
 * attaches a receiver whose source is `{entityPath}/ConsumerGroups/{group}/Partitions/{n}` (or
 * `/messages/events/...`), and the hub sends that partition's events on it, from the position of the source's
 * selector filter (`selector-filter.ts`), as `event-message.ts` shapes them.
 *
 * - Flow control: the hub sends only within the link's credit. It asks the core's reader for at most the credit it
 *   has (and at most {@link maxBatch}), so at most one batch waits in memory when the peer takes credit back (a
 *   drain); the core's reader holds at most its own bounded buffer. Nothing else is buffered per link.
 * - Settlement: deliveries are sent pre-settled (Event Hubs receivers do not settle; the log is read, not consumed)
 *   unless the peer's attach asks for `snd-settle-mode` unsettled; then they are sent unsettled and the peer's
 *   disposition settles them (a position is never redelivered either way, as with Event Hubs).
 * - Epochs (`com.microsoft:epoch`): `epochs.ts`.
 * - Runtime metric: with the desired capability `com.microsoft:enable-receiver-runtime-metric` every delivery
 *   carries the partition's last enqueued event (read once per batch) and the hub offers the capability back.
 * - Drain: events at hand are sent, then the rest of the credit is given back (`set_drained`).
 * - Closing the link (or the connection) closes the core reader; a reader that ends because the hub stops detaches
 *   the link with `amqp:link:detach-forced`.
 *
 * Decisions where the reference is silent:
 * - An unknown consumer group or partition, or an entity path other than the hub's name, is `amqp:not-found`
 *   (consumer group names case-insensitive; `$Default` always exists).
 * - The hub's attach echoes the runtime-metric capability (`offered-capabilities`) and the epoch (`properties`), as
 *   Event Hubs does; the connection layer writes the attach after `open` returns (contract.ts).
 * - A position past the end of the partition (a sequence number not yet appended, e.g. a checkpoint of a hub whose
 *   data dir was reset) is not refused: the receiver waits for that event. Event Hubs refuses it; its exact condition
 *   is not in the reference, and waiting loses nothing.
 * - A refused receiver (bad filter, lower epoch, quota) is attached and detached at once with the error, which is
 *   how an AMQP 1.0 server refuses a link and what `@azure/event-hubs` surfaces as the typed error.
 */
import { ArgumentError, HubError } from '@fieldhub/protocol';
import type { Sender } from 'rhea';
import rhea from 'rhea';
import { Permissions } from '../../../core/context';
import type { EndpointEvent, StartPosition, TelemetryReader } from '../../../core/telemetry';
import type { AmqpConnectionContext, AmqpError, AmqpPrincipal, LinkHandle, LinkRoute } from '../contract';
import { AmqpErrorConditions } from '../contract';
import { namesHub, type PartitionAddress, parsePartitionAddress } from './addresses';
import type { EpochHolder, EpochRegistry } from './epochs';
import { type LastEnqueued, toEventHubsMessage } from './event-message';
import { startPositionOf } from './selector-filter';

/** Most events asked from the core reader at once (and so held for one link at most). */
export const maxBatch = 100;
/** Link property naming the receiver's epoch (ownerLevel). */
export const epochProperty = 'com.microsoft:epoch';
/** Desired capability asking for the partition's last enqueued event on every delivery. */
export const runtimeMetricCapability = 'com.microsoft:enable-receiver-runtime-metric';

/** rhea internals the pump uses that its typings leave out: the link's credit and the hub's own attach. */
interface SenderInternals {
  readonly credit: number;
  readonly local: { readonly attach: { offered_capabilities?: unknown; properties?: unknown } };
}

/** The credit a sender has now. */
function creditOf(link: Sender): number {
  return (link as unknown as SenderInternals).credit;
}

/** A partition receiver's address, checked: a partition number and the consumer group. */
interface PartitionMatch extends PartitionAddress {
  readonly address: string;
}

/** The desired capabilities of an attach as strings (one symbol or an array of them). */
function capabilitiesOf(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((entry) => String(entry));
}

/** The epoch of an attach (`com.microsoft:epoch`, a long), undefined without one, or an error when malformed. */
function epochOf(properties: unknown): { epoch: number | undefined } | { error: string } {
  if (properties === null || typeof properties !== 'object') return { epoch: undefined };
  const value = (properties as Record<string, unknown>)[epochProperty];
  if (value === undefined || value === null) return { epoch: undefined };
  if (typeof value === 'number' && Number.isSafeInteger(value)) return { epoch: value };
  return { error: `The link property ${epochProperty} must be a long` };
}

/** Serves one partition receiver link. */
class PartitionPump implements LinkHandle {
  private closed = false;
  private reader: TelemetryReader | undefined;
  /** Events taken from the reader and not yet sent: at most one batch. */
  private pending: EndpointEvent[] = [];
  private lastEnqueued: LastEnqueued | undefined;
  private wake: (() => void) | undefined;
  private readonly onSendable = () => {
    this.flush();
    this.notify();
  };
  private readonly onDraining = () => {
    this.flush();
    // What could be sent was sent; the rest of the credit goes back to the peer.
    this.link.set_drained(true);
  };

  constructor(
    private readonly link: Sender,
    private readonly context: AmqpConnectionContext,
    private readonly options: {
      readonly consumerGroup: string;
      readonly partition: number;
      readonly from: StartPosition;
      readonly presettled: boolean;
      readonly runtimeMetric: boolean;
      readonly onClose: () => void;
    },
  ) {
    link.on('sendable', this.onSendable);
    link.on('sender_draining', this.onDraining);
  }

  start(): void {
    this.run().catch((error: unknown) => {
      if (this.closed) return;
      // The consumer group deleted between attach and read, or a position the core refuses: the peer's to fix.
      if (error instanceof HubError && (error.code === 'ResourceNotFound' || error instanceof ArgumentError)) {
        this.detach({
          condition: error instanceof ArgumentError ? AmqpErrorConditions.argumentError : AmqpErrorConditions.notFound,
          description: error.message,
        });
        return;
      }
      this.context.logger.error(
        { ...this.context.describe(), err: error, partition: this.options.partition },
        'event hubs partition receiver failed',
      );
      this.detach({ condition: AmqpErrorConditions.internalError, description: 'Reading the partition failed' });
    });
  }

  private async run(): Promise<void> {
    const { core } = this.context;
    const reader = await core.telemetry.read({
      consumerGroup: this.options.consumerGroup,
      partition: this.options.partition,
      from: this.options.from,
      live: true,
      bufferSize: maxBatch,
    });
    if (this.closed) {
      reader.close();
      return;
    }
    this.reader = reader;
    while (!this.closed) {
      this.flush();
      if (this.closed) return;
      if (this.pending.length > 0 || creditOf(this.link) <= 0) {
        await this.waitForCredit();
        continue;
      }
      const batch = await reader.nextBatch(Math.min(creditOf(this.link), maxBatch));
      if (this.closed) return;
      if (batch.done) {
        // The reader ended while the link is open: the endpoint stopped (hub shutdown).
        this.detach({ condition: AmqpErrorConditions.detachForced, description: 'The built-in endpoint stopped' });
        return;
      }
      if (this.options.runtimeMetric) await this.readLastEnqueued();
      this.pending = batch.value;
    }
  }

  private async readLastEnqueued(): Promise<void> {
    const info = await this.context.core.telemetry.partitionInfo(this.options.partition);
    this.lastEnqueued = {
      sequenceNumber: info.lastSequenceNumber,
      offset: String(info.lastSequenceNumber),
      enqueuedTime: info.lastEnqueuedTime ?? 0,
      retrievedAt: Date.now(),
    };
  }

  /** Sends pending events while the link has credit. */
  private flush(): void {
    let sent = 0;
    while (!this.closed && sent < this.pending.length && this.link.sendable()) {
      const event = this.pending[sent++] as EndpointEvent;
      const delivery = this.link.send(toEventHubsMessage(event, this.lastEnqueued));
      if (this.options.presettled) (delivery as { settled: boolean }).settled = true;
    }
    if (sent > 0) this.pending = this.pending.slice(sent);
  }

  private waitForCredit(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Detaches the link with an error (stolen by a higher epoch, endpoint stopped, failure) and stops serving. */
  detach(error: AmqpError): void {
    if (this.closed) return;
    this.close();
    this.link.close({ condition: error.condition, description: error.description });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.link.removeListener('sendable', this.onSendable);
    this.link.removeListener('sender_draining', this.onDraining);
    this.pending = [];
    this.reader?.close();
    this.notify();
    this.options.onClose();
  }
}

/** The partition receiver route; `epochs` gives the epoch registry of a hub core. */
export function partitionReceiverRoute(epochs: (context: AmqpConnectionContext) => EpochRegistry): LinkRoute {
  const route: LinkRoute<PartitionMatch> = {
    name: 'event-hubs-partition',
    direction: 'send',
    match(address) {
      const parsed = parsePartitionAddress(address);
      return parsed ? { ...parsed, address } : undefined;
    },
    async authorize(context, match): Promise<AmqpPrincipal | AmqpError> {
      const principal = context.service(Permissions.ServiceConnect);
      if (!principal) {
        return {
          condition: AmqpErrorConditions.unauthorizedAccess,
          description: `Reading ${match.address} needs a token of a policy with ServiceConnect`,
        };
      }
      const { core } = context;
      if (!namesHub(match.entityPath, core.context.hubName)) {
        return {
          condition: AmqpErrorConditions.notFound,
          description: `The messaging entity '${match.entityPath}' could not be found`,
        };
      }
      const count = core.telemetry.partitionCount;
      if (!/^\d+$/.test(match.partitionId) || Number(match.partitionId) >= count) {
        return {
          condition: AmqpErrorConditions.notFound,
          description: `The partition '${match.partitionId}' does not exist: partition ids are 0 to ${count - 1}`,
        };
      }
      try {
        await core.telemetry.getConsumerGroup(match.consumerGroup);
      } catch (error) {
        if (error instanceof HubError && error.code === 'ResourceNotFound') {
          return {
            condition: AmqpErrorConditions.notFound,
            description: `The consumer group '${match.consumerGroup}' does not exist`,
          };
        }
        throw error;
      }
      return principal;
    },
    open(link, match, context) {
      const sender = link as Sender;
      const refuse = (error: AmqpError): LinkHandle => {
        context.logger.info(
          { ...context.describe(), address: match.address, condition: error.condition },
          `event hubs receiver refused: ${error.description}`,
        );
        sender.close({ condition: error.condition, description: error.description });
        return { close() {} };
      };
      const position = startPositionOf(sender.source?.filter);
      if ('error' in position)
        return refuse({ condition: AmqpErrorConditions.argumentError, description: position.error });
      const epoch = epochOf(sender.properties);
      if ('error' in epoch) return refuse({ condition: AmqpErrorConditions.invalidField, description: epoch.error });
      const runtimeMetric = capabilitiesOf(sender.desired_capabilities).includes(runtimeMetricCapability);
      const ownAttach = (sender as unknown as SenderInternals).local.attach;
      if (runtimeMetric) ownAttach.offered_capabilities = [runtimeMetricCapability];
      if (epoch.epoch !== undefined) ownAttach.properties = { [epochProperty]: rhea.types.wrap_long(epoch.epoch) };
      // snd-settle-mode 0 = unsettled, 1 = settled, 2 = mixed (the default): pre-settle unless told not to.
      const presettled = sender.snd_settle_mode !== 0;
      const partition = Number(match.partitionId);
      const key = `${match.consumerGroup.toLowerCase()}/partitions/${partition}`;
      const registry = epochs(context);
      const holder: EpochHolder = {
        epoch: epoch.epoch,
        steal: (error) => {
          context.logger.info(
            { ...context.describe(), address: match.address, condition: error.condition },
            `event hubs receiver detached: ${error.description}`,
          );
          pump.detach(error);
        },
      };
      const pump: PartitionPump = new PartitionPump(sender, context, {
        consumerGroup: match.consumerGroup,
        partition,
        from: position.from,
        presettled,
        runtimeMetric,
        onClose: () => registry.release(key, holder),
      });
      const refused = registry.acquire(key, holder);
      if (refused) {
        pump.close();
        return refuse(refused);
      }
      pump.start();
      return pump;
    },
  };
  return route as LinkRoute;
}
