import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ArgumentError } from '@fieldhub/protocol';
import { type CoreOptions, defaultCoreOptions } from './core/context';

/** Everything the hub can be told. Every field has a default: `fieldhub hub start` needs no configuration. */
export interface HubConfig {
  /** Where the store, the CA and `hub.json` live. Default `./.fieldhub`. */
  readonly dataDir: string;
  /** The host name devices and services dial; the server certificate is made for it. Default `localhost`. */
  readonly hostName: string;
  /** Scopes every record; default: the host name's first label. */
  readonly hubName: string;
  /** Address to listen on. Default `0.0.0.0` (all IPv4 interfaces). */
  readonly bind: string;
  /** Ports; 0 picks a free one. HTTPS falls back to 8443 where 443 needs privileges. */
  readonly ports: { readonly mqtt: number; readonly amqp: number; readonly https: number };
  /** pino level: fatal, error, warn, info, debug, trace, silent. */
  readonly logLevel: string;
  readonly core: CoreOptions;
  /** File upload (protocol-service.md §8): where devices upload and how the service hears of it. */
  readonly fileUpload: FileUploadConfig;
  /** The Device Provisioning Service in the hub process (issue #10). */
  readonly dps: DpsConfig;
}

/** Provisioning settings (`hub.json` `dps`). */
export interface DpsConfig {
  /** Whether devices may provision through the hub. Default true. */
  readonly enabled: boolean;
  /**
   * The ID scope devices name in their registrations. Default: generated on first start, as Azure's (`0ne` and 8
   * hex digits), kept in the store, so every start of the same data dir answers to the same scope.
   */
  readonly idScope: string | undefined;
  /** The host name devices dial for provisioning (Azure's global endpoint). Default: the hub's host name. */
  readonly host: string;
}

/**
 * File upload settings, after Azure's `storageEndpoints.$default` and `messagingEndpoints.fileNotifications`
 * (protocol-service.md §8).
 */
export interface FileUploadConfig {
  /** The blob container devices upload into. Default `fieldhub-uploads`. */
  readonly containerName: string;
  /** Lifetime of the SAS a device receives (ms). Default 1 h (Azure `sasTtlAsIso8601`). */
  readonly sasTtlMs: number;
  /** Whether a successful upload sends a file-upload notification to the service. Default true. */
  readonly notifications: boolean;
  /** Notification time to live (ms). Default 1 h (Azure `ttlAsIso8601`, 1 min to 48 h). */
  readonly notificationTtlMs: number;
  /** Lock of a received notification (ms). Default 60 s (Azure `lockDurationAsIso8601`, 5 to 300 s). */
  readonly notificationLockDurationMs: number;
  /** Deliveries before a notification is dropped. Default 10 (Azure `maxDeliveryCount`, 1 to 100). */
  readonly notificationMaxDeliveryCount: number;
  /** Largest blob the embedded store accepts (bytes). Default 256 MiB. */
  readonly maxBlobBytes: number;
  /**
   * An Azure Storage connection string (`DefaultEndpointsProtocol=https;AccountName=..;AccountKey=..;
   * EndpointSuffix=..` or `..;BlobEndpoint=https://..`): devices upload there instead of to the hub's embedded
   * Blob-compatible store. Absent by default.
   */
  readonly storageConnectionString: string | undefined;
  /**
   * A PEM file of CA certificates to trust for the external store's endpoint (a self-hosted store with its own
   * CA); Node's default trust (and NODE_EXTRA_CA_CERTS) otherwise.
   */
  readonly storageCaCertificate: string | undefined;
}

/** The defaults of {@link FileUploadConfig}. */
export const defaultFileUploadConfig: FileUploadConfig = {
  containerName: 'fieldhub-uploads',
  sasTtlMs: 60 * 60 * 1000,
  notifications: true,
  notificationTtlMs: 60 * 60 * 1000,
  notificationLockDurationMs: 60 * 1000,
  notificationMaxDeliveryCount: 10,
  maxBlobBytes: 256 * 1024 * 1024,
  storageConnectionString: undefined,
  storageCaCertificate: undefined,
};

/** A partial configuration, as given by flags, environment or file. */
export interface HubConfigInput {
  dataDir?: string;
  hostName?: string;
  hubName?: string;
  bind?: string;
  ports?: { mqtt?: number; amqp?: number; https?: number };
  logLevel?: string;
  core?: Partial<CoreOptions>;
  fileUpload?: Partial<FileUploadConfig>;
  dps?: Partial<DpsConfig>;
}

/** Azure IoT Hub's ports. */
export const defaultPorts = { mqtt: 8883, amqp: 5671, https: 443 } as const;

