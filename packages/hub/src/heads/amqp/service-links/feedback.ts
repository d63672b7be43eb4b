/**
 * `/messages/serviceBound/feedback`: cloud-to-device feedback for the service (protocol-service.md §3.3;
 * captures/service-amqp.txt). The peer attaches a receiver with source `/messages/serviceBound/feedback` (matched
 * case-insensitively; the HTTP docs spell it `servicebound`). Each AMQP message is one batch the core locked with
 * `receiveFeedback` (up to 64 records), as Azure sends it:
 * - `content_type` `application/vnd.microsoft.iothub.feedback.json`, `user_id` the hub name, `message_id` and the
 *   16-byte delivery tag the batch's lock token, application property `iothub-interface-name: feedback`;
 * - body: one data section, the JSON array of records (`originalMessageId`, `enqueuedTimeUtc`, `statusCode`,
 *   `description`, `deviceId`, `deviceGenerationId`).
 * The client's disposition settles the batch: `accepted` completes it, `released` / `modified` abandon it (the
 * records are delivered again), `rejected` dead-letters it (completes: Azure's feedback has no dead-letter queue a
 * service could read). Deliveries stay unsettled until then; the link respects the peer's credit.
 *
 * Decisions where the reference is silent:
 * - A batch is sent as soon as a record waits (Azure waits up to 15 s to fill a batch); records that accumulate
 *   while the link has no credit or is busy go out together.
 * - The link wakes on the core's `c2d-feedback` bus notice (a settlement wrote records, an abandon returned some)
 *   and, for locks that lapsed elsewhere (a receiver that vanished without settling, a restart), every 15 s.
 * - When the link closes, its unsettled batches are abandoned at once instead of waiting for their locks to lapse.
 * - A peer that asks for pre-settled deliveries (`snd-settle-mode` settled) gets at-most-once: the batch is completed
 *   when sent.
 */
// rhea is CommonJS: its values come through the default import (Node's ESM loader finds no named exports).
import rhea, { type Delivery, type EventContext, type Message, type Sender } from 'rhea';
import { cloudToDeviceFeedbackSubject, type FeedbackBatch } from '../../../core/cloud-to-device';
import type { AmqpConnectionContext, LinkHandle, LinkRoute } from '../contract';
import { authorizeServiceConnect } from './service-errors';

/** What `match` returns for the feedback address. */
export interface FeedbackMatch {
  readonly address: string;
}

/** Azure's content type of feedback batches (§3.3). */
export const feedbackContentType = 'application/vnd.microsoft.iothub.feedback.json';

const addressPattern = /^\/messages\/servicebound\/feedback\/?$/i;
const rescanIntervalMs = 15_000;

/** The AMQP message of one feedback batch. */
export function feedbackMessage(batch: FeedbackBatch, hubName: string): Message {
  return {
    message_id: batch.lockToken,
    // rhea encodes the string as AMQP binary (UTF-8), the field's type.
    user_id: hubName,
    content_type: feedbackContentType,
    application_properties: { 'iothub-interface-name': 'feedback' },
    body: rhea.message.data_section(Buffer.from(JSON.stringify(batch.records), 'utf8')),
  };
}

/** The route of `/messages/serviceBound/feedback` (the hub sends). */
export function feedbackRoute(): LinkRoute<FeedbackMatch> {
  return {
    name: 'service-feedback',
    direction: 'send',
    match: (address) => (addressPattern.test(address) ? { address } : undefined),
    authorize: async (context) => authorizeServiceConnect(context),
    open: (link, _match, context) => new FeedbackLink(link as Sender, context).start(),
  };
}

