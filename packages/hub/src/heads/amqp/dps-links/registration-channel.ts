/**
 * Registration requests over AMQP (protocol-device.md §5.3): the device attaches a receiver and a sender on
 * `{idScope}/registrations/{registrationId}`. Requests arrive on its sender with a `correlation_id` and application
 * properties `iotdps-operation-type` (`iotdps-register` | `iotdps-get-operationstatus`), `iotdps-forceRegistration`
 * (register) and `iotdps-operation-id` (poll); the register body is the HTTPS one (`{"registrationId", "payload"}`)
 * in a data section, or empty. Answers go out on the device's receiver with the request's `correlation_id` (same
 * AMQP type), the RegistrationOperationStatus as JSON in one data section (`azure-iot-provisioning-device-amqp`
 * parses `body.content`) and, with 202, application property `retry-after` (seconds).
 *
 * What the official clients read, where the reference is silent:
 * - Neither the Node nor the .NET client reads a status property on a response: both branch on the body's
 *   `status`. A response without one (a DPS error body) makes the Node client throw (`result.status.toLowerCase()`).
 *   So a failed request is answered, as DPS does and as the .NET client expects (`ValidateOutcome`), by rejecting
 *   the request's delivery: condition from the HTTP status (`amqp:unauthorized-access`, `amqp:not-found`,
 *   `com.microsoft:argument-error`, `com.microsoft:device-container-throttled`, `amqp:internal-error`), description
 *   the DPS error body as JSON (`{errorCode, trackingId, message, timestampUtc}`), and for 429 / 5xx the retry
 *   interval in the error's `info`. The Node client retries such a rejection (InternalError / ThrottlingError) after
 *   `info['retry-after']`; .NET reads `Retry-After`: both keys are sent, in `info` and on 202 responses.
 * - The request delivery is accepted once the service answered, then the response goes out: .NET waits for the
 *   outcome before it reads the response.
 * - The .NET client polls with an AMQP-value body (the operation type as a string); any body of a poll is ignored.
 * - A request while no response link is attached is rejected (`InvalidOperation`) before the service sees it.
 */
import { randomUUID } from 'node:crypto';
import { ArgumentError, HubError, parseDpsRegistrationRequest } from '@fieldhub/protocol';
import rhea, { type EventContext, type Message, type Receiver, type Sender } from 'rhea';
import type { DpsAnswer, DpsRegisterOptions } from '../../../dps/contract';
import type { AmqpConnectionContext, AmqpError, RegistrationPrincipal } from '../contract';
import { amqpErrorOf, bodyBytes, textOf } from '../device-links/amqp-values';
import { OutgoingLink } from '../device-links/outgoing-link';
import { settleReceived } from '../settlement';
import { sameRegistration } from './addresses';

/** Application property names of registration requests and responses (§5.3). */
export const DpsAmqpProperties = {
  operationType: 'iotdps-operation-type',
  operationId: 'iotdps-operation-id',
  forceRegistration: 'iotdps-forceRegistration',
  /** What the Node client reads (seconds). */
  retryAfter: 'retry-after',
  /** What the .NET client reads (seconds). */
  retryAfterDotNet: 'Retry-After',
} as const;

/** Values of `iotdps-operation-type`. */
export const DpsAmqpOperations = {
  register: 'iotdps-register',
  operationStatus: 'iotdps-get-operationstatus',
} as const;

/** Seconds a device is told to wait after a throttled or failed request (Node's default polling interval is 2). */
const retryAfterErrorSeconds = 2;

type ParsedRequest =
  | { readonly operation: 'register'; readonly options: DpsRegisterOptions }
  | { readonly operation: 'status'; readonly operationId: string };

/** The registration links of one registration on one connection. */
export class RegistrationChannel {
  /** Response links (the device's receivers), oldest first. */
  private readonly responseLinks = new Map<Sender, OutgoingLink>();
  private readonly requestLinks = new Map<Receiver, (event: EventContext) => void>();

  private constructor(
    private readonly context: AmqpConnectionContext,
    private readonly onEmpty: () => void,
  ) {}

