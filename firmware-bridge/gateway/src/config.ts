/**
 * The gateway's configuration: a JSON file (or the same object in code), validated with errors that name the
 * file and the field. Keys may sit in the file (`auth` 0 identities); identities whose MCU signs (`auth` 1) need
 * no entry at all.
 *
 * ```json
 * { "hub": { "hostName": "hub.example.net", "transport": "amqp", "ca": "/etc/fieldhub/ca.pem" },
 *   "ports": [{ "path": "/dev/serial0", "baudRate": 115200,
 *               "devices": [{ "deviceId": "press-1", "sharedAccessKey": "..." }] }] }
 * ```
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ArgumentError, parseDeviceConnectionString } from '@fieldhub/protocol';

/** How the gateway reaches the hub. */
export interface HubSettings {
  /** The hub's host name, as in connection strings (SAS tokens name it). */
  readonly hostName: string;
  /** Where to dial instead (an IP address, an edge gateway); TLS still verifies `hostName`. */
  readonly connectHost?: string;
  /** The port to dial; default the transport's (AMQP 5671, MQTT 8883). */
  readonly port?: number;
  /** Extra trusted CA certificates, PEM text (the file named in the config, read). */
  readonly ca?: string;
  /**
   * `amqp` (default) or `mqtt`. AMQP settles cloud-to-device messages every way (complete, reject, abandon);
   * MQTT completes only, so an MCU's reject or abandon is answered `ERROR Unsupported`.
   */
  readonly transport: 'mqtt' | 'amqp';
}

/** An identity whose key the gateway holds (`auth` 0). Give `sharedAccessKey` or `connectionString`. */
export interface DeviceEntry {
  readonly deviceId: string;
  readonly moduleId?: string;
  readonly sharedAccessKey?: string;
  readonly connectionString?: string;
}

/** One serial port and the identities its MCU may announce with `auth` 0. */
export interface PortSettings {
  readonly path: string;
  /** Default 115200. */
  readonly baudRate: number;
  readonly devices: readonly DeviceEntry[];
}

/** Log levels, most verbose first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** The whole configuration. */
export interface GatewayConfig {
  readonly hub: HubSettings;
  readonly ports: readonly PortSettings[];
  /** Default `info`. */
  readonly log?: { readonly level?: LogLevel };
}

/** The configuration as written in a file: `hub.ca` is a path there. */
export type GatewayConfigInput = unknown;

const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

class Checker {
  readonly #source: string;
  constructor(source: string) {
    this.#source = source;
  }
  fail(field: string, message: string): never {
    throw new ArgumentError(`${this.#source}: ${field}: ${message}`, { field });
  }
  object(value: unknown, field: string): Record<string, unknown> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail(field, 'must be an object');
    return value as Record<string, unknown>;
  }
  string(value: unknown, field: string): string {
    if (typeof value !== 'string' || value === '') this.fail(field, 'must be a non-empty string');
    return value;
  }
  optionalString(value: unknown, field: string): string | undefined {
    return value === undefined ? undefined : this.string(value, field);
  }
  integer(value: unknown, field: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(field, `must be an integer from ${min} to ${max}`);
    }
    return value;
  }
  unknownKeys(value: Record<string, unknown>, field: string, known: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (!known.includes(key))
        this.fail(field === '' ? key : `${field}.${key}`, `unknown field (known: ${known.join(', ')})`);
    }
  }
}

/**
 * Validates a configuration object; `hub.ca` is returned as given (a path in files, PEM text in code: see
 * {@link loadGatewayConfig}).
 *
 * @param source what to name in errors (the file path, or `config`).
 * @throws ArgumentError naming the source and the field, for anything missing, unknown or out of range.
 */
