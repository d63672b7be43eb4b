import { request } from 'node:https';
import type { HubJson } from './hub-process';
import { hubCa, serviceToken } from './service-rest';

/** One event of the hub's SSE extension (docs/rest-extensions.md, "Reading the built-in endpoint"). */
export interface EndpointEventJson {
  deviceId: string | null;
  moduleId: string | null;
  messageId: string | null;
  correlationId: string | null;
  userId: string | null;
  contentType: string | null;
  contentEncoding: string | null;
  properties: Record<string, string>;
  systemProperties: Record<string, unknown>;
  body: string;
  bodyEncoding: 'utf-8' | 'base64';
  enqueuedTime: string;
  sequenceNumber: number;
  offset: string;
  partition: number;
}

/**
 * Reads the whole built-in endpoint as it is now: `GET /fieldhub/events?from=earliest&live=false` with an
 * `iothubowner` token. Events are handed to `onEvent` as they are parsed (a 100,000-event read is never held as
 * text); with no callback they are collected and returned.
 */
export async function readBuiltInEndpoint(
  info: HubJson,
  onEvent?: (event: EndpointEventJson) => void,
): Promise<EndpointEventJson[]> {
  const collected: EndpointEventJson[] = [];
  const handle = onEvent ?? ((event: EndpointEventJson) => collected.push(event));
  const authorization = await serviceToken(info);
  await new Promise<void>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: info.ports.https,
        path: '/fieldhub/events?from=earliest&live=false',
        headers: { host: 'localhost', authorization, accept: 'text/event-stream' },
        ca: hubCa(info),
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
              if (line.startsWith('data: ')) handle(JSON.parse(line.slice(6)) as EndpointEventJson);
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
  return collected;
}

/** Only device telemetry (not lifecycle, twin-change or connection-state events). */
export function isTelemetry(event: EndpointEventJson): boolean {
  const source = event.systemProperties['iothub-message-source'];
  return source === undefined || source === 'Telemetry';
}

/** The telemetry a device sent, in endpoint order. */
export async function telemetryOf(info: HubJson, deviceId: string): Promise<EndpointEventJson[]> {
  const events = await readBuiltInEndpoint(info);
  return events.filter((event) => isTelemetry(event) && event.deviceId === deviceId);
}