/** The environment variables that mirror the flags (and the config file's keys). */
export const environmentVariables = {
  dataDir: 'FIELDHUB_DATA_DIR',
  hostName: 'FIELDHUB_HOST_NAME',
  hubName: 'FIELDHUB_HUB_NAME',
  bind: 'FIELDHUB_BIND',
  mqttPort: 'FIELDHUB_MQTT_PORT',
  amqpPort: 'FIELDHUB_AMQP_PORT',
  httpsPort: 'FIELDHUB_HTTPS_PORT',
  logLevel: 'FIELDHUB_LOG_LEVEL',
  configFile: 'FIELDHUB_CONFIG',
  fileUploadContainer: 'FIELDHUB_FILE_UPLOAD_CONTAINER',
  fileUploadStorageConnectionString: 'FIELDHUB_FILE_UPLOAD_STORAGE_CONNECTION_STRING',
  dpsIdScope: 'FIELDHUB_DPS_ID_SCOPE',
  dpsHost: 'FIELDHUB_DPS_HOST',
} as const;

function port(value: string | number | undefined, field: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const number = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 65535) {
    throw new ArgumentError(`${field} must be a port number from 0 to 65535, got ${String(value)}`, { field });
  }
  return number;
}

/** Reads the environment variables into a partial configuration. */
export function configFromEnvironment(env: Record<string, string | undefined> = process.env): HubConfigInput {
  const input: HubConfigInput = {};
  const ports: NonNullable<HubConfigInput['ports']> = {};
  const text = (name: string): string | undefined => (env[name] === '' ? undefined : env[name]);
  const dataDir = text(environmentVariables.dataDir);
  const hostName = text(environmentVariables.hostName);
  const hubName = text(environmentVariables.hubName);
  const bind = text(environmentVariables.bind);
  const logLevel = text(environmentVariables.logLevel);
  if (dataDir !== undefined) input.dataDir = dataDir;
  if (hostName !== undefined) input.hostName = hostName;
  if (hubName !== undefined) input.hubName = hubName;
  if (bind !== undefined) input.bind = bind;
  if (logLevel !== undefined) input.logLevel = logLevel;
  const mqtt = port(env[environmentVariables.mqttPort], environmentVariables.mqttPort);
  const amqp = port(env[environmentVariables.amqpPort], environmentVariables.amqpPort);
  const https = port(env[environmentVariables.httpsPort], environmentVariables.httpsPort);
  if (mqtt !== undefined) ports.mqtt = mqtt;
  if (amqp !== undefined) ports.amqp = amqp;
  if (https !== undefined) ports.https = https;
  if (Object.keys(ports).length > 0) input.ports = ports;
  const fileUpload: { -readonly [K in keyof FileUploadConfig]?: FileUploadConfig[K] } = {};
  const containerName = text(environmentVariables.fileUploadContainer);
  const storageConnectionString = text(environmentVariables.fileUploadStorageConnectionString);
  if (containerName !== undefined) fileUpload.containerName = containerName;
  if (storageConnectionString !== undefined) fileUpload.storageConnectionString = storageConnectionString;
  if (Object.keys(fileUpload).length > 0) input.fileUpload = fileUpload;
  const dps: { -readonly [K in keyof DpsConfig]?: DpsConfig[K] } = {};
  const idScope = text(environmentVariables.dpsIdScope);
  const dpsHost = text(environmentVariables.dpsHost);
  if (idScope !== undefined) dps.idScope = idScope;
  if (dpsHost !== undefined) dps.host = dpsHost;
  if (Object.keys(dps).length > 0) input.dps = dps;
  return input;
}

/**
 * Reads a JSON config file with the same keys as {@link HubConfigInput}.
 * @throws ArgumentError when the file is not valid JSON or not an object.
 */
export function configFromFile(path: string): HubConfigInput {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ArgumentError(`Cannot read the config file ${path}: ${(error as Error).message}`, { field: 'config' });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ArgumentError(`The config file ${path} must hold a JSON object`, { field: 'config' });
  }
  const input = parsed as HubConfigInput;
  if (input.ports) {
    for (const key of ['mqtt', 'amqp', 'https'] as const) port(input.ports[key], `ports.${key}`);
  }
  return input;
}

/**
 * Resolves the configuration: flags over environment over config file over defaults. The config file is
 * `--config`, `FIELDHUB_CONFIG`, or `<dataDir>/config.json` when that exists.
 */
