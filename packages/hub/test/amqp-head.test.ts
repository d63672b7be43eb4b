import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { certificateThumbprint, createSasToken, createSelfSignedCertificate } from '@fieldhub/auth';
import { parseConnectionString } from '@fieldhub/protocol';
import pino from 'pino';
import type { Connection, ConnectionOptions, EventContext, Message, Receiver, Sender } from 'rhea';
import * as rheaNamespace from 'rhea';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type AmqpHead, createAmqpHead } from '../src/heads/amqp/amqp-head';
import { type AmqpConnectionContext, AmqpErrorConditions, type LinkRoute } from '../src/heads/amqp/contract';
import { createMetrics } from '../src/metrics';
import { ensureTlsMaterial } from '../src/tls/dev-certificates';
import { startTestHub, type TestHub } from './helpers/test-hub';

// rhea is CommonJS exporting a container instance.
const rhea = ((rheaNamespace as unknown as { default?: typeof rheaNamespace }).default ??
  rheaNamespace) as typeof rheaNamespace;

interface AttachResult {
  readonly link?: Sender | Receiver;
  readonly error?: { condition: string; description?: string };
  /** Resolves with the error the link is detached with later (undefined for a plain detach). */
  readonly detached: Promise<{ condition: string } | undefined>;
}

/** Routes that let the tests see what the connection layer authorized, without the real link routes. */
function testRoutes(events: { received: unknown[]; closedHandles: string[] }): LinkRoute[] {
  const deviceOf = (pattern: RegExp) => (address: string) => pattern.exec(address)?.[1];
  const unauthorized = { condition: AmqpErrorConditions.unauthorizedAccess, description: 'not authorized' };
  const device = async (context: AmqpConnectionContext, deviceId: string) =>
    (await context.device(deviceId, undefined)) ?? unauthorized;
  const source: LinkRoute<string> = {
    name: 'test-source',
    direction: 'send',
    match: deviceOf(/^\/devices\/([^/]+)\/test$/i),
    authorize: device,
    open(link, deviceId) {
      const sender = link as Sender;
      const send = () => {
        if (sender.sendable()) sender.send({ body: `hello ${deviceId}` });
      };
      sender.once('sendable', send);
      return { close: () => void events.closedHandles.push(deviceId) };
    },
  };
  const sink: LinkRoute<string> = {
    name: 'test-sink',
    direction: 'receive',
    match: deviceOf(/^\/devices\/([^/]+)\/sink$/i),
    authorize: device,
    open(link, deviceId) {
      link.on('message', (context: EventContext) => {
        events.received.push(context.message?.body);
        context.delivery?.accept();
      });
      return { close: () => void events.closedHandles.push(`sink:${deviceId}`) };
    },
  };
  const service: LinkRoute<true> = {
    name: 'test-service',
    direction: 'send',
    match: (address) => (address === '/service/test' ? true : undefined),
    authorize: async (context) => context.service('ServiceConnect') ?? unauthorized,
    open(link) {
      const sender = link as Sender;
      sender.once('sendable', () => sender.send({ body: 'hello service' }));
      return { close: () => undefined };
    },
  };
  const throwing: LinkRoute<string> = {
    name: 'test-throwing',
    direction: 'receive',
    match: deviceOf(/^\/devices\/([^/]+)\/(?:throw-open|throw-message)$/i),
    authorize: device,
    open(link) {
      if (link.target?.address?.endsWith('throw-open')) throw new Error('route bug in open');
      link.on('message', () => {
        throw new Error('route bug in a listener');
      });
      return { close: () => undefined };
    },
  };
  return [source, sink, service, throwing];
}