/** One attached feedback link: sends batches while it has credit, settles them as the peer disposes. */
class FeedbackLink implements LinkHandle {
  /** Lock tokens of the batches sent and not yet settled, by delivery. */
  private readonly unsettled = new Map<Delivery, string>();
  private closed = false;
  private pumping = false;
  private again = false;
  private unsubscribe: (() => void) | undefined;
  private rescanTimer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> = Promise.resolve();
  private closing: Promise<void> = Promise.resolve();
  private readonly listeners: [string, (event: EventContext) => void][] = [
    ['sendable', () => this.pump()],
    ['accepted', (event) => this.settled(event, 'complete')],
    ['rejected', (event) => this.settled(event, 'complete')],
    // rhea reports `modified` as `released` unless told otherwise; both are listened to for either setting.
    ['released', (event) => this.settled(event, 'abandon')],
    ['modified', (event) => this.settled(event, 'abandon')],
    // Settled without an outcome: the peer took it (AMQP 1.0 §3.4: the sender decides; Azure completes).
    ['settled', (event) => this.settled(event, 'complete')],
  ];

  constructor(
    private readonly link: Sender,
    private readonly context: AmqpConnectionContext,
  ) {}

  start(): this {
    const { bus, hubName } = this.context.core.context;
    for (const [name, listener] of this.listeners) this.link.on(name, listener);
    this.unsubscribe = bus.subscribe(hubName, cloudToDeviceFeedbackSubject, () => this.pump());
    this.rescanTimer = setInterval(() => this.pump(), rescanIntervalMs);
    this.rescanTimer.unref?.();
    this.pump();
    return this;
  }

  /** Stops sending and abandons the unsettled batches; resolves when they are back in the queue. */
  close(): Promise<void> {
    if (this.closed) return this.closing;
    this.closed = true;
    this.unsubscribe?.();
    clearInterval(this.rescanTimer);
    for (const [name, listener] of this.listeners) this.link.removeListener(name, listener);
    const abandons = [...this.unsettled.values()].map((lockToken) => this.finish(lockToken, 'abandon'));
    this.unsettled.clear();
    // A batch being locked right now is abandoned by `run` when it sees the link closed.
    this.closing = Promise.all([...abandons, this.running]).then(() => undefined);
    return this.closing;
  }

  /** Sends batches until credit runs out or nothing waits. Re-entrant calls coalesce. */
  private pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    this.running = this.run()
      .catch((error: unknown) =>
        this.context.logger.error({ err: error, ...this.context.describe() }, 'feedback delivery failed'),
      )
      .finally(() => {
        this.pumping = false;
      });
  }

  private async run(): Promise<void> {
    const { cloudToDevice, context: core } = this.context.core;
    do {
      this.again = false;
      while (!this.closed && this.link.sendable()) {
        const batch = await cloudToDevice.receiveFeedback();
        if (!batch) break;
        if (this.closed || !this.link.sendable()) {
          // The link went away (or lost its credit) while the batch was being locked: give it back.
          await this.finish(batch.lockToken, 'abandon');
          break;
        }
        const delivery = this.link.send(feedbackMessage(batch, core.hubName), tagOf(batch.lockToken));
        this.context.logger.debug(
          { ...this.context.describe(), records: batch.records.length, lockToken: batch.lockToken },
          'feedback batch sent',
        );
        if (delivery.settled) await this.finish(batch.lockToken, 'complete');
        else this.unsettled.set(delivery, batch.lockToken);
      }
    } while (this.again && !this.closed);
  }

  private settled(event: EventContext, outcome: 'complete' | 'abandon'): void {
    const delivery = event.delivery;
    if (!delivery) return;
    const lockToken = this.unsettled.get(delivery);
    if (lockToken === undefined) return;
    this.unsettled.delete(delivery);
    void this.finish(lockToken, outcome);
  }

  private finish(lockToken: string, outcome: 'complete' | 'abandon'): Promise<void> {
    const { cloudToDevice } = this.context.core;
    const operation =
      outcome === 'complete' ? cloudToDevice.completeFeedback(lockToken) : cloudToDevice.abandonFeedback(lockToken);
    // DeviceMessageLockLost: the lock lapsed and another receive took the records; they are that receiver's now.
    return operation.catch((error: unknown) =>
      this.context.logger.debug(
        { err: error, ...this.context.describe(), lockToken, outcome },
        'feedback settlement failed',
      ),
    );
  }
}

/** The delivery tag of a batch: its lock token as 16 bytes (Azure's tags are GUIDs). */
function tagOf(lockToken: string): Buffer {
  return rhea.string_to_uuid(lockToken);
}
