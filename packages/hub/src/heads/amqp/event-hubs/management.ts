/**
 * The Event Hubs `$management` node of the built-in endpoint (protocol-service.md §4.2): a request/response pair of
 * links. The client attaches a sender to `$management` (`{entityPath}/$management`, `/messages/events/$management`)
 * and a receiver from it whose target is its own reply address; every request names that address in `reply_to`
 * and is answered on the receiver link of the same connection whose target matches, with `correlation_id` = the
 * request's `message_id` (core-amqp `requestResponseLink.js`).
 *
 * Requests: `operation: READ` with `type: com.microsoft:eventhub` (answer `name, created_at, partition_count,
 * partition_ids`) or `type: com.microsoft:partition` and `partition: "<n>"` (answer `name, partition,
 * begin_sequence_number, last_enqueued_sequence_number, last_enqueued_offset, last_enqueued_time_utc,
 * is_partition_empty`). The status goes in application properties `status-code` (int), `status-description` and,
 * for errors, `error-condition`: core-amqp reads exactly these (`getCodeDescriptionAndError`), resolves 2xx and
 * turns the condition into its typed error.
 *
 * Decisions where the reference is silent:
 * - The request's `security_token` is not verified on its own: the links were authorized by the connection's CBS
 *   token for the `$management` audience (ServiceConnect), and every request checks that the connection still holds
 *   an unexpired ServiceConnect principal (401 `amqp:unauthorized-access` once it expired).
 * - A request without `name` reads the entity the link is attached to; a `name` other than the hub's is 404
 *   `amqp:not-found`, as Event Hubs answers for an unknown entity.
 * - A partition id that is not one of the hub's is 400 `com.microsoft:argument-out-of-range` (what Event Hubs
 *   answers and `@azure/event-hubs` surfaces as `ArgumentOutOfRangeError`); an unknown operation or type is 400
 *   `com.microsoft:argument-error`.
 * - `created_at` is when the hub's built-in endpoint was first used (`BuiltInEndpoint.createdTime()`), stable
 *   across restarts; an empty partition reports last sequence number -1, offset "-1" and time 0 (the epoch).
 * - A request whose `reply_to` names no receiver link on its connection is dropped (logged): there is nowhere to
 *   answer. Replies wait for the reply link's credit in a small queue (64); beyond that they are dropped (logged),
 *   so a client that never grants credit cannot make the hub buffer without bound.
 */
import { HubError } from '@fieldhub/protocol';
import type { Delivery, EventContext, Message, Receiver, Sender } from 'rhea';
import rhea from 'rhea';
import { Permissions } from '../../../core/context';
import type { AmqpConnectionContext, AmqpError, AmqpPrincipal, LinkHandle, LinkRoute } from '../contract';
import { AmqpErrorConditions } from '../contract';
import { settleReceived } from '../settlement';
import { type ManagementAddress, namesHub, parseManagementAddress } from './addresses';

/** Event Hubs' management vocabulary (core-amqp `Constants`). */
const ManagementVocabulary = {
  readOperation: 'READ',
  eventHubType: 'com.microsoft:eventhub',
  partitionType: 'com.microsoft:partition',
  statusCode: 'status-code',
  statusDescription: 'status-description',
  errorCondition: 'error-condition',
} as const;

/** Replies held per reply link while it has no credit. */
const maxQueuedReplies = 64;

/** A management answer: 200 with a map body, or an error status with its AMQP condition. */
type ManagementAnswer =
  | { readonly status: 200; readonly body: Record<string, unknown> }
  | { readonly status: number; readonly condition: string; readonly description: string };

/** The reply links of one AMQP connection, by their target (reply) address. */
class ReplyLinks {
  private readonly byConnection = new WeakMap<object, Map<string, ReplyLink>>();

  add(link: Sender, address: string, replyLink: ReplyLink): void {
    let links = this.byConnection.get(link.connection);
    if (!links) {
      links = new Map();
      this.byConnection.set(link.connection, links);
    }
    links.set(address, replyLink);
  }

  remove(link: Sender, address: string, replyLink: ReplyLink): void {
    const links = this.byConnection.get(link.connection);
    if (links?.get(address) === replyLink) links.delete(address);
  }

