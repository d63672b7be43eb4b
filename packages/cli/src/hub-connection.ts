/**
 * How CLI commands reach a hub: through the `hub.json` a running hub writes into its data directory, or through an
 * explicit service connection string (and a CA file to trust). `openService` builds a @fieldhub/service client
 * from either; `connectToHub` is a small HTTPS JSON client for the `/fieldhub/` REST extensions the service SDK
 * does not cover (CA certificates, shared access policies), signing every request with a fresh SAS token as
 * azure-iothub does (protocol-service.md §1.3).
 */
import { readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ArgumentError, HubError, parseServiceConnectionString } from '@fieldhub/protocol';
import type { ServiceClient } from '@fieldhub/service';
import type { Command } from 'commander';

/** The connection flags every hub-talking command accepts. */
export interface HubConnectionOptions {
  /** The hub's data directory, holding `hub.json` (default `./.fieldhub`). */
  dataDir?: string;
  /** A service connection string; then `hub.json` is not read. */
  connectionString?: string;
  /** A PEM file of the CA that signed the hub's TLS certificate (default: hub.json's, else the system's). */
  ca?: string;
}

/** What `<dataDir>/hub.json` holds (written by `fieldhub hub start`; the hub's `HubInfo`). */
export interface HubJson {
  hostName: string;
  /** `mqtt` / `amqp` are null when the hub does not serve that protocol. */
  ports: { https: number; mqtt: number | null; amqp: number | null };
  /** Path of the CA certificate (PEM). */
  caCertificate: string;
  /** The `iothubowner` connection string. */
  serviceConnectionString: string;
}

/** Options of one request. */
export interface HubRequestOptions {
  /** A JSON value, serialised. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Abandons the request. */
  signal?: AbortSignal;
}

/** A hub reached over HTTPS. */
export interface HubClient {
  /** The hub's host name (TLS server name and SAS resource). */
  readonly hostName: string;
  /** The service connection string in use. */
  readonly connectionString: string;
  /** Where requests go. */
  readonly host: string;
  readonly port: number;
  /**
   * Sends a REST request and returns the parsed JSON answer (`undefined` for an empty one).
   * @throws HubError with the hub's code when the answer is not 2xx (Azure's envelope, protocol-service.md §2.2).
   * @throws Error when the hub cannot be reached or does not answer within 30 s.
   */
  request<T>(method: string, path: string, options?: HubRequestOptions): Promise<T>;
}

/** Default data directory, as `fieldhub hub start` uses. */
export const defaultDataDir = './.fieldhub';

// A CLI call that hangs is worse than one that fails: give up on a silent hub.
const REQUEST_TIMEOUT_MS = 30_000;

/** Adds `--data-dir`, `--connection-string` and `--ca` to a command. */
export function addHubConnectionOptions(command: Command): Command {
  return command
    .option('--data-dir <dir>', `the local hub's data directory, holding hub.json (default ${defaultDataDir})`)
    .option('--connection-string <cs>', 'a service connection string (instead of hub.json), e.g. the iothubowner one')
    .option('--ca <file>', "PEM file of the CA to trust for the hub's TLS certificate");
}

/**
 * Reads `<dataDir>/hub.json`.
 * @throws Error naming the file when it is missing (the hub is not running there) or unreadable.
 */
