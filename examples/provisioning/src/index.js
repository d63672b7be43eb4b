// A device that does not know its hub: it registers with the Device Provisioning Service, learns the hub and the
// device id it was assigned, connects there and sends telemetry. Credentials, one of:
//   DPS_GROUP_KEY   the enrollment group's key: the device's own key is derived from it (deriveDeviceKey)
//   DEVICE_KEY      an individual enrollment's symmetric key
//   DEVICE_CERT + DEVICE_CERT_KEY   an X.509 certificate and key (PEM files); the registration id is its CN
//
//   DPS_ID_SCOPE=... REGISTRATION_ID=sensor-7 DPS_GROUP_KEY=... FIELDHUB_CA=.fieldhub/tls/ca.pem \
//     node examples/provisioning/src/index.js [--transport mqtt|https] [--count N]
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createDeviceClient, mqtt } from '@fieldhub/device';
import { deriveDeviceKey, deviceConnectionString, register } from '@fieldhub/provisioning';

const { values } = parseArgs({
  options: {
    transport: { type: 'string', default: 'mqtt' },
    count: { type: 'string', default: '3' },
    interval: { type: 'string', default: '1' },
  },
});
if (values.transport !== 'mqtt' && values.transport !== 'https') fail('--transport must be mqtt or https');
const count = Number(values.count);
const intervalSeconds = Number(values.interval);
if (!Number.isInteger(count) || count < 0) fail('--count must be a whole number');

const env = process.env;
const idScope = env.DPS_ID_SCOPE ?? fail('Set DPS_ID_SCOPE (fieldhub dps info)');
const ca = env.FIELDHUB_CA ? readFileSync(env.FIELDHUB_CA) : undefined;
// A local hub serves DPS on its own MQTT and HTTPS ports; Azure's default is the global endpoint.
const provisioningHost =
  env.PROVISIONING_HOST ??
  (env.DPS_HOST
    ? `${env.DPS_HOST}:${values.transport === 'mqtt' ? (env.MQTT_PORT ?? 8883) : (env.HTTPS_PORT ?? 443)}`
    : undefined);

let credentials;
const registrationId = env.REGISTRATION_ID;
if (env.DEVICE_CERT) {
  const x509 = {
    cert: readFileSync(env.DEVICE_CERT),
    key: readFileSync(env.DEVICE_CERT_KEY ?? fail('Set DEVICE_CERT_KEY')),
  };
  credentials = { register: { x509 }, hub: { x509: true }, client: { x509 } };
} else {
  if (!registrationId) fail('Set REGISTRATION_ID');
  const symmetricKey = env.DPS_GROUP_KEY
    ? deriveDeviceKey(env.DPS_GROUP_KEY, registrationId)
    : (env.DEVICE_KEY ?? fail('Set DPS_GROUP_KEY, DEVICE_KEY or DEVICE_CERT'));
  credentials = { register: { symmetricKey }, hub: { symmetricKey }, client: {} };
}

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());

const result = await register({
  idScope,
  ...(registrationId ? { registrationId } : {}),
  ...credentials.register,
  transport: values.transport,
  ...(provisioningHost ? { provisioningHost } : {}),
  ...(ca ? { ca } : {}),
  payload: { example: 'provisioning' },
  signal: stop.signal,
}).catch((error) => fail(`registration failed: ${error.code ?? error.name}: ${error.message}`));
console.log(
  `registered ${result.registrationId} over ${values.transport}: assigned to ${result.assignedHub} as ${result.deviceId} (${result.substatus ?? 'assigned'})`,
);

const mqttPort = env.MQTT_PORT ? Number(env.MQTT_PORT) : undefined;
const client = await createDeviceClient({
  connectionString: deviceConnectionString(result, credentials.hub),
  ...credentials.client,
  transport: mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
  ...(ca ? { ca } : {}),
}).catch((error) => fail(`cannot connect to ${result.assignedHub}: ${error.code ?? error.name}: ${error.message}`));
console.log(`connected to ${client.identity.hostName} as ${client.identity.deviceId}`);

let sent = 0;
try {
  while (sent < count && !stop.signal.aborted) {
    const reading = { sequence: sent + 1, temperature: Math.round((20 + Math.random() * 5) * 10) / 10 };
    await client.sendTelemetry({ body: reading }, { signal: stop.signal });
    sent += 1;
    console.log(`telemetry #${sent} sent: ${JSON.stringify(reading)}`);
    if (sent < count) await sleep(intervalSeconds * 1000, undefined, { signal: stop.signal }).catch(() => undefined);
  }
} finally {
  await client.close();
  console.log(`closed after ${sent} telemetry message(s)`);
}

function fail(message) {
  console.error(message);
  process.exit(1);
}
