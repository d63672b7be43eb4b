import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CertificateWithKey,
  createRootCa,
  createSelfSignedCertificate,
  issueDeviceCertificate,
} from '@fieldhub/auth';
import { deriveDeviceKey } from '@fieldhub/protocol';
import { Client as DeviceClient, Message } from 'azure-iot-device';
import { Mqtt as DeviceMqtt } from 'azure-iot-device-mqtt';
import { ProvisioningDeviceClient, type RegistrationResult } from 'azure-iot-provisioning-device';
import { Http as ProvisioningHttp } from 'azure-iot-provisioning-device-http';
import { Mqtt as ProvisioningMqtt } from 'azure-iot-provisioning-device-mqtt';
import { SymmetricKeySecurityClient } from 'azure-iot-security-symmetric-key';
import { X509Security } from 'azure-iot-security-x509';
import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBuiltInEndpoint } from '../support/built-in-endpoint';
import { freePort } from '../support/free-port';
import { type HubJson, type HubProcess, startHubProcess } from '../support/hub-process';

// The official `azure-iot-provisioning-device` with its MQTT and HTTP transports, unchanged, against the hub as a
// child process; enrollments made with the `fieldhub dps` CLI, as an operator would. Http dials
// https://<provisioningHost>:443 (no port can be given), hence port-443/; Mqtt dials mqtts://<provisioningHost>
// verbatim, so its provisioningHost carries the MQTT port. After registering, the official `azure-iot-device`
// client connects to the assigned hub (`assignedHub` is the host name; the MQTT port is added, as for any device
// connection string here) and sends telemetry read back from the built-in endpoint. The hub's CA is trusted
// through NODE_EXTRA_CA_CERTS (global-setup.ts).

/** hub.json with the provisioning service's section. */
interface HubJsonWithDps extends HubJson {
  dps: {
    host: string;
    idScope: string;
    ports: { https: number; mqtt: number | null };
    serviceConnectionString: string;
  };
}

type TransportName = 'Mqtt' | 'Http';

const cli = new URL('../../../../packages/cli/bin/fieldhub.js', import.meta.url).pathname;

let hub: HubProcess;
let info: HubJsonWithDps;
let mqttPort: number;
let registry: Registry;
let files: string;
let fleet: CertificateWithKey;
let shady: CertificateWithKey;
let groupKey: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `fieldhub` CLI against the hub's data dir. */
function fieldhub(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args, '--data-dir', hub.dataDir],
      { timeout: 30_000, env: { ...process.env, NO_COLOR: '1' } },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

