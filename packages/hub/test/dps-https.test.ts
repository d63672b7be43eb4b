import { request as httpsRequest } from 'node:https';
import { createRootCa, createSasToken, createSelfSignedCertificate, issueDeviceCertificate } from '@fieldhub/auth';
import { deriveDeviceKey } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DpsEnrollments, dpsEnrollments } from './helpers/dps-enrollments';
import { startTestHub, type TestHub } from './helpers/test-hub';

interface Response {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Record<string, unknown>;
  readonly text: string;
}

interface DeviceRequest {
  readonly authorization?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly body?: unknown;
  readonly contentType?: string;
}

describe('provisioning over HTTPS', () => {
  let testHub: TestHub;
  let enrollments: DpsEnrollments;
  let idScope: string;

  beforeAll(async () => {
    testHub = await startTestHub({ fileUpload: { containerName: 'uploads' } });
    enrollments = dpsEnrollments(testHub);
    idScope = testHub.hub.core.dps.idScope;
  });
  afterAll(async () => {
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

  /** A device request as azure-iot-provisioning-device-http sends it (captures/dps.txt). */
  const send = (method: string, path: string, options: DeviceRequest = {}): Promise<Response> => {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': options.contentType ?? 'application/json; charset=utf-8',
      'user-agent': 'azure-iot-provisioning-device/1.9.1',
    };
    if (options.authorization !== undefined) headers.authorization = options.authorization;
    const body =
      options.body === undefined
        ? undefined
        : Buffer.from(typeof options.body === 'string' ? options.body : JSON.stringify(options.body));
    if (body !== undefined) headers['content-length'] = String(body.length);
    return new Promise<Response>((resolve, reject) => {
      const request = httpsRequest(
        {
          host: '127.0.0.1',
          servername: 'localhost',
          port: testHub.info.ports.https,
          method,
          path,
          headers,
          ca: testHub.ca,
          agent: false,
          ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: Record<string, unknown> = {};
            try {
              parsed = JSON.parse(text) as Record<string, unknown>;
            } catch {
              parsed = {};
            }
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body: parsed, text });
          });
          response.on('error', reject);
        },
      );
      request.on('error', reject);
      request.end(body);
    });
  };

  const registerPath = (registrationId: string, scope = idScope, query = '') =>
    `/${scope}/registrations/${registrationId}/register?api-version=2019-03-31${query}`;
  const operationPath = (registrationId: string, operationId: string) =>
    `/${idScope}/registrations/${registrationId}/operations/${operationId}?api-version=2019-03-31`;

  /** PUT register, then GET the operation (with Node's `{}` body) until it is done. */
  const register = async (registrationId: string, auth: DeviceRequest, query = '') => {
    const answers: Response[] = [];
    let answer = await send('PUT', registerPath(registrationId, idScope, query), {
      ...auth,
      body: { registrationId },
    });
    answers.push(answer);
    while (answer.status === 202) {
      expect(answer.headers['retry-after']).toMatch(/^\d+$/);
      await new Promise((resolve) => setTimeout(resolve, Math.min(Number(answer.headers['retry-after']), 1) * 1000));
      answer = await send('GET', operationPath(registrationId, String(answer.body.operationId)), { ...auth, body: {} });
      answers.push(answer);
    }
    return { answers, final: answer };
  };

  const expectDpsError = (response: Response, status: number) => {
    expect(response.status, response.text).toBe(status);
    expect(response.headers['content-type']).toContain('application/json');
    expect(response.body).toMatchObject({
      errorCode: expect.any(Number),
      trackingId: expect.any(String),
      message: expect.any(String),
      timestampUtc: expect.any(String),
    });
    expect(String(response.body.errorCode).slice(0, 3)).toBe(String(status));
  };

  it('registers an individual symmetric-key enrollment: 202 assigning with retry-after, polled to 200 assigned', async () => {
    const key = await enrollments.symmetricKeyIndividual('https-sym-1');
    const { answers, final } = await register('https-sym-1', { authorization: await dpsToken('https-sym-1', key) });
    expect(answers[0]?.status).toBe(202);
    expect(answers[0]?.body).toMatchObject({ operationId: expect.any(String), status: 'assigning' });
    expect(answers[0]?.headers['retry-after']).toMatch(/^\d+$/);
    expect(final.status).toBe(200);
    expect(final.body).toMatchObject({
      operationId: answers[0]?.body.operationId,
      status: 'assigned',
      registrationState: {
        registrationId: 'https-sym-1',
        deviceId: expect.any(String),
        assignedHub: expect.any(String),
        status: 'assigned',
      },
    });
  });

  it('registers through a symmetric-key group with the derived key, and again with forceRegistration', async () => {
    const groupKey = await enrollments.symmetricKeyGroup('https-group-1');
    const authorization = await dpsToken('https-grp-dev', deriveDeviceKey(groupKey, 'https-grp-dev'));
    const { final } = await register('https-grp-dev', { authorization });
    expect(final.body).toMatchObject({ status: 'assigned', registrationState: { registrationId: 'https-grp-dev' } });
    const again = await register('https-grp-dev', { authorization }, '&forceRegistration=true');
    expect(again.final.body).toMatchObject({
      status: 'assigned',
      registrationState: { deviceId: (final.body.registrationState as { deviceId: string }).deviceId },
    });
  });

  it('registers an X.509 individual enrollment by its TLS client certificate (no Authorization header)', async () => {
    const certificate = await createSelfSignedCertificate({ commonName: 'https-x509-1' });
    await enrollments.x509Individual('https-x509-1', certificate.certificate);
    const { final } = await register('https-x509-1', { cert: certificate.certificate, key: certificate.privateKey });
    expect(final.body).toMatchObject({ status: 'assigned', registrationState: { registrationId: 'https-x509-1' } });

    const other = await createSelfSignedCertificate({ commonName: 'https-x509-1' });
    expectDpsError(
      await send('PUT', registerPath('https-x509-1'), {
        cert: other.certificate,
        key: other.privateKey,
        body: { registrationId: 'https-x509-1' },
      }),
      401,
    );
    expectDpsError(await send('PUT', registerPath('https-x509-1'), { body: { registrationId: 'https-x509-1' } }), 401);
    const stranger = await createRootCa({ commonName: 'unverified DPS HTTPS test CA' });
    const leaf = await issueDeviceCertificate({ issuer: stranger, deviceId: 'https-x509-1' });
    expectDpsError(
      await send('PUT', registerPath('https-x509-1'), {
        cert: leaf.certificate,
        key: leaf.privateKey as string,
        body: { registrationId: 'https-x509-1' },
      }),
      401,
    );
  });

  it('refuses a wrong key, a wrong ID scope and a token of another registration with 401; a disabled enrollment ends disabled', async () => {
    const key = await enrollments.symmetricKeyIndividual('https-refused');
    const body = { registrationId: 'https-refused' };
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    const refused = await send('PUT', registerPath('https-refused'), {
      authorization: await dpsToken('https-refused', wrongKey),
      body,
    });
    expectDpsError(refused, 401);
    // The reason stays in the hub's log: the caller learns nothing about what is enrolled.
    expect(refused.body.message).toBe('Unauthorized');
    expectDpsError(
      await send('PUT', registerPath('https-refused', '0ne99999999'), {
        authorization: await dpsToken('https-refused', key, '0ne99999999'),
        body,
      }),
      401,
    );
    const otherKey = await enrollments.symmetricKeyIndividual('https-other');
    expectDpsError(
      await send('PUT', registerPath('https-refused'), {
        authorization: await dpsToken('https-other', otherKey),
        body,
      }),
      401,
    );
    const disabledKey = await enrollments.symmetricKeyIndividual('https-disabled', { disabled: true });
    // A disabled enrollment is refused: DPS ends the operation `disabled` (the official clients fail on it).
    const { final } = await register('https-disabled', {
      authorization: await dpsToken('https-disabled', disabledKey),
    });
    expect(final.status === 200 ? final.body.status : final.status).toBe('disabled');
  });

  it('answers malformed requests 400 and an unknown operation 404, in DPS error bodies', async () => {
    const key = await enrollments.symmetricKeyIndividual('https-bad');
    const authorization = await dpsToken('https-bad', key);
    for (const body of ['{not json', '[]', '{"payload":{}}', JSON.stringify({ registrationId: 'someone-else' })]) {
      expectDpsError(await send('PUT', registerPath('https-bad'), { authorization, body }), 400);
    }
    expectDpsError(
      await send('PUT', `/${idScope}/registrations/https-bad/register`, {
        authorization,
        body: { registrationId: 'https-bad' },
      }),
      400,
    );
    expectDpsError(await send('GET', operationPath('https-bad', 'no-such-operation'), { authorization }), 404);
    // Still served after all that.
    const { final } = await register('https-bad', { authorization });
    expect(final.body).toMatchObject({ status: 'assigned' });
  });

  it('leaves the other routes where they were: devices, twins, the blob container, service errors', async () => {
    // A blob path shaped like a registration stays with the blob endpoint (a storage error, not a DPS one).
    const blob = await send('PUT', '/uploads/registrations/x/register?api-version=2019-03-31', {
      body: { registrationId: 'x' },
    });
    expect(blob.status).toBe(403);
    expect(blob.headers['x-ms-error-code']).toBeDefined();
    // The service API keeps its routes and its error envelope.
    const device = await testHub.request('GET', '/devices/not-there');
    expect(device.status).toBe(404);
    expect(device.json).toMatchObject({ Message: expect.stringContaining('ErrorCode:DeviceNotFound') });
    const twin = await testHub.request('GET', '/twins/not-there');
    expect(twin.status).toBe(404);
    // The provisioning service API keeps its enrollments, next to the device routes of its enrollments.
    await enrollments.symmetricKeyIndividual('https-routes');
    const enrollment = await testHub.request('GET', '/enrollments/https-routes');
    expect(enrollment.status).toBe(200);
    expect(enrollment.json).toMatchObject({ registrationId: 'https-routes' });
    // A wrong method on a provisioning path is 405, not someone else's route.
    const wrongMethod = await send('POST', registerPath('https-any'), { body: { registrationId: 'https-any' } });
    expect(wrongMethod.status).toBe(405);
  });
});
