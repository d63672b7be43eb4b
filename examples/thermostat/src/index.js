// A simulated thermostat: the cloud sets the desired property `targetTemperature`, the thermostat acknowledges it
// in its reported properties (IoT Plug and Play's writable-property convention: value, ackCode, ackVersion,
// ackDescription), heats or cools toward it, and sends its temperature as telemetry.
//
//   DEVICE_CONNECTION_STRING="$(npx fieldhub device connection-string thermostat-1)" \
//   FIELDHUB_CA=.fieldhub/tls/ca.pem node examples/thermostat/src/index.js [--count N] [--duration s] [--interval s]
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createDeviceClient, mqtt } from '@fieldhub/device';

const { values } = parseArgs({
  options: {
    count: { type: 'string' },
    duration: { type: 'string' },
    interval: { type: 'string', default: '2' },
  },
});
const count = optionalNumber(values.count, '--count');
const duration = optionalNumber(values.duration, '--duration');
const intervalSeconds = optionalNumber(values.interval, '--interval') ?? 2;

const connectionString = process.env.DEVICE_CONNECTION_STRING;
if (!connectionString) {
  console.error(
    'Set DEVICE_CONNECTION_STRING, e.g. to the output of: npx fieldhub device connection-string thermostat-1',
  );
  process.exit(2);
}
const mqttPort = optionalNumber(process.env.MQTT_PORT, 'MQTT_PORT');

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

const client = await createDeviceClient({
  connectionString,
  transport: mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
  ...(process.env.FIELDHUB_CA ? { ca: readFileSync(process.env.FIELDHUB_CA) } : {}),
}).catch((error) => fail(`cannot connect: ${error.code ?? error.name}: ${error.message}`));
console.log(`connected to ${client.identity.hostName} as ${client.identity.deviceId}`);

const thermostat = { temperature: 18, targetTemperature: 21 };

/** Applies a desired target and answers it in the reported properties (accepted or refused, with the version). */
async function applyTarget(value, version) {
  if (typeof value !== 'number' || value < 5 || value > 35) {
    console.log(`refused targetTemperature ${JSON.stringify(value)} (desired version ${version}): not 5..35`);
    await client.updateReportedProperties({
      targetTemperature: {
        value: thermostat.targetTemperature,
        ackCode: 400,
        ackVersion: version,
        ackDescription: 'targetTemperature must be a number from 5 to 35',
      },
    });
    return;
  }
  thermostat.targetTemperature = value;
  console.log(`target temperature is now ${value} °C (desired version ${version})`);
  await client.updateReportedProperties({
    targetTemperature: { value, ackCode: 200, ackVersion: version, ackDescription: 'applied' },
  });
}

// The desired properties as they are now (set while the thermostat was off), then every change.
const twin = await client.getTwin();
await client.updateReportedProperties({ firmwareVersion: '1.2.0', model: 'example-thermostat' });
if (twin.desired.targetTemperature !== undefined) {
  await applyTarget(twin.desired.targetTemperature, twin.desired.$version);
} else {
  await client.updateReportedProperties({ targetTemperature: { value: thermostat.targetTemperature, ackCode: 200 } });
}
const desired = (async () => {
  for await (const patch of client.desiredPropertyUpdates()) {
    if ('targetTemperature' in patch) await applyTarget(patch.targetTemperature, patch.$version);
  }
})().catch((error) => console.error(`desired properties: ${error.message}`));

let sent = 0;
try {
  while (!stop.signal.aborted && (count === undefined || sent < count)) {
    // Half a degree per interval toward the target.
    const difference = thermostat.targetTemperature - thermostat.temperature;
    const heating = difference > 0.05;
    const cooling = difference < -0.05;
    thermostat.temperature =
      Math.round((thermostat.temperature + Math.sign(difference) * Math.min(0.5, Math.abs(difference))) * 10) / 10;
    const reading = {
      temperature: thermostat.temperature,
      targetTemperature: thermostat.targetTemperature,
      mode: heating ? 'heating' : cooling ? 'cooling' : 'idle',
    };
    await client.sendTelemetry({ body: reading }, { signal: stop.signal });
    sent += 1;
    console.log(`telemetry #${sent}: ${JSON.stringify(reading)}`);
    if (count !== undefined && sent >= count) break;
    await sleep(intervalSeconds * 1000, undefined, { signal: stop.signal }).catch(() => undefined);
  }
} catch (error) {
  if (!stop.signal.aborted) throw error;
} finally {
  await client.close();
  await desired;
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
