import { randomBytes } from 'node:crypto';
import type { BulkOperation, ServiceClient } from '@fieldhub/service';
import type { Command } from 'commander';
import { addHubConnectionOptions, type HubConnectionOptions, openService } from '../hub-connection';
import { fields, positiveInteger, positiveNumber, write, writeJson } from '../output';
import type { SimulatedDevice, SimulationProgress, SimulationSummary } from '../simulation';

interface SimulateOptions extends HubConnectionOptions {
  rate: number;
  duration?: number;
  prefix: string;
  connectConcurrency: number;
  connectTimeout: number;
  mqttPort?: number;
  json?: boolean;
}

const bulkSize = 100;
const lookupConcurrency = 10;

/** Adds `fieldhub simulate`: many devices sending telemetry through the device SDK, with live figures. */
export function addSimulateCommand(program: Command): void {
  addHubConnectionOptions(
    program
      .command('simulate')
      .summary('run many simulated devices that send telemetry, and measure the rate')
      .description(
        'run <count> simulated devices (<prefix>0001, ...): registers the missing ones in bulk, connects them over MQTT with @fieldhub/device in waves, sends telemetry from each at --rate messages per second, shows live figures on stderr and prints a summary; exits 0 only when there were no errors',
      )
      .argument('<count>', 'how many devices', positiveInteger)
      .option('--rate <msgs/s>', 'telemetry messages per second PER DEVICE (total = count × rate)', positiveNumber, 1)
      .option('--duration <seconds>', 'how long to send once connected (default: until Ctrl+C)', positiveNumber)
      .option('--prefix <prefix>', 'device id prefix', 'sim-')
      .option('--connect-concurrency <n>', 'devices connecting at the same time', positiveInteger, 20)
      .option('--connect-timeout <seconds>', 'how long one device may take to connect', positiveNumber, 30)
      .option('--mqtt-port <port>', "the hub's MQTT port (default: hub.json's, else 8883)", positiveInteger)
      .option('--json', 'print the summary as JSON'),
  ).action(async (count: number, options: SimulateOptions) => {
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const connection = await openService(options);
      let devices: SimulatedDevice[];
      try {
        const width = Math.max(4, String(count).length);
        const ids = Array.from({ length: count }, (_, i) => `${options.prefix}${String(i + 1).padStart(width, '0')}`);
        devices = await ensureDevices(connection.service, ids, stop.signal);
      } finally {
        await connection.close();
      }
      const mqttPort = options.mqttPort ?? connection.mqttPort;
      const display = progressDisplay();
      // The device SDK is loaded only by the command that needs it.
      const { runSimulation } = await import('../simulation');
      const summary = await runSimulation({
        devices,
        hostName: connection.hostName,
        ...(mqttPort === undefined ? {} : { mqttPort }),
        ...(connection.ca === undefined ? {} : { ca: connection.ca }),
        ratePerDevice: options.rate,
        ...(options.duration === undefined ? {} : { durationSeconds: options.duration }),
        connectConcurrency: options.connectConcurrency,
        connectTimeoutSeconds: options.connectTimeout,
        signal: stop.signal,
        onProgress: display.update,
      });
      display.end();
      if (options.json) writeJson(summary);
      else write(renderSummary(summary));
      if (summary.errors > 0 || summary.connected < summary.devices) {
        const first = summary.errorSamples[0] ? ` (first: ${summary.errorSamples[0]})` : '';
        throw new Error(
          `the simulation had ${summary.errors} error${summary.errors === 1 ? '' : 's'}; ${summary.connected} of ${summary.devices} devices connected${first}`,
        );
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

/**
 * Registers the devices that do not exist yet (bulk, 100 per request, with keys made here) and reads the keys of
 * those that do.
 * @throws Error when a device cannot be registered, or exists without a symmetric key.
 */
async function ensureDevices(service: ServiceClient, ids: readonly string[], signal: AbortSignal) {
  const keys = new Map<string, string>();
  const existing: string[] = [];
  for (let start = 0; start < ids.length; start += bulkSize) {
    const chunk = ids.slice(start, start + bulkSize);
    const operations: BulkOperation[] = chunk.map((deviceId) => {
      const key = randomBytes(32).toString('base64');
      keys.set(deviceId, key);
      return {
        operation: 'create',
        deviceId,
        authentication: {
          type: 'sas',
          symmetricKey: { primaryKey: key, secondaryKey: randomBytes(32).toString('base64') },
        },
      };
    });
    const result = await service.devices.bulk(operations, { signal });
    for (const error of result.errors) {
      if (error.errorCode === 'DeviceAlreadyExists' || error.errorStatus.includes('DeviceAlreadyExists')) {
        existing.push(error.deviceId);
        keys.delete(error.deviceId);
      } else {
        throw new Error(`cannot register ${error.deviceId}: ${error.errorCode} ${error.errorStatus}`);
      }
    }
  }
  const queue = [...existing];
  const lookup = async () => {
    for (let deviceId = queue.shift(); deviceId !== undefined; deviceId = queue.shift()) {
      const device = await service.devices.get(deviceId, { signal });
      const key = device.authentication.symmetricKey?.primaryKey;
      if (!key) throw new Error(`${deviceId} exists without a symmetric key; delete it or pick another --prefix`);
      keys.set(deviceId, key);
    }
  };
  await Promise.all(Array.from({ length: lookupConcurrency }, lookup));
  return ids.map((deviceId) => ({ deviceId, key: keys.get(deviceId) ?? '' }));
}

/** The live line: on a terminal rewritten in place every second, otherwise a new line every 5 s. */
function progressDisplay(): { update: (progress: SimulationProgress) => void; end: () => void } {
  const stream = process.stderr;
  const inPlace = stream.isTTY === true;
  let lastPrinted = 0;
  let dirty = false;
  return {
    update(progress) {
      const line = renderProgress(progress);
      if (inPlace) {
        stream.write(`\r\u001b[K${line}`);
        dirty = true;
      } else if (Date.now() - lastPrinted >= 5000 || progress.phase === 'stopping') {
        stream.write(`${line}\n`);
        lastPrinted = Date.now();
      }
    },
    end() {
      if (dirty) stream.write('\n');
    },
  };
}

function renderProgress(progress: SimulationProgress): string {
  return [
    `${Math.round(progress.elapsedSeconds)}s ${progress.phase}`,
    `connected ${progress.connected}/${progress.devices}`,
    `sent ${progress.sent}`,
    `acknowledged ${progress.acknowledged}`,
    `errors ${progress.errors}`,
    `${progress.messagesPerSecond.toFixed(1)} msgs/s`,
  ].join(' | ');
}

function renderSummary(summary: SimulationSummary): string {
  const rows: [string, string][] = [
    ['devices', `${summary.connected}/${summary.devices} connected in ${summary.connectSeconds.toFixed(1)} s`],
    ['sending time', `${summary.sendSeconds.toFixed(1)} s${summary.interrupted ? ' (stopped by Ctrl+C)' : ''}`],
    ['sent', String(summary.sent)],
    ['acknowledged', String(summary.acknowledged)],
    ['errors', String(summary.errors)],
    ['disconnects', String(summary.disconnects)],
    ['achieved rate', `${summary.achievedRate.toFixed(1)} msgs/s (target ${summary.targetRate} msgs/s)`],
  ];
  const samples = summary.errorSamples.map((sample) => `  error: ${sample}`);
  return ['Simulation summary', fields(rows).replace(/^/gm, '  '), ...samples].join('\n');
}
