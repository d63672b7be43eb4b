// A device that answers direct methods: `getStatus`, `blink` (payload `{ "times": 1..10 }`) and `reboot`
// (payload `{ "delaySeconds": 0..60 }`, simulated). A handler returns `{ status, payload }`; the SDK answers 501
// for a method with no handler and 500 when a handler throws, so the caller never waits for a timeout.
//
//   DEVICE_CONNECTION_STRING="$(npx fieldhub device connection-string lamp-1)" \
//   FIELDHUB_CA=.fieldhub/tls/ca.pem node examples/direct-methods/src/index.js [--count N] [--duration s]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createDeviceClient, mqtt } from '@fieldhub/device';

const { values } = parseArgs({ options: { count: { type: 'string' }, duration: { type: 'string' } } });
const count = optionalNumber(values.count, '--count');
const duration = optionalNumber(values.duration, '--duration');

const connectionString = process.env.DEVICE_CONNECTION_STRING;
if (!connectionString) {
  console.error('Set DEVICE_CONNECTION_STRING, e.g. to the output of: npx fieldhub device connection-string lamp-1');
  process.exit(2);
}
const mqttPort = optionalNumber(process.env.MQTT_PORT, 'MQTT_PORT');

// The run ends on Ctrl+C, SIGTERM, after --duration seconds or after --count answered calls.
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

const client = await createDeviceClient({
  connectionString,
  transport: mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
  ...(process.env.FIELDHUB_CA ? { ca: readFileSync(process.env.FIELDHUB_CA) } : {}),
}).catch((error) => fail(`cannot connect: ${error.code ?? error.name}: ${error.message}`));

const startedAt = Date.now();
const lamp = { on: false, blinks: 0, reboots: 0 };
let answered = 0;

/** Wraps a handler to log the call and count it toward --count. */
function handle(name, handler) {
  client.onDirectMethod(name, async (request) => {
    const response = await handler(request.payload ?? {});
    answered += 1;
    console.log(
      `direct method ${name} ${JSON.stringify(request.payload)} -> ${response.status} ${JSON.stringify(response.payload)}`,
    );
    // The SDK sends the answer once the handler returns: give it a moment before closing.
    if (count !== undefined && answered >= count) setTimeout(() => stop.abort(), 500);
    return response;
  });
}

handle('getStatus', () => ({
  status: 200,
  payload: {
    on: lamp.on,
    blinks: lamp.blinks,
    reboots: lamp.reboots,
    uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
  },
}));

handle('blink', async (payload) => {
  const times = payload.times ?? 1;
  if (!Number.isInteger(times) || times < 1 || times > 10) {
    return { status: 400, payload: { error: 'times must be an integer from 1 to 10' } };
  }
  for (let index = 0; index < times; index += 1) {
    lamp.on = !lamp.on;
    lamp.blinks += 1;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { status: 200, payload: { blinked: times } };
});

handle('reboot', (payload) => {
  const delaySeconds = payload.delaySeconds ?? 0;
  if (typeof delaySeconds !== 'number' || delaySeconds < 0 || delaySeconds > 60) {
    return { status: 400, payload: { error: 'delaySeconds must be a number from 0 to 60' } };
  }
  // A real device would answer first and restart afterwards; here the reboot is recorded in the twin.
  lamp.reboots += 1;
  const rebootAt = new Date(Date.now() + delaySeconds * 1000).toISOString();
  client
    .updateReportedProperties({ lastReboot: rebootAt })
    .catch((error) => console.error(`reported: ${error.message}`));
  return { status: 200, payload: { rebootAt } };
});

console.log(
  `connected to ${client.identity.hostName} as ${client.identity.deviceId}; answering getStatus, blink, reboot`,
);
await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
await client.close();
console.log(`closed after ${answered} direct method call(s)`);

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
