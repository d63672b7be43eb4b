// A device that receives cloud-to-device messages: each is printed (body, application properties, message id,
// delivery count) and then completed, which tells the hub it was processed (and, when the sender asked for it,
// produces positive feedback). Over MQTT a message left uncompleted is delivered again after a reconnect.
//
//   DEVICE_CONNECTION_STRING="$(npx fieldhub device connection-string display-1)" \
//   FIELDHUB_CA=.fieldhub/tls/ca.pem node examples/cloud-to-device/src/index.js [--count N] [--duration s]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createDeviceClient, mqtt } from '@fieldhub/device';

const { values } = parseArgs({ options: { count: { type: 'string' }, duration: { type: 'string' } } });
const count = optionalNumber(values.count, '--count');
const duration = optionalNumber(values.duration, '--duration');

const connectionString = process.env.DEVICE_CONNECTION_STRING;
if (!connectionString) {
  console.error('Set DEVICE_CONNECTION_STRING, e.g. to the output of: npx fieldhub device connection-string display-1');
  process.exit(2);
}
const mqttPort = optionalNumber(process.env.MQTT_PORT, 'MQTT_PORT');

// Ctrl+C, SIGTERM and --duration abort the wait for the next message; --count ends the loop.
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

const client = await createDeviceClient({
  connectionString,
  transport: mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
  ...(process.env.FIELDHUB_CA ? { ca: readFileSync(process.env.FIELDHUB_CA) } : {}),
}).catch((error) => fail(`cannot connect: ${error.code ?? error.name}: ${error.message}`));
console.log(`connected to ${client.identity.hostName} as ${client.identity.deviceId}; waiting for messages`);

let received = 0;
try {
  for await (const message of client.cloudToDeviceMessages({ signal: stop.signal })) {
    received += 1;
    console.log(`cloud-to-device message #${received}: ${describe(message)}`);
    await message.complete();
    if (count !== undefined && received >= count) break;
  }
} catch (error) {
  if (!stop.signal.aborted) throw error;
} finally {
  await client.close();
  console.log(`closed after ${received} message(s)`);
}

function describe(message) {
  const parts = [message.text()];
  if (Object.keys(message.properties).length > 0) parts.push(`properties ${JSON.stringify(message.properties)}`);
  if (message.messageId !== undefined) parts.push(`messageId ${message.messageId}`);
  if (message.deliveryCount !== undefined && message.deliveryCount > 0) parts.push(`delivery ${message.deliveryCount}`);
  return parts.join(', ');
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
