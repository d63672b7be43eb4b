import { randomUUID } from 'node:crypto';
import { createSasToken, createSelfSignedCertificate } from '@fieldhub/auth';
import { deriveDeviceKey } from '@fieldhub/protocol';
import {
  type AwaitableSender,
  Connection,
  type ConnectionOptions,
  type EventContext,
  type Message,
  type Receiver,
  ReceiverEvents,
  message as rheaMessage,
  SenderEvents,
} from 'rhea-promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AmqpErrorConditions } from '../src/heads/amqp/contract';
import { startTestHub, type TestHub } from './helpers/test-hub';

// Provisioning over AMQP (protocol-device.md §5.3) against the in-process hub over real TLS and WebSockets, with
// rhea-promise shaped as azure-iot-provisioning-device-amqp talks: SASL PLAIN `{idScope}/registrations/{id}` with a
// registration SAS token (or the TLS client certificate), a receiver then a sender on the registration address,
// requests with `correlation_id` and `iotdps-*` application properties, answers on the receiver.

interface Answer {
  readonly message: Message;
  readonly body: Record<string, unknown>;
}

type Outcome =
  | { readonly accepted: true }
  | { readonly accepted: false; readonly condition: string; readonly description: string; readonly info?: unknown };

function bodyText(message: Message): string {
  const body = message.body as { content?: Buffer } | Buffer | string | undefined;
  if (body === undefined) return '';
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return Buffer.from(body.content ?? []).toString('utf8');
}

/** The registration links of one device: its receiver (answers) and its sender (requests). */
class RegistrationLinks {
  private readonly answers: Message[] = [];
  private wake: (() => void) | undefined;

  constructor(
    readonly receiver: Receiver,
    readonly sender: AwaitableSender,
  ) {
    receiver.on(ReceiverEvents.message, (event: EventContext) => {
      if (!event.message) return;
      this.answers.push(event.message);
      this.wake?.();
    });
  }

  /** Sends a request; resolves with its outcome and, when accepted, the answer with the same correlation id. */
  async request(
    applicationProperties: Record<string, unknown>,
    body?: Message['body'],
  ): Promise<{ outcome: Outcome; answer?: Answer }> {
    const correlationId = randomUUID();
    const message: Message = { correlation_id: correlationId, application_properties: applicationProperties };
    if (body !== undefined) message.body = body;
    let outcome: Outcome;
    try {
      await this.sender.send(message, { timeoutInSeconds: 30 });
      outcome = { accepted: true };
    } catch (error) {
      const inner = (error as { innerError?: { condition: string; description: string; info?: unknown } }).innerError;
      if (!inner) throw error;
      outcome = { accepted: false, condition: inner.condition, description: inner.description, info: inner.info };
    }
    if (!outcome.accepted) return { outcome };
    const message2 = await this.next((candidate) => candidate.correlation_id === correlationId);
    return { outcome, answer: { message: message2, body: JSON.parse(bodyText(message2)) as Record<string, unknown> } };
  }

