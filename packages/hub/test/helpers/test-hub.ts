import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSasToken } from '@fieldhub/auth';
import { parseConnectionString } from '@fieldhub/protocol';
import pino from 'pino';
import { createHub, type Hub, type HubConfigInput, type HubInfo } from '../../src/index';

/** A response as the tests see it. */
export interface TestResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The parsed body when it is JSON, else undefined. */
  readonly json: unknown;
}

/** Options of one request. */
export interface TestRequestOptions {
  /** A JSON value (serialised) or raw bytes/string sent as is. */
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  /** Policy to sign with (default iothubowner); `null` sends no Authorization header. */
  readonly policy?: string | null;
  /** Appends `api-version=2021-04-12` unless false. */
  readonly apiVersion?: boolean;
}

/** A real hub on 127.0.0.1 with real TLS and free ports, in a temp data dir. */
export interface TestHub {
  readonly hub: Hub;
  readonly info: HubInfo;
  readonly dataDir: string;
  /** The CA certificate (PEM) to trust. */
  readonly ca: string;
  /** Signs a service SAS token with a policy's primary key. */
  serviceToken(policy?: string): Promise<string>;
  /** An HTTPS request to the hub's REST API. */
  request(method: string, path: string, options?: TestRequestOptions): Promise<TestResponse>;
  /** Stops and starts the hub again on the same data dir (new ports). */
  restart(): Promise<void>;
  /** Stops the hub and removes the temp data dir. */
  stop(): Promise<void>;
}

/** Starts a hub for a test. `config` overrides the test defaults (silent logs, port 0 everywhere). */
export async function startTestHub(config: HubConfigInput = {}): Promise<TestHub> {
  const ownDir = config.dataDir === undefined;
  const dataDir = config.dataDir ?? mkdtempSync(join(tmpdir(), 'fieldhub-test-'));
  const input: HubConfigInput = {
    hostName: 'localhost',
    bind: '127.0.0.1',
    logLevel: 'silent',
    ...config,
    dataDir,
    ports: { mqtt: 0, amqp: 0, https: 0, ...config.ports },
  };
  const logger = pino({ level: process.env.FIELDHUB_TEST_LOG ?? 'silent' });
  let hub = createHub(input, { logger });
  let info = await hub.start();
  const ca = readFileSync(info.caCertificate, 'utf8');

  const policyKeys = async (policy: string): Promise<string> => {
    if (policy === 'iothubowner') {
      const parsed = parseConnectionString(info.serviceConnectionString);
      return parsed.sharedAccessKey ?? '';
    }
    const parsed = parseConnectionString(await hub.core.policies.connectionString(policy));
    return parsed.sharedAccessKey ?? '';
  };

  const serviceToken = async (policy = 'iothubowner') =>
    createSasToken({ resourceUri: info.hostName, key: await policyKeys(policy), keyName: policy, ttlSeconds: 3600 });

  const request = async (method: string, path: string, options: TestRequestOptions = {}): Promise<TestResponse> => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.policy !== null) headers.authorization ??= await serviceToken(options.policy ?? 'iothubowner');
    let body: Buffer | undefined;
    if (options.body !== undefined) {
      if (typeof options.body === 'string' || options.body instanceof Uint8Array) {
        body = Buffer.from(options.body as string | Uint8Array);
      } else {
        body = Buffer.from(JSON.stringify(options.body));
        headers['content-type'] ??= 'application/json; charset=utf-8';
      }
      headers['content-length'] = String(body.length);
    }
    const separator = path.includes('?') ? '&' : '?';
    const fullPath = options.apiVersion === false ? path : `${path}${separator}api-version=2021-04-12`;
    return new Promise<TestResponse>((resolve, reject) => {
      const req = httpsRequest(
        { host: '127.0.0.1', servername: info.hostName, port: info.ports.https, method, path: fullPath, headers, ca },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            if (String(res.headers['content-type'] ?? '').includes('application/json') && text !== '') {
              try {
                json = JSON.parse(text);
              } catch {
                json = undefined;
              }
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  };

  return {
    get hub() {
      return hub;
    },
    get info() {
      return info;
    },
    dataDir,
    ca,
    serviceToken,
    request,
    async restart() {
      await hub.stop();
      hub = createHub(input, { logger });
      info = await hub.start();
    },
    async stop() {
      await hub.stop();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
