/**
 * Provisioning over MQTT (protocol-device.md §5.1; captures/dps.txt): a CONNECT whose username is
 * `{idScope}/registrations/{registrationId}/api-version=..[&ClientVersion=..]` (no `?`) and whose client id is the
 * registration id opens a provisioning connection instead of a device one. The head only translates: the
 * provisioning service (`core.dps`, `../../dps/contract.ts`) authenticates and registers.
 *
 * Such a connection may subscribe `$dps/registrations/res/#` and publish
 * `$dps/registrations/PUT/iotdps-register/?$rid={rid}` and
 * `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`; answers go to
 * `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]` with the operation (200, 202) or DPS's error body
 * (`{errorCode, trackingId, message, timestampUtc}`) as JSON. A bad request body is answered 400 and the connection
 * stays; any other topic (every device topic) closes it, as IoT Hub does for a topic a device may not use. No
 * session is kept (clean session is treated as 1, §5.1), no will is ever sent, and the connection is not a device:
 * no connection state, no eviction, not in the connected-devices gauge.
 */
import { randomUUID } from 'node:crypto';
import type { DetailedPeerCertificate } from 'node:tls';
import { derToPem, parseSasToken } from '@fieldhub/auth';
import {
  type DpsErrorBody,
  dpsResponseTopic,
  HubError,
  parseDeviceTopic,
  parseDpsMqttUsername,
  parseDpsRegistrationRequest,
  TopicFilters,
  validateRegistrationId,
} from '@fieldhub/protocol';
import type { IConnectPacket, IPublishPacket, ISubscribePacket, IUnsubscribePacket } from 'mqtt-packet';
import type { DpsAnswer, DpsPrincipal, DpsProof, DpsService } from '../../dps/contract';
import { intermediatesOf } from './authenticate';
import type { MqttSession } from './session';

const registrationsSegment = 'registrations/';
const emptyPayload = Buffer.alloc(0);

/** Requests of one provisioning connection answered concurrently; more are answered 429 (DPS throttles too). */
export const maxPendingDpsRequests = 16;

/**
 * Whether a CONNECT is a provisioning connection: username `{idScope}/registrations/{clientId}[/...]`. A device can
 * never look like this: a device named `registrations` has `{host}/registrations/?api-version=..` (its third
 * segment is not its client id), and as a module its client id is `registrations/{moduleId}`. A few string
 * comparisons, no parsing: the device path's CONNECT cost stays as it was (W-benchmarks).
 */
export function isDpsConnect(packet: IConnectPacket): boolean {
  const { username, clientId } = packet;
  if (username === undefined || clientId === '' || clientId.includes('/')) return false;
  const first = username.indexOf('/');
  if (first <= 0 || !username.startsWith(registrationsSegment, first + 1)) return false;
  const start = first + 1 + registrationsSegment.length;
  if (!username.startsWith(clientId, start)) return false;
  const end = start + clientId.length;
  return end === username.length || username.charCodeAt(end) === 0x2f; // '/'
}

/**
 * The DPS error body of a failure (§5.2): `errorCode` is the six-digit code whose first three digits are the
 * status, as DPS answers it over every protocol. A 401 says only `Unauthorized`, as Azure answers every refusal
 * (callers log the reason): a message naming what is enrolled would tell a prober which registration ids exist.
 */
export function dpsErrorBody(error: HubError, now = new Date()): Required<Omit<DpsErrorBody, 'info'>> {
  return {
    errorCode: error.hubCode,
    trackingId: randomUUID(),
    message: error.status === 401 ? 'Unauthorized' : error.message,
    timestampUtc: now.toISOString(),
  };
}

/** Any failure as a HubError (a stray exception is a 500 ServerError, with the original as its cause). */
export function asHubError(error: unknown): HubError {
  return HubError.is(error) ? error : new HubError('ServerError', 'An internal error occurred', { cause: error });
}

/** The client certificate chain of a TLS peer, leaf first, PEM; empty when it presented none. */
export function peerChainOf(peer: DetailedPeerCertificate | undefined): string[] {
  if (!peer?.raw || peer.raw.length === 0) return [];
  return [derToPem(peer.raw, 'CERTIFICATE'), ...intermediatesOf(peer)];
}