  /** The channel of a registration on a connection, created on first use and forgotten when its last link goes. */
  static of(connection: object, principal: RegistrationPrincipal, context: AmqpConnectionContext): RegistrationChannel {
    let channels = channelsByConnection.get(connection);
    if (!channels) {
      channels = new Map();
      channelsByConnection.set(connection, channels);
    }
    const { idScope, registrationId } = principal.registration;
    const key = `${idScope.toLowerCase()}/${registrationId.toLowerCase()}`;
    let channel = channels.get(key);
    if (!channel) {
      const owner = channels;
      channel = new RegistrationChannel(context, () => owner.delete(key));
      channels.set(key, channel);
    }
    return channel;
  }

  /** Serves a request link (the device's sender) under `principal`. Returns its stop function. */
  addRequestLink(receiver: Receiver, principal: RegistrationPrincipal): () => void {
    const onMessage = (event: EventContext): void => this.onRequest(event, principal);
    this.requestLinks.set(receiver, onMessage);
    receiver.on('message', onMessage);
    return () => {
      const listener = this.requestLinks.get(receiver);
      if (!listener) return;
      receiver.removeListener('message', listener);
      this.requestLinks.delete(receiver);
      this.maybeEnd();
    };
  }

  /** Serves a response link (the device's receiver). Returns its stop function. */
  addResponseLink(sender: Sender): () => void {
    this.responseLinks.set(sender, new OutgoingLink(sender));
    return () => {
      if (!this.responseLinks.delete(sender)) return;
      this.maybeEnd();
    };
  }

  private maybeEnd(): void {
    if (this.requestLinks.size === 0 && this.responseLinks.size === 0) this.onEmpty();
  }

  /** The newest response link still open. */
  private responseLink(): OutgoingLink | undefined {
    let chosen: OutgoingLink | undefined;
    for (const [sender, outgoing] of this.responseLinks) if (sender.is_open()) chosen = outgoing;
    return chosen;
  }

  private onRequest(event: EventContext, principal: RegistrationPrincipal): void {
    const { delivery, message } = event;
    if (!message) return;
    const { idScope, registrationId } = principal.registration;
    const log = { ...this.context.describe(), idScope, registrationId };
    const correlationId: unknown = message.correlation_id;
    const fail = (error: unknown): void => {
      const rejection = rejectionOf(error);
      if (!HubError.is(error) || error.status >= 500) {
        this.context.logger.error({ err: error, ...log }, 'amqp registration request failed');
      } else {
        this.context.logger.info({ ...log, reason: error.message, status: error.status }, 'amqp registration refused');
      }
      if (delivery) settleReceived(delivery, rejection);
    };

    const request = parseRequest(message, principal);
    if (request instanceof HubError) {
      fail(request);
      return;
    }
    if (!this.responseLink()) {
      fail(
        new HubError(
          'InvalidOperation',
          `Attach a receiver on '${idScope}/registrations/${registrationId}' before sending requests: the answers go there`,
        ),
      );
      return;
    }
    const { dps } = this.context.core;
    const answering =
      request.operation === 'register'
        ? dps.register(principal.registration, request.options)
        : dps.operationStatus(principal.registration, request.operationId);
    answering.then(
      (answer) => {
        const link = this.responseLink();
        if (!link) {
          this.context.logger.info(log, 'amqp registration answer dropped: the response link was detached');
          if (delivery) settleReceived(delivery, rejectionOf(new HubError('InvalidOperation', 'No response link')));
          return;
        }
        if (delivery) settleReceived(delivery);
        link.send(responseOf(answer, correlationId));
        this.context.logger.debug(
          { ...log, operation: request.operation, status: answer.status, registrationStatus: answer.body.status },
          'amqp registration answered',
        );
      },
      (error: unknown) => fail(error),
    );
  }
}

const channelsByConnection = new WeakMap<object, Map<string, RegistrationChannel>>();

