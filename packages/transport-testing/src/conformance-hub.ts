import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { certificateThumbprint, createSasToken, createSelfSignedCertificate } from '@fieldhub/auth';
import type { TransportCredentials } from '@fieldhub/device-core/transport';
import { createHub, type Hub, type HubInfo } from '@fieldhub/hub';

/** The REST API version the official SDKs send. */
const apiVersion = '2021-04-12';

/** A device made by {@link ConformanceHub.createSasDevice} or {@link ConformanceHub.createX509Device}. */
export interface ConformanceDevice {
  readonly deviceId: string;
  /** Fresh credentials for one connection attempt. */
  credentials(options?: { readonly ttlSeconds?: number }): Promise<TransportCredentials>;
}

/** A real hub, in-process, for transport tests: TLS on 127.0.0.1 with its own CA, an empty registry. */
export interface ConformanceHub {
  readonly hub: Hub;
  /** What the hub listens on (ports are ephemeral). */
  readonly info: HubInfo;
  /** The hub's CA certificate (PEM): pass it as `ca`. */
  readonly ca: string;
  /** The hub's host name, as a connection string names it (no port). */
  readonly hostName: string;
  /** A device with SAS keys the hub made. */
  createSasDevice(deviceId: string): Promise<ConformanceDevice & { readonly primaryKey: string }>;
  /** A device authenticating by the SHA-1 thumbprint of a new self-signed certificate (`selfSigned`). */
  createX509Device(deviceId: string): Promise<ConformanceDevice & { readonly certificate: string }>;
  /** One call to the service REST API with an `iothubowner` token; throws unless the status is expected. */
  serviceRequest(method: string, path: string, body?: unknown, expected?: readonly number[]): Promise<unknown>;
  /** Starts the hub again on the same ports and data after {@link ConformanceHub.stopHub}. */
  restart(): Promise<void>;
  /** Stops the hub but keeps its data (devices, queues) for {@link ConformanceHub.restart}. */
  stopHub(): Promise<void>;
  /** Stops the hub and deletes its data directory. Idempotent. */
  close(): Promise<void>;
}

function ownerKey(info: HubInfo): string {
  const key = /SharedAccessKey=([^;]+)/.exec(info.serviceConnectionString)?.[1];
  if (key === undefined) throw new Error('the service connection string has no SharedAccessKey');
  return key;
}

/**
 * Starts a real hub in-process on 127.0.0.1 with ephemeral ports, a temporary data directory and silent logs,
 * for the transport conformance suite and other integration tests.
 *
 * @throws whatever `hub.start()` throws (a port in use, an unwritable temp directory).
 */
export async function startConformanceHub(): Promise<ConformanceHub> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fieldhub-conformance-'));
  const make = (ports: { mqtt: number; amqp: number; https: number }): Hub =>
    createHub({ dataDir, hostName: 'localhost', bind: '127.0.0.1', ports, logLevel: 'silent' });
  let hub = make({ mqtt: 0, amqp: 0, https: 0 });
  let info = await hub.start();
  const ca = await readFile(info.caCertificate, 'utf8');
  const hostName = info.hostName;
  let closed = false;

  async function serviceRequest(
    method: string,
    path: string,
    body?: unknown,
    expected: readonly number[] = [200, 201, 204],
  ): Promise<unknown> {
    const authorization = await createSasToken({
      resourceUri: hostName,
      key: ownerKey(info),
      keyName: 'iothubowner',
      ttlSeconds: 3600,
    });
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const separator = path.includes('?') ? '&' : '?';
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          servername: hostName,
          port: info.ports.https,
          method,
          path: `${path}${separator}api-version=${apiVersion}`,
          headers: {
            host: hostName,
            authorization,
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json; charset=utf-8', 'content-length': String(payload.length) }),
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
              return;
            }
            resolve(text === '' ? undefined : (JSON.parse(text) as unknown));
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  return {
    get hub() {
      return hub;
    },
    get info() {
      return info;
    },
    ca,
    hostName,
    async createSasDevice(deviceId) {
      const created = (await serviceRequest('PUT', `/devices/${encodeURIComponent(deviceId)}`, {
        deviceId,
        authentication: { type: 'sas' },
      })) as { authentication?: { symmetricKey?: { primaryKey?: string } } };
      const primaryKey = created.authentication?.symmetricKey?.primaryKey;
      if (primaryKey === undefined) throw new Error(`the hub made no SAS key for ${deviceId}`);
      return {
        deviceId,
        primaryKey,
        async credentials(options = {}) {
          const ttlSeconds = options.ttlSeconds ?? 3600;
          const sasToken = await createSasToken({
            resourceUri: `${hostName}/devices/${deviceId}`,
            key: primaryKey,
            ttlSeconds,
          });
          return { hostName, deviceId, sasToken, sasTokenExpiresAt: Date.now() + ttlSeconds * 1000 };
        },
      };
    },
    async createX509Device(deviceId) {
      const { certificate, privateKey } = await createSelfSignedCertificate({ commonName: deviceId });
      const thumbprint = certificateThumbprint(certificate, 'sha1');
      await serviceRequest('PUT', `/devices/${encodeURIComponent(deviceId)}`, {
        deviceId,
        authentication: {
          type: 'selfSigned',
          x509Thumbprint: { primaryThumbprint: thumbprint, secondaryThumbprint: thumbprint },
        },
      });
      return {
        deviceId,
        certificate,
        async credentials() {
          return { hostName, deviceId, x509: { certificate, privateKey } };
        },
      };
    },
    serviceRequest,
    async stopHub() {
      await hub.stop();
    },
    async restart() {
      const ports = { mqtt: info.ports.mqtt ?? 0, amqp: info.ports.amqp ?? 0, https: info.ports.https };
      hub = make(ports);
      try {
        info = await hub.start();
      } catch (error) {
        await hub.stop().catch(() => undefined);
        const inUse = (error as { code?: unknown }).code === 'EADDRINUSE';
        throw new Error(
          inUse
            ? `the hub could not listen again on ${JSON.stringify(ports)}: a port of the stopped hub is still in use ` +
                '(hub.stop() must close every listener)'
            : `the hub did not start again: ${String(error)}`,
          { cause: error },
        );
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await hub.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
