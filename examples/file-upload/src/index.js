// A device that uploads a file (a camera's snapshot, a day of logs) with client.uploadFile(): the file is streamed
// from disk in blocks, progress is printed as the store acknowledges them, and the hub then notifies the service
// (`npx fieldhub files notifications`). Uploads go over HTTPS whichever transport the device uses for the rest:
// MQTT by default here, `--transport https` for a device on HTTPS only. Ctrl+C aborts the upload; the hub is told.
//
//   DEVICE_CONNECTION_STRING="$(npx fieldhub device connection-string camera-1)" \
//   FIELDHUB_CA=.fieldhub/tls/ca.pem node examples/file-upload/src/index.js ./snapshot.jpg [--name photos/x.jpg]
import { createReadStream, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { createDeviceClient, http, httpFileUpload, mqtt } from '@fieldhub/device';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { name: { type: 'string' }, transport: { type: 'string', default: 'mqtt' } },
});
const connectionString = process.env.DEVICE_CONNECTION_STRING;
if (!connectionString) {
  console.error('Set DEVICE_CONNECTION_STRING, e.g. to the output of: npx fieldhub device connection-string camera-1');
  process.exit(2);
}
const [path] = positionals;
if (path === undefined || positionals.length > 1) {
  console.error('Usage: node examples/file-upload/src/index.js <file> [--name <blob name>] [--transport mqtt|https]');
  process.exit(2);
}
if (values.transport !== 'mqtt' && values.transport !== 'https') {
  console.error(`--transport must be mqtt or https, not ${values.transport}`);
  process.exit(2);
}
const mqttPort = optionalPort(process.env.MQTT_PORT, 'MQTT_PORT');
// The hub's HTTPS port when it is not 443 (a hub that fell back to 8443): for uploads, and for --transport https.
const httpsPort = optionalPort(process.env.HTTPS_PORT, 'HTTPS_PORT');
const blobName = values.name ?? basename(path);

const size = await stat(path).then(
  (stats) => stats.size,
  (error) => fail(`cannot read ${path}: ${error.message}`),
);

// Ctrl+C and SIGTERM abort the upload; the client tells the hub, which frees the upload slot.
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());

const port = httpsPort === undefined ? {} : { port: httpsPort };
const client = await createDeviceClient({
  connectionString,
  transport: values.transport === 'https' ? http(port) : mqtt(mqttPort === undefined ? {} : { port: mqttPort }),
  fileUpload: httpFileUpload(port),
  ...(process.env.FIELDHUB_CA ? { ca: readFileSync(process.env.FIELDHUB_CA) } : {}),
}).catch((error) => fail(`cannot connect: ${error.code ?? error.name}: ${error.message}`));
console.log(`connected to ${client.identity.hostName} as ${client.identity.deviceId} over ${values.transport}`);
console.log(`uploading ${path} (${size} bytes) as ${blobName}`);

let exitCode = 0;
try {
  let shown = -1;
  const result = await client.uploadFile(blobName, createReadStream(path), {
    length: size,
    signal: stop.signal,
    onProgress: ({ bytesUploaded, totalBytes }) => {
      // One line per tenth, whatever the block size.
      const tenth = totalBytes ? Math.floor((bytesUploaded / totalBytes) * 10) : 10;
      if (tenth === shown) return;
      shown = tenth;
      console.log(`progress: ${bytesUploaded} of ${totalBytes} bytes (${tenth * 10} %)`);
    },
  });
  console.log(
    `uploaded ${result.size} bytes as ${result.blobName} in container ${result.containerName}; ` +
      `correlation id ${result.correlationId}`,
  );
} catch (error) {
  exitCode = 1;
  if (stop.signal.aborted) console.error('upload aborted (the client tells the hub, which frees the upload slot)');
  else console.error(`upload failed: ${error.code ?? error.name}: ${error.message}`);
} finally {
  await client.close();
}
process.exitCode = exitCode;

function optionalPort(text, name) {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535) fail(`${name} must be a port (1..65535), not ${text}`);
  return value;
}

function fail(message) {
  console.error(message);
  process.exit(1);
}
