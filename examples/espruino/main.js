// An Espruino board as an IoT Hub device with @fieldhub/slim: telemetry every `interval` ms (a desired property),
// cloud-to-device messages printed, the direct method `blink` answered. Written for ESP32 (Wi-Fi, TLS, SNTP); see
// README.md for other boards and for flashing.
//
// This file runs on Espruino itself, so it keeps to what Espruino runs: ES5 plus arrows, no template literals, and
// every function defined before the code that calls it (Espruino does not hoist function declarations).

var CONNECTION_STRING = 'HostName=my-hub.example.com;DeviceId=esp32-1;SharedAccessKey=REPLACE_WITH_BASE64_KEY';
var WIFI_SSID = 'my-network';
var WIFI_PASSWORD = 'my-password';

// The host glue: Espruino's own modules, handed to the slim host (the bundle requires nothing itself).
// `hmac` is EspruinoDocs' JS HMAC over crypto.SHA256 (crypto has no HMAC); see README.md to have it offline.
var slim = require('fieldhub-slim');
var host = slim.createEspruinoHost({
  net: require('net'),
  tls: require('tls'),
  crypto: require('crypto'),
  hmac: require('hmac'),
  log: (level, message) => {
    console.log('[' + level + '] ' + message);
  },
});

var interval = 10000;
var timer = null;
var client = null;

function sendReading() {
  var reading = { temperature: Math.round(E.getTemperature() * 10) / 10, uptime: Math.round(getTime()) };
  client.sendTelemetry(
    JSON.stringify(reading),
    { source: 'espruino', '$.ct': 'application/json', '$.ce': 'utf-8' },
    (error) => {
      if (error) console.log('telemetry not sent: ' + error.code);
    }
  );
}

function schedule() {
  if (timer) clearInterval(timer);
  timer = setInterval(sendReading, interval);
}

function onDesired(patch, version) {
  if (typeof patch.interval === 'number' && patch.interval >= 1000) {
    interval = patch.interval;
    schedule();
  }
  client.updateReported({ interval: interval, desiredVersion: version }, (error) => {
    if (error) console.log('reported patch failed: ' + error.code);
  });
}

function onMethod(request, respond) {
  if (request.name !== 'blink') {
    respond(501, { error: 'unknown method ' + request.name });
    return;
  }
  var times = request.payload && request.payload.times ? request.payload.times : 3;
  // LED1 exists on most boards; on a bare ESP32 module, wire an LED to D2 and use that pin instead.
  var led = typeof LED1 !== 'undefined' ? LED1 : D2;
  var count = 0;
  var blinker = setInterval(() => {
    led.toggle();
    count += 1;
    if (count >= times * 2) clearInterval(blinker);
  }, 200);
  respond(200, { blinked: times });
}

function start() {
  client = slim.createClient(host, {
    connectionString: CONNECTION_STRING,
    onConnect: () => {
      console.log('connected');
      client.getTwin((error, twin) => {
        if (!error && twin) onDesired(twin.desired, twin.desired.$version);
      });
      sendReading();
      schedule();
    },
    onDisconnect: (error) => {
      console.log('disconnected' + (error ? ': ' + error.code : '') + ', reconnecting');
    },
    onError: (error) => {
      console.log('error: ' + error.code + ' ' + error.message);
    },
    onMessage: (message) => {
      console.log('cloud-to-device: ' + message.text);
    },
    onDesired: onDesired,
    onMethod: onMethod,
  });
  client.open();
}

// SAS tokens carry an expiry, so the clock must be right before the first connect: ESP32 (and ESP8266) builds
// sync it over SNTP; elsewhere call setTime(seconds) yourself.
function waitForClock(then) {
  var poll = setInterval(() => {
    if (Date.now() > 1700000000000) {
      clearInterval(poll);
      then();
    }
  }, 500);
}

var wifi = require('Wifi');
wifi.connect(WIFI_SSID, { password: WIFI_PASSWORD }, (error) => {
  if (error) {
    console.log('Wi-Fi failed: ' + error);
    return;
  }
  wifi.setSNTP('pool.ntp.org', 0);
  waitForClock(start);
});
