/**
 * `createGateway(config)`: one {@link McuSession} per serial port, each on a {@link SerialConnection} that
 * reopens after a cable pull. `start()` opens the ports (it does not wait for MCUs: they come and go), `close()`
 * closes every device client and port.
 */
import type { Logger } from '@fieldhub/device';
import { ArgumentError } from '@fieldhub/protocol';
import { type GatewayConfig, validateGatewayConfig } from './config';
import type { LinkSettings } from './link';
import { createJsonLogger } from './logger';
import { McuSession, type McuSessionEvents, type McuSessionOptions } from './mcu-session';
import { SerialConnection } from './serial-port';

/** Options of {@link createGateway} beyond the config. */
export interface GatewayOptions {
  /** Default: JSON lines on stderr at `config.log.level`. */
  readonly logger?: Logger;
  /** Link timing (PROTOCOL.md §6 defaults). */
  readonly link?: Partial<LinkSettings>;
  /** Observes each port's session (by port path). */
  readonly events?: (path: string) => McuSessionEvents;
  /** Passed to every device client. */
  readonly clientOptions?: McuSessionOptions['clientOptions'];
}

/** A running gateway. */
export interface Gateway extends AsyncDisposable {
  /** Opens every port; MCUs handshake whenever they are there. @throws ArgumentError when called twice. */
  start(): Promise<void>;
  /** Closes every device client and port. Idempotent. */
  close(): Promise<void>;
  /** The session of each port, by path. */
  readonly sessions: ReadonlyMap<string, McuSession>;
}

/**
 * Makes a gateway from a validated or raw config (validated here; `hub.ca` must be PEM text, as
 * `loadGatewayConfig` returns it).
 *
 * @throws ArgumentError when the config is invalid.
 * @example
 * ```ts
 * const gateway = createGateway(await loadGatewayConfig('/etc/fieldhub/bridge.json'));
 * await gateway.start();
 * process.on('SIGTERM', () => void gateway.close());
 * ```
 */
export function createGateway(config: GatewayConfig, options: GatewayOptions = {}): Gateway {
  const valid = validateGatewayConfig(config);
  const logger = options.logger ?? createJsonLogger(valid.log?.level ?? 'info');
  const sessions = new Map<string, McuSession>();
  const connections: SerialConnection[] = [];
  let started = false;
  let closed = false;
  for (const port of valid.ports) {
    let connection: SerialConnection | undefined;
    const events = options.events?.(port.path);
    const session = new McuSession({
      name: port.path,
      write: (bytes) => connection?.write(bytes),
      hub: valid.hub,
      devices: port.devices,
      logger,
      ...(options.link !== undefined ? { link: options.link } : {}),
      ...(events !== undefined ? { events } : {}),
      ...(options.clientOptions !== undefined ? { clientOptions: options.clientOptions } : {}),
    });
    connection = new SerialConnection({
      path: port.path,
      baudRate: port.baudRate,
      logger,
      events: {
        opened: () => session.opened(),
        data: (bytes) => session.receive(bytes),
        closed: () => session.closed(),
      },
    });
    sessions.set(port.path, session);
    connections.push(connection);
  }
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await Promise.all(connections.map((connection) => connection.close()));
    await Promise.all([...sessions.values()].map((session) => session.close()));
    logger.info?.('gateway closed');
  };
  return {
    sessions,
    async start() {
      if (started) throw new ArgumentError('the gateway is started already', { field: 'start' });
      started = true;
      logger.info?.('gateway starting', { hub: valid.hub.hostName, ports: valid.ports.map((port) => port.path) });
      for (const connection of connections) connection.start();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
