import { readFileSync } from 'node:fs';
import type { HubConfigInput, HubInfo } from '@fieldhub/hub';
import type { Command } from 'commander';
import type { DemoDevice } from '../demo-device';
import { parsePort } from '../options';

/** Options of `fieldhub hub start`, as commander hands them over. */
interface HubStartOptions {
  dataDir?: string;
  hostName?: string;
  bind?: string;
  mqttPort?: number;
  amqpPort?: number;
  httpsPort?: number;
  logLevel?: string;
  config?: string;
  demo?: boolean;
  fileUploadContainer?: string;
  storageConnectionString?: string;
}

/** Adds `fieldhub hub start`. */
export function addHubCommands(program: Command): void {
  const hub = program.command('hub').description('run the hub');
  hub
    .command('start')
    .description('start the hub on its embedded store (no configuration needed)')
    .option('--data-dir <dir>', 'where the store, the CA and hub.json live (default ./.fieldhub)')
    .option('--host-name <name>', 'host name devices and services dial (default localhost)')
    .option('--bind <address>', 'address to listen on (default 0.0.0.0)')
    .option('--mqtt-port <port>', 'MQTT over TLS port (default 8883; 0 picks a free one)', parsePort)
    .option('--amqp-port <port>', 'AMQP over TLS port (default 5671; 0 picks a free one)', parsePort)
    .option('--https-port <port>', 'HTTPS port (default 443, falling back to 8443 without privileges)', parsePort)
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (default info)')
    .option('--config <file>', 'a JSON config file (keys as the flags, camelCase)')
    .option('--file-upload-container <name>', 'blob container devices upload files into (default fieldhub-uploads)')
    .option(
      '--storage-connection-string <string>',
      'Azure Storage connection string: devices upload there instead of to the hub (default: the hub stores uploads)',
    )
    .option('--demo', 'also run a demo device (telemetry every second, reported properties, direct methods)')
    .action(async (options: HubStartOptions) => {
      if (options.config) process.env.FIELDHUB_CONFIG = options.config;
      const input: HubConfigInput = {};
      if (options.dataDir) input.dataDir = options.dataDir;
      if (options.hostName) input.hostName = options.hostName;
      if (options.bind) input.bind = options.bind;
      if (options.logLevel) input.logLevel = options.logLevel;
      const ports: NonNullable<HubConfigInput['ports']> = {};
      if (options.mqttPort !== undefined) ports.mqtt = options.mqttPort;
      if (options.amqpPort !== undefined) ports.amqp = options.amqpPort;
      if (options.httpsPort !== undefined) ports.https = options.httpsPort;
      if (Object.keys(ports).length > 0) input.ports = ports;
      const fileUpload: NonNullable<HubConfigInput['fileUpload']> = {
        ...(options.fileUploadContainer ? { containerName: options.fileUploadContainer } : {}),
        ...(options.storageConnectionString ? { storageConnectionString: options.storageConnectionString } : {}),
      };
      if (Object.keys(fileUpload).length > 0) input.fileUpload = fileUpload;

      // Loaded here, not at the top: every other command starts faster without the hub in memory.
      const { createHub } = await import('@fieldhub/hub');
      const instance = createHub(input);
      const info = await instance.start();
      process.stdout.write(summary(info, instance.config.dataDir));
      let demo: DemoDevice | undefined;
      if (options.demo) {
        const { startDemoDevice } = await import('../demo-device');
        const print = (line: string) => process.stdout.write(`${line}\n`);
        demo = await startDemoDevice(instance, info, readFileSync(info.caCertificate, 'utf8'), print).catch(
          (error: unknown) => {
            instance.logger.error({ err: error }, 'the demo device could not start');
            return undefined;
          },
        );
      }
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        instance.logger.info({ signal }, 'stopping');
        // The demo device never holds up the hub's own stop.
        const demoStopped = Promise.resolve(demo?.stop()).catch(() => undefined);
        Promise.race([demoStopped, new Promise((resolve) => setTimeout(resolve, 5000))])
          .then(() => instance.stop())
          .then(
            () => process.exit(0),
            (error: unknown) => {
              instance.logger.error({ err: error }, 'stop failed');
              process.exit(1);
            },
          );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}

function summary(info: HubInfo, dataDir: string): string {
  const https = info.ports.https === 443 ? info.hostName : `${info.hostName}:${info.ports.https}`;
  const lines = [
    '',
    `Fieldhub is running as ${info.hostName}`,
    `  HTTPS (service REST API)   https://${https}`,
    `  MQTT                       ${info.ports.mqtt === null ? 'not served by this build yet' : `mqtts://${info.hostName}:${info.ports.mqtt}`}`,
    `  MQTT over WebSockets       ${info.ports.mqtt === null ? 'not served by this build yet' : `wss://${https}/$iothub/websocket`}`,
    `  AMQP                       ${info.ports.amqp === null ? 'not served by this build yet' : `amqps://${info.hostName}:${info.ports.amqp}`}`,
    `  AMQP over WebSockets       ${info.ports.amqp === null ? 'not served by this build yet' : `wss://${https}/$iothub/websocket`}`,
    `  file uploads               ${info.fileUpload.storageConnectionString === null ? `external storage, container ${info.fileUpload.containerName}` : `https://${https}/${info.fileUpload.containerName}/<deviceId>/<blobName>`}`,
    `  provisioning (DPS)         ${info.dps === null ? 'off' : `ID scope ${info.dps.idScope} on ${info.dps.host} (MQTT, HTTPS, AMQP; \`fieldhub dps\`)`}`,
    `  data                       ${dataDir}`,
    `  CA certificate             ${info.caCertificate}`,
    '',
    'Owner connection string (keep it secret):',
    `  ${info.serviceConnectionString}`,
    '',
    'Event Hubs-compatible connection string of the built-in endpoint (keep it secret):',
    `  ${info.eventHubConnectionString}`,
    '',
    `Trust the CA in Node clients with NODE_EXTRA_CA_CERTS=${info.caCertificate}`,
    'Stop with Ctrl+C.',
    '',
  ];
  return `${lines.join('\n')}\n`;
}
