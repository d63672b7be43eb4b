import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  certificateThumbprint,
  createIntermediateCa,
  createRootCa,
  createSasToken,
  createSelfSignedCertificate,
  issueDeviceCertificate,
} from '@fieldhub/auth';
import { parseConnectionString } from '@fieldhub/protocol';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedbackRecord } from '../src/core/cloud-to-device';
import type { EndpointEvent } from '../src/core/telemetry';
import { createHub, type Hub, type HubInfo } from '../src/index';

// The device HTTPS API (protocol-device.md §4.1, §4.2) against a real hub on 127.0.0.1 with real TLS: requests
// as azure-iot-device-http makes them (captures/http.txt), and what it must refuse. The hub's clock is injectable
// here so that a lapsed cloud-to-device lock needs no minute of waiting.

interface DeviceResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  readonly errorCode: string | undefined;
}

interface DeviceRequest {
  readonly body?: string | Buffer;
  readonly headers?: Record<string, string>;
  /** A SAS token for the Authorization header; none for X.509. */
  readonly token?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly agent?: Agent;
  /** Sends the body chunked, without Content-Length (as the Node SDK sends telemetry). */
  readonly chunked?: boolean;
  /** Adds `?api-version=2021-04-12` unless false. */
  readonly apiVersion?: boolean;
}

let hub: Hub;
let info: HubInfo;
let ca: string;
let dataDir: string;
let clockOffsetMs = 0;
const keys = new Map<string, string>();

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'fieldhub-http-device-'));
  hub = createHub(
    { hostName: 'localhost', bind: '127.0.0.1', logLevel: 'silent', dataDir, ports: { mqtt: 0, amqp: 0, https: 0 } },
    { logger: pino({ level: process.env.FIELDHUB_TEST_LOG ?? 'silent' }), now: () => Date.now() + clockOffsetMs },
  );
  info = await hub.start();
  ca = readFileSync(info.caCertificate, 'utf8');
});

afterAll(async () => {
  await hub?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

function call(method: string, path: string, options: DeviceRequest = {}): Promise<DeviceResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = options.token;
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  if (body !== undefined && !options.chunked) headers['content-length'] = String(body.length);
  const separator = path.includes('?') ? '&' : '?';
  const fullPath = options.apiVersion === false ? path : `${path}${separator}api-version=2021-04-12`;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: info.ports.https,
        method,
        path: fullPath,
        headers,
        ca,
        ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const code = res.headers['iothub-errorcode'];
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            errorCode: typeof code === 'string' ? code : undefined,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const serviceKey = () => parseConnectionString(info.serviceConnectionString).sharedAccessKey ?? '';

async function service(method: string, path: string, body?: unknown): Promise<DeviceResponse> {
  const token = await createSasToken({
    resourceUri: info.hostName,
    key: serviceKey(),
    keyName: 'iothubowner',
    ttlSeconds: 3600,
  });
  return call(method, path, {
    token,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json; charset=utf-8' } }),
  });
}

async function createDevice(deviceId: string, body: Record<string, unknown> = {}): Promise<void> {
  const response = await service('PUT', `/devices/${deviceId}`, { deviceId, ...body });
  expect(response.status, response.body.toString()).toBe(200);
  const json = JSON.parse(response.body.toString()) as { authentication: { symmetricKey?: { primaryKey?: string } } };
  const key = json.authentication.symmetricKey?.primaryKey;
  if (key) keys.set(deviceId, key);
}

async function createModule(deviceId: string, moduleId: string): Promise<void> {
  const response = await service('PUT', `/devices/${deviceId}/modules/${moduleId}`, { deviceId, moduleId });
  expect(response.status, response.body.toString()).toBe(200);
  const json = JSON.parse(response.body.toString()) as { authentication: { symmetricKey: { primaryKey: string } } };
  keys.set(`${deviceId}/${moduleId}`, json.authentication.symmetricKey.primaryKey);
}

function tokenFor(
  deviceId: string,
  options: { moduleId?: string; key?: string; expiresAt?: number; resource?: string } = {},
): Promise<string> {
  const identity = options.moduleId === undefined ? deviceId : `${deviceId}/${options.moduleId}`;
  const resource =
    options.resource ??
    (options.moduleId === undefined
      ? `localhost/devices/${deviceId}`
      : `localhost/devices/${deviceId}/modules/${options.moduleId}`);
  return createSasToken({
    resourceUri: resource,
    key: options.key ?? (keys.get(identity) as string),
    ...(options.expiresAt === undefined ? { ttlSeconds: 3600 } : { expiresAt: options.expiresAt }),
  });
}

async function events(predicate: (event: EndpointEvent) => boolean): Promise<EndpointEvent[]> {
  const reader = await hub.core.telemetry.read({ from: 'earliest', live: false });
  const found: EndpointEvent[] = [];
  for await (const event of reader) if (predicate(event)) found.push(event);
  return found;
}

const telemetryOf = (deviceId: string) =>
  events((event) => event.deviceId === deviceId && event.source === 'Telemetry');

async function sendCloudToDevice(
  deviceId: string,
  messageId: string,
  extra: { ack?: 'none' | 'full'; properties?: Record<string, string> } = {},
): Promise<void> {
  await hub.core.cloudToDevice.send(deviceId, {
    body: Buffer.from(`hello ${messageId}`),
    messageId,
    correlationId: `corr-${messageId}`,
    userId: 'service-user',
    contentType: 'text/plain',
    contentEncoding: 'utf-8',
    properties: extra.properties ?? { color: 'blue' },
    ack: extra.ack ?? 'full',
  });
}

/** Reads feedback until the record of `messageId` shows up (completing every batch read). */
async function feedbackFor(messageId: string): Promise<FeedbackRecord | undefined> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const batch = await hub.core.cloudToDevice.receiveFeedback();
    if (!batch) return undefined;
    await hub.core.cloudToDevice.completeFeedback(batch.lockToken);
    const record = batch.records.find((candidate) => candidate.originalMessageId === messageId);
    if (record) return record;
  }
  return undefined;
}

