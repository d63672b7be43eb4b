// A device that authenticates with an X.509 client certificate in the TLS handshake instead of a SAS key: the
// connection string says `x509=true` and carries no key; `x509: { cert, key }` hands the certificate to the
// client. The hub accepts it by thumbprint (self-signed devices) or by a chain to a verified CA (CN = device id).
//
//   node examples/x509-device/src/make-certificate.js meter-1
//   DEVICE_ID=meter-1 FIELDHUB_CA=.fieldhub/tls/ca.pem node examples/x509-device/src/index.js [--count N] [--duration s]
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createDeviceClient, mqtt } from '@fieldhub/device';

const { values } = parseArgs({
  options: {
    count: { type: 'string' },
    duration: { type: 'string' },
    interval: { type: 'string', default: '1' },
  },
});
const count = optionalNumber(values.count, '--count');
const duration = optionalNumber(values.duration, '--duration');
const intervalSeconds = optionalNumber(values.interval, '--interval') ?? 1;

// Either a full connection string (HostName=...;DeviceId=...;x509=true) or just the device id.
const deviceId =
  process.env.DEVICE_ID ?? /(?:^|;)DeviceId=([^;]+)/.exec(process.env.DEVICE_CONNECTION_STRING ?? '')?.[1];
if (!deviceId) {
  console.error('Set DEVICE_ID (or DEVICE_CONNECTION_STRING=HostName=...;DeviceId=...;x509=true)');
  process.exit(2);
}
const connectionString =
  process.env.DEVICE_CONNECTION_STRING ??
  `HostName=${process.env.HUB_HOST_NAME ?? 'localhost'};DeviceId=${deviceId};x509=true`;
const certFile = process.env.DEVICE_CERT ?? `${deviceId}.pem`;
const keyFile = process.env.DEVICE_KEY ?? `${deviceId}-key.pem`;
const mqttPort = optionalNumber(process.env.MQTT_PORT, 'MQTT_PORT');

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

const client = await createDeviceClient({
  connectionString,
  x509: { cert: readFileSync(certFile), key: readFileSync(keyFile) },
  transport: mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
  ...(process.env.FIELDHUB_CA ? { ca: readFileSync(process.env.FIELDHUB_CA) } : {}),
}).catch((error) => fail(`cannot connect: ${error.code ?? error.name}: ${error.message}`));
console.log(`connected to ${client.identity.hostName} as ${client.identity.deviceId} with the certificate ${certFile}`);
await client.updateReportedProperties({ authentication: 'x509', connectedAt: new Date().toISOString() });

let sent = 0;
try {
  while (!stop.signal.aborted && (count === undefined || sent < count)) {
    const reading = { energyKwh: Math.round((1200 + sent * 0.25 + Math.random() * 0.1) * 100) / 100 };
    await client.sendTelemetry({ body: reading }, { signal: stop.signal });
    sent += 1;
    console.log(`telemetry #${sent} sent: ${JSON.stringify(reading)}`);
    if (count !== undefined && sent >= count) break;
    await sleep(intervalSeconds * 1000, undefined, { signal: stop.signal }).catch(() => undefined);
  }
} catch (error) {
  if (!stop.signal.aborted) throw error;
} finally {
  await client.close();
  console.log(`closed after ${sent} telemetry message(s)`);
}

function optionalNumber(text, name) {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) {
    console.error(`${name} must be a non-negative number, not ${text}`);
    process.exit(2);
  }
  return value;
}

function fail(message) {
  console.error(message);
  process.exit(1);
}
