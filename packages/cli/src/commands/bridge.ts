import { ArgumentError, parseDeviceConnectionString } from '@fieldhub/protocol';
import { type Command, Option } from 'commander';
import { parsePort } from '../options';
import { note } from '../output';

/** Options of `fieldhub bridge`, as commander hands them over. */
interface BridgeOptions {
  config?: string;
  port?: string;
  baud: number;
  connectionString?: string;
  hub?: string;
  hubPort?: number;
  connectHost?: string;
  ca?: string;
  transport: 'amqp' | 'mqtt';
  logLevel?: string;
}

const installHint =
  '`fieldhub bridge` needs the gateway package: npm install @fieldhub/firmware-bridge (next to @fieldhub/cli)';

function baudRate(value: string): number {
  const rate = Number(value);
  if (!Number.isInteger(rate) || rate < 50 || rate > 4_000_000) {
    throw new ArgumentError(`--baud must be an integer baud rate, got '${value}'`, { field: 'baud' });
  }
  return rate;
}

/** The part of `@fieldhub/firmware-bridge` this command uses (its own types stay out of the CLI build, below). */
interface GatewayConfigShape {
  readonly hub: { readonly hostName: string };
  readonly ports: readonly { readonly path: string }[];
  readonly log?: { readonly level?: string };
}
interface BridgeModule {
  loadGatewayConfig(path: string): Promise<GatewayConfigShape>;
  validateGatewayConfig(input: unknown, source?: string): GatewayConfigShape;
  createGateway(config: GatewayConfigShape): { start(): Promise<void>; close(): Promise<void> };
}

/** The optional peer's name; a variable so that neither tsc nor tsup resolve it when the CLI is built. */
const bridgePackage = '@fieldhub/firmware-bridge';

/**
 * The gateway package, loaded only when `fieldhub bridge` runs: it is an optional peer of the CLI (a leaf may not
 * depend on another leaf, ARCHITECTURE.md), and its serialport native addon must not load for other commands.
 * turbo orders builds by dependencies, not peers, so the CLI must build without the gateway's types.
 */
async function loadBridge(): Promise<BridgeModule> {
  try {
    return (await import(bridgePackage)) as BridgeModule;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new ArgumentError(installHint, { field: 'bridge', cause: error });
    }
    throw error;
  }
}

/**
 * Adds `fieldhub bridge`: runs the firmware-bridge gateway (MCUs on serial ports become hub devices) from a config
 * file, or for one port from flags. Runs until SIGINT / SIGTERM.
 */
export function addBridgeCommand(program: Command): void {
  program
    .command('bridge')
    .description('run the firmware-bridge gateway: MCUs on serial ports become hub devices (docs/firmware-bridge.md)')
    .option('--config <file>', 'the gateway config file (JSON: hub, ports, devices)')
    .option('--port <path>', 'one serial port, without a config file (e.g. /dev/serial0)')
    .option('--baud <rate>', 'baud rate of --port', baudRate, 115200)
    .option(
      '--connection-string <string>',
      'the device connection string of the MCU on --port (auth 0); its HostName names the hub',
    )
    .option('--hub <hostName>', 'the hub, for MCUs that sign their own tokens (auth 1) on --port')
    .option('--hub-port <port>', "the hub's AMQP or MQTT port (default the transport's)", parsePort)
    .option('--connect-host <host>', 'dial this host instead of the hub name (TLS still checks the hub name)')
    .option('--ca <file>', 'extra trusted CA certificate (PEM) for a hub with a private CA')
    .addOption(
      new Option('--transport <name>', 'how the gateway reaches the hub').choices(['amqp', 'mqtt']).default('amqp'),
    )
    .addOption(
      new Option('--log-level <level>', 'gateway log level').choices(['debug', 'info', 'warn', 'error', 'silent']),
    )
    .action(async (options: BridgeOptions) => {
      const bridge = await loadBridge();
      const config =
        options.config !== undefined ? await bridge.loadGatewayConfig(options.config) : await fromFlags(options);
      const withLevel = options.logLevel === undefined ? config : { ...config, log: { level: options.logLevel } };
      const gateway = bridge.createGateway(withLevel);
      await gateway.start();
      note(`Bridging ${config.ports.map((port) => port.path).join(', ')} to ${config.hub.hostName} (Ctrl+C stops)...`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      // Bounded, then exit as `hub start` does: a stopping service does not wait for a hub that never answers the
      // close, nor for every handle a library may still hold.
      await Promise.race([gateway.close(), new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
      process.exit(0);
    });
}

/** A one-port config from the flags; the same validation as a file (`validateGatewayConfig`). */
async function fromFlags(options: BridgeOptions): Promise<GatewayConfigShape> {
  if (options.port === undefined) {
    throw new ArgumentError('give --config <file>, or --port <path> with --connection-string or --hub', {
      field: 'port',
    });
  }
  if ((options.connectionString === undefined) === (options.hub === undefined)) {
    throw new ArgumentError('with --port give exactly one of --connection-string (auth 0) and --hub (auth 1)', {
      field: 'connectionString',
    });
  }
  const hostName =
    options.connectionString !== undefined
      ? parseDeviceConnectionString(options.connectionString).hostName
      : (options.hub as string);
  const bridge = await loadBridge();
  let ca: string | undefined;
  if (options.ca !== undefined) {
    const { readFile } = await import('node:fs/promises');
    ca = await readFile(options.ca, 'utf8');
  }
  return bridge.validateGatewayConfig(
    {
      hub: {
        hostName,
        transport: options.transport,
        ...(options.hubPort !== undefined ? { port: options.hubPort } : {}),
        ...(options.connectHost !== undefined ? { connectHost: options.connectHost } : {}),
        ...(ca !== undefined ? { ca } : {}),
      },
      ports: [
        {
          path: options.port,
          baudRate: options.baud,
          devices: options.connectionString !== undefined ? [{ connectionString: options.connectionString }] : [],
        },
      ],
    },
    'command line',
  );
}