/**
 * Handles the CONNECT of a provisioning connection (check {@link isDpsConnect} first): refusals as the device path
 * answers them (2 a client id that is not a registration id, 4 a malformed username or a password that is not a SAS
 * token, 5 the credentials themselves: wrong key, unknown or disabled enrollment, wrong ID scope, refused
 * certificate), else CONNACK 0 and a session that speaks only `$dps` topics.
 */
export async function handleDpsConnect(
  session: MqttSession,
  packet: IConnectPacket,
  service: DpsService,
): Promise<void> {
  const clientId = packet.clientId;
  try {
    validateRegistrationId(clientId);
  } catch {
    session.refuse(2, 'client id is not a valid registration id', { clientId });
    return;
  }
  let idScope: string;
  try {
    const username = parseDpsMqttUsername(packet.username ?? '');
    idScope = username.idScope;
  } catch {
    session.refuse(4, 'malformed provisioning username', { clientId });
    return;
  }
  const password = packet.password === undefined ? '' : packet.password.toString('utf8');
  let proof: DpsProof;
  if (password === '') {
    const chain = peerChainOf(session.transport.peerCertificate());
    if (chain.length === 0) {
      session.refuse(5, 'no password and no client certificate', { clientId, idScope });
      return;
    }
    proof = { kind: 'x509', chain };
  } else {
    try {
      parseSasToken(password);
    } catch {
      session.refuse(4, 'password is not a SAS token', { clientId, idScope });
      return;
    }
    proof = { kind: 'sas', token: password };
  }

  let principal: DpsPrincipal;
  try {
    principal = await service.authenticate(idScope, clientId, proof);
  } catch (error) {
    if (session.state !== 'authenticating') return;
    const hubError = asHubError(error);
    if (hubError.status >= 500) {
      session.logger.error(
        { err: error, ...session.describe(), registrationId: clientId },
        'DPS authentication failed',
      );
      session.refuse(3, 'provisioning service unavailable', { clientId, idScope });
      return;
    }
    session.refuse(hubError.status === 400 ? 4 : 5, `provisioning refused: ${hubError.message}`, { clientId, idScope });
    return;
  }
  // The peer may have gone while the enrollment was read.
  if (session.state !== 'authenticating') return;
  if (packet.will) {
    // A provisioning connection is not a device: its will has no topic it could go to.
    session.logger.debug(
      { ...session.describe(), registrationId: clientId },
      'will of a provisioning connection ignored',
    );
  }
  session.provisioning = new DpsSession(session, service, principal);
  session.sendConnackAccepted();
  session.acceptProvisioning(packet.keepalive ?? 0, principal.expiresAtMs);
  if (session.logger.isLevelEnabled('info')) {
    session.logger.info(
      { ...session.describe(), auth: proof.kind, cleanSession: packet.clean },
      'mqtt provisioning connection',
    );
  }
}

/** The `$dps` side of one provisioning connection. */
export class DpsSession {
  /** Subscribed to `$dps/registrations/res/#`: answers go out only then (as twin responses). */
  subscribed = false;
  private pending = 0;

  constructor(
    readonly session: MqttSession,
    readonly service: DpsService,
    readonly principal: DpsPrincipal,
  ) {}

  /** SUBSCRIBE: only `$dps/registrations/res/#` (QoS up to 1); any other filter closes the connection. */
  subscribe(packet: ISubscribePacket): void {
    const granted: number[] = [];
    for (const subscription of packet.subscriptions) {
      if (!isDpsResponses(subscription.topic)) {
        this.session.close(
          `SUBSCRIBE refused: '${subscription.topic.slice(0, 200)}' on a provisioning connection`,
          'warn',
        );
        return;
      }
      this.subscribed = true;
      granted.push(subscription.qos >= 1 ? 1 : 0);
    }
    this.session.send({ cmd: 'suback', messageId: packet.messageId ?? 0, granted });
  }

  /** UNSUBSCRIBE: answers UNSUBACK; unknown filters too (not an error in MQTT). */
  unsubscribe(packet: IUnsubscribePacket): void {
    if (packet.unsubscriptions.some(isDpsResponses)) this.subscribed = false;
    const unsuback = Buffer.from([0xb0, 0x02, 0, 0]);
    unsuback.writeUInt16BE(packet.messageId ?? 0, 2);
    this.session.write(unsuback);
  }