export function resolveConfig(
  flags: HubConfigInput = {},
  options: { env?: Record<string, string | undefined>; configFile?: string } = {},
): HubConfig {
  const env = configFromEnvironment(options.env ?? process.env);
  const dataDirGuess = flags.dataDir ?? env.dataDir ?? './.fieldhub';
  const configPath =
    options.configFile ??
    (options.env ?? process.env)[environmentVariables.configFile] ??
    (existsSync(resolve(dataDirGuess, 'config.json')) ? resolve(dataDirGuess, 'config.json') : undefined);
  const file = configPath ? configFromFile(configPath) : {};
  const pick = <K extends keyof HubConfigInput>(key: K): HubConfigInput[K] => flags[key] ?? env[key] ?? file[key];
  const hostName = pick('hostName') ?? 'localhost';
  const ports = { ...defaultPorts, ...file.ports, ...env.ports, ...flags.ports };
  return {
    dataDir: resolve(pick('dataDir') ?? './.fieldhub'),
    hostName,
    hubName: pick('hubName') ?? hostName.split('.')[0] ?? hostName,
    bind: pick('bind') ?? '0.0.0.0',
    ports,
    logLevel: pick('logLevel') ?? 'info',
    core: {
      ...defaultCoreOptions,
      ...file.core,
      ...flags.core,
      cloudToDevice: { ...defaultCoreOptions.cloudToDevice, ...file.core?.cloudToDevice, ...flags.core?.cloudToDevice },
    },
    fileUpload: checkFileUpload({
      ...defaultFileUploadConfig,
      ...file.fileUpload,
      ...env.fileUpload,
      ...flags.fileUpload,
    }),
    dps: checkDps({ enabled: true, host: hostName, idScope: undefined, ...file.dps, ...env.dps, ...flags.dps }),
  };
}

/**
 * Checks the provisioning settings.
 * @throws ArgumentError naming the bad field.
 */
function checkDps(config: DpsConfig): DpsConfig {
  if (typeof config.enabled !== 'boolean') {
    throw new ArgumentError('dps.enabled must be true or false', { field: 'dps.enabled' });
  }
  // Azure's ID scopes are `0ne` and hex digits; any short run of letters and digits is accepted, because devices
  // only ever echo it.
  if (config.idScope !== undefined && !/^[A-Za-z0-9]{1,32}$/.test(String(config.idScope))) {
    throw new ArgumentError(`dps.idScope must be 1 to 32 letters or digits, got '${String(config.idScope)}'`, {
      field: 'dps.idScope',
    });
  }
  if (typeof config.host !== 'string' || config.host === '' || /[\s/]/.test(config.host)) {
    throw new ArgumentError(`dps.host must be a host name, got '${String(config.host)}'`, { field: 'dps.host' });
  }
  return config;
}

// Paths the hub serves itself: a container of that name would shadow them (or they it).
const reservedContainerNames = new Set([
  'devices',
  'twins',
  'messages',
  'jobs',
  'configurations',
  'modules',
  'fieldhub',
  'metrics',
  'certificates',
  'digitaltwins',
  'statistics',
  // The provisioning service API (`/enrollments`, `/registrations`).
  'enrollments',
  'registrations',
]);

/**
 * Checks the file upload settings against Azure's ranges and the container naming rules.
 * @throws ArgumentError naming the field that is out of range.
 */
function checkFileUpload(config: FileUploadConfig): FileUploadConfig {
  const fail = (field: string, message: string): never => {
    throw new ArgumentError(`fileUpload.${field} ${message}`, { field: `fileUpload.${field}` });
  };
  // Azure's container names: 3-63 characters, lower-case letters, digits and single hyphens, starting and ending
  // with a letter or digit.
  if (!/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(config.containerName)) {
    fail(
      'containerName',
      `must be 3 to 63 lower-case letters, digits and single hyphens, got '${config.containerName}'`,
    );
  }
  if (reservedContainerNames.has(config.containerName)) {
    fail('containerName', `'${config.containerName}' is a path the hub serves itself`);
  }
  const range = (field: keyof FileUploadConfig, min: number, max: number) => {
    const value = config[field];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
      fail(field, `must be a number from ${min} to ${max}, got ${String(value)}`);
    }
  };
  range('sasTtlMs', 60_000, 24 * 60 * 60 * 1000);
  range('notificationTtlMs', 60_000, 48 * 60 * 60 * 1000);
  range('notificationLockDurationMs', 5_000, 300_000);
  range('notificationMaxDeliveryCount', 1, 100);
  range('maxBlobBytes', 1, Number.MAX_SAFE_INTEGER);
  if (typeof config.notifications !== 'boolean') fail('notifications', 'must be true or false');
  if (config.storageConnectionString !== undefined && typeof config.storageConnectionString !== 'string') {
    fail('storageConnectionString', 'must be a string');
  }
  return config;
}
