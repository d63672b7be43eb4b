/**
 * The MQTT device head (protocol-device.md §2): MQTT 3.1.1 over TLS (`listen`, port 8883 by default) and over
 * WebSockets at `/$iothub/websocket` with subprotocol `mqtt` on the HTTPS server (`handleUpgrade`). Both run
 * the same {@link MqttSession} code over a duplex stream. The head owns what sessions share: which session holds
 * each identity (a new connection evicts the old one, §2.1), the connected-devices gauge, and the ordering of
 * connection-state writes per identity.
 *
 * TLS asks every client for a certificate but accepts connections without one (`requestCert: true,
 * rejectUnauthorized: false`): X.509 devices present theirs and the head verifies it against the registry at
 * CONNECT (§6); SAS devices send none.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer, type DetailedPeerCertificate, type Server, type TLSSocket } from 'node:tls';
import { Limits } from '@fieldhub/protocol';
import type { Logger } from 'pino';
import type { createWebSocketStream, WebSocketServer } from 'ws';
import type { HubCore } from '../../core/hub-core';
import type { HubMetrics } from '../../metrics';
import {
  type CertificateChainAuthenticator,
  hubStopping,
  type MqttHeadContext,
  MqttSession,
  type MqttSessionSettings,
  type TransportInfo,
} from './session';

/** The WebSocket path of IoT Hub (§2.1); a query string (Java's `?iothub-no-client-cert=true`) is ignored. */
export const mqttWebSocketPath = '/$iothub/websocket';

/** Options of {@link createMqttHead}. */
export interface MqttHeadOptions {
  /** PEM server certificate chain and key (the HTTPS head's). */
  readonly tls: { readonly cert: string; readonly key: string };
  readonly logger: Logger;
  readonly metrics: HubMetrics;
  /** Checks chains of `certificateAuthority` devices; default `core.certificateAuthorities`. */
  readonly certificateAuthorities?: CertificateChainAuthenticator | undefined;
  /** Tunables; see {@link defaultMqttSessionSettings}. */
  readonly settings?: Partial<MqttSessionSettings> | undefined;
}

/** The defaults of the head's tunables. */
export const defaultMqttSessionSettings: MqttSessionSettings = {
  connectTimeoutMs: 10_000,
  // 256 KB of telemetry, plus a topic with its property bag (at most 64 KB, [MQTT-1.5.3]) and headers.
  maxPacketBytes: Limits.telemetryMessageMaxBytes + 64 * 1024 + 16,
  maxPendingAppends: 512,
  writeHighWaterBytes: 512 * 1024,
  cloudToDeviceWindow: 10,
  clockSkewSeconds: 300,
  maxQueuedDesiredPatches: 100,
};

/** A running MQTT head. */
export interface MqttHead {
  /** Listens for MQTT over TLS; resolves with the port (useful with 0). */
  listen(port: number, host: string): Promise<number>;
  /** Whether an HTTP upgrade request is MQTT over WebSockets (path, and `mqtt` among the subprotocols if any). */
  acceptsUpgrade(request: IncomingMessage): boolean;
  /** Takes over an upgrade request of the HTTPS server (check {@link acceptsUpgrade} first). */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Sessions connected now (after CONNACK). */
  readonly connectedCount: number;
  /** Stops accepting, closes every session and waits for their disconnect bookkeeping. Idempotent. */
  close(): Promise<void>;
}

