import { createRootCa, createSelfSignedCertificate, issueDeviceCertificate } from '@fieldhub/auth';
import { createDeviceClient, mqtt } from '@fieldhub/device';
import { AbortError, AuthenticationError, deriveDeviceKey } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DpsEnrollments, dpsEnrollments } from '../../hub/test/helpers/dps-enrollments';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { deviceConnectionString, ProvisioningError, type RegisterOptions, register } from '../src/index';

describe('register() against the hub', () => {
  let testHub: TestHub;
  let enrollments: DpsEnrollments;
  let idScope: string;

  beforeAll(async () => {
    testHub = await startTestHub();
    enrollments = dpsEnrollments(testHub);
    idScope = testHub.hub.core.dps.idScope;
  });
  afterAll(async () => {
    await testHub?.stop();
  });

  const transports = ['mqtt', 'https'] as const;
  const hostFor = (transport: 'mqtt' | 'https') =>
    `127.0.0.1:${transport === 'mqtt' ? testHub.info.ports.mqtt : testHub.info.ports.https}`;
  const options = (transport: 'mqtt' | 'https', rest: Partial<RegisterOptions>): RegisterOptions =>
    ({ idScope, transport, provisioningHost: hostFor(transport), ca: testHub.ca, ...rest }) as RegisterOptions;

  /** Telemetry of `deviceId` on the built-in endpoint, bodies as text. */
  const telemetryOf = async (deviceId: string): Promise<string[]> => {
    const reader = await testHub.hub.core.telemetry.read({ from: 'earliest', live: false });
    const bodies: string[] = [];
    for await (const event of reader) {
      if (event.deviceId === deviceId && event.source === 'Telemetry') {
        bodies.push(Buffer.from(event.body).toString('utf8'));
      }
    }
    return bodies;
  };

  it('registers over MQTT over WebSockets on the HTTPS port', async () => {
    const registrationId = 'group-dev-wss';
    const groupKey = await enrollments.symmetricKeyGroup('group-wss');
    const result = await register({
      idScope,
      registrationId,
      symmetricKey: deriveDeviceKey(groupKey, registrationId),
      transport: { kind: 'mqtt', webSockets: true },
      provisioningHost: `127.0.0.1:${testHub.info.ports.https}`,
      ca: testHub.ca,
    });
    expect(result).toMatchObject({ status: 'assigned', registrationId, deviceId: registrationId });
  });

  for (const transport of transports) {
    describe(`over ${transport}`, () => {
      it('registers through a symmetric-key group with the derived key; the device then sends telemetry to the assigned hub', async () => {
        const registrationId = `group-dev-${transport}`;
        const groupKey = await enrollments.symmetricKeyGroup(`group-${transport}`);
        const symmetricKey = deriveDeviceKey(groupKey, registrationId);
        const result = await register(
          options(transport, { registrationId, symmetricKey, payload: { model: 'thermostat' } }),
        );
        expect(result).toMatchObject({
          status: 'assigned',
          registrationId,
          assignedHub: testHub.info.hostName,
          deviceId: registrationId,
          operationId: expect.any(String),
        });
        expect(result.createdDateTimeUtc).toEqual(expect.any(String));

        const client = await createDeviceClient({
          connectionString: deviceConnectionString(result, { symmetricKey }),
          ca: testHub.ca,
          transport: mqtt({ port: testHub.info.ports.mqtt as number }),
        });
        try {
          await client.sendTelemetry({ body: { provisionedOver: transport } });
        } finally {
          await client.close();
        }
        expect(await telemetryOf(result.deviceId)).toContain(JSON.stringify({ provisionedOver: transport }));
      });

      it('registers an individual symmetric-key enrollment twice and keeps the identity', async () => {
        const registrationId = `individual-${transport}`;
        const symmetricKey = await enrollments.symmetricKeyIndividual(registrationId);
        const first = await register(options(transport, { registrationId, symmetricKey }));
        const second = await register(options(transport, { registrationId, symmetricKey }));
        expect(second.deviceId).toBe(first.deviceId);
        expect(second.assignedHub).toBe(first.assignedHub);
        expect(second.createdDateTimeUtc).toBe(first.createdDateTimeUtc);
      });

      it('registers an individual X.509 enrollment (registration id = certificate CN); the device connects with the certificate', async () => {
        const registrationId = `x509-dev-${transport}`;
        const certificate = await createSelfSignedCertificate({ commonName: registrationId });
        await enrollments.x509Individual(registrationId, certificate.certificate);
        const x509 = { cert: certificate.certificate, key: certificate.privateKey };
        const result = await register(options(transport, { x509 }));
        expect(result).toMatchObject({ status: 'assigned', registrationId, deviceId: registrationId });

        const client = await createDeviceClient({
          connectionString: deviceConnectionString(result, { x509: true }),
          x509,
          ca: testHub.ca,
          transport: mqtt({ port: testHub.info.ports.mqtt as number }),
        });
        try {
          await client.sendTelemetry({ body: `x509 over ${transport}` });
        } finally {
          await client.close();
        }
        expect(await telemetryOf(result.deviceId)).toContain(`x509 over ${transport}`);
      });

      it('refuses a wrong key with AuthenticationError', async () => {
        const registrationId = `wrong-key-${transport}`;
        await enrollments.symmetricKeyIndividual(registrationId);
        const symmetricKey = Buffer.alloc(32, 9).toString('base64');
        await expect(register(options(transport, { registrationId, symmetricKey }))).rejects.toBeInstanceOf(
          AuthenticationError,
        );
      });

      it('ends a disabled enrollment with ProvisioningError, status disabled', async () => {
        const registrationId = `disabled-${transport}`;
        const symmetricKey = await enrollments.symmetricKeyIndividual(registrationId, { disabled: true });
        const error = await register(options(transport, { registrationId, symmetricKey })).catch((caught) => caught);
        expect(error).toBeInstanceOf(ProvisioningError);
        expect(error).toMatchObject({ registrationStatus: 'disabled', isRetryable: false });
      });

      it('refuses a certificate from a CA nobody verified with AuthenticationError', async () => {
        const registrationId = `stranger-${transport}`;
        const stranger = await createRootCa({ commonName: `unverified CA ${transport}` });
        const leaf = await issueDeviceCertificate({ issuer: stranger, deviceId: registrationId });
        await expect(
          register(options(transport, { x509: { cert: leaf.certificate, key: leaf.privateKey as string } })),
        ).rejects.toBeInstanceOf(AuthenticationError);
      });

      it('rejects with AbortError when the signal aborts, and settles once', async () => {
        const registrationId = `aborted-${transport}`;
        const symmetricKey = await enrollments.symmetricKeyIndividual(registrationId);
        const controller = new AbortController();
        const pending = register(options(transport, { registrationId, symmetricKey, signal: controller.signal }));
        controller.abort();
        await expect(pending).rejects.toBeInstanceOf(AbortError);
      });
    });
  }
});
