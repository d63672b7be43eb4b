import { randomUUID } from 'node:crypto';
import {
  createIntermediateCa,
  createRootCa,
  createSasToken,
  createSelfSignedCertificate,
  createVerificationCertificate,
  issueDeviceCertificate,
} from '@fieldhub/auth';
import { deriveDeviceKey } from '@fieldhub/protocol';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DpsEnrollments, dpsEnrollments } from './helpers/dps-enrollments';
import { startTestHub, type TestHub } from './helpers/test-hub';

interface DpsResponse {
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly body: Record<string, unknown>;
}

describe('provisioning over MQTT', () => {
  let testHub: TestHub;
  let enrollments: DpsEnrollments;
  let idScope: string;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    testHub = await startTestHub();
    enrollments = dpsEnrollments(testHub);
    idScope = testHub.hub.core.dps.idScope;
  });
  afterAll(async () => {
    for (const client of clients) client.end(true);
    await testHub?.stop();
  });

  const dpsToken = (registrationId: string, key: string, scope = idScope) =>
    createSasToken({
      resourceUri: `${scope}/registrations/${registrationId}`,
      key,
      keyName: 'registration',
      encodeResourceUri: false,
      ttlSeconds: 3600,
    });

  const options = (registrationId: string, extra: IClientOptions = {}, scope = idScope): IClientOptions => ({
    clientId: registrationId,
    // As azure-iot-provisioning-device-mqtt sends it (captures/dps.txt): no `?` before api-version.
    username: `${scope}/registrations/${registrationId}/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1`,
    ca: testHub.ca,
    servername: 'localhost',
    protocolVersion: 4,
    reconnectPeriod: 0,
    clean: true,
    keepalive: 60,
    ...extra,
  });

  const url = () => `mqtts://127.0.0.1:${testHub.info.ports.mqtt}`;

  const connect = async (clientOptions: IClientOptions, address = url()): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(address, clientOptions);
    clients.push(client);
    return client;
  };

  /** Connects and resolves with the CONNACK return code of a refusal (0 when accepted). */
  const refusalCode = async (clientOptions: IClientOptions): Promise<number> => {
    try {
      const client = await connect(clientOptions);
      client.end(true);
      return 0;
    } catch (error) {
      return (error as { code: number }).code;
    }
  };

  const closed = (client: MqttClient) =>
    new Promise<void>((resolve) => (client.connected ? client.once('close', () => resolve()) : resolve()));

  /** Publishes a request on `topic(rid)` and resolves with the answer of the same `$rid`. */
  const request = (client: MqttClient, topic: (rid: string) => string, body: string): Promise<DpsResponse> => {
    const rid = randomUUID();
    return new Promise<DpsResponse>((resolve, reject) => {
      const onMessage = (received: string, payload: Buffer) => {
        const match = /^\$dps\/registrations\/res\/(\d+)\/\?(.*)$/.exec(received);
        if (!match) return;
        const query = new URLSearchParams(match[2]);
        if (query.get('$rid') !== rid) return;
        client.off('message', onMessage);
        resolve({
          status: Number(match[1]),
          retryAfter: query.get('retry-after') ?? undefined,
          body: JSON.parse(payload.toString('utf8')) as Record<string, unknown>,
        });
      };
      client.on('message', onMessage);
      client.publishAsync(topic(rid), body, { qos: 1 }).catch(reject);
    });
  };

  const registerTopic = (rid: string) => `$dps/registrations/PUT/iotdps-register/?$rid=${rid}`;
  const pollTopic = (operationId: string) => (rid: string) =>
    `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${rid}&operationId=${operationId}`;

  /** Registers and polls until the operation is done, as the Node SDK does; returns every answer. */
  const register = async (client: MqttClient, registrationId: string, payload?: unknown) => {
    await client.subscribeAsync('$dps/registrations/res/#', { qos: 1 });
    const answers: DpsResponse[] = [];
    let answer = await request(
      client,
      registerTopic,
      JSON.stringify(payload === undefined ? { registrationId } : { registrationId, payload }),
    );
    answers.push(answer);
    while (answer.status === 202) {
      expect(answer.retryAfter).toMatch(/^\d+$/);
      await new Promise((resolve) => setTimeout(resolve, Math.min(Number(answer.retryAfter), 1) * 1000));
      answer = await request(client, pollTopic(String(answer.body.operationId)), ' ');
      answers.push(answer);
    }
    return { answers, final: answer };
  };

  it('registers an individual symmetric-key enrollment: 202 assigning with retry-after, polled to 200 assigned', async () => {
    const key = await enrollments.symmetricKeyIndividual('mqtt-sym-1');
    const client = await connect({ ...options('mqtt-sym-1'), password: await dpsToken('mqtt-sym-1', key) });
    const { answers, final } = await register(client, 'mqtt-sym-1');
    expect(answers[0]?.status).toBe(202);
    expect(answers[0]?.body).toMatchObject({ operationId: expect.any(String), status: 'assigning' });
    expect(answers[0]?.retryAfter).toMatch(/^\d+$/);
    expect(final.status).toBe(200);
    expect(final.body).toMatchObject({
      operationId: answers[0]?.body.operationId,
      status: 'assigned',
      registrationState: {
        registrationId: 'mqtt-sym-1',
        deviceId: expect.any(String),
        assignedHub: expect.any(String),
        status: 'assigned',
      },
    });
    await client.endAsync();
  });

  it('registers through a symmetric-key group with the derived key, over MQTT over WebSockets too', async () => {
    const groupKey = await enrollments.symmetricKeyGroup('mqtt-group-1');
    const key = deriveDeviceKey(groupKey, 'mqtt-grp-dev');
    const password = await dpsToken('mqtt-grp-dev', key);
    const client = await connect({ ...options('mqtt-grp-dev'), password });
    const { final } = await register(client, 'mqtt-grp-dev', { custom: 1 });
    expect(final.body).toMatchObject({ status: 'assigned', registrationState: { registrationId: 'mqtt-grp-dev' } });
    await client.endAsync();

    const overWebSockets = await connect(
      { ...options('mqtt-grp-dev'), password, wsOptions: { ca: testHub.ca, servername: 'localhost' } },
      `wss://127.0.0.1:${testHub.info.ports.https}/$iothub/websocket`,
    );
    const again = await register(overWebSockets, 'mqtt-grp-dev');
    expect(again.final.body).toMatchObject({
      status: 'assigned',
      registrationState: { deviceId: (final.body.registrationState as { deviceId: string }).deviceId },
    });
    await overWebSockets.endAsync();
  });

  it('registers an X.509 individual enrollment by its TLS client certificate (empty password)', async () => {
    const certificate = await createSelfSignedCertificate({ commonName: 'mqtt-x509-1' });
    await enrollments.x509Individual('mqtt-x509-1', certificate.certificate);
    const client = await connect({
      ...options('mqtt-x509-1'),
      cert: certificate.certificate,
      key: certificate.privateKey,
    });
    const { final } = await register(client, 'mqtt-x509-1');
    expect(final.body).toMatchObject({ status: 'assigned', registrationState: { registrationId: 'mqtt-x509-1' } });
    await client.endAsync();

    // Another certificate with the same name is not the enrolled one.
    const other = await createSelfSignedCertificate({ commonName: 'mqtt-x509-1' });
    expect(await refusalCode({ ...options('mqtt-x509-1'), cert: other.certificate, key: other.privateKey })).toBe(5);
    // No password and no certificate.
    expect(await refusalCode(options('mqtt-x509-1'))).toBe(5);
    // A certificate from a CA nobody verified.
    const stranger = await createRootCa({ commonName: 'unverified DPS test CA' });
    const leaf = await issueDeviceCertificate({ issuer: stranger, deviceId: 'mqtt-x509-1' });
    expect(
      await refusalCode({ ...options('mqtt-x509-1'), cert: leaf.certificate, key: leaf.privateKey as string }),
    ).toBe(5);
  });

  it('registers through an X.509 group on a verified CA with the intermediate the device sends in TLS', async () => {
    const { certificateAuthorities } = testHub.hub.core;
    const root = await createRootCa({ commonName: 'DPS MQTT test root' });
    const intermediate = await createIntermediateCa({ issuer: root, commonName: 'DPS MQTT test intermediate' });
    await certificateAuthorities.add('dps-mqtt-root', root.certificate);
    await testHub.hub.core.dps.enrollments.putGroup('mqtt-ca-group', {
      attestation: { type: 'x509', x509: { caReferences: { primary: 'dps-mqtt-root' } } },
    });
    const leaf = await issueDeviceCertificate({ issuer: intermediate, deviceId: 'mqtt-ca-dev' });
    const tlsOptions = { cert: leaf.certificate + intermediate.certificate, key: leaf.privateKey as string };
    // Refused while the CA's proof of possession is missing.
    expect(await refusalCode({ ...options('mqtt-ca-dev'), ...tlsOptions })).toBe(5);
    const { verificationCode } = await certificateAuthorities.generateVerificationCode('dps-mqtt-root');
    await certificateAuthorities.verify(
      'dps-mqtt-root',
      await createVerificationCertificate({ ca: root, verificationCode }),
    );
    const client = await connect({ ...options('mqtt-ca-dev'), ...tlsOptions });
    const { final } = await register(client, 'mqtt-ca-dev');
    expect(final.body).toMatchObject({
      status: 'assigned',
      registrationState: { registrationId: 'mqtt-ca-dev', x509: { enrollmentGroupId: 'mqtt-ca-group' } },
    });
    await client.endAsync();
  });

  it('refuses a wrong key (5), a wrong ID scope (5), a bad client id (2) and a password that is no SAS token (4)', async () => {
    const key = await enrollments.symmetricKeyIndividual('mqtt-refused');
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    expect(await refusalCode({ ...options('mqtt-refused'), password: await dpsToken('mqtt-refused', wrongKey) })).toBe(
      5,
    );
    expect(
      await refusalCode({
        ...options('mqtt-refused', {}, '0ne99999999'),
        password: await dpsToken('mqtt-refused', key, '0ne99999999'),
      }),
    ).toBe(5);
    expect(await refusalCode({ ...options('mqtt-unknown'), password: await dpsToken('mqtt-unknown', key) })).toBe(5);
    expect(await refusalCode({ ...options('-bad-'), password: await dpsToken('-bad-', key) })).toBe(2);
    expect(await refusalCode({ ...options('mqtt-refused'), password: 'not a token' })).toBe(4);
    // The right key still works after all that.
    expect(await refusalCode({ ...options('mqtt-refused'), password: await dpsToken('mqtt-refused', key) })).toBe(0);
    // A disabled enrollment connects (its key is right) but its registration ends `disabled`.
    const disabledKey = await enrollments.symmetricKeyIndividual('mqtt-disabled', { disabled: true });
    const client = await connect({
      ...options('mqtt-disabled'),
      password: await dpsToken('mqtt-disabled', disabledKey),
    });
    const { final } = await register(client, 'mqtt-disabled');
    expect(final.status === 200 ? final.body.status : final.status).toBe('disabled');
    await client.endAsync();
  });

  it('answers a malformed body, another registration id and an unknown operation with DPS errors; the connection stays', async () => {
    const key = await enrollments.symmetricKeyIndividual('mqtt-bad-body');
    const client = await connect({ ...options('mqtt-bad-body'), password: await dpsToken('mqtt-bad-body', key) });
    await client.subscribeAsync('$dps/registrations/res/#', { qos: 1 });
    for (const body of ['{not json', '[]', '{"payload":{}}', JSON.stringify({ registrationId: 'someone-else' })]) {
      const answer = await request(client, registerTopic, body);
      expect(answer.status, body).toBe(400);
      expect(answer.body).toMatchObject({
        errorCode: expect.any(Number),
        trackingId: expect.any(String),
        message: expect.any(String),
        timestampUtc: expect.any(String),
      });
      expect(String(answer.body.errorCode).slice(0, 3)).toBe('400');
    }
    const unknown = await request(client, pollTopic('no-such-operation'), ' ');
    expect(unknown.status).toBe(404);
    expect(String(unknown.body.errorCode).slice(0, 3)).toBe('404');
    // A poll without an operation id is a bad request, not a reason to drop the connection.
    const noOperation = await request(
      client,
      (rid) => `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${rid}`,
      ' ',
    );
    expect(noOperation.status).toBe(400);
    expect(client.connected).toBe(true);
    const { final } = await register(client, 'mqtt-bad-body');
    expect(final.body).toMatchObject({ status: 'assigned' });
    await client.endAsync();
  });

  it('keeps device topics out of a provisioning connection and $dps topics out of a device connection', async () => {
    const key = await enrollments.symmetricKeyIndividual('mqtt-walls');
    const password = await dpsToken('mqtt-walls', key);

    const subscriber = await connect({ ...options('mqtt-walls'), password });
    const subscriberClosed = closed(subscriber);
    subscriber.subscribe('devices/mqtt-walls/messages/devicebound/#', { qos: 1 });
    await subscriberClosed;

    const publisher = await connect({ ...options('mqtt-walls'), password });
    const publisherClosed = closed(publisher);
    publisher.publish('devices/mqtt-walls/messages/events/', 'telemetry', { qos: 1 });
    await publisherClosed;

    const twin = await connect({ ...options('mqtt-walls'), password });
    const twinClosed = closed(twin);
    twin.publish('$iothub/twin/GET/?$rid=1', ' ', { qos: 0 });
    await twinClosed;

    // A device of the hub may not use the provisioning topics.
    const created = await testHub.request('PUT', '/devices/mqtt-plain-device', {
      body: { deviceId: 'mqtt-plain-device' },
    });
    const deviceKey = (created.json as { authentication: { symmetricKey: { primaryKey: string } } }).authentication
      .symmetricKey.primaryKey;
    const deviceOptions: IClientOptions = {
      clientId: 'mqtt-plain-device',
      username: 'localhost/mqtt-plain-device/?api-version=2021-04-12',
      password: await createSasToken({ resourceUri: 'localhost/devices/mqtt-plain-device', key: deviceKey }),
      ca: testHub.ca,
      servername: 'localhost',
      protocolVersion: 4,
      reconnectPeriod: 0,
    };
    const device = await connect(deviceOptions);
    const deviceClosed = closed(device);
    device.subscribe('$dps/registrations/res/#', { qos: 1 });
    await deviceClosed;
    const devicePublisher = await connect(deviceOptions);
    const devicePublisherClosed = closed(devicePublisher);
    devicePublisher.publish(registerTopic('1'), JSON.stringify({ registrationId: 'mqtt-plain-device' }), { qos: 1 });
    await devicePublisherClosed;
  });

  it('treats a clean-session 0 connection as clean: no session is present on reconnect', async () => {
    const key = await enrollments.symmetricKeyIndividual('mqtt-unclean');
    const password = await dpsToken('mqtt-unclean', key);
    const first = await connect({ ...options('mqtt-unclean', { clean: false }), password });
    await first.subscribeAsync('$dps/registrations/res/#', { qos: 1 });
    await first.endAsync();
    const second = mqtt.connect(url(), { ...options('mqtt-unclean', { clean: false }), password });
    clients.push(second);
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve) => second.once('connect', resolve));
    expect(connack.sessionPresent).toBe(false);
    await second.endAsync();
  });
});