/** The sender's scope and type as the hub stamped them (`iothub-connection-auth-method`). */
function authMethod(event: EndpointEvent | undefined): { scope: string; type: string } | undefined {
  const text = event?.systemProperties['iothub-connection-auth-method'];
  if (typeof text !== 'string') return undefined;
  const { scope, type } = JSON.parse(text) as { scope: string; type: string };
  return { scope, type };
}

const lockOf = (response: DeviceResponse) => String(response.headers.etag).replace(/^"(.*)"$/, '$1');

describe('device telemetry over HTTPS', () => {
  beforeAll(async () => {
    await createDevice('tele1');
    await createDevice('tele2');
    await createDevice('bad1');
  });

  it("appends a message with the headers' properties, the body byte for byte, stamped like MQTT and AMQP telemetry", async () => {
    const response = await call('POST', '/devices/tele1/messages/events', {
      token: await tokenFor('tele1'),
      // The Node SDK's request (captures/http.txt), with a JSON Content-Type the hub must not parse.
      body: '{"temperature":21.5}',
      headers: {
        'content-type': 'application/json',
        'iothub-to': '/devices/tele1/messages/events',
        'iothub-app-alert': 'high-temp',
        'IoTHub-App-Reading': '1',
        'IoTHub-MessageId': 'mid-1',
        'IoTHub-CorrelationId': 'cid-1',
        'IoTHub-UserId': 'user-1',
        'IoTHub-Expiry': '2030-01-01T00:00:00Z',
        'iothub-contenttype': 'application/json',
        'iothub-contentencoding': 'utf-8',
        'iothub-interface-id': 'dtmi:com:example:Thermostat;1',
        'dt-subject': 'thermostat1',
      },
    });
    expect(response.status, response.body.toString()).toBe(204);
    const [event] = await telemetryOf('tele1');
    expect(Buffer.from(event?.body ?? []).toString()).toBe('{"temperature":21.5}');
    expect(event?.properties).toEqual({ alert: 'high-temp', Reading: '1' });
    expect(event).toMatchObject({
      messageId: 'mid-1',
      correlationId: 'cid-1',
      userId: 'user-1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      moduleId: undefined,
    });
    expect(event?.systemProperties).toMatchObject({
      'iothub-connection-device-id': 'tele1',
      'iothub-message-source': 'Telemetry',
      'iothub-interface-id': 'dtmi:com:example:Thermostat;1',
      'dt-subject': 'thermostat1',
      'absolute-expiry-time': '2030-01-01T00:00:00.000Z',
    });
    expect(authMethod(event)).toEqual({ scope: 'device', type: 'sas' });
    expect(event?.systemProperties['iothub-connection-auth-generation-id']).toEqual(expect.any(String));
  });

  it('takes a chunked body without Content-Type, as the Node SDK sends it', async () => {
    const response = await call('POST', '/devices/tele2/messages/events', {
      token: await tokenFor('tele2'),
      body: Buffer.from([0, 1, 2, 255]),
      chunked: true,
    });
    expect(response.status, response.body.toString()).toBe(204);
    const [event] = await telemetryOf('tele2');
    expect([...(event?.body ?? [])]).toEqual([0, 1, 2, 255]);
    expect(event?.properties).toEqual({});
  });

  it('appends telemetry of a module under its own identity', async () => {
    await createDevice('moddev');
    await createModule('moddev', 'sensor');
    const token = await tokenFor('moddev', { moduleId: 'sensor' });
    const response = await call('POST', '/devices/moddev/modules/sensor/messages/events', {
      token,
      body: 'from module',
      headers: { 'iothub-app-kind': 'module' },
    });
    expect(response.status, response.body.toString()).toBe(204);
    const [event] = await telemetryOf('moddev');
    expect(event).toMatchObject({ deviceId: 'moddev', moduleId: 'sensor', properties: { kind: 'module' } });
    expect(authMethod(event)).toEqual({ scope: 'module', type: 'sas' });
    // The module's token opens neither the device's path nor another module's.
    expect((await call('POST', '/devices/moddev/messages/events', { token, body: 'x' })).status).toBe(401);
    expect((await call('POST', '/devices/moddev/modules/other/messages/events', { token, body: 'x' })).status).toBe(
      401,
    );
  });

  it('appends a batch in order: the Node SDK form, and the .NET form with base64Encoded and system properties', async () => {
    await createDevice('batch1');
    const token = await tokenFor('batch1');
    const nodeForm = '[{"body": "YQ=="},{"body": "Yg==", "properties":{"iothub-app-n":"2","dt-subject":"c1"}}]';
    let response = await call('POST', '/devices/batch1/messages/events', {
      token,
      body: nodeForm,
      chunked: true,
      headers: { 'content-type': 'application/vnd.microsoft.iothub.json' },
    });
    expect(response.status, response.body.toString()).toBe(204);
    const dotnetForm = JSON.stringify([
      {
        body: Buffer.from('c').toString('base64'),
        base64Encoded: true,
        properties: { 'iothub-app-Unit': 'C', 'iothub-messageid': 'batch-mid', 'iothub-contenttype': 'text/plain' },
      },
      { body: 'plain text', base64Encoded: false },
    ]);
    response = await call('POST', '/devices/batch1/messages/events', {
      token,
      body: dotnetForm,
      headers: { 'content-type': 'application/vnd.microsoft.iothub.json; charset=utf-8' },
    });
    expect(response.status, response.body.toString()).toBe(204);
    const appended = await telemetryOf('batch1');
    expect(appended.map((event) => Buffer.from(event.body).toString())).toEqual(['a', 'b', 'c', 'plain text']);
    expect(appended[1]?.properties).toEqual({ n: '2' });
    expect(appended[1]?.systemProperties['dt-subject']).toBe('c1');
    expect(appended[2]).toMatchObject({ properties: { Unit: 'C' }, messageId: 'batch-mid', contentType: 'text/plain' });
  });

  it.each([
    ['not JSON', '[{"body": "YQ=="'],
    ['not an array', '{"body": "YQ=="}'],
    ['an empty array', '[]'],
    ['an item that is no object', '[{"body": "YQ=="}, 42]'],
    ['an item without a body', '[{"properties": {}}]'],
    ['a body that is not base64', '[{"body": "not base64!"}]'],
    ['a property value that is not a string', '[{"body": "YQ==", "properties": {"iothub-app-n": 1}}]'],
    ['a property value outside the §4.1 charset', '[{"body": "YQ==", "properties": {"iothub-app-n": "a b"}}]'],
    ['a property name outside the §4.1 charset', '[{"body": "YQ==", "properties": {"iothub-app-a:b": "x"}}]'],
  ])('refuses a batch with %s (400) and appends none of it', async (_name, body) => {
    const response = await call('POST', '/devices/bad1/messages/events', {
      token: await tokenFor('bad1'),
      body,
      headers: { 'content-type': 'application/vnd.microsoft.iothub.json' },
    });
    expect(response.status).toBe(400);
    expect(response.errorCode).toBe('ArgumentInvalid');
    expect(await telemetryOf('bad1')).toEqual([]);
  });

  it.each([
    ['a property value with a space', { 'iothub-app-alert': 'high temp' }],
    ['a property value with non-ASCII', { 'iothub-app-alert': 'caf%C3%A9 ok', 'iothub-app-x': '\u00e9' }],
    ['an expiry that is no date', { 'iothub-expiry': 'tomorrow' }],
    ['a message id over 128 characters', { 'iothub-messageid': 'm'.repeat(129) }],
  ])('refuses telemetry with %s (400 ArgumentInvalid)', async (_name, headers) => {
    const response = await call('POST', '/devices/bad1/messages/events', {
      token: await tokenFor('bad1'),
      body: 'x',
      headers: headers as Record<string, string>,
    });
    expect(response.status).toBe(400);
    expect(response.errorCode).toBe('ArgumentInvalid');
    expect(JSON.parse(response.body.toString()).Message).toMatch(/^ErrorCode:ArgumentInvalid;/);
  });

  it('refuses a property header given twice', async () => {
    const token = await tokenFor('bad1');
    const response = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          servername: 'localhost',
          port: info.ports.https,
          method: 'POST',
          path: '/devices/bad1/messages/events?api-version=2021-04-12',
          // A raw header list keeps both values apart.
          headers: ['authorization', token, 'iothub-app-k', 'one', 'iothub-app-k', 'two', 'content-length', '1'],
          ca,
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end('x');
    });
    expect(response).toBe(400);
    expect(await telemetryOf('bad1')).toEqual([]);
  });

  it('keeps application properties named like Object members (constructor, toString) and ignores such plain headers', async () => {
    await createDevice('proto1');
    const response = await call('POST', '/devices/proto1/messages/events', {
      token: await tokenFor('proto1'),
      body: 'x',
      headers: {
        'iothub-app-constructor': 'c',
        'iothub-app-toString': 't',
        constructor: 'ignored',
        valueof: 'ignored',
      },
    });
    expect(response.status, response.body.toString()).toBe(204);
    const batch = await call('POST', '/devices/proto1/messages/events', {
      token: await tokenFor('proto1'),
      body: JSON.stringify([{ body: 'eQ==', properties: { 'iothub-app-hasOwnProperty': 'h', toString: 'ignored' } }]),
      headers: { 'content-type': 'application/vnd.microsoft.iothub.json' },
    });
    expect(batch.status, batch.body.toString()).toBe(204);
    const [single, fromBatch] = await telemetryOf('proto1');
    expect(single?.properties).toEqual({ constructor: 'c', toString: 't' });
    expect(fromBatch?.properties).toEqual({ hasOwnProperty: 'h' });
    expect(Object.keys(single?.systemProperties ?? {}).filter((name) => name.includes('function'))).toEqual([]);
  });

  it('refuses a message over 256 KB with 413 MessageTooLarge: body alone, with its properties, and a batch', async () => {
    const token = await tokenFor('bad1');
    const tooBig = await call('POST', '/devices/bad1/messages/events', { token, body: Buffer.alloc(256 * 1024 + 1) });
    expect(tooBig.status).toBe(413);
    expect(tooBig.errorCode).toBe('MessageTooLarge');
    const withProperties = await call('POST', '/devices/bad1/messages/events', {
      token,
      body: Buffer.alloc(256 * 1024 - 10),
      headers: { 'iothub-app-padding': 'p'.repeat(100) },
    });
    expect(withProperties.status).toBe(413);
    const bigBatch = JSON.stringify([{ body: Buffer.alloc(200 * 1024).toString('base64') }]);
    const batch = await call('POST', '/devices/bad1/messages/events', {
      token,
      body: bigBatch,
      chunked: true,
      headers: { 'content-type': 'application/vnd.microsoft.iothub.json' },
    });
    expect(batch.status).toBe(413);
    expect(await telemetryOf('bad1')).toEqual([]);
    // Just under 256 KB with the hub's own stamps is within the limit.
    const atLimit = await call('POST', '/devices/bad1/messages/events', { token, body: Buffer.alloc(255 * 1024) });
    expect(atLimit.status).toBe(204);
    expect(await telemetryOf('bad1')).toHaveLength(1);
  });

  it('answers 400 InvalidProtocolVersion without api-version', async () => {
    const response = await call('POST', '/devices/tele1/messages/events', {
      token: await tokenFor('tele1'),
      body: 'x',
      apiVersion: false,
    });
    expect(response.status).toBe(400);
    expect(response.errorCode).toBe('InvalidProtocolVersion');
  });
});

