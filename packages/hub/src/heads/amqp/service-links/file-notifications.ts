/**
 * `/messages/serviceBound/filenotifications`: file-upload notifications for the service (protocol-service.md §3.4,
 * §8). The `azure-iothub` SDK attaches a receiver with exactly that source; Azure's docs spell it
 * `/messages/servicebound/fileuploadnotifications`; both are accepted, case-insensitively.
 *
 * Each AMQP message carries one notification the core locked with `receiveNotification`, as `feedback.ts` sends
 * feedback batches:
 * - `content_type` `application/vnd.microsoft.iothub.filenotification.json`, `user_id` the hub name, `message_id`
 *   and the 16-byte delivery tag the notification's lock token, application property
 *   `iothub-interface-name: filenotifications`;
 * - body: one data section, the JSON record (`deviceId`, `blobUri`, `blobName`, `lastUpdatedTime`,
 *   `blobSizeInBytes`, `enqueuedTimeUtc`); `azure-iothub` consumers parse it with `JSON.parse(msg.getData())`.
 * The client's disposition settles it: `accepted` completes, `released` / `modified` abandon (delivered again, with
 * the delivery count up to `notificationMaxDeliveryCount`), `rejected` dead-letters (completes: there is no queue a
 * service could read dead letters from).
 *
 * Decisions where the reference is silent (as for feedback): the link wakes on the core's `file-notifications` bus
 * notice and every 15 s (locks that lapsed elsewhere); a closing link abandons what it holds unsettled; a peer
 * asking for pre-settled deliveries gets at-most-once.
 */
// rhea is CommonJS: its values come through the default import (Node's ESM loader finds no named exports).
import rhea, { type Delivery, type EventContext, type Message, type Sender } from 'rhea';
import { type FileNotificationDelivery, fileNotificationsSubject } from '../../../core/file-uploads';
import type { AmqpConnectionContext, LinkHandle, LinkRoute } from '../contract';
import { authorizeServiceConnect } from './service-errors';

/** What `match` returns for a file-notification address. */
export interface FileNotificationsMatch {
  readonly address: string;
}

/** The content type of file-upload notifications (protocol-service.md §3.4). */
export const fileNotificationContentType = 'application/vnd.microsoft.iothub.filenotification.json';

const addressPattern = /^\/messages\/servicebound\/(?:filenotifications|fileuploadnotifications)\/?$/i;
const rescanIntervalMs = 15_000;

/** The AMQP message of one notification. */
export function fileNotificationMessage(delivery: FileNotificationDelivery, hubName: string): Message {
  return {
    message_id: delivery.lockToken,
    user_id: hubName,
    content_type: fileNotificationContentType,
    application_properties: { 'iothub-interface-name': 'filenotifications' },
    body: rhea.message.data_section(Buffer.from(JSON.stringify(delivery.notification), 'utf8')),
  };
}

/** The route of `/messages/serviceBound/filenotifications` (the hub sends). */
export function fileNotificationsRoute(): LinkRoute<FileNotificationsMatch> {
  return {
    name: 'service-file-notifications',
    direction: 'send',
    match: (address) => (addressPattern.test(address) ? { address } : undefined),
    authorize: async (context) => authorizeServiceConnect(context),
    open: (link, _match, context) => new FileNotificationsLink(link as Sender, context).start(),
  };
}

/** What the peer's disposition of `delivery` means so far: nothing yet (or released / modified) abandons. */
function outcomeOf(delivery: Delivery): 'complete' | 'abandon' {
  const state = delivery.remote_state;
  if (state === undefined) return delivery.remote_settled ? 'complete' : 'abandon';
  // rhea keeps the outcome unwrapped: its class names it (as rhea's own dispatch reads it).
  const name = (state.constructor as { composite_type?: unknown }).composite_type;
  return name === 'accepted' || name === 'rejected' ? 'complete' : 'abandon';
}

/** One attached link: sends notifications while it has credit, settles them as the peer disposes. */
class FileNotificationsLink implements LinkHandle {
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
    ['released', (event) => this.settled(event, 'abandon')],
    ['modified', (event) => this.settled(event, 'abandon')],
    ['settled', (event) => this.settled(event, 'complete')],
  ];

  constructor(
    private readonly link: Sender,
    private readonly context: AmqpConnectionContext,
  ) {}

  start(): this {
    const { bus, hubName } = this.context.core.context;
    for (const [name, listener] of this.listeners) this.link.on(name, listener);
    this.unsubscribe = bus.subscribe(hubName, fileNotificationsSubject, () => this.pump());
    this.rescanTimer = setInterval(() => this.pump(), rescanIntervalMs);
    this.rescanTimer.unref?.();
    this.pump();
    return this;
  }

  /** Stops sending and abandons the unsettled notifications; resolves when they are back in the queue. */
  close(): Promise<void> {
    if (this.closed) return this.closing;
    this.closed = true;
    this.unsubscribe?.();
    clearInterval(this.rescanTimer);
    for (const [name, listener] of this.listeners) this.link.removeListener(name, listener);
    // A disposition read together with the detach is recorded on its delivery, but rhea dispatches it on the next
    // tick, after the link closed: settle by what the peer said instead of abandoning what it completed.
    const settlements = [...this.unsettled].map(([delivery, lockToken]) => this.finish(lockToken, outcomeOf(delivery)));
    this.unsettled.clear();
    this.closing = Promise.all([...settlements, this.running]).then(() => undefined);
    return this.closing;
  }

  private pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    this.running = this.run()
      .catch((error: unknown) =>
        this.context.logger.error({ err: error, ...this.context.describe() }, 'file notification delivery failed'),
      )
      .finally(() => {
        this.pumping = false;
      });
  }

  private async run(): Promise<void> {
    const { fileUploads, context: core } = this.context.core;
    do {
      this.again = false;
      while (!this.closed && this.link.sendable()) {
        const next = await fileUploads.receiveNotification();
        if (!next) break;
        if (this.closed || !this.link.sendable()) {
          await this.finish(next.lockToken, 'abandon');
          break;
        }
        const delivery = this.link.send(
          fileNotificationMessage(next, core.hubName),
          rhea.string_to_uuid(next.lockToken),
        );
        this.context.logger.debug(
          { ...this.context.describe(), blobName: next.notification.blobName, lockToken: next.lockToken },
          'file notification sent',
        );
        if (delivery.settled) await this.finish(next.lockToken, 'complete');
        else this.unsettled.set(delivery, next.lockToken);
        // rhea takes the credit when it transmits, on the next tick: until then `sendable()` still counts it, and
        // the next notification would be locked into this link's send buffer, beyond the peer's credit, instead of
        // going to another receiver.
        await new Promise<void>((resolve) => process.nextTick(resolve));
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
    const { fileUploads } = this.context.core;
    const operation =
      outcome === 'complete' ? fileUploads.completeNotification(lockToken) : fileUploads.abandonNotification(lockToken);
    return operation.catch((error: unknown) =>
      this.context.logger.debug(
        { err: error, ...this.context.describe(), lockToken, outcome },
        'file notification settlement failed',
      ),
    );
  }
}
