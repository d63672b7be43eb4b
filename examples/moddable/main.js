// A Moddable XS board (ESP32) as an IoT Hub device with @fieldhub/slim over ECMA-419 sockets: telemetry every
// `interval` ms (a desired property), cloud-to-device messages traced, the direct method `blink` answered.
// Moddable's setup/network module (manifest_net.json) joins Wi-Fi (mcconfig ssid=... password=...) and sets the
// clock over SNTP (config.sntp in manifest.json) before this module runs: SAS tokens need the right time.
// Build and flash: see README.md.

import Resource from 'Resource';
import TCP from 'embedded:io/socket/tcp';
import TLSSocket from 'embedded:io/socket/tcp/tls';
import UDP from 'embedded:io/socket/udp';
import Resolver from 'embedded:network/dns/resolver/udp';
import { Digest } from 'crypt';
import { createClient, createEcma419Host } from 'fieldhub-slim';
import HMAC from 'hmac';
import Timer from 'timer';

const CONNECTION_STRING = 'HostName=my-hub.example.com;DeviceId=moddable-1;SharedAccessKey=REPLACE_WITH_BASE64_KEY';

// The host glue: the runtime's classes, handed to the slim host (the bundle imports nothing itself).
const host = createEcma419Host({
  TCP,
  TLSSocket,
  dns: { io: Resolver, servers: ['1.1.1.1', '8.8.8.8'], socket: { io: UDP } },
  Timer,
  Digest,
  HMAC,
  log: (level, message) => trace(`[${level}] ${message}\n`),
});

let interval = 10_000;
let repeating;
let sent = 0;

const client = createClient(host, {
  connectionString: CONNECTION_STRING,
  // The hub's CA certificate, DER, built in as a resource (manifest.json "resources"; README.md says how to make it).
  tls: { ca: new Resource('hub-ca.der') },
  onConnect() {
    trace('connected\n');
    client.getTwin((error, twin) => {
      if (!error) applyDesired(twin.desired, twin.desired.$version);
    });
    sendReading();
    schedule();
  },
  onDisconnect(error) {
    trace(`disconnected${error ? `: ${error.code}` : ''}, reconnecting\n`);
  },
  onError(error) {
    trace(`error: ${error.code} ${error.message}\n`);
  },
  onMessage(message) {
    trace(`cloud-to-device: ${message.text}\n`);
  },
  onDesired: (patch, version) => applyDesired(patch, version),
  onMethod(request, respond) {
    if (request.name !== 'blink') {
      respond(501, { error: `unknown method ${request.name}` });
      return;
    }
    const times = request.payload?.times ?? 3;
    trace(`blink x${times}\n`);
    respond(200, { blinked: times });
  },
});

function sendReading() {
  sent += 1;
  const reading = { sequence: sent, at: new Date().toISOString() };
  client.sendTelemetry(
    JSON.stringify(reading),
    { source: 'moddable', '$.ct': 'application/json', '$.ce': 'utf-8' },
    (error) => {
      if (error) trace(`telemetry not sent: ${error.code}\n`);
    },
  );
}

function schedule() {
  if (repeating) Timer.clear(repeating);
  repeating = Timer.repeat(sendReading, interval);
}

function applyDesired(patch, version) {
  if (typeof patch.interval === 'number' && patch.interval >= 1000) {
    interval = patch.interval;
    schedule();
  }
  client.updateReported({ interval, desiredVersion: version }, (error) => {
    if (error) trace(`reported patch failed: ${error.code}\n`);
  });
}

client.open();