describe('device authentication over HTTPS', () => {
  beforeAll(async () => {
    await createDevice('auth1');
    await createDevice('auth2');
    await createDevice('authoff', { status: 'disabled' });
  });

  it('answers 401 IotHubUnauthorizedAccess to every refused credential, on every route', async () => {
    const otherKey = keys.get('auth2') as string;
    const refused: [string, string | undefined][] = [
      ['no credentials', undefined],
      ['not a SAS token', 'Bearer abc'],
      ['the wrong key', await tokenFor('auth1', { key: otherKey })],
      ['an expired token', await tokenFor('auth1', { expiresAt: Math.floor(Date.now() / 1000) - 3600 })],
      ["another device's token", await tokenFor('auth2')],
      ['a token for another hub', await tokenFor('auth1', { resource: 'elsewhere/devices/auth1' })],
    ];
    const routes: [string, string][] = [
      ['POST', '/devices/auth1/messages/events'],
      ['GET', '/devices/auth1/messages/devicebound'],
      ['DELETE', '/devices/auth1/messages/devicebound/some-lock'],
      ['DELETE', '/devices/auth1/messages/devicebound/some-lock?reject'],
      ['POST', '/devices/auth1/messages/devicebound/some-lock/abandon'],
    ];
    for (const [reason, token] of refused) {
      for (const [method, path] of routes) {
        const response = await call(method, path, { ...(token === undefined ? {} : { token }), body: 'x' });
        expect(response.status, `${reason}: ${method} ${path}`).toBe(401);
        expect(response.errorCode, `${reason}: ${method} ${path}`).toBe('IotHubUnauthorizedAccess');
      }
    }
    expect(await telemetryOf('auth1')).toEqual([]);
  });

  it('refuses unknown and disabled devices with 401 as well', async () => {
    const key = keys.get('auth1') as string;
    const unknown = await call('POST', '/devices/nobody/messages/events', {
      token: await tokenFor('nobody', { key }),
      body: 'x',
    });
    expect(unknown.status).toBe(401);
    const disabled = await call('POST', '/devices/authoff/messages/events', {
      token: await tokenFor('authoff'),
      body: 'x',
    });
    expect(disabled.status).toBe(401);
  });

  it('accepts the secondary key and a DeviceConnect policy token (stamped with scope hub)', async () => {
    const response = await service('GET', '/devices/auth2');
    const secondary = (
      JSON.parse(response.body.toString()) as { authentication: { symmetricKey: { secondaryKey: string } } }
    ).authentication.symmetricKey.secondaryKey;
    expect(
      (
        await call('POST', '/devices/auth2/messages/events', {
          token: await tokenFor('auth2', { key: secondary }),
          body: 's',
        })
      ).status,
    ).toBe(204);
    const policyToken = await createSasToken({
      resourceUri: 'localhost',
      key: serviceKey(),
      keyName: 'iothubowner',
      ttlSeconds: 3600,
    });
    expect((await call('POST', '/devices/auth2/messages/events', { token: policyToken, body: 'p' })).status).toBe(204);
    const appended = await telemetryOf('auth2');
    expect(appended.map(authMethod)).toEqual([
      { scope: 'device', type: 'sas' },
      { scope: 'hub', type: 'sas' },
    ]);
  });

  it('authenticates a selfSigned device by its TLS client certificate thumbprint, and refuses another certificate', async () => {
    const self = await createSelfSignedCertificate({ commonName: 'x509self' });
    const other = await createSelfSignedCertificate({ commonName: 'x509self' });
    await createDevice('x509self', {
      authentication: {
        type: 'selfSigned',
        x509Thumbprint: {
          primaryThumbprint: certificateThumbprint(self.certificate, 'sha256'),
          secondaryThumbprint: null,
        },
      },
    });
    const accepted = await call('POST', '/devices/x509self/messages/events', {
      cert: self.certificate,
      key: self.privateKey,
      body: 'x509',
    });
    expect(accepted.status, accepted.body.toString()).toBe(204);
    const [event] = await telemetryOf('x509self');
    expect(authMethod(event)).toEqual({ scope: 'device', type: 'x509' });
    expect(
      (
        await call('POST', '/devices/x509self/messages/events', {
          cert: other.certificate,
          key: other.privateKey,
          body: 'x',
        })
      ).status,
    ).toBe(401);
    expect((await call('GET', '/devices/x509self/messages/devicebound')).status).toBe(401);
    // A certificate does not open a SAS device.
    await createDevice('sasonly');
    expect(
      (
        await call('POST', '/devices/sasonly/messages/events', {
          cert: self.certificate,
          key: self.privateKey,
          body: 'x',
        })
      ).status,
    ).toBe(401);
  });

  it('authenticates a certificateAuthority device by its chain (leaf + intermediate) to a verified CA, also on a resumed TLS session', async () => {
    const root = await createRootCa({ commonName: 'HTTP device test root' });
    const upload = await service('PUT', '/fieldhub/certificates/http-device-root', {
      certificate: root.certificate,
      isVerified: true,
    });
    expect(upload.status, upload.body.toString()).toBeLessThan(300);
    const intermediate = await createIntermediateCa({ issuer: root, commonName: 'HTTP device test intermediate' });
    await createDevice('x509ca', { authentication: { type: 'certificateAuthority' } });
    const leaf = await issueDeviceCertificate({ issuer: intermediate, deviceId: 'x509ca' });
    const chain = `${leaf.certificate}${intermediate.certificate}`;
    // One agent without keep-alive: the second request resumes the first one's TLS session.
    const agent = new Agent({ keepAlive: false, maxCachedSessions: 10 });
    try {
      for (const body of ['first', 'resumed']) {
        const response = await call('POST', '/devices/x509ca/messages/events', {
          cert: chain,
          key: leaf.privateKey as string,
          body,
          agent,
        });
        expect(response.status, `${body}: ${response.body.toString()}`).toBe(204);
      }
    } finally {
      agent.destroy();
    }
    expect((await telemetryOf('x509ca')).map((event) => Buffer.from(event.body).toString())).toEqual([
      'first',
      'resumed',
    ]);

    const wrongName = await issueDeviceCertificate({ issuer: intermediate, deviceId: 'someone-else' });
    expect(
      (
        await call('POST', '/devices/x509ca/messages/events', {
          cert: `${wrongName.certificate}${intermediate.certificate}`,
          key: wrongName.privateKey as string,
          body: 'x',
        })
      ).status,
    ).toBe(401);
    const stranger = await createRootCa({ commonName: 'not uploaded' });
    const untrusted = await issueDeviceCertificate({ issuer: stranger, deviceId: 'x509ca' });
    expect(
      (
        await call('POST', '/devices/x509ca/messages/events', {
          cert: untrusted.certificate,
          key: untrusted.privateKey as string,
          body: 'x',
        })
      ).status,
    ).toBe(401);
  });
});