/** Reads a request's operation and arguments; a HubError (400) when it is malformed. */
function parseRequest(message: Message, principal: RegistrationPrincipal): ParsedRequest | HubError {
  const properties = (message.application_properties ?? {}) as Record<string, unknown>;
  const operationType = textOf(properties[DpsAmqpProperties.operationType]);
  if (operationType === DpsAmqpOperations.operationStatus) {
    const operationId = textOf(properties[DpsAmqpProperties.operationId]);
    if (operationId === undefined || operationId === '') {
      return new ArgumentError(`${DpsAmqpProperties.operationId} is required to poll an operation`, {
        field: DpsAmqpProperties.operationId,
      });
    }
    return { operation: 'status', operationId };
  }
  if (operationType !== DpsAmqpOperations.register) {
    const shown = operationType === undefined ? 'none' : `'${operationType.slice(0, 64)}'`;
    return new HubError(
      'InvalidOperation',
      `${DpsAmqpProperties.operationType} must be ${DpsAmqpOperations.register} or ${DpsAmqpOperations.operationStatus} (got ${shown})`,
    );
  }
  const force = forceRegistrationOf(properties[DpsAmqpProperties.forceRegistration]);
  if (force instanceof HubError) return force;
  const body = bodyBytes(message);
  if (!Buffer.isBuffer(body)) return new ArgumentError(body.description, { field: 'body' });
  const text = body.toString('utf8');
  const options: { payload?: unknown; forceRegistration?: boolean } = {};
  if (force !== undefined) options.forceRegistration = force;
  // The .NET client sends an empty body when it has no payload: the registration is the link's.
  if (text.trim() === '') return { operation: 'register', options };
  let request: ReturnType<typeof parseDpsRegistrationRequest>;
  try {
    request = parseDpsRegistrationRequest(text);
  } catch (error) {
    return HubError.is(error) ? error : new ArgumentError('The registration request is malformed', { cause: error });
  }
  if (
    !sameRegistration(
      { idScope: principal.registration.idScope, registrationId: request.registrationId },
      principal.registration,
    )
  ) {
    return new ArgumentError(
      `The body's registrationId '${request.registrationId.slice(0, 128)}' is not the link's '${principal.registration.registrationId}'`,
      { field: 'registrationId' },
    );
  }
  if (request.payload !== undefined) options.payload = request.payload;
  return { operation: 'register', options };
}

/** `iotdps-forceRegistration`: a boolean (Node, .NET), or its text; absent or null is false. */
function forceRegistrationOf(value: unknown): boolean | undefined | HubError {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'boolean') return value;
  const text = textOf(value)?.toLowerCase();
  if (text === 'true') return true;
  if (text === 'false') return false;
  return new ArgumentError(`${DpsAmqpProperties.forceRegistration} must be a boolean`, {
    field: DpsAmqpProperties.forceRegistration,
  });
}

/** The response message of an answer. */
function responseOf(answer: DpsAnswer, correlationId: unknown): Message {
  const response: Message = {
    content_type: 'application/json',
    content_encoding: 'utf-8',
    body: rhea.message.data_section(Buffer.from(JSON.stringify(answer.body), 'utf8')),
  };
  if (answer.retryAfterSeconds !== undefined) {
    const seconds = rhea.types.wrap_int(Math.max(0, Math.round(answer.retryAfterSeconds)));
    response.application_properties = {
      [DpsAmqpProperties.retryAfter]: seconds,
      [DpsAmqpProperties.retryAfterDotNet]: seconds,
    };
  }
  // Echoed with its AMQP type (a string from Node, a uuid or string from others): the client matches on it.
  if (correlationId !== undefined && correlationId !== null) response.correlation_id = correlationId as string;
  return response;
}

/** The rejection a failed request gets: the condition of its status and the DPS error body as description. */
export function rejectionOf(error: unknown): AmqpError {
  const hubError = HubError.is(error)
    ? error
    : new HubError('ServerError', 'An internal error occurred', { cause: error });
  const { condition } = amqpErrorOf(hubError);
  const description = JSON.stringify({
    errorCode: hubError.hubCode,
    trackingId: randomUUID(),
    message: hubError.message,
    timestampUtc: new Date().toISOString(),
  });
  if (hubError.status !== 429 && hubError.status < 500) return { condition, description };
  const seconds = rhea.types.wrap_int(retryAfterErrorSeconds);
  return {
    condition,
    description,
    info: { [DpsAmqpProperties.retryAfter]: seconds, [DpsAmqpProperties.retryAfterDotNet]: seconds },
  };
}