  /**
   * PUBLISH: a registration request or an operation-status poll, acknowledged (QoS 1) as it arrives and answered
   * on the response topic once the service answers. QoS 2 and every other topic close the connection.
   */
  publish(packet: IPublishPacket): void {
    const { session } = this;
    if (packet.qos === 2) {
      session.close('QoS 2 PUBLISH on a provisioning connection', 'warn');
      return;
    }
    let route: ReturnType<typeof parseDeviceTopic>;
    try {
      route = parseDeviceTopic(packet.topic);
    } catch (error) {
      // A `$dps` request with a rid but a malformed rest (a poll without operationId) gets its 400.
      const rid = packet.topic.startsWith('$dps/') ? /[?&]\$rid=([^&]*)/.exec(packet.topic)?.[1] : undefined;
      if (rid === undefined) {
        session.close(`PUBLISH refused on '${packet.topic.slice(0, 200)}': ${(error as Error).message}`, 'warn');
        return;
      }
      this.acknowledge(packet);
      this.answerError(rid, error);
      return;
    }
    if (route.kind !== 'dpsRegister' && route.kind !== 'dpsGetOperationStatus') {
      session.close(`PUBLISH refused on '${packet.topic.slice(0, 200)}': not a provisioning request`, 'warn');
      return;
    }
    this.acknowledge(packet);
    if (this.pending >= maxPendingDpsRequests) {
      this.answerError(route.rid, new HubError('ThrottlingException', 'Too many requests in flight'), 1);
      return;
    }
    let answer: Promise<DpsAnswer>;
    if (route.kind === 'dpsRegister') {
      const payload =
        typeof packet.payload === 'string' ? Buffer.from(packet.payload) : (packet.payload ?? emptyPayload);
      try {
        answer = this.service.register(this.principal, this.registrationOptions(payload));
      } catch (error) {
        this.answerError(route.rid, error);
        return;
      }
    } else {
      // The poll's body is ignored (Node sends a single space).
      answer = this.service.operationStatus(this.principal, route.operationId);
    }
    const { rid } = route;
    this.pending++;
    answer
      .then(
        (result) => this.answer(rid, result.status, JSON.stringify(result.body), result.retryAfterSeconds),
        (error: unknown) => this.answerError(rid, error),
      )
      .finally(() => this.pending--);
  }

  /** The register options from a request body; throws ArgumentError for a bad body (answered 400). */
  private registrationOptions(payload: Buffer): { payload?: unknown } {
    const request = parseDpsRegistrationRequest(payload.toString('utf8'));
    // DPS compares registration ids without case (§5.4).
    if (request.registrationId.toLowerCase() !== this.principal.registrationId.toLowerCase()) {
      throw new HubError(
        'ArgumentInvalid',
        `The registrationId '${request.registrationId}' of the request is not the connection's '${this.principal.registrationId}'`,
      );
    }
    return request.payload === undefined ? {} : { payload: request.payload };
  }

  private acknowledge(packet: IPublishPacket): void {
    if (packet.qos === 1 && packet.messageId !== undefined) {
      this.session.send({ cmd: 'puback', messageId: packet.messageId });
    }
  }

  private answerError(rid: string, error: unknown, retryAfterSeconds?: number): void {
    const hubError = asHubError(error);
    if (hubError.status >= 500) {
      this.session.logger.error({ err: error, ...this.session.describe() }, 'provisioning request failed');
    } else {
      this.session.logger.debug({ ...this.session.describe(), code: hubError.code }, hubError.message);
    }
    // DPS tells a throttled device when to come back, whichever part of the service throttled it.
    const retryAfter = retryAfterSeconds ?? (hubError.status === 429 ? 1 : undefined);
    this.answer(rid, hubError.status, JSON.stringify(dpsErrorBody(hubError)), retryAfter);
  }

  private answer(rid: string, status: number, body: string, retryAfterSeconds: number | undefined): void {
    const { session } = this;
    if (!this.subscribed) {
      session.logger.debug(
        { ...session.describe(), rid },
        'provisioning request without a $dps/registrations/res/# subscription',
      );
      return;
    }
    let topic: string;
    try {
      topic = dpsResponseTopic(
        retryAfterSeconds === undefined
          ? { status, rid }
          : { status, rid, retryAfter: Math.max(0, Math.ceil(retryAfterSeconds)) },
      );
    } catch {
      // A `$rid` that cannot be echoed safely: the device could not match an answer anyway.
      session.logger.debug({ ...session.describe() }, 'provisioning request with an unusable $rid');
      return;
    }
    session.publish(topic, body);
  }
}

function isDpsResponses(filter: string): boolean {
  return filter === TopicFilters.dpsResponses;
}