/** Creates the MQTT head over the core. Nothing listens until `listen` / `handleUpgrade`. */
export function createMqttHead(core: HubCore, options: MqttHeadOptions): MqttHead {
  const settings: MqttSessionSettings = { ...defaultMqttSessionSettings, ...options.settings };
  const { logger, metrics } = options;
  const current = new Map<string, MqttSession>();
  const open = new Set<MqttSession>();
  const connected = new Set<MqttSession>();
  const cleanups = new Set<Promise<void>>();
  const chains = new Map<string, Promise<void>>();
  const connectedByProtocol = { mqtt: 0, 'mqtt-ws': 0 };
  let closing: Promise<void> | undefined;
  let server: Server | undefined;

  const gauge = (protocol: 'mqtt' | 'mqtt-ws', delta: number): void => {
    connectedByProtocol[protocol] += delta;
    metrics.setConnectedDevices(protocol, connectedByProtocol[protocol]);
  };

  const context: MqttHeadContext = {
    core,
    logger,
    settings,
    certificateAuthorities: options.certificateAuthorities ?? core.certificateAuthorities,
    claim(session) {
      const key = session.identity?.key;
      if (key === undefined) return;
      const previous = current.get(key);
      current.set(key, session);
      if (previous && previous !== session) previous.evict();
    },
    isCurrent(session) {
      const key = session.identity?.key;
      return key !== undefined && current.get(key) === session;
    },
    release(session) {
      const key = session.identity?.key;
      if (key !== undefined && current.get(key) === session) current.delete(key);
    },
    serialize(key, task) {
      const previous = chains.get(key) ?? Promise.resolve();
      const run = previous.then(task, task);
      const tail = run.catch(() => undefined);
      chains.set(key, tail);
      void tail.then(() => {
        if (chains.get(key) === tail) chains.delete(key);
      });
      return run;
    },
    connected(session) {
      connected.add(session);
      gauge(session.transport.protocol, 1);
    },
    closed(session, cleanup) {
      open.delete(session);
      if (connected.delete(session)) gauge(session.transport.protocol, -1);
      // A session evicted by another head (an AMQP connection of the identity publishes `session.evict.<key>`) is
      // still this head's current one: no newer MQTT session replaced it, and its finish() releases nothing (an
      // evicted session reports no disconnect; its successor reported the connect). Forget it here, or it would
      // stay until the identity's next MQTT connect. A session evicted by a newer MQTT session is no longer the
      // current one (claim() replaced it first): release() leaves the newer one in place.
      if (session.evicted) context.release(session);
      const tracked = cleanup.catch((error: unknown) =>
        logger.error({ err: error, ...session.describe() }, 'mqtt session cleanup failed'),
      );
      cleanups.add(tracked);
      void tracked.then(() => cleanups.delete(tracked));
    },
  };

  const startSession = (socket: Duplex, transport: TransportInfo): void => {
    if (closing) {
      socket.destroy();
      return;
    }
    open.add(new MqttSession(context, socket, transport));
  };

  // ws loads on the first MQTT-over-WebSockets upgrade, not at start: ~60 ms of module loading off the cold start
  // (W8), paid once by the first WebSocket device instead.
  let webSockets: Promise<{ server: WebSocketServer; toStream: typeof createWebSocketStream }> | undefined;
  const loadWebSockets = () => {
    webSockets ??= import('ws').then((ws) => ({
      server: new ws.WebSocketServer({
        noServer: true,
        // Not worth its memory and CPU for small MQTT packets; the server may decline the extension (RFC 7692).
        perMessageDeflate: false,
        // A frame may carry more than one MQTT packet; the session enforces the per-packet limit.
        maxPayload: settings.maxPacketBytes * 2,
        handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
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
          handshakeTimeout: settings.connectTimeoutMs,
        },
        (socket: TLSSocket) => {
          socket.setNoDelay(true);
          startSession(socket, new TlsTransport('mqtt', socket));
        },
      );
      server.on('tlsClientError', (error) => logger.debug({ err: error }, 'mqtt TLS handshake failed'));
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
      const path = (request.url ?? '').split('?')[0];
      if (path !== mqttWebSocketPath) return false;
      const offered = request.headers['sec-websocket-protocol'];
      if (offered === undefined) return true;
      return offered.split(',').some((protocol) => protocol.trim() === 'mqtt');
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
            startSession(toStream(webSocket), new TlsTransport('mqtt-ws', tlsSocket));
          });
        },
        (error: unknown) => {
          logger.error({ err: error }, 'MQTT over WebSockets unavailable: the ws module did not load');
          socket.destroy();
        },
      );
    },

    get connectedCount() {
      return connected.size;
    },

    close() {
      closing ??= (async () => {
        const stopped = server ? new Promise<void>((resolve) => server?.close(() => resolve())) : Promise.resolve();
        for (const session of [...open]) session.close(hubStopping, 'debug');
        void webSockets?.then(({ server: webSocketServer }) => webSocketServer.close());
        await Promise.allSettled([...cleanups]);
        await stopped;
      })();
      return closing;
    },
  };
}

/**
 * The TLS connection under a session (directly, or under its WebSocket). The remote address and the client
 * certificate are read when asked, not per connection up front (W5: an idle connection is never asked).
 */
class TlsTransport implements TransportInfo {
  constructor(
    readonly protocol: 'mqtt' | 'mqtt-ws',
    private readonly socket: TLSSocket,
  ) {}

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  peerCertificate(): DetailedPeerCertificate | undefined {
    return peerCertificateOf(this.socket);
  }
}

function peerCertificateOf(socket: TLSSocket): DetailedPeerCertificate | undefined {
  if (typeof socket.getPeerCertificate !== 'function') return undefined;
  const certificate = socket.getPeerCertificate(true);
  return certificate && Object.keys(certificate).length > 0 ? certificate : undefined;
}
