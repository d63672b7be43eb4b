/**
 * The AMQP head (protocol-device.md §3.1, protocol-service.md §3.1, §4.1): AMQP 1.0 over TLS (`listen`, port 5671
 * by default) and over WebSockets on the HTTPS server at `/$iothub/websocket` or `/$servicebus/websocket` with
 * subprotocol `AMQPWSB10` (`handleUpgrade`). Each connection ({@link AmqpConnection}) authenticates (SASL, CBS,
 * the TLS client certificate) and routes the links its peer attaches to the device, service, Event Hubs and provisioning (registration) routes.
 *
 * TLS asks every client for a certificate but accepts connections without one (`requestCert: true,
 * rejectUnauthorized: false`), as the MQTT head does: X.509 devices present theirs, SAS clients send none.
 *
 * rhea and ws load on the first connection, not at start (the cold start of a hub nobody dials over AMQP).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer, type DetailedPeerCertificate, type Server, type TLSSocket } from 'node:tls';
import { Limits } from '@fieldhub/protocol';
import type { Logger } from 'pino';
import type { createWebSocketStream, WebSocketServer } from 'ws';
import type { HubCore } from '../../core/hub-core';
import type { HubMetrics } from '../../metrics';
import type { CertificateChainAuthenticator } from '../mqtt/session';
import {
  AmqpConnection,
  type AmqpConnectionLimits,
  type AmqpConnectionShared,
  type ConnectionTransport,
} from './connection';
import type { AmqpHeadSettings, LinkRoute } from './contract';
import { ConnectedIdentities, deviceLinkRoutes } from './device-links/index';
import { dpsLinkRoutes } from './dps-links/index';
import { eventHubsRoutes } from './event-hubs/index';
import type { RheaModule } from './rhea-internals';
import { serviceLinkRoutes } from './service-links/index';

/** The WebSocket paths of AMQP (§3.1: IoT Hub's, and the Service Bus one older SDKs use); a query is ignored. */
export const amqpWebSocketPaths: readonly string[] = ['/$iothub/websocket', '/$servicebus/websocket'];

/** The WebSocket subprotocol of AMQP (§3.1). */
export const amqpWebSocketProtocol = 'AMQPWSB10';

/** The defaults of the head's tunables. */
export const defaultAmqpHeadSettings: AmqpHeadSettings = {
  // 256 KB of telemetry plus its properties and annotations, as the MQTT head allows around its payload.
  maxMessageBytes: Limits.telemetryMessageMaxBytes + 64 * 1024,
  receiverCredit: 100,
  cloudToDeviceWindow: 10,
  clockSkewSeconds: 300,
  authenticationTimeoutMs: 30_000,
};

/** The defaults of the per-connection limits. */
export const defaultAmqpConnectionLimits: AmqpConnectionLimits = {
  // Edge Hub's frame size; larger messages span several transfer frames.
  maxFrameBytes: 64 * 1024,
  // Azure's idle timeout (§3.1: 4 minutes, heartbeats every 2).
  idleTimeoutMs: 240_000,
  // The Node SDKs open a session per link (rhea-promise); a gateway multiplexing devices opens many.
  maxSessions: 4096,
  maxLinks: 8192,
  cbsCredit: 16,
  // 25 messages of the largest size in flight at once, over all links of a connection.
  maxPartialBytes: 8 * 1024 * 1024,
};

/** Options of {@link createAmqpHead}. */
export interface AmqpHeadOptions {
  /** PEM server certificate chain and key (the HTTPS head's). */
  readonly tls: { readonly cert: string; readonly key: string };
  readonly logger: Logger;
  readonly metrics: HubMetrics;
  /**
   * The link routes, in match order; default: the device links, the service links, the Event Hubs endpoint and the
   * registration links of the provisioning service.
   * `$cbs` is served by the connection layer itself.
   */
  readonly routes?: readonly LinkRoute[] | undefined;
  /** Checks chains of `certificateAuthority` devices; default `core.certificateAuthorities`. */
  readonly certificateAuthorities?: CertificateChainAuthenticator | undefined;
  /** Tunables; see {@link defaultAmqpHeadSettings}. */
  readonly settings?: Partial<AmqpHeadSettings> | undefined;
  /** Per-connection limits; see {@link defaultAmqpConnectionLimits}. */
  readonly limits?: Partial<AmqpConnectionLimits> | undefined;
}