  private async next(predicate: (message: Message) => boolean): Promise<Message> {
    for (;;) {
      const index = this.answers.findIndex(predicate);
      if (index >= 0) return this.answers.splice(index, 1)[0] as Message;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

const registerProperties = (force = false) => ({
  'iotdps-operation-type': 'iotdps-register',
  'iotdps-forceRegistration': force,
});
const pollProperties = (operationId: string) => ({
  'iotdps-operation-type': 'iotdps-get-operationstatus',
  'iotdps-operation-id': operationId,
});
const jsonBody = (value: unknown) =>
  rheaMessage.data_section(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)));

describe('provisioning over AMQP', () => {
  let testHub: TestHub;
  let idScope: string;
  let groupKey: string;
  const connections: Connection[] = [];

  const registrationToken = (registrationId: string, key: string) =>
    createSasToken({
      resourceUri: `${idScope}/registrations/${registrationId}`,
      key,
      keyName: 'registration',
      ttlSeconds: 3600,
    });

  const open = async (options: Partial<ConnectionOptions>): Promise<Connection> => {
    const connection = new Connection({
      transport: 'tls',
      host: '127.0.0.1',
      hostname: 'localhost',
      servername: 'localhost',
      port: testHub.info.ports.amqp ?? 0,
      ca: testHub.ca,
      reconnect: false,
      ...options,
    } as ConnectionOptions);
    connections.push(connection);
    await connection.open();
    return connection;
  };

  /** A connection as the Node provisioning client opens it with a symmetric key (SASL PLAIN). */
  const connectWithKey = async (registrationId: string, key: string, webSockets = false): Promise<Connection> => {
    const sasl = {
      username: `${idScope}/registrations/${registrationId}`,
      password: await registrationToken(registrationId, key),
    };
    if (!webSockets) return open(sasl);
    return open({
      ...sasl,
      webSocketOptions: {
        webSocket: WebSocket,
        url: `wss://127.0.0.1:${testHub.info.ports.https}/$iothub/websocket`,
        protocol: ['AMQPWSB10'],
        options: { ca: testHub.ca, servername: 'localhost' },
      },
    } as Partial<ConnectionOptions>);
  };

  const attachLinks = async (connection: Connection, registrationId: string, scope = idScope) => {
    const address = `${scope}/registrations/${registrationId}`;
    const properties = { 'com.microsoft:api-version': '2019-03-31' };
    const receiver = await connection.createReceiver({ source: { address }, properties, credit_window: 10 });
    const sender = await connection.createAwaitableSender({ target: { address }, properties });
    return new RegistrationLinks(receiver, sender);
  };

  /** The AMQP error an attach is refused with (a null terminus and a detach, AMQP 1.0 §2.6.3). */
  const refusal = async (
    opening: Promise<{ once(event: string, listener: (context: EventContext) => void): unknown }>,
  ) => {
    try {
      const link = await opening;
      return await new Promise<{ condition?: string }>((resolve) => {
        const onClose = (context: EventContext) =>
          resolve(((context.receiver ?? context.sender)?.error as { condition?: string } | undefined) ?? {});
        link.once(ReceiverEvents.receiverClose, onClose);
        link.once(SenderEvents.senderClose, onClose);
        link.once(ReceiverEvents.receiverError, onClose);
        link.once(SenderEvents.senderError, onClose);
      });
    } catch (error) {
      const inner = (error as { innerError?: { condition?: string } }).innerError ?? error;
      return { condition: (inner as { condition?: string }).condition };
    }
  };

  /** Registers and polls (after each `retry-after`) until the operation is no longer assigning. */
  const registerToTheEnd = async (links: RegistrationLinks, force = false) => {
    const first = await links.request(registerProperties(force), jsonBody({ registrationId: registrationOf(links) }));
    expect(first.outcome).toEqual({ accepted: true });
    let answer = first.answer as Answer;
    for (let polls = 0; answer.body.status === 'assigning' && polls < 50; polls++) {
      const retryAfter = Number(answer.message.application_properties?.['retry-after']);
      expect(retryAfter).toBeGreaterThan(0);
      await new Promise((resolve) => setTimeout(resolve, Math.min(retryAfter * 1000, 200)));
      const poll = await links.request(pollProperties(String(answer.body.operationId)), '');
      expect(poll.outcome).toEqual({ accepted: true });
      answer = poll.answer as Answer;
    }
    return answer;
  };

  const registrationOf = (links: RegistrationLinks) =>
    String((links.sender.target as { address?: string } | undefined)?.address).split('/')[2] ?? '';

  beforeAll(async () => {
    testHub = await startTestHub();
    idScope = testHub.hub.core.dps.idScope;
    const group = await testHub.hub.core.dps.enrollments.putGroup('amqp-group', {
      attestation: { type: 'symmetricKey' },
    });
    groupKey = (group.attestation as { symmetricKey: { primaryKey: string } }).symmetricKey.primaryKey;
  });

  afterAll(async () => {
    for (const connection of connections) await connection.close().catch(() => undefined);
    await testHub?.stop();
  });

  it('registers through a symmetric-key group: 202 assigning with retry-after, polled to assigned', async () => {
    const connection = await connectWithKey('amqp-dps-1', deriveDeviceKey(groupKey, 'amqp-dps-1'));
    const links = await attachLinks(connection, 'amqp-dps-1');
    const first = await links.request(registerProperties(), jsonBody({ registrationId: 'amqp-dps-1' }));
    expect(first.outcome).toEqual({ accepted: true });
    const answer = first.answer as Answer;
    expect(answer.body).toMatchObject({ status: 'assigning', operationId: expect.any(String) });
    expect(Number(answer.message.application_properties?.['retry-after'])).toBeGreaterThan(0);

    const final = await registerToTheEnd(links);
    expect(final.body).toMatchObject({
      status: 'assigned',
      registrationState: { registrationId: 'amqp-dps-1', deviceId: 'amqp-dps-1', assignedHub: 'localhost' },
    });
    expect((await testHub.request('GET', '/devices/amqp-dps-1')).status).toBe(200);

    // Registered again (forceRegistration, on the same links): the same identity.
    const again = await registerToTheEnd(links, true);
    expect(again.body).toMatchObject({ status: 'assigned', registrationState: { deviceId: 'amqp-dps-1' } });
  });

  it('registers over AMQP over WebSockets (AMQPWSB10), with an empty register body as the .NET client sends', async () => {
    const connection = await connectWithKey('amqp-dps-ws', deriveDeviceKey(groupKey, 'amqp-dps-ws'), true);
    const links = await attachLinks(connection, 'amqp-dps-ws');
    const first = await links.request(registerProperties(), rheaMessage.data_section(Buffer.alloc(0)));
    expect(first.outcome).toEqual({ accepted: true });
    expect(first.answer?.body.status).toBe('assigning');
    const final = await registerToTheEnd(links);
    expect(final.body).toMatchObject({ status: 'assigned', registrationState: { deviceId: 'amqp-dps-ws' } });
  });

  it('fails SASL for a wrong key and for another ID scope', async () => {
    const wrongKey = Buffer.alloc(32, 3).toString('base64');
    // SASL outcome `auth` (code 1), as Azure answers a refused registration.
    const authFailure = { message: expect.stringContaining('Failed to authenticate: 1') };
    await expect(connectWithKey('amqp-dps-2', wrongKey)).rejects.toMatchObject(authFailure);
    const token = await registrationToken('amqp-dps-2', deriveDeviceKey(groupKey, 'amqp-dps-2'));
    await expect(open({ username: '0ne99999999/registrations/amqp-dps-2', password: token })).rejects.toMatchObject(
      authFailure,
    );
    // The right key still works.
    const connection = await connectWithKey('amqp-dps-2', deriveDeviceKey(groupKey, 'amqp-dps-2'));
    expect(connection.isOpen()).toBe(true);
  });

  it('refuses links to another registration id, and reaches neither device links nor CBS', async () => {
    const connection = await connectWithKey('amqp-dps-3', deriveDeviceKey(groupKey, 'amqp-dps-3'));
    expect(
      (await refusal(connection.createReceiver({ source: { address: `${idScope}/registrations/amqp-dps-other` } })))
        .condition,
    ).toBe(AmqpErrorConditions.unauthorizedAccess);
    expect(
      (
        await refusal(
          connection.createAwaitableSender({ target: { address: `${idScope}/registrations/amqp-dps-other` } }),
        )
      ).condition,
    ).toBe(AmqpErrorConditions.unauthorizedAccess);

    // Registered, the device exists; this connection still cannot serve it as a hub device.
    const links = await attachLinks(connection, 'amqp-dps-3');
    expect((await registerToTheEnd(links)).body.status).toBe('assigned');
    expect(
      (await refusal(connection.createAwaitableSender({ target: { address: '/devices/amqp-dps-3/messages/events' } })))
        .condition,
    ).toBe(AmqpErrorConditions.unauthorizedAccess);
    const cbsSender = await connection.createAwaitableSender({ target: { address: '$cbs' } });
    const cbsReceiver = await connection.createReceiver({ source: { address: '$cbs' } });
    const messageId = randomUUID();
    const reply = new Promise<Message>((resolve) =>
      cbsReceiver.on(ReceiverEvents.message, (event: EventContext) => {
        if (event.message?.correlation_id === messageId) resolve(event.message);
      }),
    );
    const devices = (await testHub.request('GET', '/devices/amqp-dps-3')).json as {
      authentication: { symmetricKey: { primaryKey: string } };
    };
    await cbsSender.send({
      to: '$cbs',
      reply_to: 'cbs',
      message_id: messageId,
      application_properties: {
        operation: 'put-token',
        type: 'servicebus.windows.net:sastoken',
        name: 'localhost/devices/amqp-dps-3',
      },
      body: await createSasToken({
        resourceUri: 'localhost/devices/amqp-dps-3',
        key: devices.authentication.symmetricKey.primaryKey,
        ttlSeconds: 3600,
      }),
    });
    expect((await reply).application_properties?.['status-code']).toBe(401);
  });

  it('rejects malformed requests with the DPS error body and keeps serving the connection', async () => {
    const connection = await connectWithKey('amqp-dps-4', deriveDeviceKey(groupKey, 'amqp-dps-4'));
    const links = await attachLinks(connection, 'amqp-dps-4');
    const rejected = async (properties: Record<string, unknown>, body?: Message['body']) => {
      const { outcome } = await links.request(properties, body);
      if (outcome.accepted) throw new Error('expected a rejection');
      return { condition: outcome.condition, body: JSON.parse(outcome.description) as Record<string, unknown> };
    };

    const unknownOperation = await rejected({ 'iotdps-operation-type': 'iotdps-get-registration' });
    expect(unknownOperation.condition).toBe(AmqpErrorConditions.argumentError);
    expect(unknownOperation.body).toMatchObject({
      errorCode: 400003,
      message: expect.stringContaining('iotdps-operation-type'),
      trackingId: expect.any(String),
      timestampUtc: expect.any(String),
    });
    expect((await rejected(registerProperties(), jsonBody('{not json'))).body.errorCode).toBeGreaterThanOrEqual(400000);
    expect((await rejected(registerProperties(), jsonBody({ registrationId: 'amqp-dps-other' }))).body).toMatchObject({
      message: expect.stringContaining('amqp-dps-other'),
    });
    expect((await rejected({ 'iotdps-operation-type': 'iotdps-get-operationstatus' }, '')).body.errorCode).toBe(400004);
    const unknownOperationId = await rejected(pollProperties('4.0000.not-an-operation'), '');
    expect(unknownOperationId.condition).toBe(AmqpErrorConditions.notFound);
    expect(unknownOperationId.body.errorCode).toBe(404000);

    // The links and the connection still serve.
    expect((await registerToTheEnd(links)).body).toMatchObject({
      status: 'assigned',
      registrationState: { deviceId: 'amqp-dps-4' },
    });
  });

  it('authenticates an individual X.509 enrollment by the TLS client certificate, and refuses another certificate', async () => {
    const certificate = await createSelfSignedCertificate({ commonName: 'amqp-dps-x509' });
    await testHub.hub.core.dps.enrollments.putIndividual('amqp-dps-x509', {
      attestation: {
        type: 'x509',
        x509: { clientCertificates: { primary: { certificate: certificate.certificate } } },
      },
    });
    const connection = await open({
      cert: certificate.certificate,
      key: certificate.privateKey,
    } as Partial<ConnectionOptions>);
    const links = await attachLinks(connection, 'amqp-dps-x509');
    expect((await registerToTheEnd(links)).body).toMatchObject({
      status: 'assigned',
      registrationState: { registrationId: 'amqp-dps-x509', deviceId: 'amqp-dps-x509' },
    });

    const stranger = await createSelfSignedCertificate({ commonName: 'amqp-dps-x509' });
    const refused = await open({ cert: stranger.certificate, key: stranger.privateKey } as Partial<ConnectionOptions>);
    expect(
      (await refusal(refused.createReceiver({ source: { address: `${idScope}/registrations/amqp-dps-x509` } })))
        .condition,
    ).toBe(AmqpErrorConditions.unauthorizedAccess);
  });
});
