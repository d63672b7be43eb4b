import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:https';
import { join } from 'node:path';
import { parseConnectionString } from '@fieldhub/protocol';
import pino, { type Logger } from 'pino';
import { registerBlobEndpoint } from './blob/blob-endpoint';
import { BlobStore, ensureEmbeddedAccount } from './blob/blob-store';
import { parseStorageConnectionString } from './blob/storage-account';
import { embeddedUploadStorage, externalUploadStorage } from './blob/upload-storage';
import type { Bus } from './bus/bus';
import { createLocalBus } from './bus/local/local-bus';
import { defaultPorts, type HubConfig, type HubConfigInput, resolveConfig } from './config';
import type { CoreContext } from './core/context';
import type { FileUploadStorage } from './core/file-uploads';
import { createHubCore, type FileUploadSetup, type HubCore } from './core/hub-core';
import { resolveIdScope } from './dps/provisioning-service';
import { type AmqpHead, createAmqpHead } from './heads/amqp/amqp-head';
import { registerHttpRoutes } from './heads/http/routes/index';
import { createHttpServer } from './heads/http/server';
import { createMqttHead, type MqttHead } from './heads/mqtt/mqtt-head';
import { createMetrics, type HubMetrics } from './metrics';
import { openSqliteStore } from './store/sqlite/sqlite-store';
import type { Store } from './store/store';
import { ensureTlsMaterial, type TlsMaterial } from './tls/dev-certificates';

/** What `hub.json` holds: the contract for tools and tests (`<dataDir>/hub.json`). */
export interface HubInfo {
  readonly hostName: string;
  /**
   * Listening ports: MQTT over TLS, AMQP over TLS, HTTPS (REST, device HTTPS, and MQTT and AMQP over WebSockets at
   * `/$iothub/websocket`). `null` for a protocol head this build does not serve.
   */
  readonly ports: { readonly mqtt: number | null; readonly amqp: number | null; readonly https: number };
  /** Path of the CA certificate (PEM) that signed the server certificate. */
  readonly caCertificate: string;
  /** Connection string of the `iothubowner` policy. */
  readonly serviceConnectionString: string;
  /**
   * The built-in endpoint's Event Hubs-compatible connection string (protocol-service.md §4.1), with the
   * `iothubowner` key: `Endpoint=sb://{host}[:{amqpPort}]/;SharedAccessKeyName=iothubowner;SharedAccessKey={key};
   * EntityPath={hubName}`. The port is written when it is not 5671 (`@azure/event-hubs` reads it from Endpoint).
   */
  readonly eventHubConnectionString: string;
  /**
   * File upload: the container devices upload into and, when the hub's embedded Blob-compatible store serves the
   * uploads, its storage connection string (`DefaultEndpointsProtocol=https;AccountName=..;AccountKey=..;
   * BlobEndpoint=https://{host}[:{port}]`) for tools that read the blobs back; `null` with external storage.
   */
  readonly fileUpload: { readonly containerName: string; readonly storageConnectionString: string | null };
  /**
   * The Device Provisioning Service (issue #10), on the hub's own ports: devices register with `idScope` at
   * `host`; `serviceConnectionString` (policy `provisioningserviceowner`) signs the service API
   * (`/enrollments`, `/enrollmentGroups`, `/registrations`). `null` when `dps.enabled` is false.
   */
  readonly dps: {
    readonly host: string;
    readonly idScope: string;
    readonly ports: { readonly mqtt: number | null; readonly https: number; readonly amqp: number | null };
    readonly serviceConnectionString: string;
  } | null;
}

/** A composed hub. `start()` listens and writes `hub.json`; `stop()` drains and closes. */
export interface Hub {
  readonly config: HubConfig;
  readonly logger: Logger;
  /** The core services (after `start()`). */
  readonly core: HubCore;
  /** Set once started. */
  readonly info: HubInfo | undefined;
  start(): Promise<HubInfo>;
  /** Graceful stop: stop accepting, drain in-flight requests, flush and close the store. Idempotent. */
  stop(): Promise<void>;
}

/** Options beyond the configuration, mostly for tests and embedding. */
export interface CreateHubOptions {
  /** A logger to use instead of pino on stdout. */
  readonly logger?: Logger;
  /** Milliseconds since epoch, injectable. */
  readonly now?: () => number;
}

/**
 * Composes a hub from a (partial) configuration: flags over environment over file over defaults.
 * Nothing is opened until `start()`.
 */
