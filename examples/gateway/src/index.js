// A Raspberry Pi-style gateway: one process that hosts several leaf devices, each with its own identity in the
// hub and its own DeviceClient (its own MQTT connection, twin, methods). The leaves are listed in a config file;
// their sensors are simulated here, where a real gateway would read I2C, GPIO or a serial bus.
//
//   node examples/gateway/src/index.js --config gateway.config.json [--count N] [--duration s]
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createDeviceClient, mqtt } from '@fieldhub/device';

/** Simulated sensors: each returns one reading. */
const sensors = {
  temperature: (t) => ({ temperature: round(19 + 4 * Math.sin(t / 30) + Math.random() * 0.3, 1) }),
  humidity: (t) => ({ humidity: round(55 + 15 * Math.cos(t / 40) + Math.random(), 0) }),
  'soil-moisture': (t) => ({ moisture: round(0.42 - ((t / 600) % 0.2) + Math.random() * 0.01, 3) }),
  light: (t) => ({ lux: Math.max(0, round(800 * Math.sin(t / 120) + Math.random() * 20, 0)) }),
};
const startedAt = Date.now();

const { values } = parseArgs({
  options: {
    config: { type: 'string', default: process.env.GATEWAY_CONFIG ?? 'gateway.config.json' },
    count: { type: 'string' },
    duration: { type: 'string' },
  },
});
const count = optionalNumber(values.count, '--count');
const duration = optionalNumber(values.duration, '--duration');
const configPath = resolve(values.config);
const config = readConfig(configPath);

// Environment variables win over the config file, so one file serves a lab hub and the field.
const caFile = process.env.FIELDHUB_CA ?? (config.ca ? resolve(dirname(configPath), config.ca) : undefined);
const ca = caFile ? readFileSync(caFile) : undefined;
const mqttPort = optionalNumber(process.env.MQTT_PORT, 'MQTT_PORT') ?? config.mqttPort;

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

console.log(`gateway ${hostname()}: starting ${config.leaves.length} leaf device(s) from ${configPath}`);
const results = await Promise.allSettled(config.leaves.map((leaf) => runLeaf(leaf)));
const failed = results.filter((result) => result.status === 'rejected');
for (const [index, result] of results.entries()) {
  if (result.status === 'rejected')
    console.error(`[${config.leaves[index].deviceId}] failed: ${result.reason?.message}`);
}
console.log(`gateway stopped: ${results.length - failed.length} leaf device(s) ran, ${failed.length} failed`);
if (failed.length > 0) process.exitCode = 1;

/** Runs one leaf until the gateway stops (or it has sent --count readings). */
async function runLeaf(leaf) {
  const log = (line) => console.log(`[${leaf.deviceId}] ${line}`);
  const read = sensors[leaf.sensor];
  const client = await createDeviceClient({
    connectionString: leaf.connectionString,
    transport: mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
    ...(ca ? { ca } : {}),
  });
  try {
    let intervalSeconds = leaf.intervalSeconds ?? 5;
    let wake = new AbortController();
    client.on('disconnected', () => log('disconnected, reconnecting'));
    client.on('connected', () => log('connected again'));
    log(`connected (${leaf.sensor}, every ${intervalSeconds} s)`);

    // The cloud may change a leaf's interval through its twin, and read its sensor on demand.
    await client.updateReportedProperties({ gateway: hostname(), sensor: leaf.sensor, intervalSeconds });
    const desired = (async () => {
      for await (const patch of client.desiredPropertyUpdates()) {
        if (typeof patch.intervalSeconds === 'number' && patch.intervalSeconds >= 0.1) {
          intervalSeconds = patch.intervalSeconds;
          wake.abort();
          log(`interval is now ${intervalSeconds} s`);
          await client.updateReportedProperties({ intervalSeconds });
        }
      }
    })().catch((error) => log(`desired properties: ${error.message}`));
    client.onDirectMethod('read', () => ({ status: 200, payload: { sensor: leaf.sensor, ...read(elapsed()) } }));

    let sent = 0;
    try {
      while (!stop.signal.aborted && (count === undefined || sent < count)) {
        const reading = read(elapsed());
        await client.sendTelemetry(
          { body: reading, properties: { sensor: leaf.sensor, gateway: hostname() } },
          { signal: stop.signal },
        );
        sent += 1;
        log(`telemetry #${sent}: ${JSON.stringify(reading)}`);
        if (count !== undefined && sent >= count) break;
        wake = new AbortController();
        await sleep(intervalSeconds * 1000, undefined, { signal: AbortSignal.any([stop.signal, wake.signal]) }).catch(
          () => undefined,
        );
      }
    } catch (error) {
      if (!stop.signal.aborted) throw error;
    }
    await client.close();
    await desired;
    log(`closed after ${sent} telemetry message(s)`);
  } finally {
    await client.close();
  }
}

function readConfig(path) {
  let parsed;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    console.error(`cannot read the gateway config ${path}: ${error.message}`);
    process.exit(2);
  }
  const leaves = Array.isArray(parsed?.leaves) ? parsed.leaves : [];
  const problems = [];
  if (leaves.length === 0) problems.push('"leaves" must list at least one leaf device');
  for (const [index, leaf] of leaves.entries()) {
    if (typeof leaf?.connectionString !== 'string') problems.push(`leaves[${index}].connectionString is missing`);
    if (!(leaf?.sensor in sensors))
      problems.push(`leaves[${index}].sensor must be one of ${Object.keys(sensors).join(', ')}`);
    leaf.deviceId ??= /(?:^|;)DeviceId=([^;]+)/.exec(leaf.connectionString ?? '')?.[1] ?? `leaves[${index}]`;
  }
  if (problems.length > 0) {
    console.error(`${path}:\n  ${problems.join('\n  ')}`);
    process.exit(2);
  }
  return { ...parsed, leaves };
}

function elapsed() {
  return (Date.now() - startedAt) / 1000;
}

function round(value, digits) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
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
