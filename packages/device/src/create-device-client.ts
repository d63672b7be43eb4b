import { createSasToken } from '@fieldhub/auth';
import {
  type DeviceClientOptions as CoreDeviceClientOptions,
  type CredentialProvider,
  createDeviceClient as createCoreDeviceClient,
  type DeviceClient,
  defaultSasToken,
  type FileUploadService,
  sasTokenCredentialProvider,
  type TransportFactory,
} from '@fieldhub/device-core';
import { ArgumentError, parseDeviceConnectionString } from '@fieldhub/protocol';
import { httpFileUpload } from '@fieldhub/transport-http';
import { mqtt } from '@fieldhub/transport-mqtt';

/** PEM text, as a string or as the bytes of a `.pem` file. */
export type Pem = string | Uint8Array;

/**
 * Options of {@link createDeviceClient}: those of `@fieldhub/device-core`, with Node conveniences. Give exactly one
 * of `connectionString`, `credentialProvider`, `sasTokenProvider`.
 */
export interface DeviceClientOptions extends Omit<CoreDeviceClientOptions, 'transport' | 'ca' | 'x509'> {
  /**
   * Default `mqtt()` (MQTT over TLS on 8883); `mqtt({ webSockets: true })` for port 443. `amqp()` (AMQP over TLS
   * on 5671) or `amqp({ webSockets: true })` (port 443) for AMQP. `http()` (HTTPS on 443: telemetry and polled
   * cloud-to-device messages, no twin, no direct methods).
   */
  readonly transport?: TransportFactory;
  /**
   * How `uploadFile()` reaches the hub and the store. Default `httpFileUpload()` (HTTPS, the hub on 443 or the
   * `HostName`'s port); `httpFileUpload({ port })` for a hub whose HTTPS port is another.
   */
  readonly fileUpload?: FileUploadService;
  /** Extra trusted CA certificates for a hub with a private CA: PEM text or the contents of a `.pem` file. */
  readonly ca?: Pem | readonly Pem[];
  /** Client certificate (chain) and key with a `x509=true` connection string, as text or file contents. */
  readonly x509?: { readonly cert: Pem; readonly key: Pem; readonly passphrase?: string };
}

const decoder = new TextDecoder();

function pemText(value: Pem, field: string): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return decoder.decode(value);
  throw new ArgumentError(`${field} must be PEM text or a Buffer`, { field });
}

function caText(ca: Pem | readonly Pem[]): string {
  const list: readonly Pem[] = Array.isArray(ca) ? ca : [ca as Pem];
  return list.map((item) => pemText(item, 'ca').trim()).join('\n');
}

/**
 * Credentials for a `SharedAccessKey` connection string, signed by @fieldhub/auth (Web Crypto, i.e.
 * node:crypto on Node) instead of device-core's portable HMAC. Other connection strings are device-core's.
 */
function nodeSasProvider(options: DeviceClientOptions): CredentialProvider | undefined {
  // Only when the connection string is the one source of credentials (device-core refuses the other mixes).
  if (
    options.connectionString === undefined ||
    options.credentialProvider !== undefined ||
    options.sasTokenProvider !== undefined ||
    options.sas?.sign !== undefined
  ) {
    return undefined;
  }
  const cs = parseDeviceConnectionString(options.connectionString);
  const key = cs.sharedAccessKey;
  if (key === undefined) return undefined;
  const ttlSeconds = options.sas?.ttlSeconds ?? defaultSasToken.ttlSeconds;
  const renewalMarginSeconds = options.sas?.renewalMarginSeconds ?? defaultSasToken.renewalMarginSeconds;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new ArgumentError('sas.ttlSeconds must be a positive integer', { field: 'sas.ttlSeconds' });
  }
  if (!(renewalMarginSeconds >= 0) || renewalMarginSeconds >= ttlSeconds) {
    throw new ArgumentError('sas.renewalMarginSeconds must be >= 0 and less than sas.ttlSeconds', {
      field: 'sas.renewalMarginSeconds',
    });
  }
  return sasTokenCredentialProvider({
    hostName: cs.hostName,
    deviceId: cs.deviceId,
    ...(cs.moduleId !== undefined ? { moduleId: cs.moduleId } : {}),
    ...(cs.gatewayHostName !== undefined ? { gatewayHostName: cs.gatewayHostName } : {}),
    renewalMarginSeconds,
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    getToken: ({ resourceUri }) =>
      createSasToken({
        resourceUri,
        key,
        ...(cs.sharedAccessKeyName !== undefined ? { keyName: cs.sharedAccessKeyName } : {}),
        ...(options.clock !== undefined ? { now: new Date(options.clock.now()) } : {}),
        ttlSeconds,
      }),
  });
}

/**
 * Makes a device (or module) client and connects it: `@fieldhub/device-core`'s `createDeviceClient` with MQTT as
 * the default transport, `httpFileUpload()` for `uploadFile()`, SAS tokens signed by @fieldhub/auth (node:crypto), and `ca` / `x509` accepted as text or
 * Buffers. Reconnection, SAS renewal and the offline queue are the client's from then on.
 *
 * @example
 * ```ts
 * await using client = await createDeviceClient({ connectionString: process.env.DEVICE_CONNECTION_STRING });
 * await client.sendTelemetry({ body: { temperature: 21.5 } });
 * ```
 * @throws ArgumentError for bad options or a malformed connection string; AuthenticationError when the hub refused
 * the credentials; ConnectionError when it could not be reached on the first attempt; AbortError when `signal`
 * aborted.
 */
export async function createDeviceClient(options: DeviceClientOptions): Promise<DeviceClient> {
  if (options === null || typeof options !== 'object') {
    throw new ArgumentError('options are required', { field: 'options' });
  }
  const { transport, ca, x509, fileUpload, ...rest } = options;
  const credentialProvider = options.x509 === undefined ? nodeSasProvider(options) : undefined;
  const core: CoreDeviceClientOptions = {
    ...rest,
    transport: transport ?? mqtt(),
    // Uploads go over HTTPS whichever transport carries the rest, as in Azure's SDKs.
    fileUpload: fileUpload ?? httpFileUpload(),
    ...(ca !== undefined ? { ca: caText(ca) } : {}),
    ...(x509 !== undefined
      ? {
          x509: {
            cert: pemText(x509.cert, 'x509.cert'),
            key: pemText(x509.key, 'x509.key'),
            ...(x509.passphrase !== undefined ? { passphrase: x509.passphrase } : {}),
          },
        }
      : {}),
  };
  if (credentialProvider !== undefined) {
    const { connectionString: _connectionString, sas: _sas, ...withoutConnectionString } = core;
    return createCoreDeviceClient({ ...withoutConnectionString, credentialProvider });
  }
  return createCoreDeviceClient(core);
}
