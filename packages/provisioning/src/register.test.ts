// The registration flow (polling, retry-after, retries on 429 and 5xx, error mapping, timeout, abort) against a
// scripted DPS on real HTTPS: a fake of the wire, whose answers are those of protocol-device.md §5.2.
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createRootCa, issueServerCertificate, verifySasToken } from '@fieldhub/auth';
import {
  AbortError,
  ArgumentError,
  AuthenticationError,
  ThrottledError,
  TimeoutError,
  UnsupportedFeatureError,
} from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from './register';
import { ProvisioningError } from './registration-result';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly at: number;
}

interface Answer {
  readonly status: number;
  readonly body?: unknown;
  readonly retryAfter?: string;
}

const key = Buffer.alloc(32, 3).toString('base64');
const assigned = (operationId: string) => ({
  operationId,
  status: 'assigned',
  registrationState: {
    registrationId: 'dev-1',
    createdDateTimeUtc: '2026-11-27T10:24:21.237Z',
    assignedHub: 'hub.example',
    deviceId: 'dev-1',
    status: 'assigned',
    substatus: 'initialAssignment',
    lastUpdatedDateTimeUtc: '2026-11-27T10:24:21.237Z',
    etag: '"1"',
    payload: { tier: 'gold' },
  },
});

describe('register() flow over HTTPS', () => {
  let server: Server;
  let ca: string;
  let port: number;
  let script: Answer[] = [];
  let seen: Seen[] = [];
  let sockets = 0;

  beforeAll(async () => {
    const root = await createRootCa({ commonName: 'provisioning flow test CA' });
    const leaf = await issueServerCertificate({ issuer: root, ipAddresses: ['127.0.0.1'] });
    ca = root.certificate;
    server = createServer({ cert: leaf.certificate, key: leaf.privateKey as string }, (request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        seen.push({
          method: request.method ?? '',
          url: request.url ?? '',
          headers: request.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          at: Date.now(),
        });
        const answer = script.shift() ?? { status: 500, body: { errorCode: 500000, message: 'script ran out' } };
        if (answer.status === 0) return; // never answer
        response.writeHead(answer.status, {
          'content-type': 'application/json; charset=utf-8',
          ...(answer.retryAfter === undefined ? {} : { 'retry-after': answer.retryAfter }),
        });
        response.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      });
    });
    server.on('secureConnection', () => {
      sockets += 1;
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const run = (answers: Answer[], extra: Record<string, unknown> = {}) => {
    script = answers;
    seen = [];
    return register({
      idScope: '0ne00000001',
      registrationId: 'dev-1',
      symmetricKey: key,
      transport: 'https',
      provisioningHost: `127.0.0.1:${port}`,
      ca,
      ...extra,
    });
  };

  it('registers, polls after retry-after, and returns the typed result', async () => {
    const result = await run(
      [
        { status: 202, body: { operationId: 'op-1', status: 'assigning' }, retryAfter: '0' },
        { status: 202, body: { operationId: 'op-1', status: 'assigning' }, retryAfter: '0' },
        { status: 200, body: assigned('op-1') },
      ],
      { payload: { model: 'm1' } },
    );
    expect(result).toEqual({
      status: 'assigned',
      assignedHub: 'hub.example',
      deviceId: 'dev-1',
      registrationId: 'dev-1',
      substatus: 'initialAssignment',
      payload: { tier: 'gold' },
      createdDateTimeUtc: '2026-11-27T10:24:21.237Z',
      lastUpdatedDateTimeUtc: '2026-11-27T10:24:21.237Z',
      etag: '"1"',
      operationId: 'op-1',
    });
    expect(seen.map((request) => `${request.method} ${request.url}`)).toEqual([
      'PUT /0ne00000001/registrations/dev-1/register?api-version=2019-03-31',
      'GET /0ne00000001/registrations/dev-1/operations/op-1?api-version=2019-03-31',
      'GET /0ne00000001/registrations/dev-1/operations/op-1?api-version=2019-03-31',
    ]);
    const put = seen[0] as Seen;
    expect(put.body).toBe('{"registrationId":"dev-1","payload":{"model":"m1"}}');
    expect(put.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(put.headers.accept).toBe('application/json');
    const token = String(put.headers.authorization);
    // Raw sr and skn=registration, as the official client (capture dps.txt).
    expect(token).toMatch(
      /^SharedAccessSignature sr=0ne00000001\/registrations\/dev-1&sig=[^&]+&skn=registration&se=\d+$/,
    );
    await expect(
      verifySasToken(token, { keys: [key], expectedResourceUri: '0ne00000001/registrations/dev-1' }),
    ).resolves.toMatchObject({ keyName: 'registration' });
  });

  it('waits 2 s between polls when the answer names no retry-after', async () => {
    await run([
      { status: 202, body: { operationId: 'op-2', status: 'assigning' } },
      { status: 200, body: assigned('op-2') },
    ]);
    const [put, get] = seen as [Seen, Seen];
    expect(get.at - put.at).toBeGreaterThanOrEqual(1900);
  });

  it('sends the same request again after 429 and 503, honouring retry-after', async () => {
    const result = await run([
      { status: 429, body: { errorCode: 429001, message: 'slow down' }, retryAfter: '0' },
      { status: 202, body: { operationId: 'op-3', status: 'assigning' }, retryAfter: '0' },
      { status: 503, body: { errorCode: 503000, message: 'busy' }, retryAfter: '0' },
      { status: 200, body: assigned('op-3') },
    ]);
    expect(result.deviceId).toBe('dev-1');
    expect(seen.map((request) => request.method)).toEqual(['PUT', 'PUT', 'GET', 'GET']);
  });

  it('sends forceRegistration=true when asked (HTTPS only)', async () => {
    await run([{ status: 200, body: assigned('op-4') }], { forceRegistration: true });
    expect(seen[0]?.url).toBe(
      '/0ne00000001/registrations/dev-1/register?api-version=2019-03-31&forceRegistration=true',
    );
    await expect(
      register({ idScope: '0ne1', registrationId: 'd', symmetricKey: key, forceRegistration: true }),
    ).rejects.toBeInstanceOf(UnsupportedFeatureError);
  });

  it('rejects 401 with AuthenticationError, 400 with ArgumentError, carrying DPS message and code', async () => {
    const unauthorized = await run([
      { status: 401, body: { errorCode: 401002, trackingId: 't-1', message: 'Unauthorized' } },
    ]).catch((error) => error);
    expect(unauthorized).toBeInstanceOf(AuthenticationError);
    expect(unauthorized.message).toContain('401002');
    const bad = await run([{ status: 400, body: { errorCode: 400004, message: 'bad body' } }]).catch((error) => error);
    expect(bad).toBeInstanceOf(ArgumentError);
    expect(bad.message).toContain('bad body');
  });

  it('rejects a failed registration with ProvisioningError carrying errorCode and errorMessage', async () => {
    const error = await run([
      {
        status: 200,
        body: {
          operationId: 'op-5',
          status: 'failed',
          registrationState: { registrationId: 'dev-1', status: 'failed', errorCode: 400209, errorMessage: 'no hub' },
        },
      },
    ]).catch((caught) => caught);
    expect(error).toBeInstanceOf(ProvisioningError);
    expect(error).toMatchObject({ registrationStatus: 'failed', errorCode: 400209, errorMessage: 'no hub' });
  });

  it('times out with TimeoutError while DPS keeps throttling, and closes its socket', async () => {
    const before = sockets;
    const throttled = Array.from({ length: 50 }, () => ({ status: 429, retryAfter: '0.05' }));
    await expect(run(throttled, { timeoutMs: 300 })).rejects.toBeInstanceOf(TimeoutError);
    expect(sockets).toBe(before + 1);
    await expect.poll(() => new Promise((resolve) => server.getConnections((_, count) => resolve(count)))).toBe(0);
  });

  it('rejects with AbortError when aborted while waiting for an answer', async () => {
    const controller = new AbortController();
    const pending = run([{ status: 0 }], { signal: controller.signal });
    await expect.poll(() => seen.length).toBe(1);
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortError);
  });

  it('refuses bad options before dialling', async () => {
    const base = { idScope: '0ne00000001', registrationId: 'dev-1', symmetricKey: key };
    await expect(register({ ...base, idScope: '' })).rejects.toBeInstanceOf(ArgumentError);
    await expect(register({ ...base, registrationId: '-bad-' })).rejects.toBeInstanceOf(ArgumentError);
    await expect(register({ idScope: '0ne1', registrationId: 'dev-1' })).rejects.toMatchObject({
      field: 'symmetricKey',
    });
    await expect(register({ ...base, symmetricKey: 'not base64!' })).rejects.toMatchObject({ field: 'symmetricKey' });
    await expect(register({ ...base, transport: 'amqp' as never })).rejects.toMatchObject({ field: 'transport' });
    await expect(register({ ...base, provisioningHost: 'host:99999' })).rejects.toMatchObject({
      field: 'provisioningHost',
    });
  });

  it('maps 429 to a retryable ThrottledError class', async () => {
    // Visible when the deadline ends a throttled registration: the cause chain is not needed, the class is.
    const { errorFromReply } = await import('./registration-result');
    const error = errorFromReply({ status: 429, retryAfterSeconds: 1, body: '{"errorCode":429001,"message":"x"}' });
    expect(error).toBeInstanceOf(ThrottledError);
    expect(error.isRetryable).toBe(true);
  });
});