export function validateGatewayConfig(input: unknown, source = 'config'): GatewayConfig {
  const check = new Checker(source);
  const root = check.object(input, '(root)');
  check.unknownKeys(root, '', ['hub', 'ports', 'log', '$schema']);
  const hubInput = check.object(root.hub, 'hub');
  check.unknownKeys(hubInput, 'hub', ['hostName', 'connectHost', 'port', 'ca', 'transport']);
  const transportInput = hubInput.transport ?? 'amqp';
  if (transportInput !== 'amqp' && transportInput !== 'mqtt') check.fail('hub.transport', "must be 'amqp' or 'mqtt'");
  const transport = transportInput as 'amqp' | 'mqtt';
  const connectHost = check.optionalString(hubInput.connectHost, 'hub.connectHost');
  const ca = check.optionalString(hubInput.ca, 'hub.ca');
  const hub: HubSettings = {
    hostName: check.string(hubInput.hostName, 'hub.hostName'),
    transport,
    ...(connectHost !== undefined ? { connectHost } : {}),
    ...(hubInput.port !== undefined ? { port: check.integer(hubInput.port, 'hub.port', 1, 65535) } : {}),
    ...(ca !== undefined ? { ca } : {}),
  };
  const portsInput = root.ports;
  if (!Array.isArray(portsInput) || portsInput.length === 0) check.fail('ports', 'must be a non-empty array');
  const paths = new Set<string>();
  const ports = (portsInput as unknown[]).map((portInput: unknown, index: number): PortSettings => {
    const at = `ports[${index}]`;
    const port = check.object(portInput, at);
    check.unknownKeys(port, at, ['path', 'baudRate', 'devices']);
    const path = check.string(port.path, `${at}.path`);
    if (paths.has(path)) check.fail(`${at}.path`, `${path} is listed twice`);
    paths.add(path);
    const devicesInput = port.devices ?? [];
    if (!Array.isArray(devicesInput)) check.fail(`${at}.devices`, 'must be an array');
    const devices = (devicesInput as unknown[]).map((deviceInput: unknown, deviceIndex: number) =>
      deviceEntry(check, deviceInput, `${at}.devices[${deviceIndex}]`, hub.hostName),
    );
    return {
      path,
      baudRate: port.baudRate === undefined ? 115200 : check.integer(port.baudRate, `${at}.baudRate`, 50, 4_000_000),
      devices,
    };
  });
  let log: GatewayConfig['log'];
  if (root.log !== undefined) {
    const logInput = check.object(root.log, 'log');
    check.unknownKeys(logInput, 'log', ['level']);
    if (logInput.level !== undefined && !logLevels.includes(logInput.level as LogLevel)) {
      check.fail('log.level', `must be one of ${logLevels.join(', ')}`);
    }
    log = logInput.level === undefined ? {} : { level: logInput.level as LogLevel };
  }
  return { hub, ports, ...(log !== undefined ? { log } : {}) };
}

function deviceEntry(check: Checker, input: unknown, at: string, hostName: string): DeviceEntry {
  const device = check.object(input, at);
  check.unknownKeys(device, at, ['deviceId', 'moduleId', 'sharedAccessKey', 'connectionString']);
  const moduleId = check.optionalString(device.moduleId, `${at}.moduleId`);
  const key = check.optionalString(device.sharedAccessKey, `${at}.sharedAccessKey`);
  const connectionString = check.optionalString(device.connectionString, `${at}.connectionString`);
  if ((key === undefined) === (connectionString === undefined)) {
    check.fail(at, 'give exactly one of sharedAccessKey and connectionString');
  }
  if (key !== undefined && !/^[A-Za-z0-9+/]+={0,2}$/.test(key)) check.fail(`${at}.sharedAccessKey`, 'is not base64');
  let deviceId: string;
  if (connectionString !== undefined) {
    let parsed: ReturnType<typeof parseDeviceConnectionString>;
    try {
      parsed = parseDeviceConnectionString(connectionString);
    } catch (error) {
      // The connection string holds a key: its text stays out of the message.
      check.fail(`${at}.connectionString`, `is not a device connection string (${(error as Error).name})`);
    }
    if (parsed.hostName !== hostName)
      check.fail(`${at}.connectionString`, `names HostName ${parsed.hostName}, not hub.hostName`);
    deviceId = device.deviceId === undefined ? parsed.deviceId : check.string(device.deviceId, `${at}.deviceId`);
    if (deviceId !== parsed.deviceId) check.fail(`${at}.deviceId`, 'differs from the connection string DeviceId');
    if (moduleId !== parsed.moduleId) check.fail(`${at}.moduleId`, 'differs from the connection string ModuleId');
  } else {
    deviceId = check.string(device.deviceId, `${at}.deviceId`);
  }
  return {
    deviceId,
    ...(moduleId !== undefined ? { moduleId } : {}),
    ...(key !== undefined ? { sharedAccessKey: key } : {}),
    ...(connectionString !== undefined ? { connectionString } : {}),
  };
}

/**
 * Reads, parses and validates a config file; `hub.ca` (a path, relative to the file) is read into PEM text.
 *
 * @throws ArgumentError naming the file (and the field) when it cannot be read, is not JSON, or is invalid.
 */
export async function loadGatewayConfig(path: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ArgumentError(
      `${path}: cannot read the config file (${(error as NodeJS.ErrnoException).code ?? error})`,
      {
        field: 'config',
        cause: error,
      },
    );
  }
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (error) {
    // V8 quotes the text around the error (`..."ccessKey": c2Vjcm"...`), which may be part of a key: the message
    // keeps only what went wrong, and the parser's error is not passed on as the cause.
    const reason = String((error as Error).message).replace(/,?\s*(\.\.\.)?".*"(\.\.\.)? is not valid JSON$/s, '');
    throw new ArgumentError(`${path}: not JSON (${reason})`, { field: 'config' });
  }
  const config = validateGatewayConfig(input, path);
  if (config.hub.ca === undefined) return config;
  const caPath = resolve(dirname(path), config.hub.ca);
  let ca: string;
  try {
    ca = await readFile(caPath, 'utf8');
  } catch (error) {
    throw new ArgumentError(
      `${path}: hub.ca: cannot read ${caPath} (${(error as NodeJS.ErrnoException).code ?? error})`,
      {
        field: 'hub.ca',
        cause: error,
      },
    );
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ArgumentError(`${path}: hub.ca: ${caPath} holds no PEM certificate`, { field: 'hub.ca' });
  }
  return { ...config, hub: { ...config.hub, ca } };
}
