import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { createSasToken } from '@fieldhub/auth';
import type { HubJson } from './hub-process';

/** The REST API version the official SDKs send. */
export const apiVersion = '2021-04-12';

/** A response of {@link serviceRequest}. */
export interface ServiceResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body parsed as JSON (undefined when empty). */
  json<T = unknown>(): T;
}

/** Options of {@link serviceRequest}. */
export interface ServiceRequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  /** A ready `Authorization` value (default: an `iothubowner` token for the hub). */
  authorization?: string;
}

/** Reads the hub's CA certificate (PEM), as a client that trusts it would. */
export function hubCa(info: HubJson): string {
  return readFileSync(info.caCertificate, 'utf8');
}

/** The `iothubowner` key from the service connection string. */
export function ownerKey(info: HubJson): string {
  const key = /SharedAccessKey=([^;]+)/.exec(info.serviceConnectionString)?.[1];
  if (!key) throw new Error('the service connection string has no SharedAccessKey');
  return key;
}

/** A service SAS token (`sr=<host>`, `skn=iothubowner`), as azure-iothub makes them. */
export function serviceToken(info: HubJson, ttlSeconds = 3600): Promise<string> {
  return createSasToken({ resourceUri: info.hostName, key: ownerKey(info), keyName: 'iothubowner', ttlSeconds });
}

/**
 * One HTTPS request to the hub's service API on 127.0.0.1, trusting the hub's CA and naming `localhost` for SNI and
 * the certificate check. Objects are sent as JSON; Buffers and strings as they are.
 */
export async function serviceRequest(
  info: HubJson,
  method: string,
  path: string,
  options: ServiceRequestOptions = {},
): Promise<ServiceResponse> {
  const authorization = options.authorization ?? (await serviceToken(info));
  const headers: Record<string, string> = { authorization, ...options.headers };
  let payload: Buffer | undefined;
  if (options.body !== undefined) {
    if (Buffer.isBuffer(options.body)) payload = options.body;
    else if (typeof options.body === 'string') payload = Buffer.from(options.body);
    else {
      payload = Buffer.from(JSON.stringify(options.body));
      headers['content-type'] ??= 'application/json; charset=utf-8';
    }
    headers['content-length'] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: info.ports.https,
        method,
        path,
        headers: { host: 'localhost', ...headers },
        ca: hubCa(info),
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: <T>() => (body.length === 0 ? undefined : JSON.parse(body.toString('utf8'))) as T,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Like {@link serviceRequest}, but throws unless the status is one of `expected`. */
export async function serviceCall(
  info: HubJson,
  method: string,
  path: string,
  expected: number[],
  options: ServiceRequestOptions = {},
): Promise<ServiceResponse> {
  const response = await serviceRequest(info, method, path, options);
  if (!expected.includes(response.status)) {
    throw new Error(`${method} ${path} answered ${response.status}: ${response.body.toString('utf8').slice(0, 500)}`);
  }
  return response;
}

/** A device identity as the registry returns it (the fields these tests read). */
export interface DeviceIdentity {
  deviceId: string;
  status: string;
  authentication: { type: string; symmetricKey?: { primaryKey: string; secondaryKey: string } };
}

/** Creates a device with SAS keys (made by the hub) and returns it. */
export async function createDevice(info: HubJson, deviceId: string, body: object = {}): Promise<DeviceIdentity> {
  const response = await serviceCall(
    info,
    'PUT',
    `/devices/${encodeURIComponent(deviceId)}?api-version=${apiVersion}`,
    [200],
    {
      body: { deviceId, ...body },
    },
  );
  return response.json<DeviceIdentity>();
}

/**
 * Creates devices in bulk (`POST /devices`, at most 100 per request), all with the same given primary key.
 * @returns nothing; throws when any item failed.
 */
export async function createDevicesInBulk(info: HubJson, deviceIds: readonly string[], key: string): Promise<void> {
  for (let start = 0; start < deviceIds.length; start += 100) {
    const items = deviceIds.slice(start, start + 100).map((id) => ({
      id,
      importMode: 'create',
      status: 'enabled',
      authentication: { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } },
    }));
    await serviceCall(info, 'POST', `/devices?api-version=${apiVersion}`, [200], { body: items });
  }
}
