import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSelfSignedCertificate } from '@fieldhub/auth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HubProcess, startHubProcess } from './support/hub-process';
import { serviceCall } from './support/service-rest';

// The official provisioning client over AMQP (azure-iot-provisioning-device + azure-iot-provisioning-device-amqp,
// unchanged) against the hub as a child process. It takes `provisioningHost` as `host:port` (it dials
// `amqps://{provisioningHost}` and its AMQP base reads the port from that URL), so no port 443 is needed. It offers
// no option for a CA: it runs in a child Node process that trusts the hub's CA through NODE_EXTRA_CA_CERTS, as a
// device would trust a public CA.

const interopRoot = fileURLToPath(new URL('../', import.meta.url));

/** The device side: registers once and prints `{ result }` or `{ error }` as one JSON line. */
const deviceScript = `
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Amqp } = require('azure-iot-provisioning-device-amqp');
const input = JSON.parse(process.env.DPS_INPUT);
let security;
if (input.symmetricKey !== undefined) {
  const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
  security = new SymmetricKeySecurityClient(input.registrationId, input.symmetricKey);
} else {
  const { X509Security } = require('azure-iot-security-x509');
  security = new X509Security(input.registrationId, { cert: input.cert, key: input.key });
}
const client = ProvisioningDeviceClient.create(input.host, input.idScope, new Amqp(), security);
client.register((error, result) => {
  const line = error ? { error: { name: error.name, message: String(error.message) } } : { result };
  process.stdout.write(JSON.stringify(line) + '\\n', () => process.exit(0));
});
`;

interface RegistrationOutcome {
  readonly result?: { registrationId: string; deviceId: string; assignedHub: string; status: string };
  readonly error?: { name: string; message: string };
}

describe('official provisioning client over AMQP', () => {
  let hub: HubProcess;
  let idScope: string;
  let host: string;

  /** Runs the official client in a child process (60 s at most) and returns what it printed. */
  const register = (input: Record<string, unknown>): Promise<RegistrationOutcome> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', deviceScript], {
        cwd: interopRoot,
        env: {
          ...process.env,
          NODE_EXTRA_CA_CERTS: hub.info.caCertificate,
          DPS_INPUT: JSON.stringify({ host, idScope, ...input }),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      child.stderr.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.once('exit', () => {
        clearTimeout(timer);
        const line = output.split('\n').find((candidate) => candidate.startsWith('{'));
        if (line === undefined) reject(new Error(`the provisioning client printed no outcome:\n${output}`));
        else resolve(JSON.parse(line) as RegistrationOutcome);
      });
    });

  beforeAll(async () => {
    hub = await startHubProcess({ httpsPort: 0 });
    const hubJson = JSON.parse(readFileSync(join(hub.dataDir, 'hub.json'), 'utf8')) as { dps: { idScope: string } };
    idScope = hubJson.dps.idScope;
    host = `localhost:${hub.info.ports.amqp}`;
  });

  afterAll(async () => {
    await hub?.dispose();
  });

  it('registers through a symmetric-key group enrollment, twice to the same device, and fails a wrong key', async () => {
    const group = await serviceCall(hub.info, 'PUT', '/enrollmentGroups/amqp-interop?api-version=2021-10-01', [200], {
      body: { enrollmentGroupId: 'amqp-interop', attestation: { type: 'symmetricKey' } },
    });
    const groupKey = group.json<{ attestation: { symmetricKey: { primaryKey: string } } }>().attestation.symmetricKey
      .primaryKey;
    // §5.5: base64(HMAC-SHA256(base64decode(groupKey), registrationId)).
    const symmetricKey = createHmac('sha256', Buffer.from(groupKey, 'base64'))
      .update('amqp-official-1')
      .digest('base64');

    const first = await register({ registrationId: 'amqp-official-1', symmetricKey });
    expect(first.error).toBeUndefined();
    expect(first.result).toMatchObject({
      registrationId: 'amqp-official-1',
      deviceId: 'amqp-official-1',
      assignedHub: 'localhost',
      status: 'assigned',
    });
    const generationOf = async () =>
      (await serviceCall(hub.info, 'GET', '/devices/amqp-official-1?api-version=2021-04-12', [200])).json<{
        generationId: string;
      }>().generationId;
    const generation = await generationOf();

    // Registered again: the same device identity, not a new one.
    const second = await register({ registrationId: 'amqp-official-1', symmetricKey });
    expect(second.result).toMatchObject({ deviceId: 'amqp-official-1', status: 'assigned' });
    expect(await generationOf()).toBe(generation);

    const wrong = await register({
      registrationId: 'amqp-official-2',
      symmetricKey: Buffer.alloc(32, 5).toString('base64'),
    });
    expect(wrong.result).toBeUndefined();
    // The hub fails SASL (outcome `auth`); azure-iot-amqp-base reports a connection refused at SASL so.
    expect(wrong.error?.name).toBe('NotConnectedError');
    await serviceCall(hub.info, 'GET', '/devices/amqp-official-2?api-version=2021-04-12', [404]);
  });

  it('registers through an individual X.509 enrollment by its TLS client certificate', async () => {
    const certificate = await createSelfSignedCertificate({ commonName: 'amqp-official-x509' });
    await serviceCall(hub.info, 'PUT', '/enrollments/amqp-official-x509?api-version=2021-10-01', [200], {
      body: {
        registrationId: 'amqp-official-x509',
        attestation: {
          type: 'x509',
          x509: { clientCertificates: { primary: { certificate: certificate.certificate } } },
        },
      },
    });
    const outcome = await register({
      registrationId: 'amqp-official-x509',
      cert: certificate.certificate,
      key: certificate.privateKey,
    });
    expect(outcome.error).toBeUndefined();
    expect(outcome.result).toMatchObject({ deviceId: 'amqp-official-x509', status: 'assigned' });
  });
});