  find(connection: object, address: string): ReplyLink | undefined {
    return this.byConnection.get(connection)?.get(address);
  }
}

/** A link the hub answers management requests on; sends within the link's credit, queues a few otherwise. */
class ReplyLink implements LinkHandle {
  private readonly queue: Message[] = [];
  private closed = false;
  private readonly onSendable = () => this.flush();

  constructor(
    private readonly link: Sender,
    private readonly context: AmqpConnectionContext,
    private readonly onClose: () => void,
  ) {
    link.on('sendable', this.onSendable);
  }

  send(message: Message): void {
    if (this.closed) return;
    if (this.queue.length >= maxQueuedReplies) {
      this.context.logger.warn(
        { ...this.context.describe(), address: this.link.target?.address },
        'event hubs management reply dropped: the reply link grants no credit',
      );
      return;
    }
    this.queue.push(message);
    this.flush();
  }

  private flush(): void {
    while (!this.closed && this.queue.length > 0 && this.link.sendable()) {
      this.link.send(this.queue.shift() as Message);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.link.removeListener('sendable', this.onSendable);
    this.onClose();
  }
}

/** Authorizes a management link: ServiceConnect, and an entity path naming this hub. */
async function authorizeManagement(
  context: AmqpConnectionContext,
  match: ManagementAddress,
): Promise<AmqpPrincipal | AmqpError> {
  const principal = context.service(Permissions.ServiceConnect);
  if (!principal) {
    return {
      condition: AmqpErrorConditions.unauthorizedAccess,
      description: 'The $management node of the built-in endpoint needs a token of a policy with ServiceConnect',
    };
  }
  if (!namesHub(match.entityPath, context.core.context.hubName)) {
    return {
      condition: AmqpErrorConditions.notFound,
      description: `The messaging entity '${match.entityPath}' could not be found`,
    };
  }
  return principal;
}

/** Answers one request's application properties. */
async function answer(context: AmqpConnectionContext, properties: Record<string, unknown>): Promise<ManagementAnswer> {
  if (!context.service(Permissions.ServiceConnect)) {
    return {
      status: 401,
      condition: AmqpErrorConditions.unauthorizedAccess,
      description: 'The connection no longer holds an unexpired ServiceConnect token',
    };
  }
  const { core } = context;
  const hubName = core.context.hubName;
  const operation = properties.operation;
  if (operation !== ManagementVocabulary.readOperation) {
    return {
      status: 400,
      condition: AmqpErrorConditions.argumentError,
      description: `Unsupported operation '${String(operation)}': the $management node answers READ`,
    };
  }
  const name = properties.name;
  if (name !== undefined && name !== null && (typeof name !== 'string' || !namesHub(name, hubName))) {
    return {
      status: 404,
      condition: AmqpErrorConditions.notFound,
      description: `The messaging entity '${String(name)}' could not be found`,
    };
  }
  const type = properties.type;
  const partitionCount = core.telemetry.partitionCount;
  if (type === ManagementVocabulary.eventHubType) {
    return {
      status: 200,
      body: {
        name: hubName,
        created_at: rhea.types.wrap_timestamp(await core.telemetry.createdTime()),
        partition_count: rhea.types.wrap_int(partitionCount),
        partition_ids: rhea.types.wrap_array(
          Array.from({ length: partitionCount }, (_, index) => String(index)),
          0xa1,
          undefined,
        ),
      },
    };
  }
  if (type === ManagementVocabulary.partitionType) {
    const id = properties.partition;
    const partition = typeof id === 'string' && /^\d+$/.test(id) ? Number(id) : Number.NaN;
    if (!Number.isInteger(partition) || partition >= partitionCount) {
      return {
        status: 400,
        condition: AmqpErrorConditions.argumentOutOfRange,
        description: `The partition '${String(id)}' does not exist: partition ids are 0 to ${partitionCount - 1}`,
      };
    }
    const info = await core.telemetry.partitionInfo(partition);
    return {
      status: 200,
      body: {
        name: hubName,
        partition: String(partition),
        begin_sequence_number: rhea.types.wrap_long(info.beginSequenceNumber),
        last_enqueued_sequence_number: rhea.types.wrap_long(info.lastSequenceNumber),
        last_enqueued_offset: String(info.lastSequenceNumber),
        last_enqueued_time_utc: rhea.types.wrap_timestamp(info.lastEnqueuedTime ?? 0),
        is_partition_empty: info.isEmpty,
      },
    };
  }
  return {
    status: 400,
    condition: AmqpErrorConditions.argumentError,
    description: `Unsupported type '${String(type)}': expected ${ManagementVocabulary.eventHubType} or ${ManagementVocabulary.partitionType}`,
  };
}

/** The response message of an answer. */
function responseOf(request: Message, result: ManagementAnswer): Message {
  const response: Message = { body: null, application_properties: {} };
  if (request.message_id !== undefined) response.correlation_id = request.message_id;
  if (typeof request.reply_to === 'string') response.to = request.reply_to;
  const properties = response.application_properties as Record<string, unknown>;
  properties[ManagementVocabulary.statusCode] = rhea.types.wrap_int(result.status);
  if ('body' in result) {
    properties[ManagementVocabulary.statusDescription] = 'OK';
    response.body = result.body;
  } else {
    properties[ManagementVocabulary.statusDescription] = result.description;
    properties[ManagementVocabulary.errorCondition] = rhea.types.wrap_symbol(result.condition);
  }
  return response;
}

/** Serves one request: answers it (errors included) on its reply link. */
async function serve(
  context: AmqpConnectionContext,
  replies: ReplyLinks,
  connection: object,
  request: Message,
): Promise<void> {
  const replyTo = request.reply_to;
  const replyLink = typeof replyTo === 'string' ? replies.find(connection, replyTo) : undefined;
  if (!replyLink) {
    context.logger.warn(
      { ...context.describe(), replyTo },
      'event hubs management request dropped: no receiver link on this connection has its reply_to as target',
    );
    return;
  }
  let result: ManagementAnswer;
  try {
    result = await answer(context, (request.application_properties ?? {}) as Record<string, unknown>);
  } catch (error) {
    context.logger.error({ ...context.describe(), err: error }, 'event hubs management request failed');
    result = {
      status: 500,
      condition: AmqpErrorConditions.internalError,
      description: error instanceof HubError ? error.message : 'The request failed inside the hub',
    };
  }
  replyLink.send(responseOf(request, result));
}

/** Both `$management` routes, sharing the reply links of each connection. */
export function managementRoutes(): LinkRoute[] {
  const replies = new ReplyLinks();

  const requests: LinkRoute<ManagementAddress> = {
    name: 'event-hubs-management-requests',
    direction: 'receive',
    match: parseManagementAddress,
    authorize: authorizeManagement,
    open(link, _match, context) {
      const receiver = link as Receiver;
      let closed = false;
      const onMessage = (event: EventContext) => {
        const request = event.message;
        const delivery: Delivery | undefined = event.delivery;
        if (closed || !request) return;
        // Accepted at once (unless it already has an outcome): the answer travels as the reply.
        if (delivery) settleReceived(delivery);
        serve(context, replies, receiver.connection, request).catch((error: unknown) => {
          context.logger.error({ ...context.describe(), err: error }, 'event hubs management reply failed');
        });
      };
      receiver.on('message', onMessage);
      return {
        close() {
          if (closed) return;
          closed = true;
          receiver.removeListener('message', onMessage);
        },
      };
    },
  };

  const responses: LinkRoute<ManagementAddress> = {
    name: 'event-hubs-management-replies',
    direction: 'send',
    match: parseManagementAddress,
    authorize: authorizeManagement,
    open(link, _match, context) {
      const sender = link as Sender;
      const address = sender.target?.address;
      if (typeof address !== 'string' || address === '') {
        sender.close({
          condition: AmqpErrorConditions.invalidField,
          description: 'A $management receiver needs a target address (its reply_to)',
        });
        return { close() {} };
      }
      const replyLink: ReplyLink = new ReplyLink(sender, context, () => replies.remove(sender, address, replyLink));
      replies.add(sender, address, replyLink);
      return replyLink;
    },
  };

  return [requests, responses];
}
