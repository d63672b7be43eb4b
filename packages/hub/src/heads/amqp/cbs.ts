/**
 * Claims-based security on `$cbs` (protocol-device.md §3.2, protocol-service.md §3.1, §4.2): reads a `put-token`
 * request and builds its response. The peer attaches a sender (target `$cbs`) and a receiver (source `$cbs`); each
 * request carries `message_id`, `reply_to`, application properties `operation` = `put-token`, `type` (a SAS token
 * type) and `name` (the audience), and the token as an AMQP value (string). The response carries `correlation_id` =
 * the request's `message_id` and application properties `status-code` (AMQP int) and `status-description`.
 *
 * Decisions where the reference is silent: a body sent as a data section (bytes) is read as UTF-8; a `type` that is
 * not a SAS token type (`jwt`: Azure AD) is answered 400, as is any operation other than `put-token`.
 */
import type { Message } from 'rhea';
import type { RheaModule } from './rhea-internals';

/** The CBS node's address; Edge templates also use `/$cbs`. */
export function isCbsAddress(address: string | undefined): boolean {
  return address === '$cbs' || address === '/$cbs';
}

/** Token types the hub accepts (Node and Event Hubs clients; .NET's `CbsConstants.IotHubSasTokenType`). */
export const sasTokenTypes: readonly string[] = ['servicebus.windows.net:sastoken', 'azure-devices.net:sastoken'];

/** A well-formed put-token request. */
export interface PutTokenRequest {
  readonly messageId: unknown;
  readonly replyTo: string | undefined;
  readonly audience: string;
  readonly token: string;
}

/** Reads a put-token request, or says why it is malformed (answered 400). */
export function parsePutToken(message: Message): PutTokenRequest | { readonly malformed: string } {
  const properties = message.application_properties ?? {};
  const operation = properties.operation;
  if (operation !== 'put-token') return { malformed: `unsupported CBS operation '${String(operation)}'` };
  const type = properties.type;
  if (typeof type !== 'string' || !sasTokenTypes.includes(type.toLowerCase())) {
    return { malformed: `unsupported token type '${String(type)}' (expected a SAS token)` };
  }
  const audience = properties.name;
  if (typeof audience !== 'string' || audience === '') return { malformed: 'put-token without a name (audience)' };
  const body: unknown = message.body;
  let token: string | undefined;
  if (typeof body === 'string') token = body;
  else if (Buffer.isBuffer(body)) token = body.toString('utf8');
  else if (isDataSection(body)) token = Buffer.from(body.content).toString('utf8');
  if (token === undefined || token === '') return { malformed: 'put-token without a token in its body' };
  return {
    messageId: message.message_id,
    replyTo: typeof message.reply_to === 'string' ? message.reply_to : undefined,
    audience,
    token,
  };
}

/** The response to a CBS request. */
export function putTokenResponse(
  rhea: RheaModule,
  request: { readonly messageId: unknown; readonly replyTo?: string | undefined },
  statusCode: 200 | 400 | 401 | 500,
  description: string,
): Message {
  const response: Message = {
    body: undefined,
    application_properties: {
      // An AMQP int, not rhea's default uint: the SDKs compare it with `!== 200` after decoding (§3.2).
      'status-code': rhea.types.wrap_int(statusCode),
      'status-description': description,
    },
  };
  if (request.messageId !== undefined && request.messageId !== null) {
    response.correlation_id = request.messageId as string;
  }
  if (request.replyTo !== undefined) response.to = request.replyTo;
  return response;
}

function isDataSection(body: unknown): body is { typecode: number; content: Buffer } {
  return (
    typeof body === 'object' &&
    body !== null &&
    (body as { typecode?: unknown }).typecode === 0x75 &&
    Buffer.isBuffer((body as { content?: unknown }).content)
  );
}