/** A running AMQP head. */
export interface AmqpHead {
  /** Listens for AMQP over TLS; resolves with the port (useful with 0). */
  listen(port: number, host: string): Promise<number>;
  /** Whether an HTTP upgrade request is AMQP over WebSockets (path, and `AMQPWSB10` among the subprotocols). */
  acceptsUpgrade(request: IncomingMessage): boolean;
  /** Takes over an upgrade request of the HTTPS server (check {@link acceptsUpgrade} first). */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Connections whose AMQP open was exchanged and that are still open. */
  readonly connectedCount: number;
  /**
   * Stops accepting, drops every connection (its socket, without an AMQP close: see {@link AmqpConnection.close}) and
   * waits for their sockets and route cleanups. Idempotent.
   */
  close(): Promise<void>;
}

/** Creates the AMQP head over the core. Nothing listens until `listen` / `handleUpgrade`. */
export function createAmqpHead(core: HubCore, options: AmqpHeadOptions): AmqpHead {
  const settings: AmqpHeadSettings = { ...defaultAmqpHeadSettings, ...options.settings };
  const limits: AmqpConnectionLimits = { ...defaultAmqpConnectionLimits, ...options.limits };
  const routes = options.routes ?? [
    ...deviceLinkRoutes(),
    ...serviceLinkRoutes(),
    ...eventHubsRoutes(),
    ...dpsLinkRoutes(),
  ];
  const { logger, metrics } = options;
  const connections = new Map<AmqpConnection, () => void>();
  const closedSockets = new Set<Promise<void>>();
  const cleanups = new Set<Promise<void>>();
  const opened = new Set<AmqpConnection>();
  let closing: Promise<void> | undefined;
  let server: Server | undefined;

  // `fieldhub_connected_devices` counts device and module identities, as the MQTT head's label does: a service
  // connection or an Event Hubs reader is no device, and one connection can carry several devices.
  const identities = ConnectedIdentities.of(core);
  for (const protocol of ['amqp', 'amqp-ws'] as const)
    metrics.setConnectedDevices(protocol, identities.count(protocol));
  const unwatchIdentities = identities.watchCount((protocol, count) => metrics.setConnectedDevices(protocol, count));

  let rhea: Promise<RheaModule> | undefined;
  const loadRhea = () => {
    // rhea is CommonJS exporting a container instance: under ESM its functions are on `default`.
    rhea ??= import('rhea').then((module) => ((module as { default?: RheaModule }).default ?? module) as RheaModule);
    return rhea;
  };

  const shared = (module: RheaModule): AmqpConnectionShared => ({
    core,
    logger,
    settings,
    limits,
    routes,
    certificateAuthorities: options.certificateAuthorities ?? core.certificateAuthorities,
    rhea: module,
    opened(connection) {
      opened.add(connection);
      metrics.countConnection(connection.protocol, 'opened');
    },
    closed(connection, cleanup) {
      opened.delete(connection);
      connections.get(connection)?.();
      connections.delete(connection);
      cleanups.add(cleanup);
      void cleanup.then(() => cleanups.delete(cleanup));
    },
    dropped(connection, reason) {
      metrics.countConnection(connection.protocol, reason);
    },
  });
  let sharedState: AmqpConnectionShared | undefined;

  const startConnection = (socket: Duplex, transport: ConnectionTransport): void => {
    if (closing) {
      socket.destroy();
      return;
    }
    loadRhea().then(
      (module) => {
        if (closing || socket.destroyed) {
          socket.destroy();
          return;
        }
        sharedState ??= shared(module);
        let resolveClosed: () => void = () => undefined;
        const socketClosed = new Promise<void>((resolve) => {
          resolveClosed = resolve;
        });
        closedSockets.add(socketClosed);
        void socketClosed.then(() => closedSockets.delete(socketClosed));
        const connection = new AmqpConnection(sharedState, socket, transport);
        connections.set(connection, resolveClosed);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'AMQP unavailable: the rhea module did not load');
        socket.destroy();
      },
    );
  };

  let webSockets: Promise<{ server: WebSocketServer; toStream: typeof createWebSocketStream }> | undefined;
  const loadWebSockets = () => {
    webSockets ??= import('ws').then((ws) => ({
      server: new ws.WebSocketServer({
        noServer: true,
        perMessageDeflate: false,
        // A WebSocket message carries one or more AMQP frames; the connection checks each frame's size.
        maxPayload: limits.maxFrameBytes * 4,
        handleProtocols: (protocols) => {
          for (const protocol of protocols) {
            if (protocol.toUpperCase() === amqpWebSocketProtocol) return protocol;
          }
          return false;
        },
      }),
      toStream: ws.createWebSocketStream,
    }));
    return webSockets;
  };

  return {
    listen(port, host) {
      server = createServer(
        {
          cert: options.tls.cert,
          key: options.tls.key,
          requestCert: true,
          rejectUnauthorized: false,
          handshakeTimeout: settings.authenticationTimeoutMs,
        },
        (socket: TLSSocket) => {
          socket.setNoDelay(true);
          startConnection(socket, new TlsTransport('amqp', socket));
        },
      );
      server.on('tlsClientError', (error) => logger.debug({ err: error }, 'amqp TLS handshake failed'));
      const listening = server;
      return new Promise<number>((resolve, reject) => {
        listening.once('error', reject);
        listening.listen(port, host, () => {
          listening.off('error', reject);
          const address = listening.address();
          resolve(typeof address === 'object' && address ? address.port : port);
        });
      });
    },

    acceptsUpgrade(request) {
      const path = (request.url ?? '').split('?')[0] ?? '';
      if (!amqpWebSocketPaths.includes(path)) return false;
      const offered = request.headers['sec-websocket-protocol'];
      if (offered === undefined) return false;
      return offered.split(',').some((protocol) => protocol.trim().toUpperCase() === amqpWebSocketProtocol);
    },

    handleUpgrade(request, socket, head) {
      if (closing) {
        socket.destroy();
        return;
      }
      const tlsSocket = request.socket as TLSSocket;
      tlsSocket.setNoDelay?.(true);
      loadWebSockets().then(
        ({ server: webSocketServer, toStream }) => {
          if (closing) {
            socket.destroy();
            return;
          }
          webSocketServer.handleUpgrade(request, socket, head, (webSocket) => {
            const stream = toStream(webSocket);
            startConnection(stream, new TlsTransport('amqp-ws', tlsSocket));
          });
        },
        (error: unknown) => {
          logger.error({ err: error }, 'AMQP over WebSockets unavailable: the ws module did not load');
          socket.destroy();
        },
      );
    },

    get connectedCount() {
      return opened.size;
    },

    close() {
      closing ??= (async () => {
        const stopped = server ? new Promise<void>((resolve) => server?.close(() => resolve())) : Promise.resolve();
        for (const connection of [...connections.keys()]) connection.close();
        void webSockets?.then(({ server: webSocketServer }) => webSocketServer.close());
        await Promise.allSettled([...closedSockets]);
        await Promise.allSettled([...cleanups]);
        await stopped;
        // After the cleanups: the gauge has seen the identities of the dropped connections leave.
        unwatchIdentities();
      })();
      return closing;
    },
  };
}

/** The TLS connection under an AMQP connection (directly, or under its WebSocket). */
class TlsTransport implements ConnectionTransport {
  constructor(
    readonly protocol: 'amqp' | 'amqp-ws',
    private readonly socket: TLSSocket,
  ) {}

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  peerCertificate(): DetailedPeerCertificate | undefined {
    if (typeof this.socket.getPeerCertificate !== 'function') return undefined;
    const certificate = this.socket.getPeerCertificate(true);
    return certificate && Object.keys(certificate).length > 0 ? certificate : undefined;
  }
}