async function fieldhubOk(...args: string[]): Promise<string> {
  const result = await fieldhub(...args);
  if (result.code !== 0) throw new Error(`fieldhub ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

function file(name: string, text: string): string {
  const path = join(files, name);
  writeFileSync(path, text);
  return path;
}

const id = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** The provisioning host each official transport is given. */
function provisioningHost(transport: TransportName): string {
  return transport === 'Mqtt' ? `localhost:${mqttPort}` : 'localhost';
}

function provisioningTransport(transport: TransportName): ProvisioningMqtt | ProvisioningHttp {
  return transport === 'Mqtt' ? new ProvisioningMqtt() : new ProvisioningHttp();
}

/** `register()` through the official client; the registration state it resolves with. */
async function registerWithKey(
  transport: TransportName,
  registrationId: string,
  key: string,
): Promise<RegistrationResult> {
  const client = ProvisioningDeviceClient.create(
    provisioningHost(transport),
    info.dps.idScope,
    provisioningTransport(transport),
    new SymmetricKeySecurityClient(registrationId, key),
  );
  return (await client.register()) as RegistrationResult;
}

async function registerWithCertificate(
  transport: TransportName,
  registrationId: string,
  certificate: { cert: string; key: string },
): Promise<RegistrationResult> {
  const client = ProvisioningDeviceClient.create(
    provisioningHost(transport),
    info.dps.idScope,
    provisioningTransport(transport),
    new X509Security(registrationId, certificate),
  );
  return (await client.register()) as RegistrationResult;
}

/** The error a registration ends with (it must end with one). */
async function registrationError(registration: Promise<RegistrationResult>): Promise<Error> {
  const outcome = await registration.then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );
  if ('result' in outcome) throw new Error(`registered unexpectedly: ${JSON.stringify(outcome.result)}`);
  expect(outcome.error).toBeInstanceOf(Error);
  return outcome.error as Error;
}

/**
 * An authentication refusal as each official transport reports it: over MQTT the CONNACK refusal itself (MQTT.js's
 * `Connection refused: Not authorized`, code 5, passed through untranslated); over HTTPS `UnauthorizedError` with
 * the 401 response and DPS's error body (401002). Neither retries.
 */
function expectAuthenticationRefused(transport: TransportName, error: Error): void {
  const details = error as Error & { code?: unknown; response?: { statusCode?: number }; responseBody?: string };
  if (transport === 'Mqtt') {
    expect(details.message).toMatch(/Not authorized/);
    expect(details.code).toBe(5);
  } else {
    expect(details.name).toBe('UnauthorizedError');
    expect(details.response?.statusCode).toBe(401);
    expect(JSON.parse(details.responseBody ?? '{}')).toMatchObject({ errorCode: 401002 });
  }
}

/** Nothing was assigned: no device identity in the hub, no assigned registration record. */
async function expectNothingAssigned(registrationId: string): Promise<void> {
  await expect(registry.get(registrationId)).rejects.toMatchObject({ name: 'DeviceNotFoundError' });
  const record = await fieldhub('dps', 'registration', 'show', registrationId, '--json');
  if (record.code === 0) expect((JSON.parse(record.stdout) as { status: string }).status).not.toBe('assigned');
  else expect(record.stderr).toContain('404');
}

/** The official device client on the assigned hub sends one message; resolves when the endpoint holds it. */
async function sendTelemetry(connectionString: string, x509?: { cert: string; key: string }): Promise<string> {
  const client = DeviceClient.fromConnectionString(connectionString, DeviceMqtt);
  if (x509) await client.setOptions(x509);
  const messageId = `dps-${randomUUID()}`;
  try {
    await client.open();
    const message = new Message(JSON.stringify({ provisioned: true }));
    message.messageId = messageId;
    await client.sendEvent(message);
  } finally {
    await client.close().catch(() => {});
  }
  return messageId;
}

async function expectTelemetry(deviceId: string, messageId: string): Promise<void> {
  const events = await readBuiltInEndpoint(info);
  const event = events.find((candidate) => candidate.messageId === messageId);
  expect(event, `telemetry ${messageId} in the built-in endpoint`).toBeDefined();
  expect(event?.deviceId).toBe(deviceId);
  const body = Buffer.from(event?.body ?? '', event?.bodyEncoding === 'base64' ? 'base64' : 'utf8').toString('utf8');
  expect(JSON.parse(body)).toEqual({ provisioned: true });
}

beforeAll(async () => {
  mqttPort = await freePort();
  files = mkdtempSync(join(tmpdir(), 'fieldhub-dps-interop-'));
  [hub, fleet, shady] = await Promise.all([
    startHubProcess({ mqttPort }),
    createRootCa({ commonName: 'DPS interop fleet' }),
    createRootCa({ commonName: 'DPS interop unverified' }),
  ]);
  info = hub.info as HubJsonWithDps;
  expect(info.dps, 'hub.json must carry the provisioning service').toBeTruthy();
  registry = Registry.fromConnectionString(info.serviceConnectionString);

  // One symmetric-key group for every transport, and a group on a CA the hub holds but has not verified.
  const group = JSON.parse(await fieldhubOk('dps', 'enrollment', 'create', '--group', 'interop-sk', '--json')) as {
    attestation: { symmetricKey: { primaryKey: string } };
  };
  groupKey = group.attestation.symmetricKey.primaryKey;
  await fieldhubOk('ca', 'add', 'shady', file('shady.pem', shady.certificate));
  await fieldhubOk('dps', 'enrollment', 'create', '--group', 'interop-unverified', '--ca-name', 'shady');
  await fieldhubOk('ca', 'add', 'fleet', file('fleet.pem', fleet.certificate), '--verified');
  await fieldhubOk('dps', 'enrollment', 'create', '--group', 'interop-fleet', '--ca-name', 'fleet');
}, 120_000);

afterAll(async () => {
  await hub?.dispose();
  if (files) rmSync(files, { recursive: true, force: true });
});

describe.each<TransportName>(['Mqtt', 'Http'])('official provisioning client over %s', (transport) => {
  it('registers through a symmetric-key group with its derived key; the device then sends telemetry', async () => {
    const registrationId = id(`sk-${transport.toLowerCase()}`);
    const derived = deriveDeviceKey(groupKey, registrationId);
    // The CLI derives the same key from the group the hub holds.
    expect(
      (await fieldhubOk('dps', 'derive-key', '--group', 'interop-sk', '--registration-id', registrationId)).trim(),
    ).toBe(derived);

    const result = await registerWithKey(transport, registrationId, derived);
    expect(result).toMatchObject({
      registrationId,
      assignedHub: 'localhost',
      deviceId: registrationId,
      status: 'assigned',
      substatus: 'initialAssignment',
    });

    const messageId = await sendTelemetry(
      `HostName=${result.assignedHub}:${mqttPort};DeviceId=${result.deviceId};SharedAccessKey=${derived}`,
    );
    await expectTelemetry(registrationId, messageId);

    // Registered again: the same identity (same device id and generation), and its key still connects.
    const before = (await registry.get(registrationId)).responseBody;
    const again = await registerWithKey(transport, registrationId, derived);
    expect(again).toMatchObject({ deviceId: registrationId, assignedHub: 'localhost', status: 'assigned' });
    const after = (await registry.get(registrationId)).responseBody;
    expect(after.generationId).toBe(before.generationId);
    const secondMessage = await sendTelemetry(
      `HostName=${again.assignedHub}:${mqttPort};DeviceId=${again.deviceId};SharedAccessKey=${derived}`,
    );
    await expectTelemetry(registrationId, secondMessage);
  }, 60_000);

  it('registers through an individual X.509 enrollment; the device then sends telemetry with its certificate', async () => {
    const registrationId = id(`x509-${transport.toLowerCase()}`);
    const device = await createSelfSignedCertificate({ commonName: registrationId });
    await fieldhubOk(
      'dps',
      'enrollment',
      'create',
      '--registration-id',
      registrationId,
      '--certificate',
      file(`${registrationId}.pem`, device.certificate),
    );
    const x509 = { cert: device.certificate, key: device.privateKey };

    const result = await registerWithCertificate(transport, registrationId, x509);
    expect(result).toMatchObject({
      registrationId,
      assignedHub: 'localhost',
      deviceId: registrationId,
      status: 'assigned',
    });

    const messageId = await sendTelemetry(
      `HostName=${result.assignedHub}:${mqttPort};DeviceId=${result.deviceId};x509=true`,
      x509,
    );
    await expectTelemetry(registrationId, messageId);
  }, 60_000);

  it('registers a CA-issued certificate through an X.509 group on a verified CA', async () => {
    const registrationId = id(`ca-${transport.toLowerCase()}`);
    const device = await issueDeviceCertificate({ issuer: fleet, deviceId: registrationId });
    const x509 = { cert: `${device.certificate}${fleet.certificate}`, key: device.privateKey };
    const result = await registerWithCertificate(transport, registrationId, x509);
    expect(result).toMatchObject({ registrationId, deviceId: registrationId, status: 'assigned' });
    const messageId = await sendTelemetry(
      `HostName=${result.assignedHub}:${mqttPort};DeviceId=${result.deviceId};x509=true`,
      x509,
    );
    await expectTelemetry(registrationId, messageId);
  }, 60_000);

  it('refuses a wrong key: the registration ends in an error, nothing is assigned', async () => {
    const registrationId = id(`wrong-${transport.toLowerCase()}`);
    const wrongKey = deriveDeviceKey(randomBytes(64).toString('base64'), registrationId);
    const error = await registrationError(registerWithKey(transport, registrationId, wrongKey));
    expectAuthenticationRefused(transport, error);
    await expectNothingAssigned(registrationId);
  }, 60_000);

  it('refuses a device of a disabled enrollment: the registration ends in an error, nothing is assigned', async () => {
    const registrationId = id(`disabled-${transport.toLowerCase()}`);
    const created = JSON.parse(
      await fieldhubOk('dps', 'enrollment', 'create', '--registration-id', registrationId, '--disabled', '--json'),
    ) as { attestation: { symmetricKey: { primaryKey: string } } };
    const error = await registrationError(
      registerWithKey(transport, registrationId, created.attestation.symmetricKey.primaryKey),
    );
    // The operation completes with status `disabled` (as Azure's does); the client's state machine knows no such
    // status and ends with `SyntaxError: status is disabled`, the operation result attached.
    expect(error.name).toBe('SyntaxError');
    expect(error.message).toBe('status is disabled');
    expect((error as Error & { result?: unknown }).result).toMatchObject({
      status: 'disabled',
      registrationState: { registrationId, status: 'disabled' },
    });
    await expectNothingAssigned(registrationId);
  }, 60_000);

  it('refuses a certificate issued by a CA the hub holds unverified: an error, nothing is assigned', async () => {
    const registrationId = id(`unverified-${transport.toLowerCase()}`);
    const device = await issueDeviceCertificate({ issuer: shady, deviceId: registrationId });
    const x509 = { cert: `${device.certificate}${shady.certificate}`, key: device.privateKey };
    const error = await registrationError(registerWithCertificate(transport, registrationId, x509));
    expectAuthenticationRefused(transport, error);
    await expectNothingAssigned(registrationId);
  }, 60_000);
});