export function createHub(input: HubConfigInput = {}, options: CreateHubOptions = {}): Hub {
  const config = resolveConfig(input);
  const logger = options.logger ?? pino({ level: config.logLevel, base: { hub: config.hubName } });
  const metrics: HubMetrics = createMetrics();
  let store: Store | undefined;
  let bus: Bus | undefined;
  let core: HubCore | undefined;
  let server: Server | undefined;
  let closeApp: (() => Promise<void>) | undefined;
  let mqtt: MqttHead | undefined;
  let amqp: AmqpHead | undefined;
  let info: HubInfo | undefined;
  let stopping: Promise<void> | undefined;
  // The host devices upload to (embedded store): known once the HTTPS port is.
  let httpsHost = config.hostName;

  async function start(): Promise<HubInfo> {
    if (info) return info;
    mkdirSync(config.dataDir, { recursive: true });
    const tls: TlsMaterial = await ensureTlsMaterial(config.dataDir, config.hostName, logger);
    store = await openSqliteStore({ path: join(config.dataDir, 'hub.db'), logger });
    bus = createLocalBus();
    const now = options.now ?? Date.now;
    const upload = fileUploadSetup(config, now, () => httpsHost);
    const context: CoreContext = {
      hubName: config.hubName,
      hostName: config.hostName,
      store,
      bus,
      logger,
      now,
      options: config.core,
    };
    core = await createHubCore(context, metrics, upload.setup, {
      idScope: await resolveIdScope(context, config.dps.idScope),
      hostName: config.dps.host,
      enabled: config.dps.enabled,
    });

    const http = createHttpServer({ tls, logger, metrics });
    registerHttpRoutes(http.app, core);
    if (upload.embedded) {
      registerBlobEndpoint(http.app, {
        store: upload.embedded.store,
        accountName: upload.setup.storage.accountName,
        accountKey: upload.setup.storage.accountKey,
        containerName: config.fileUpload.containerName,
        now,
        logger,
      });
    }
    await http.app.ready();
    server = http.server;
    closeApp = () => http.app.close();
    mqtt = createMqttHead(core, { tls, logger, metrics });
    amqp = createAmqpHead(core, { tls, logger, metrics });
    const mqttHead = mqtt;
    const amqpHead = amqp;
    // Both heads serve `/$iothub/websocket`: the subprotocol (`AMQPWSB10` or `mqtt`) decides.
    server.on('upgrade', (request, socket, head) => {
      if (amqpHead.acceptsUpgrade(request)) amqpHead.handleUpgrade(request, socket, head);
      else if (mqttHead.acceptsUpgrade(request)) mqttHead.handleUpgrade(request, socket, head);
      else socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    const httpsPort = await listenHttps(server, config.ports.https, config.bind, logger);
    httpsHost = httpsPort === defaultPorts.https ? config.hostName : `${config.hostName}:${httpsPort}`;
    const mqttPort = await mqtt.listen(config.ports.mqtt, config.bind);
    const amqpPort = await amqp.listen(config.ports.amqp, config.bind);

    const serviceConnectionString = await core.policies.connectionString('iothubowner');
    info = {
      hostName: config.hostName,
      ports: { mqtt: mqttPort, amqp: amqpPort, https: httpsPort },
      caCertificate: tls.caCertificatePath,
      serviceConnectionString,
      eventHubConnectionString: eventHubConnectionString(config, amqpPort, serviceConnectionString),
      fileUpload: {
        containerName: config.fileUpload.containerName,
        storageConnectionString: upload.embedded
          ? `DefaultEndpointsProtocol=https;AccountName=${upload.setup.storage.accountName};` +
            `AccountKey=${upload.setup.storage.accountKey};BlobEndpoint=https://${httpsHost}`
          : null,
      },
      dps: config.dps.enabled
        ? {
            host: core.dps.hostName,
            idScope: core.dps.idScope,
            ports: { mqtt: mqttPort, https: httpsPort, amqp: amqpPort },
            serviceConnectionString: await core.dps.policies.connectionString(),
          }
        : null,
    };
    writeHubJson(config.dataDir, info);
    logger.info({ ports: info.ports, dataDir: config.dataDir }, 'hub listening');
    return info;
  }

  async function stop(): Promise<void> {
    stopping ??= (async () => {
      // Stop accepting first (MQTT sessions and AMQP connections, then the HTTPS app), then let in-flight requests
      // finish, then stop timers and flush the store.
      await Promise.all([mqtt?.close(), amqp?.close()]);
      // Fastify closes only servers it listened on itself; this one was listened on here (for the 8443 fallback).
      const serverClosed = closeServer(server);
      await closeApp?.();
      await core?.stop();
      await serverClosed;
      await bus?.close();
      await store?.close();
      rmSync(join(config.dataDir, 'hub.json'), { force: true });
      logger.info('hub stopped');
    })();
    return stopping;
  }

  return {
    config,
    logger,
    get core() {
      if (!core) throw new Error('the hub is not started');
      return core;
    },
    get info() {
      return info;
    },
    start,
    stop,
  };
}

/**
 * Where devices upload: an external store when `fileUpload.storageConnectionString` is set, else the embedded
 * store under `<dataDir>/blobs`, with an account named after the hub and a key made once.
 */
function fileUploadSetup(
  config: HubConfig,
  now: () => number,
  httpsHost: () => string,
): { setup: FileUploadSetup; embedded: { store: BlobStore } | undefined } {
  const options = config.fileUpload;
  let storage: FileUploadStorage;
  let embedded: { store: BlobStore } | undefined;
  if (options.storageConnectionString !== undefined) {
    const ca =
      options.storageCaCertificate === undefined ? undefined : readFileSync(options.storageCaCertificate, 'utf8');
    storage = externalUploadStorage(parseStorageConnectionString(options.storageConnectionString), { ca, now });
  } else {
    // Azure account names are 3-24 lower-case letters and digits.
    const accountName = `${config.hubName.toLowerCase().replace(/[^a-z0-9]/g, '')}blobs`.slice(0, 24);
    const account = ensureEmbeddedAccount(config.dataDir, accountName);
    const store = new BlobStore(config.dataDir, options.maxBlobBytes);
    storage = embeddedUploadStorage(store, account, httpsHost);
    embedded = { store };
  }
  return {
    setup: {
      storage,
      options,
      ...(embedded ? { onSweep: (time: number) => embedded.store.sweep(time) } : {}),
    },
    embedded,
  };
}

/**
 * Stops accepting HTTPS connections and resolves once every connection is gone: idle ones are closed at once,
 * in-flight requests get a grace period (live event streams end when the core stops their readers), then the
 * rest are cut.
 */
function closeServer(server: Server | undefined, graceMs = 5000): Promise<void> {
  if (!server?.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * Listens on the HTTPS port. Port 443 needs privileges on most systems: where it is refused (EACCES) the hub
 * falls back to 8443 and says what that means, since the official Azure SDKs always dial 443.
 */
async function listenHttps(server: Server, port: number, host: string, logger: Logger): Promise<number> {
  const listen = (p: number) =>
    new Promise<number>((resolvePort, reject) => {
      const onError = (error: Error) => {
        server.off('listening', onListening);
        reject(error);
      };
      const onListening = () => {
        server.off('error', onError);
        const address = server.address();
        resolvePort(typeof address === 'object' && address ? address.port : p);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(p, host);
    });
  try {
    return await listen(port);
  } catch (error) {
    if (port === 443 && (error as NodeJS.ErrnoException).code === 'EACCES') {
      logger.warn(
        'port 443 needs privileges here; HTTPS falls back to 8443. The official Azure SDKs always dial 443 for ' +
          'REST, HTTPS and WebSockets: run as root, grant CAP_NET_BIND_SERVICE, or forward 443 to 8443 for them.',
      );
      return listen(8443);
    }
    throw error;
  }
}

/**
 * The Event Hubs-compatible connection string of the built-in endpoint (protocol-service.md §4.1): the hub serves
 * the Event Hubs protocol on its own AMQP port, with the hub name as the entity path and the `iothubowner` key.
 */
function eventHubConnectionString(config: HubConfig, amqpPort: number, serviceConnectionString: string): string {
  const key = parseConnectionString(serviceConnectionString).sharedAccessKey ?? '';
  const host = amqpPort === defaultPorts.amqp ? config.hostName : `${config.hostName}:${amqpPort}`;
  return `Endpoint=sb://${host}/;SharedAccessKeyName=iothubowner;SharedAccessKey=${key};EntityPath=${config.hubName}`;
}

/** Writes hub.json atomically (tools may read it while the hub starts). */
function writeHubJson(dataDir: string, info: HubInfo): void {
  const path = join(dataDir, 'hub.json');
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(info, null, 2)}\n`);
  renameSync(temporary, path);
}