describe('cloud-to-device messages over HTTPS', () => {
  it('answers 204 when the queue is empty, on both spellings of deviceBound', async () => {
    await createDevice('c2dempty');
    const token = await tokenFor('c2dempty');
    for (const path of ['/devices/c2dempty/messages/devicebound', '/devices/c2dempty/messages/deviceBound']) {
      const response = await call('GET', path, { token });
      expect(response.status, path).toBe(204);
      expect(response.body.length).toBe(0);
    }
  });

  it('delivers a message with its lock token in a quoted ETag and its properties in iothub-* headers; complete gives Success feedback', async () => {
    await createDevice('c2d1');
    const token = await tokenFor('c2d1');
    await sendCloudToDevice('c2d1', 'm-complete', { properties: { color: 'blue', Shade: 'dark' } });
    const response = await call('GET', '/devices/c2d1/messages/deviceBound', { token });
    expect(response.status).toBe(200);
    expect(response.body.toString()).toBe('hello m-complete');
    expect(response.headers.etag).toMatch(/^"[0-9a-f-]{36}"$/);
    expect(response.headers).toMatchObject({
      'iothub-messageid': 'm-complete',
      'iothub-correlationid': 'corr-m-complete',
      'iothub-userid': 'service-user',
      'iothub-to': '/devices/c2d1/messages/devicebound',
      'iothub-ack': 'full',
      'iothub-contenttype': 'text/plain',
      'iothub-contentencoding': 'utf-8',
      'iothub-deliverycount': '1',
      'iothub-sequencenumber': expect.stringMatching(/^\d+$/),
      'iothub-app-color': 'blue',
      'iothub-app-shade': 'dark',
    });
    expect(Date.parse(String(response.headers['iothub-enqueuedtime']))).not.toBeNaN();
    expect(Date.parse(String(response.headers['iothub-expiry']))).toBeGreaterThan(Date.now());
    // Locked: not delivered again while its lock holds.
    expect((await call('GET', '/devices/c2d1/messages/devicebound', { token })).status).toBe(204);

    const lockToken = lockOf(response);
    const completed = await call('DELETE', `/devices/c2d1/messages/devicebound/${lockToken}`, {
      token,
      headers: { 'if-match': lockToken },
    });
    expect(completed.status).toBe(204);
    expect(await feedbackFor('m-complete')).toMatchObject({ deviceId: 'c2d1', statusCode: 'Success' });
    expect(await hub.core.cloudToDevice.count('c2d1')).toBe(0);

    // Settled already: the lock is lost.
    const again = await call('DELETE', `/devices/c2d1/messages/devicebound/${lockToken}`, {
      token,
      headers: { 'if-match': lockToken },
    });
    expect(again.status).toBe(412);
    expect(again.errorCode).toBe('DeviceMessageLockLost');
  });

  it('rejects with ?reject (with or without a value): dead-lettered with Rejected feedback', async () => {
    await createDevice('c2d2');
    const token = await tokenFor('c2d2');
    for (const [messageId, query] of [
      ['m-reject-1', '?reject'],
      ['m-reject-2', '?reject=true'],
    ] as const) {
      await sendCloudToDevice('c2d2', messageId);
      const received = await call('GET', '/devices/c2d2/messages/devicebound', { token });
      expect(received.headers['iothub-messageid']).toBe(messageId);
      const lockToken = lockOf(received);
      const rejected = await call('DELETE', `/devices/c2d2/messages/devicebound/${lockToken}${query}`, {
        token,
        headers: { 'if-match': `"${lockToken}"` },
      });
      expect(rejected.status).toBe(204);
      expect(await feedbackFor(messageId)).toMatchObject({ statusCode: 'Rejected' });
    }
    expect((await call('GET', '/devices/c2d2/messages/devicebound', { token })).status).toBe(204);
  });

  it('redelivers an abandoned message with deliveryCount 2 and a new lock; the old lock is lost', async () => {
    await createDevice('c2d3');
    const token = await tokenFor('c2d3');
    await sendCloudToDevice('c2d3', 'm-abandon');
    const first = await call('GET', '/devices/c2d3/messages/devicebound', { token });
    const firstLock = lockOf(first);
    const abandoned = await call('POST', `/devices/c2d3/messages/devicebound/${firstLock}/abandon`, {
      token,
      headers: { 'if-match': firstLock },
    });
    expect(abandoned.status).toBe(204);
    const second = await call('GET', '/devices/c2d3/messages/devicebound', { token });
    expect(second.status).toBe(200);
    expect(second.headers['iothub-messageid']).toBe('m-abandon');
    expect(second.headers['iothub-deliverycount']).toBe('2');
    expect(lockOf(second)).not.toBe(firstLock);
    const stale = await call('DELETE', `/devices/c2d3/messages/devicebound/${firstLock}`, { token });
    expect(stale.status).toBe(412);
    expect(stale.errorCode).toBe('DeviceMessageLockLost');
    expect((await call('DELETE', `/devices/c2d3/messages/devicebound/${lockOf(second)}`, { token })).status).toBe(204);
    expect(await feedbackFor('m-abandon')).toMatchObject({ statusCode: 'Success' });
  });

  it('answers 412 PreconditionFailed when If-Match names another lock, and leaves the message locked', async () => {
    await createDevice('c2d4');
    const token = await tokenFor('c2d4');
    await sendCloudToDevice('c2d4', 'm-ifmatch');
    const received = await call('GET', '/devices/c2d4/messages/devicebound', { token });
    const lockToken = lockOf(received);
    for (const [method, suffix] of [
      ['DELETE', ''],
      ['DELETE', '?reject'],
      ['POST', '/abandon'],
    ] as const) {
      const response = await call(method, `/devices/c2d4/messages/devicebound/${lockToken}${suffix}`, {
        token,
        headers: { 'if-match': '"00000000-0000-0000-0000-000000000000"' },
      });
      expect(response.status, `${method} ${suffix}`).toBe(412);
      expect(response.errorCode).toBe('PreconditionFailed');
    }
    expect(await hub.core.cloudToDevice.count('c2d4')).toBe(1);
    expect((await call('GET', '/devices/c2d4/messages/devicebound', { token })).status).toBe(204);
    // Without If-Match the path's token decides.
    expect((await call('DELETE', `/devices/c2d4/messages/devicebound/${lockToken}`, { token })).status).toBe(204);
  });

  it('delivers a message again with a new lock once its lock lapsed; the lapsed token is then lost', async () => {
    await createDevice('c2d5');
    const token = await tokenFor('c2d5');
    await sendCloudToDevice('c2d5', 'm-lapse');
    const first = await call('GET', '/devices/c2d5/messages/devicebound', { token });
    clockOffsetMs += 61_000;
    try {
      const second = await call('GET', '/devices/c2d5/messages/devicebound', { token });
      expect(second.status).toBe(200);
      expect(second.headers['iothub-deliverycount']).toBe('2');
      const lapsed = await call('DELETE', `/devices/c2d5/messages/devicebound/${lockOf(first)}`, { token });
      expect(lapsed.status).toBe(412);
      expect(lapsed.errorCode).toBe('DeviceMessageLockLost');
      expect((await call('DELETE', `/devices/c2d5/messages/devicebound/${lockOf(second)}`, { token })).status).toBe(
        204,
      );
    } finally {
      clockOffsetMs -= 61_000;
    }
  });

  it("keeps devices apart: one device cannot settle another's message, and a device's bad requests do not disturb another", async () => {
    await createDevice('c2d6');
    await createDevice('c2d7');
    const token6 = await tokenFor('c2d6');
    const token7 = await tokenFor('c2d7');
    await sendCloudToDevice('c2d6', 'm-six');
    const received = await call('GET', '/devices/c2d6/messages/devicebound', { token: token6 });
    const lockToken = lockOf(received);
    // c2d7 names c2d6's lock token on its own path: nothing of c2d7 is locked with it.
    const foreign = await call('DELETE', `/devices/c2d7/messages/devicebound/${lockToken}`, { token: token7 });
    expect(foreign.status).toBe(412);
    // c2d7 on c2d6's path is refused outright.
    expect((await call('DELETE', `/devices/c2d6/messages/devicebound/${lockToken}`, { token: token7 })).status).toBe(
      401,
    );
    // A burst of bad requests from c2d7.
    const bad = await Promise.all([
      call('POST', '/devices/c2d7/messages/events', {
        token: token7,
        body: '[',
        headers: { 'content-type': 'application/vnd.microsoft.iothub.json' },
      }),
      call('POST', '/devices/c2d7/messages/events', { token: token7, body: Buffer.alloc(300 * 1024) }),
      call('POST', '/devices/c2d7/messages/devicebound/nope/abandon', { token: token7 }),
      call('GET', '/devices/c2d7/messages/devicebound', { token: token7, apiVersion: false }),
    ]);
    expect(bad.map((response) => response.status)).toEqual([400, 413, 412, 400]);
    // c2d6 is untouched: its message is still locked to it and completes; its telemetry flows.
    expect((await call('DELETE', `/devices/c2d6/messages/devicebound/${lockToken}`, { token: token6 })).status).toBe(
      204,
    );
    expect((await call('POST', '/devices/c2d6/messages/events', { token: token6, body: 'ok' })).status).toBe(204);
    expect(await telemetryOf('c2d6')).toHaveLength(1);
    expect(await telemetryOf('c2d7')).toEqual([]);
  });

  it('carries application properties with characters HTTP headers cannot hold percent-encoded', async () => {
    await createDevice('c2d8');
    const token = await tokenFor('c2d8');
    await sendCloudToDevice('c2d8', 'm-encode', { properties: { note: 'café\nbar', 'a b': 'x' } });
    const response = await call('GET', '/devices/c2d8/messages/devicebound', { token });
    expect(response.status).toBe(200);
    expect(response.headers['iothub-app-note']).toBe('caf%C3%A9%0Abar');
    expect(response.headers['iothub-app-a%20b']).toBe('x');
  });

  it('answers 405 to a wrong method on a known device path, and the module form has no cloud-to-device route', async () => {
    await createDevice('c2d9');
    const token = await tokenFor('c2d9');
    expect((await call('PUT', '/devices/c2d9/messages/events', { token, body: 'x' })).status).toBe(405);
    expect((await call('GET', '/devices/c2d9/modules/m/messages/devicebound', { token })).status).toBe(404);
    // A HEAD must not lock a message nobody reads.
    await sendCloudToDevice('c2d9', 'm-head');
    expect((await call('HEAD', '/devices/c2d9/messages/devicebound', { token })).status).toBe(405);
    const received = await call('GET', '/devices/c2d9/messages/devicebound', { token });
    expect(received.headers['iothub-deliverycount']).toBe('1');
  });
});
