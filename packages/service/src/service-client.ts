/**
 * `createServiceClient(options)`: the one entry point of the service SDK.
 */
import { ArgumentError, parseServiceConnectionString } from '@fieldhub/protocol';
import { AmqpClient } from './amqp-client';
import { CloudToDevice } from './cloud-to-device';
import { Devices } from './devices';
import { DirectMethods } from './direct-methods';
import { FileUploads } from './file-uploads';
import { HttpClient, splitHost } from './http-client';
import { type QueryOptions, QueryResult } from './query';
import { Telemetry } from './telemetry';
import { Twins } from './twins';

/** Options of {@link createServiceClient}. */
export interface ServiceClientOptions {
  /**
   * A service (shared access policy) connection string:
   * `HostName=<host>[:<port>];SharedAccessKeyName=<policy>;SharedAccessKey=<key>` (or `SharedAccessSignature=`).
   */
  connectionString: string;
  /**
   * CA certificate(s) to trust, PEM (as `tls.connect`'s `ca`: they replace Node's default CAs). Omit for a hub
   * whose certificate a public CA (or `NODE_EXTRA_CA_CERTS`) vouches for.
   */
  ca?: string | Buffer | readonly (string | Buffer)[];
  /** The HTTPS port (REST, and AMQP over WebSockets). Default: the port in `HostName`, else 443 (Azure's). */
  port?: number;
  /**
   * The AMQP-over-TLS port (cloud-to-device send, feedback, reading telemetry). Default 5671 (Azure's); a port in
   * `HostName` is the HTTPS port and does not change it. A Fieldhub hub writes it to `hub.json` as `ports.amqp`.
   */
  amqpPort?: number;
  /**
   * Speak AMQP over WebSockets on the HTTPS port (`wss://{host}:{port}/$iothub/websocket`) instead of TLS on
   * `amqpPort`: for networks that only let 443 out. Default false.
   */
  webSockets?: boolean;
  /** Lifetime of the SAS tokens the client signs (HTTPS headers, CBS put-token). Default 3600; renewed before expiry. */
  tokenTtlSeconds?: number;
  /** How long a call waits for the hub's answer (and between body chunks). Default 60000. */
  timeoutMs?: number;
}

/** A service client: registry, twins, query, direct methods, cloud-to-device, telemetry, file-upload notifications. */
export interface ServiceClient extends AsyncDisposable {
  /** The hub's host name, as in the connection string. */
  readonly hostName: string;
  /** Device identities (and `devices.modules`), bulk operations, statistics. */
  readonly devices: Devices;
  /** Device and module twins. */
  readonly twins: Twins;
  /** Direct methods. */
  readonly directMethods: DirectMethods;
  /** Cloud-to-device messages, their feedback, purge. */
  readonly cloudToDevice: CloudToDevice;
  /** Reading the built-in endpoint. */
  readonly telemetry: Telemetry;
  /** File upload, service side: the notifications of files devices uploaded. */
  readonly fileUploads: FileUploads;
  /**
   * Runs a query (`SELECT * FROM devices WHERE ...`). The result is an async iterable over every item of every
   * page (pages are fetched as iteration proceeds), with `.pages()` for page-wise access.
   * @throws ArgumentError (synchronously) for empty text or a bad page size.
   */
  query<T = Record<string, unknown>>(text: string, options?: QueryOptions): QueryResult<T>;
  /**
   * Closes every connection: calls in flight reject with AbortError; telemetry, feedback and file-upload
   * notification iterators end.
   * Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Creates a service client. Synchronous: it only parses the connection string and prepares a connection pool;
 * connections open on the first call: HTTPS for the registry, twins, query, direct methods and purge; one AMQP
 * connection (TLS on `amqpPort`, or WebSockets on `port`) for cloud-to-device send, feedback, telemetry and
 * file-upload notifications.
 *
 * @example
 * ```ts
 * const service = createServiceClient({ connectionString, ca });
 * const device = await service.devices.create('d1');
 * await service.close();
 * ```
 * @throws ArgumentError for a missing or invalid connection string or option.
 */
export function createServiceClient(options: ServiceClientOptions): ServiceClient {
  if (typeof options !== 'object' || options === null) {
    throw new ArgumentError('options are required', { field: 'options' });
  }
  if (typeof options.connectionString !== 'string') {
    throw new ArgumentError('connectionString is required', { field: 'connectionString' });
  }
  const connectionString = parseServiceConnectionString(options.connectionString);
  const { port, amqpPort = 5671, webSockets = false, tokenTtlSeconds = 3600, timeoutMs = 60_000 } = options;
  for (const [field, value] of [
    ['port', port],
    ['amqpPort', amqpPort],
  ] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > 65535)) {
      throw new ArgumentError(`${field} must be an integer from 1 to 65535`, { field });
    }
  }
  if (typeof webSockets !== 'boolean') {
    throw new ArgumentError('webSockets must be true or false', { field: 'webSockets' });
  }
  if (!Number.isInteger(tokenTtlSeconds) || tokenTtlSeconds < 60) {
    throw new ArgumentError('tokenTtlSeconds must be an integer of at least 60', { field: 'tokenTtlSeconds' });
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ArgumentError('timeoutMs must be a positive number', { field: 'timeoutMs' });
  }
  const http = new HttpClient({ connectionString, ca: options.ca, port, tokenTtlSeconds, timeoutMs });
  const amqp = new AmqpClient({
    connectionString,
    ca: options.ca,
    amqpPort,
    httpsPort: port ?? splitHost(connectionString.hostName).port ?? 443,
    webSockets,
    tokenTtlSeconds,
    timeoutMs,
    closedSignal: http.closedSignal,
  });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= Promise.all([http.close(), amqp.close()]).then(() => undefined);
    return closing;
  };
  return {
    hostName: http.hostName,
    devices: new Devices(http),
    twins: new Twins(http),
    directMethods: new DirectMethods(http),
    cloudToDevice: new CloudToDevice(http, amqp),
    telemetry: new Telemetry(amqp),
    fileUploads: new FileUploads(amqp),
    query: <T = Record<string, unknown>>(text: string, queryOptions: QueryOptions = {}) =>
      new QueryResult<T>(http, text, queryOptions),
    close,
    [Symbol.asyncDispose]: close,
  };
}