export async function readHubJson(dataDir: string = defaultDataDir): Promise<HubJson> {
  const path = join(dataDir, 'hub.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        `no hub.json in ${resolve(dataDir)}: start the hub there (fieldhub hub start), or pass --data-dir or --connection-string`,
      );
    }
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not valid JSON`);
  }
  const info = parsed as Partial<HubJson> | null;
  if (
    typeof info?.hostName !== 'string' ||
    typeof info.ports?.https !== 'number' ||
    typeof info.serviceConnectionString !== 'string' ||
    typeof info.caCertificate !== 'string'
  ) {
    throw new Error(`${path} lacks hostName, ports.https, caCertificate or serviceConnectionString`);
  }
  // A relative CA path is relative to the data directory the hub wrote it in.
  const caCertificate = isAbsolute(info.caCertificate) ? info.caCertificate : join(dirname(path), info.caCertificate);
  const mqtt = (info.ports as { mqtt?: unknown }).mqtt;
  const amqp = (info.ports as { amqp?: unknown }).amqp;
  return {
    hostName: info.hostName,
    ports: {
      https: info.ports.https,
      mqtt: typeof mqtt === 'number' ? mqtt : null,
      amqp: typeof amqp === 'number' ? amqp : null,
    },
    caCertificate,
    serviceConnectionString: info.serviceConnectionString,
  };
}

/**
 * Reads a file a flag names.
 * @throws Error `cannot read <what> <file>: <reason>`.
 */
export async function readFlagFile(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new Error(`cannot read ${what} ${file}: ${reason}`);
  }
}

/** Where the hub is, found from the flags. */
export interface ResolvedHub {
  /** The service connection string as given or as hub.json has it. */
  readonly connectionString: string;
  /** The host name without a port (TLS server name, device connection strings). */
  readonly hostName: string;
  /** The HTTPS port to dial: hub.json's, else the connection string's, else 443. */
  readonly httpsPort: number;
  /** The MQTT port: hub.json's; undefined with a connection string (devices then use 8883). */
  readonly mqttPort: number | undefined;
  /** The AMQP port: hub.json's; undefined with a connection string (the service SDK then dials 5671). */
  readonly amqpPort: number | undefined;
  /** The CA certificate (PEM text) to trust, when one was found. */
  readonly ca: string | undefined;
}

/**
 * Finds the hub from the flags: `--connection-string` (with `--ca`) wins; otherwise hub.json in `--data-dir`.
 * With hub.json, requests dial `ports.https` on `hostName`; with a connection string, a `HostName=host:port` is
 * dialled on that port and 443 otherwise. The TLS server name is always the host name.
 * @throws ArgumentError for a bad connection string; Error when hub.json or the CA file cannot be read.
 */
export async function resolveHub(options: HubConnectionOptions): Promise<ResolvedHub> {
  let connectionString: string;
  let port: number | undefined;
  let mqttPort: number | undefined;
  let amqpPort: number | undefined;
  let caFile = options.ca;
  if (options.connectionString !== undefined) {
    connectionString = options.connectionString;
  } else {
    const info = await readHubJson(options.dataDir ?? defaultDataDir);
    connectionString = info.serviceConnectionString;
    port = info.ports.https;
    mqttPort = info.ports.mqtt ?? undefined;
    amqpPort = info.ports.amqp ?? undefined;
    caFile ??= info.caCertificate;
  }
  const parsed = parseServiceConnectionString(connectionString);
  const { host, port: statedPort } = splitHostPort(parsed.hostName);
  const ca = caFile === undefined ? undefined : await readFlagFile(caFile, 'CA certificate');
  return { connectionString, hostName: host, httpsPort: port ?? statedPort ?? 443, mqttPort, amqpPort, ca };
}

/** A service client for the hub the flags name; `close()` (or `await using`) releases its connections. */
export interface HubConnection extends AsyncDisposable {
  readonly service: ServiceClient;
  /** The host name without a port. */
  readonly hostName: string;
  /** hub.json's MQTT port; undefined with a connection string. */
  readonly mqttPort: number | undefined;
  /** The CA certificate (PEM) in use, if any. */
  readonly ca: string | undefined;
  close(): Promise<void>;
}

/**
 * Builds a @fieldhub/service client from the flags (see {@link resolveHub}).
 * @throws ArgumentError for a bad connection string; Error when hub.json or the CA file cannot be read.
 */
export async function openService(options: HubConnectionOptions): Promise<HubConnection> {
  const hub = await resolveHub(options);
  // Loaded here, not at the top: `fieldhub hub start` shares this chunk and must not pay for undici (~100 ms).
  const { createServiceClient } = await import('@fieldhub/service');
  const service = createServiceClient({
    connectionString: hub.connectionString,
    port: hub.httpsPort,
    // Cloud-to-device send, feedback and `monitor` speak AMQP (@fieldhub/service 0.2).
    ...(hub.amqpPort === undefined ? {} : { amqpPort: hub.amqpPort }),
    ...(hub.ca === undefined ? {} : { ca: hub.ca }),
  });
  const close = () => service.close();
  return {
    service,
    hostName: hub.hostName,
    mqttPort: hub.mqttPort,
    ca: hub.ca,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A small HTTPS JSON client for the `/fieldhub/` REST extensions (see {@link resolveHub} for how the hub is found).
 * @throws ArgumentError for a bad connection string; Error when hub.json or the CA file cannot be read.
 */
export async function connectToHub(options: HubConnectionOptions): Promise<HubClient> {
  const hub = await resolveHub(options);
  const parsed = parseServiceConnectionString(hub.connectionString);
  const authorization = async (): Promise<string> => {
    if ('sharedAccessSignature' in parsed) return parsed.sharedAccessSignature;
    const { createSasToken } = await import('@fieldhub/auth');
    // Like azure-iothub: a fresh token per request, sr = the host name unencoded (§1.3).
    return createSasToken({
      resourceUri: parsed.hostName,
      key: parsed.sharedAccessKey,
      keyName: parsed.sharedAccessKeyName,
      ttlSeconds: 3600,
      encodeResourceUri: false,
    });
  };
  return createHubClient({
    hostName: hub.hostName,
    connectionString: hub.connectionString,
    port: hub.httpsPort,
    ca: hub.ca,
    authorization,
  });
}

/** Splits `host[:port]` of a connection string's `HostName`. @throws ArgumentError for a port outside 1..65535. */
export function splitHostPort(hostName: string): { host: string; port: number | undefined } {
  const match = /^(.*):(\d{1,5})$/.exec(hostName);
  if (!match) return { host: hostName, port: undefined };
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw new ArgumentError(`HostName has a bad port: ${hostName}`, { field: 'HostName' });
  return { host: match[1] ?? hostName, port };
}

interface HubClientOptions {
  hostName: string;
  connectionString: string;
  port: number;
  ca: string | undefined;
  authorization: () => Promise<string>;
}

function createHubClient(options: HubClientOptions): HubClient {
  const { hostName, port, ca } = options;
  return {
    hostName,
    connectionString: options.connectionString,
    host: hostName,
    port,
    async request<T>(method: string, path: string, requestOptions: HubRequestOptions = {}): Promise<T> {
      const headers: Record<string, string> = {
        accept: 'application/json',
        authorization: await options.authorization(),
        ...requestOptions.headers,
      };
      let body: Buffer | undefined;
      if (requestOptions.body !== undefined) {
        body = Buffer.from(JSON.stringify(requestOptions.body));
        headers['content-type'] = 'application/json; charset=utf-8';
        headers['content-length'] = String(body.length);
      }
      const signal = requestOptions.signal
        ? AbortSignal.any([requestOptions.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)])
        : AbortSignal.timeout(REQUEST_TIMEOUT_MS);
      const response = await httpsSend({ hostName, port, ca, method, path, headers, body, signal, peer: 'hub' });
      const { status, text } = response;
      const json = parseJson(text, String(response.headers['content-type'] ?? ''));
      if (status < 200 || status > 299) throw errorFrom(status, json, text);
      return json as T;
    },
  };
}

/** What {@link httpsSend} answers: the status, the body as text, and the headers. */
export interface HttpsResponse {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * One HTTPS request to the hub or its provisioning service (`peer` names it in errors), with the body given as
 * bytes and the headers as they are; collects the whole answer as text.
 *
 * @throws Error naming `peer` and `host:port` when the request cannot be made or `signal` ends it first.
 */
export function httpsSend(options: {
  hostName: string;
  port: number;
  ca: string | undefined;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
  signal: AbortSignal;
  peer: string;
}): Promise<HttpsResponse> {
  return new Promise<HttpsResponse>((resolvePromise, reject) => {
    const request = httpsRequest(
      {
        host: options.hostName,
        servername: options.hostName,
        port: options.port,
        method: options.method,
        path: options.path,
        headers: options.headers,
        signal: options.signal,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolvePromise({
            status: response.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            headers: response.headers,
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', (error: NodeJS.ErrnoException) => {
      const where = `${options.hostName}:${options.port}`;
      if (error.name === 'AbortError' || error.name === 'TimeoutError') {
        reject(new Error(`the ${options.peer} at ${where} did not answer in time`));
      } else {
        reject(new Error(`cannot reach the ${options.peer} at ${where}: ${error.code ?? error.message}`));
      }
    });
    request.end(options.body);
  });
}

function parseJson(text: string, contentType: string): unknown {
  if (text === '' || !contentType.includes('application/json')) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// Azure's envelope: {"Message":"ErrorCode:<Name>;<text>", ...} (protocol-service.md §0 item 1).
function errorFrom(status: number, json: unknown, text: string): HubError {
  const message = (json as { Message?: unknown } | undefined)?.Message;
  if (typeof message === 'string') {
    const match = /^ErrorCode:([^;]+);(.*)$/s.exec(message);
    if (match?.[1] !== undefined) return HubError.fromCode(match[1], match[2] ?? '');
  }
  const fallback = text.trim().split('\n')[0] ?? '';
  return HubError.fromCode(status * 1000, `HTTP ${status}${fallback ? `: ${fallback}` : ''}`);
}