describe('AMQP head: connections, SASL, CBS, routing', () => {
  let testHub: TestHub;
  let head: AmqpHead;
  let port: number;
  const events = { received: [] as unknown[], closedHandles: [] as string[] };
  const keys = new Map<string, string>();
  const connections: Connection[] = [];

  const createDevice = async (deviceId: string, body: Record<string, unknown> = {}): Promise<string> => {
    const response = await testHub.request('PUT', `/devices/${deviceId}`, { body: { deviceId, ...body } });
    expect(response.status).toBe(200);
    const key = (response.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication
      .symmetricKey.primaryKey;
    keys.set(deviceId, key);
    return key;
  };

  const deviceToken = (deviceId: string, expiresAt?: number, key = keys.get(deviceId) as string) =>
    createSasToken({
      resourceUri: `localhost/devices/${deviceId}`,
      key,
      ...(expiresAt === undefined ? { ttlSeconds: 3600 } : { expiresAt }),
    });

  const policyKey = () => parseConnectionString(testHub.info.serviceConnectionString).sharedAccessKey as string;

  /** Opens a rhea connection over TLS (or WebSockets) and waits for the AMQP open. */
  const connect = (options: Partial<ConnectionOptions> & { ws?: boolean; port?: number } = {}) =>
    new Promise<Connection>((resolve, reject) => {
      const container = rhea.create_container();
      const { ws, port: explicitPort, ...rest } = options;
      const base = ws
        ? {
            connection_details: rhea.websocket_connect(WebSocket as never)(
              `wss://127.0.0.1:${testHub.info.ports.https}/$iothub/websocket`,
              ['AMQPWSB10'],
              { ca: testHub.ca, servername: 'localhost' },
            ),
          }
        : {
            host: '127.0.0.1',
            port: explicitPort ?? port,
            transport: 'tls' as const,
            ca: testHub.ca,
            servername: 'localhost',
          };
      const connection = container.connect({ ...base, reconnect: false, ...rest } as ConnectionOptions);
      connections.push(connection);
      connection.once('connection_open', () => resolve(connection));
      connection.once('connection_error', (context: EventContext) =>
        reject(context.connection.error ?? new Error('connection error before open')),
      );
      connection.once('disconnected', (context: EventContext) =>
        reject(context.error ?? new Error('disconnected before open')),
      );
      connection.on('error', () => undefined);
    });

  /** Sends a CBS put-token and resolves with the response's status code and description. */
  const putToken = (
    connection: Connection,
    audience: string,
    token: string,
    type = 'servicebus.windows.net:sastoken',
  ) =>
    new Promise<{ status: unknown; description: unknown }>((resolve) => {
      const messageId = randomUUID();
      const receiver = connection.open_receiver({ source: { address: '$cbs' }, credit_window: 10 });
      const sender = connection.open_sender({ target: { address: '$cbs' } });
      receiver.on('message', (context: EventContext) => {
        const message = context.message as Message;
        if (message.correlation_id !== messageId) return;
        resolve({
          status: message.application_properties?.['status-code'],
          description: message.application_properties?.['status-description'],
        });
        receiver.close();
        sender.close();
      });
      sender.once('sendable', () =>
        sender.send({
          message_id: messageId,
          to: '$cbs',
          reply_to: 'cbs',
          application_properties: { operation: 'put-token', type, name: audience },
          body: token,
        }),
      );
    });

  /** Attaches a link and resolves with it once open, or with the error it was refused or detached with. */
  const attach = (connection: Connection, role: 'receiver' | 'sender', address: string) =>
    new Promise<AttachResult>((resolve) => {
      const link =
        role === 'receiver'
          ? connection.open_receiver({ source: { address }, credit_window: 10, autoaccept: true })
          : connection.open_sender({ target: { address } });
      link.on(`${role}_error`, () => undefined);
      const detached = new Promise<{ condition: string } | undefined>((resolveDetached) =>
        link.once(`${role}_close`, () => resolveDetached(link.error as { condition: string } | undefined)),
      );
      void detached.then((error) => resolve({ error: error as AttachResult['error'], detached }));
      link.once(`${role}_open`, () => {
        const terminus = (role === 'receiver' ? link.source : link.target) as { address?: unknown } | null;
        // A refusal is an attach with a null terminus followed by a detach (AMQP 1.0 §2.6.3).
        if (typeof terminus?.address === 'string') resolve({ link, detached });
      });
    });

  const nextMessage = (receiver: Receiver) =>
    new Promise<Message>((resolve) =>
      receiver.once('message', (context: EventContext) => resolve(context.message as Message)),
    );

  /** Writes `bytes` on a raw TLS connection; resolves with what the hub sent once it closed the socket. */
  const rawSocketClosed = (bytes: Buffer) =>
    new Promise<{ received: Buffer }>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: testHub.ca, servername: 'localhost' }, () =>
        socket.write(bytes),
      );
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', reject);
      socket.on('close', () => resolve({ received: Buffer.concat(chunks) }));
    });

  beforeAll(async () => {
    testHub = await startTestHub();
    const tls = await ensureTlsMaterial(testHub.dataDir, 'localhost', pino({ level: 'silent' }));
    head = createAmqpHead(testHub.hub.core, {
      tls,
      logger: pino({ level: process.env.FIELDHUB_TEST_LOG ?? 'silent' }),
      metrics: createMetrics(),
      routes: testRoutes(events),
      settings: { clockSkewSeconds: 0, maxMessageBytes: 64 * 1024, authenticationTimeoutMs: 3000 },
    });
    port = await head.listen(0, '127.0.0.1');
    await createDevice('amqp-dev1');
    await createDevice('amqp-dev2');
    await createDevice('amqp-dev3');
  });

  afterAll(async () => {
    for (const connection of connections) connection.close();
    await head?.close();
    await testHub?.stop();
  });

  it('writes the AMQP port and the Event Hubs-compatible connection string to hub.json', () => {
    const info = JSON.parse(readFileSync(join(testHub.dataDir, 'hub.json'), 'utf8'));
    expect(info.ports.amqp).toBeGreaterThan(0);
    expect(info.ports.amqp).toBe(testHub.info.ports.amqp);
    expect(info.eventHubConnectionString).toBe(
      `Endpoint=sb://localhost:${info.ports.amqp}/;SharedAccessKeyName=iothubowner;SharedAccessKey=${policyKey()};` +
        `EntityPath=${testHub.hub.config.hubName}`,
    );
  });

  it('accepts a connection without SASL and a CBS device token, then serves the device its links', async () => {
    const connection = await connect();
    const audience = encodeURIComponent(`localhost:${port}/devices/amqp-dev1`);
    const response = await putToken(connection, audience, await deviceToken('amqp-dev1'));
    expect(response).toEqual({ status: 200, description: 'OK' });
    const { link, error } = await attach(connection, 'receiver', '/devices/amqp-dev1/test');
    expect(error).toBeUndefined();
    expect(link?.source?.address).toBe('/devices/amqp-dev1/test');
    expect((await nextMessage(link as Receiver)).body).toBe('hello amqp-dev1');
    // Another device's address is not covered by this device's token.
    expect((await attach(connection, 'receiver', '/devices/amqp-dev2/test')).error?.condition).toBe(
      AmqpErrorConditions.unauthorizedAccess,
    );
  });

  it.each([
    [
      'amqps:// and decoded',
      (p: number) => `amqps://localhost:${p}/devices/amqp-dev2`,
      'servicebus.windows.net:sastoken',
    ],
    ['sb://', (p: number) => `sb://localhost:${p}/devices/amqp-dev2`, 'azure-devices.net:sastoken'],
    ['bare host and path', () => 'localhost/devices/amqp-dev2', 'azure-devices.net:sastoken'],
  ])('accepts the audience form %s', async (_name, audience, type) => {
    const connection = await connect();
    const response = await putToken(connection, audience(port), await deviceToken('amqp-dev2'), type);
    expect(response.status).toBe(200);
    expect((await attach(connection, 'receiver', '/devices/amqp-dev2/test')).link).toBeDefined();
  });

  it('accepts SASL ANONYMOUS and MSSBCBS followed by CBS', async () => {
    const anonymous = await connect({ username: 'anonymous' } as Partial<ConnectionOptions>);
    expect((await putToken(anonymous, 'localhost/devices/amqp-dev1', await deviceToken('amqp-dev1'))).status).toBe(200);
    expect((await attach(anonymous, 'receiver', '/devices/amqp-dev1/test')).link).toBeDefined();

    const mssbcbs = await connect({
      sasl_mechanisms: {
        MSSBCBS: {
          start: (callback: (error: unknown, response: Buffer) => void) => callback(undefined, Buffer.alloc(0)),
        },
      },
    } as unknown as Partial<ConnectionOptions>);
    expect((await putToken(mssbcbs, 'localhost/devices/amqp-dev1', await deviceToken('amqp-dev1'))).status).toBe(200);
    expect((await attach(mssbcbs, 'receiver', '/devices/amqp-dev1/test')).link).toBeDefined();
  });

  it('accepts SASL PLAIN with a device token, a policy token, and a policy name with its key', async () => {
    const hubName = testHub.hub.config.hubName;
    const device = await connect({ username: `amqp-dev1@sas.${hubName}`, password: await deviceToken('amqp-dev1') });
    expect((await attach(device, 'receiver', '/devices/amqp-dev1/test')).link).toBeDefined();
    expect((await attach(device, 'receiver', '/service/test')).error?.condition).toBe(
      AmqpErrorConditions.unauthorizedAccess,
    );

    const policy = await connect({
      username: `iothubowner@sas.root.${hubName}`,
      password: await testHub.serviceToken('iothubowner'),
    });
    const { link } = await attach(policy, 'receiver', '/service/test');
    expect((await nextMessage(link as Receiver)).body).toBe('hello service');
    // iothubowner grants DeviceConnect: the connection may serve any device (a gateway).
    expect((await attach(policy, 'receiver', '/devices/amqp-dev2/test')).link).toBeDefined();

    const key = await connect({ username: 'service', password: await policyKeyOf('service') });
    expect((await attach(key, 'receiver', '/service/test')).link).toBeDefined();
  });

  const policyKeyOf = async (policy: string) =>
    parseConnectionString(await testHub.hub.core.policies.connectionString(policy)).sharedAccessKey as string;

  it('fails SASL PLAIN with a wrong password and closes the socket', async () => {
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    await expect(
      connect({
        username: `amqp-dev1@sas.${testHub.hub.config.hubName}`,
        password: await deviceToken('amqp-dev1', undefined, wrongKey),
      }),
    ).rejects.toBeDefined();
    await expect(connect({ username: 'service', password: 'not the key' })).rejects.toBeDefined();
  });

  it('answers a wrong token with 401 and refuses the links it would have covered', async () => {
    const connection = await connect();
    const wrongKey = Buffer.alloc(32, 9).toString('base64');
    const response = await putToken(
      connection,
      'localhost/devices/amqp-dev1',
      await deviceToken('amqp-dev1', undefined, wrongKey),
    );
    expect(response.status).toBe(401);
    expect((await putToken(connection, 'localhost/devices/amqp-dev1', 'not a token')).status).toBe(400);
    expect((await attach(connection, 'receiver', '/devices/amqp-dev1/test')).error?.condition).toBe(
      AmqpErrorConditions.unauthorizedAccess,
    );
  });

  it('refuses an attach before any authentication with amqp:unauthorized-access', async () => {
    const connection = await connect();
    const result = await attach(connection, 'receiver', '/devices/amqp-dev1/test');
    expect(result.link).toBeUndefined();
    expect(result.error?.condition).toBe(AmqpErrorConditions.unauthorizedAccess);
  });

  it('refuses an unknown address with amqp:not-found', async () => {
    const connection = await connect();
    expect((await attach(connection, 'receiver', '/nowhere')).error?.condition).toBe(AmqpErrorConditions.notFound);
    expect((await attach(connection, 'sender', '/devices/amqp-dev1/test')).error?.condition).toBe(
      AmqpErrorConditions.notFound,
    );
  });

  it('grants credit on links it receives on, and detaches an oversize message with message-size-exceeded', async () => {
    const connection = await connect();
    await putToken(connection, 'localhost/devices/amqp-dev3', await deviceToken('amqp-dev3'));
    const sink = await attach(connection, 'sender', '/devices/amqp-dev3/sink');
    const sender = sink.link as Sender;
    await new Promise<void>((resolve) => (sender.sendable() ? resolve() : sender.once('sendable', () => resolve())));
    const accepted = new Promise<void>((resolve) => sender.once('accepted', () => resolve()));
    sender.send({ body: 'small' });
    await accepted;
    expect(events.received).toContain('small');
    sender.send({ body: Buffer.alloc(100 * 1024, 1) });
    expect((await sink.detached)?.condition).toBe(AmqpErrorConditions.messageSizeExceeded);
    expect(events.closedHandles).toContain('sink:amqp-dev3');
    // The connection still serves.
    expect((await attach(connection, 'receiver', '/devices/amqp-dev3/test')).link).toBeDefined();
  });

  it('detaches a link whose route threw with amqp:internal-error and keeps the connection', async () => {
    const connection = await connect();
    await putToken(connection, 'localhost/devices/amqp-dev3', await deviceToken('amqp-dev3'));
    const opened = await attach(connection, 'sender', '/devices/amqp-dev3/throw-open');
    expect((await opened.detached)?.condition).toBe(AmqpErrorConditions.internalError);

    const throwing = await attach(connection, 'sender', '/devices/amqp-dev3/throw-message');
    const sender = throwing.link as Sender;
    sender.once('sendable', () => sender.send({ body: 'boom' }));
    expect((await throwing.detached)?.condition).toBe(AmqpErrorConditions.internalError);
    expect((await attach(connection, 'receiver', '/devices/amqp-dev3/test')).link).toBeDefined();
  });

  it('detaches the links of an expired token, and a re-put-token renews', async () => {
    const connection = await connect();
    const soon = Math.floor(Date.now() / 1000) + 2;
    expect(
      (await putToken(connection, 'localhost/devices/amqp-dev1', await deviceToken('amqp-dev1', soon))).status,
    ).toBe(200);
    expect(
      (await putToken(connection, 'localhost/devices/amqp-dev2', await deviceToken('amqp-dev2', soon))).status,
    ).toBe(200);
    const expiring = await attach(connection, 'receiver', '/devices/amqp-dev1/test');
    const renewedLink = await attach(connection, 'receiver', '/devices/amqp-dev2/test');
    const renewed = renewedLink.link as Receiver;
    let renewedDetached = false;
    void renewedLink.detached.then(() => {
      renewedDetached = true;
    });
    expect((await putToken(connection, 'localhost/devices/amqp-dev2', await deviceToken('amqp-dev2'))).status).toBe(
      200,
    );

    expect((await expiring.detached)?.condition).toBe(AmqpErrorConditions.unauthorizedAccess);
    expect(events.closedHandles).toContain('amqp-dev1');
    // dev2's token expired at the same second, but it was renewed: its link stays, and new links attach.
    expect(renewedDetached).toBe(false);
    expect(renewed.is_open()).toBe(true);
    expect((await attach(connection, 'receiver', '/devices/amqp-dev2/test')).link).toBeDefined();
    expect((await attach(connection, 'receiver', '/devices/amqp-dev1/test')).error?.condition).toBe(
      AmqpErrorConditions.unauthorizedAccess,
    );
  });

  it('closes a connection that authorizes nothing in time', async () => {
    const connection = await connect();
    const closed = new Promise<string | undefined>((resolve) =>
      connection.once('connection_close', () =>
        resolve((connection.error as { condition?: string } | undefined)?.condition),
      ),
    );
    expect(await closed).toBe(AmqpErrorConditions.unauthorizedAccess);
  });

  it('drops a client sending garbage after the protocol header, and keeps serving others', async () => {
    const header = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);
    const { received } = await rawSocketClosed(Buffer.concat([header, Buffer.from('garbage garbage garbage garbage')]));
    expect(received.subarray(0, 4).toString('latin1')).toBe('AMQP');

    const wrongProtocol = await rawSocketClosed(Buffer.from([0x41, 0x4d, 0x51, 0x50, 2, 1, 0, 0]));
    // The hub answers with the header it speaks (AMQP 1.0 §2.2) and closes.
    expect([...wrongProtocol.received.subarray(0, 8)]).toEqual([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);

    await rawSocketClosed(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));

    const connection = await connect();
    expect((await putToken(connection, 'localhost/devices/amqp-dev1', await deviceToken('amqp-dev1'))).status).toBe(
      200,
    );
  });

  it('serves AMQP over WebSockets on the hub, with MQTT still on the same path', async () => {
    const connection = await connect({ ws: true });
    const audience = 'localhost/devices/amqp-dev1';
    expect((await putToken(connection, audience, await deviceToken('amqp-dev1'))).status).toBe(200);
    // The hub's own head has the real routes: an unknown address is not found, over WebSockets too.
    expect((await attach(connection, 'receiver', '/nowhere')).error?.condition).toBe(AmqpErrorConditions.notFound);
  });

  it('accepts the audiences and tokens of Event Hubs clients (sb://host/{entity}/...)', async () => {
    const connection = await connect();
    const entity = testHub.hub.config.hubName;
    for (const audience of [
      `sb://localhost:${port}/${entity}/ConsumerGroups/$default/Partitions/0`,
      `sb://localhost:${port}/${entity}/$management`,
    ]) {
      // As @azure/event-hubs signs: sr = the URL-encoded audience, with the policy name.
      const token = await createSasToken({ resourceUri: audience, key: policyKey(), keyName: 'iothubowner' });
      expect(await putToken(connection, audience, token)).toEqual({ status: 200, description: 'OK' });
    }
    const { link } = await attach(connection, 'receiver', '/service/test');
    expect((await nextMessage(link as Receiver)).body).toBe('hello service');

    // @azure/core-amqp keys the HMAC with the key's text: sr and skn URL-encoded, sig URL-encoded base64.
    const audience = `sb://localhost:${port}/${entity}/ConsumerGroups/$default/Partitions/1`;
    const se = Math.floor(Date.now() / 1000) + 3600;
    const sr = encodeURIComponent(audience);
    const sig = encodeURIComponent(createHmac('sha256', policyKey()).update(`${sr}\n${se}`).digest('base64'));
    const eventHubsToken = `SharedAccessSignature sr=${sr}&sig=${sig}&se=${se}&skn=iothubowner`;
    const eventHubs = await connect();
    expect(await putToken(eventHubs, audience, eventHubsToken)).toEqual({ status: 200, description: 'OK' });
    expect((await attach(eventHubs, 'receiver', '/service/test')).link).toBeDefined();
    const wrongSig = encodeURIComponent(createHmac('sha256', 'not the key').update(`${sr}\n${se}`).digest('base64'));
    const forged = `SharedAccessSignature sr=${sr}&sig=${wrongSig}&se=${se}&skn=iothubowner`;
    expect((await putToken(eventHubs, audience, forged)).status).toBe(401);

    // A token for another host is refused.
    const elsewhere = await createSasToken({
      resourceUri: 'sb://elsewhere/x',
      key: policyKey(),
      keyName: 'iothubowner',
    });
    expect((await putToken(connection, 'sb://elsewhere/x', elsewhere)).status).toBe(401);
  });

  it('accepts DeviceConnect policy tokens for a device scope, and module tokens', async () => {
    const connection = await connect();
    const deviceKey = parseConnectionString(await testHub.hub.core.policies.connectionString('device')).sharedAccessKey;
    const policyToken = await createSasToken({
      resourceUri: 'localhost/devices/amqp-dev3',
      key: deviceKey as string,
      keyName: 'device',
    });
    expect((await putToken(connection, 'localhost/devices/amqp-dev3', policyToken)).status).toBe(200);
    expect((await attach(connection, 'receiver', '/devices/amqp-dev3/test')).link).toBeDefined();
    // The service policy does not grant DeviceConnect.
    const serviceToken = await createSasToken({
      resourceUri: 'localhost/devices/amqp-dev2',
      key: await policyKeyOf('service'),
      keyName: 'service',
    });
    expect((await putToken(connection, 'localhost/devices/amqp-dev2', serviceToken)).status).toBe(401);

    const module = await testHub.request('PUT', '/devices/amqp-dev3/modules/m1', {
      body: { deviceId: 'amqp-dev3', moduleId: 'm1' },
    });
    expect(module.status).toBe(200);
    const moduleKey = (module.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication
      .symmetricKey.primaryKey;
    const moduleToken = await createSasToken({ resourceUri: 'localhost/devices/amqp-dev3/modules/m1', key: moduleKey });
    const moduleConnection = await connect();
    expect(
      (await putToken(moduleConnection, 'localhost%2Fdevices%2Famqp-dev3%2Fmodules%2Fm1', moduleToken)).status,
    ).toBe(200);
    // A module's token does not authorize its device.
    expect((await attach(moduleConnection, 'receiver', '/devices/amqp-dev3/test')).error?.condition).toBe(
      AmqpErrorConditions.unauthorizedAccess,
    );
  });

  it('authorizes a device by the TLS client certificate it presented, without CBS', async () => {
    const certificate = await createSelfSignedCertificate({ commonName: 'amqp-x509' });
    await createDevice('amqp-x509', {
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: {
          primaryThumbprint: certificateThumbprint(certificate.certificate, 'sha1'),
          secondaryThumbprint: null,
        },
      },
    });
    const connection = await connect({
      cert: certificate.certificate,
      key: certificate.privateKey,
    } as Partial<ConnectionOptions>);
    const { link } = await attach(connection, 'receiver', '/devices/amqp-x509/test');
    expect((await nextMessage(link as Receiver)).body).toBe('hello amqp-x509');
    // The certificate names one device only; SAS devices are not authorized by it.
    expect((await attach(connection, 'receiver', '/devices/amqp-dev1/test')).error?.condition).toBe(
      AmqpErrorConditions.unauthorizedAccess,
    );

    const stranger = await createSelfSignedCertificate({ commonName: 'amqp-x509' });
    const refused = await connect({
      cert: stranger.certificate,
      key: stranger.privateKey,
    } as Partial<ConnectionOptions>);
    expect((await attach(refused, 'receiver', '/devices/amqp-x509/test')).error?.condition).toBe(
      AmqpErrorConditions.unauthorizedAccess,
    );
  });

  it('drops a client that sends a frame before open, or an unknown SASL mechanism', async () => {
    const header = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);
    // A begin (descriptor 0x11) on channel 0 before any open.
    const begin = Buffer.from([0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x11, 0x45]);
    const early = await rawSocketClosed(Buffer.concat([header, begin]));
    // Our protocol header, and no open: nothing was accepted.
    expect(early.received.length).toBeLessThanOrEqual(8);

    const saslHeader = Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]);
    // sasl-init (descriptor 0x41) with mechanism FOO.
    const init = Buffer.from([0, 0, 0, 19, 2, 1, 0, 0, 0x00, 0x53, 0x41, 0xc0, 6, 1, 0xa3, 3, 0x46, 0x4f, 0x4f]);
    const { received } = await rawSocketClosed(Buffer.concat([saslHeader, init]));
    // The outcome (descriptor 0x44) says auth (1), then the socket closed.
    const outcome = received.indexOf(Buffer.from([0x00, 0x53, 0x44]));
    expect(outcome).toBeGreaterThan(0);
    expect(received.subarray(outcome).includes(Buffer.from([0x50, 0x01]))).toBe(true);
  });

  it('drops a client announcing a frame larger than its max frame size', async () => {
    const header = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);
    const huge = Buffer.from([0x10, 0, 0, 0, 2, 0, 0, 0]);
    const { received } = await rawSocketClosed(Buffer.concat([header, huge]));
    expect(received.subarray(0, 4).toString('latin1')).toBe('AMQP');
  });

  it('serves AMQP over WebSockets at /$servicebus/websocket too', async () => {
    const connection = await connect({
      connection_details: rhea.websocket_connect(WebSocket as never)(
        `wss://127.0.0.1:${testHub.info.ports.https}/$servicebus/websocket`,
        ['AMQPWSB10'],
        { ca: testHub.ca, servername: 'localhost' },
      ),
    } as Partial<ConnectionOptions>);
    expect((await putToken(connection, 'localhost/devices/amqp-dev1', await deviceToken('amqp-dev1'))).status).toBe(
      200,
    );
  });

  it('counts AMQP connections in the metrics', async () => {
    await connect({ port: testHub.info.ports.amqp as number });
    const metrics = await testHub.request('GET', '/metrics', { apiVersion: false });
    expect(metrics.text).toMatch(/fieldhub_connections_total\{protocol="amqp",outcome="opened"\} [1-9]/);
    // The devices gauge counts identities with device links, not connections (amqp-device-links.test.ts).
    expect(metrics.text).toMatch(/^fieldhub_connected_devices\{protocol="amqp"\} \d+$/m);
    expect(metrics.text).toMatch(/^fieldhub_connected_devices\{protocol="amqp-ws"\} \d+$/m);
  });

  it('drops every connection when the head closes, without an AMQP close (clients reconnect)', async () => {
    const tls = await ensureTlsMaterial(testHub.dataDir, 'localhost', pino({ level: 'silent' }));
    const other = createAmqpHead(testHub.hub.core, {
      tls,
      logger: pino({ level: 'silent' }),
      metrics: createMetrics(),
      routes: testRoutes(events),
    });
    const otherPort = await other.listen(0, '127.0.0.1');
    const connection = await connect({ port: otherPort });
    expect(other.connectedCount).toBe(1);
    let closeFrame = false;
    connection.on('connection_close', () => {
      closeFrame = true;
    });
    const disconnected = new Promise<void>((resolve) => connection.once('disconnected', () => resolve()));
    await other.close();
    await disconnected;
    expect(closeFrame).toBe(false);
    expect(other.connectedCount).toBe(0);
  });

  it('closes a connection that opens more links or sessions than its limits', async () => {
    const tls = await ensureTlsMaterial(testHub.dataDir, 'localhost', pino({ level: 'silent' }));
    const limited = createAmqpHead(testHub.hub.core, {
      tls,
      logger: pino({ level: 'silent' }),
      metrics: createMetrics(),
      routes: testRoutes(events),
      limits: { maxLinks: 4, maxSessions: 2 },
    });
    const limitedPort = await limited.listen(0, '127.0.0.1');
    const closedWith = (connection: Connection) =>
      new Promise<string | undefined>((resolve) =>
        connection.once('connection_close', () =>
          resolve((connection.error as { condition?: string } | undefined)?.condition),
        ),
      );
    try {
      const links = await connect({ port: limitedPort });
      const linksClosed = closedWith(links);
      // $cbs links need no authorization: five of them pass the limit of four.
      for (let i = 0; i < 5; i++) links.open_receiver({ source: { address: '$cbs' } });
      expect(await linksClosed).toBe(AmqpErrorConditions.resourceLimitExceeded);

      const sessions = await connect({ port: limitedPort });
      const sessionsClosed = closedWith(sessions);
      for (let i = 0; i < 3; i++) sessions.create_session().begin();
      expect(await sessionsClosed).toBe(AmqpErrorConditions.resourceLimitExceeded);
    } finally {
      await limited.close();
    }
  });

  it('serves the hub AMQP port with the real head', async () => {
    const connection = await connect({ port: testHub.info.ports.amqp as number });
    expect((await putToken(connection, 'localhost/devices/amqp-dev1', await deviceToken('amqp-dev1'))).status).toBe(
      200,
    );
  });
});
