// A simulated sensor: sends temperature and humidity telemetry every few seconds with @fieldhub/device, and shows
// the three ways the cloud talks back to a device: a desired property (`telemetryIntervalSeconds`) changes the
// interval, the direct method `ping` is answered, and cloud-to-device messages are printed and completed.
//
//   DEVICE_CONNECTION_STRING="$(npx fieldhub device connection-string sensor-1)" \
//   FIELDHUB_CA=.fieldhub/tls/ca.pem node examples/telemetry/src/index.js [--count N] [--duration s] [--interval s]
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
let intervalSeconds = optionalNumber(values.interval, '--interval') ?? 1;

const connectionString = process.env.DEVICE_CONNECTION_STRING;
if (!connectionString) {
  console.error('Set DEVICE_CONNECTION_STRING, e.g. to the output of: npx fieldhub device connection-string sensor-1');
  process.exit(2);
}
const mqttPort = optionalNumber(process.env.MQTT_PORT, 'MQTT_PORT');

// Ctrl+C, SIGTERM, --duration and --count all end the run the same way: the client closes cleanly.
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

const client = await createDeviceClient({
  connectionString,
  transport: mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
  // The hub's own CA (self-hosted Fieldhub); leave FIELDHUB_CA unset for a hub with a public certificate.
  ...(process.env.FIELDHUB_CA ? { ca: readFileSync(process.env.FIELDHUB_CA) } : {}),
}).catch((error) => fail(`cannot connect: ${error.code ?? error.name}: ${error.message}`));
client.on('disconnected', (error) => console.log(`disconnected${error ? `: ${error.message}` : ''}`));
client.on('connected', () => console.log('connected again'));
console.log(`connected to ${client.identity.hostName} as ${client.identity.deviceId}`);

// Wakes the telemetry loop early when the interval changes.
let wake = new AbortController();
function setTelemetryInterval(seconds) {
  intervalSeconds = seconds;
  wake.abort();
  console.log(`telemetry interval is now ${seconds} s`);
}

// Desired properties: apply what is there now, then follow the changes.
const twin = await client.getTwin();
if (isInterval(twin.desired.telemetryIntervalSeconds)) setTelemetryInterval(twin.desired.telemetryIntervalSeconds);
await client.updateReportedProperties({ telemetryIntervalSeconds: intervalSeconds, sensor: 'simulated' });
const desired = (async () => {
  for await (const patch of client.desiredPropertyUpdates()) {
    console.log(`desired properties changed: ${JSON.stringify(patch)}`);
    if (isInterval(patch.telemetryIntervalSeconds)) {
      setTelemetryInterval(patch.telemetryIntervalSeconds);
      await client.updateReportedProperties({ telemetryIntervalSeconds: intervalSeconds });
    }
  }
})().catch((error) => console.error(`desired properties: ${error.message}`));

let sequence = 0;
let sent = 0;
client.onDirectMethod('ping', (request) => {
  console.log(`direct method ping: ${JSON.stringify(request.payload)}`);
  return { status: 200, payload: { pong: true, received: request.payload, sequence } };
});

const cloudToDevice = (async () => {
  for await (const message of client.cloudToDeviceMessages()) {
    const properties = Object.keys(message.properties).length > 0 ? ` ${JSON.stringify(message.properties)}` : '';
    console.log(`cloud-to-device message: ${message.text()}${properties}`);
    await message.complete();
  }
})().catch((error) => console.error(`cloud-to-device: ${error.message}`));

try {
  while (!stop.signal.aborted && (count === undefined || sequence < count)) {
    sequence += 1;
    const reading = {
      sequence,
      temperature: Math.round((21 + 3 * Math.sin(sequence / 8) + Math.random() * 0.4) * 10) / 10,
      humidity: Math.round(45 + 10 * Math.cos(sequence / 12) + Math.random() * 2),
    };
    await client.sendTelemetry({ body: reading, properties: { sensor: 'simulated' } }, { signal: stop.signal });
    sent += 1;
    console.log(`telemetry #${sequence} sent: ${JSON.stringify(reading)}`);
    if (count !== undefined && sequence >= count) break;
    wake = new AbortController();
    await sleep(intervalSeconds * 1000, undefined, { signal: AbortSignal.any([stop.signal, wake.signal]) }).catch(
      () => undefined,
    );
  }
} catch (error) {
  if (!stop.signal.aborted) throw error;
} finally {
  await client.close();
  await Promise.allSettled([desired, cloudToDevice]);
  console.log(`closed after ${sent} telemetry message(s)`);
}

function isInterval(value) {
  return typeof value === 'number' && value >= 0.1 && value <= 3600;
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
