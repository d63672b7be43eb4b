/**
 * The hub's service REST API as a test drives it: registry, twins, and the built-in endpoint through the SSE
 * extension (docs/rest-extensions.md), with an `iothubowner` SAS token made by @fieldhub/auth.
 */
import { request } from 'node:https';
import { createSasToken } from '@fieldhub/auth';
import type { HubJson } from './hub-process';

const apiVersion = '2021-04-12';

function ownerKey(info: HubJson): string {
  const key = /SharedAccessKey=([^;]+)/.exec(info.serviceConnectionString)?.[1];
  if (!key) throw new Error('the service connection string has no SharedAccessKey');
  return key;
}

function serviceToken(info: HubJson): Promise<string> {
  return createSasToken({ resourceUri: info.hostName, key: ownerKey(info), keyName: 'iothubowner', ttlSeconds: 3600 });
}

/** One REST call; resolves with the parsed JSON body; throws unless the status is one of `expected`. */
export async function serviceCall(
  info: HubJson,
  ca: string,
  method: string,
  path: string,
  body?: unknown,
  expected: readonly number[] = [200, 201, 204],
): Promise<unknown> {
  const authorization = await serviceToken(info);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const separator = path.includes('?') ? '&' : '?';
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: info.ports.https,
        method,
        path: `${path}${separator}api-version=${apiVersion}`,
        headers: {
          host: 'localhost',
          authorization,
          ...(payload
            ? { 'content-type': 'application/json; charset=utf-8', 'content-length': String(payload.length) }
            : {}),
        },
        ca,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (!expected.includes(res.statusCode ?? 0)) {
            reject(new Error(`${method} ${path} answered ${res.statusCode}: ${text.slice(0, 500)}`));
          } else {
            resolve(text === '' ? undefined : (JSON.parse(text) as unknown));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Creates a SAS device and returns its connection string (HostName without port, as the hub names itself). */
export async function createSasDevice(
  info: HubJson,
  ca: string,
  deviceId: string,
): Promise<{ connectionString: string; key: string }> {
  const created = (await serviceCall(info, ca, 'PUT', `/devices/${encodeURIComponent(deviceId)}`, {
    deviceId,
    authentication: { type: 'sas' },
  })) as { authentication?: { symmetricKey?: { primaryKey?: string } } };
  const key = created.authentication?.symmetricKey?.primaryKey;
  if (!key) throw new Error(`no key for ${deviceId}`);
  return { connectionString: `HostName=${info.hostName};DeviceId=${deviceId};SharedAccessKey=${key}`, key };
}

/** One event of the SSE stream (the fields these tests read). */
export interface EndpointEventJson {
  deviceId: string | null;
  messageId: string | null;
  body: string;
  systemProperties: Record<string, unknown>;
}

/**
 * Reads the whole built-in endpoint as it is now: `GET /fieldhub/events?from=earliest&live=false`, each event
 * handed to `onEvent` as it is parsed.
 */
export async function readBuiltInEndpoint(
  info: HubJson,
  ca: string,
  onEvent: (event: EndpointEventJson) => void,
): Promise<void> {
  const authorization = await serviceToken(info);
  await new Promise<void>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: info.ports.https,
        path: '/fieldhub/events?from=earliest&live=false',
        headers: { host: 'localhost', authorization, accept: 'text/event-stream' },
        ca,
        agent: false,
      },
      (res) => {
        if (res.statusCode !== 200) {
          let text = '';
          res.on('data', (chunk: Buffer) => {
            text += chunk.toString();
          });
          res.on('end', () => reject(new Error(`GET /fieldhub/events answered ${res.statusCode}: ${text}`)));
          return;
        }
        res.setEncoding('utf8');
        let pending = '';
        res.on('data', (chunk: string) => {
          pending += chunk;
          let end = pending.indexOf('\n\n');
          while (end >= 0) {
            const block = pending.slice(0, end);
            pending = pending.slice(end + 2);
            for (const line of block.split('\n')) {
              if (line.startsWith('data: ')) onEvent(JSON.parse(line.slice(6)) as EndpointEventJson);
            }
            end = pending.indexOf('\n\n');
          }
        });
        res.on('error', reject);
        res.on('end', () => resolve());
        res.on('aborted', () => reject(new Error('the event stream was cut off')));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The message ids of one device's telemetry on the built-in endpoint (hub events left out). */
export async function telemetryIds(info: HubJson, ca: string, deviceId: string): Promise<Set<string>> {
  const ids = new Set<string>();
  await readBuiltInEndpoint(info, ca, (event) => {
    const source = event.systemProperties['iothub-message-source'];
    if (event.deviceId === deviceId && (source === undefined || source === 'Telemetry') && event.messageId) {
      ids.add(event.messageId);
    }
  });
  return ids;
}
