/**
 * The test-process side of the host bridge (bridge.js runs in the engine): real sockets and timers for the engine,
 * and the events its scenario reports. An engine runner (QuickJS, XS) feeds it every up-call and delivers the
 * down-calls it produces, in order, never from inside an up-call (xsnap would deadlock; QuickJS would re-enter).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** An up-call from the engine (bridge.js `up`). */
type UpCall =
  | {
      op: 'connect';
      id: number;
      host: string;
      port: number;
      tls: { servername: string | null; verify: boolean } | null;
    }
  | { op: 'write'; id: number; data: string; ack: boolean }
  | { op: 'close'; id: number }
  | { op: 'setTimer'; id: number; ms: number }
  | { op: 'clearTimer'; id: number }
  | { op: 'log'; level: string; message: string }
  | { op: 'event'; name: string; data: unknown };

/** A down-call to the engine (bridge.js `dispatch`). */
export type DownCall =
  | { op: 'connected'; id: number }
  | { op: 'data'; id: number; data: string }
  | { op: 'written'; id: number; count: number }
  | { op: 'closed'; id: number; error: string | null }
  | { op: 'timer'; id: number }
  | { op: 'command'; command: { name: string; [key: string]: unknown } };

/** Something the scenario reported. */
export interface EngineEvent {
  readonly name: string;
  readonly data: unknown;
}

/** Options of {@link NodeBridge}. */
export interface NodeBridgeOptions {
  /** CA certificates the hub's certificate must chain to (the engine cannot carry them: Node verifies). */
  readonly ca: string;
  /** Delivers one down-call to the engine; the runner queues it and calls the engine later. */
  readonly deliver: (message: DownCall) => void;
}

/**
 * Sockets, timers and the event log of one engine session.
 */
export class NodeBridge {
  private readonly sockets = new Map<number, Socket>();
  private readonly timers = new Map<number, NodeJS.Timeout>();
  private readonly events: EngineEvent[] = [];
  private readonly waiters = new Set<() => void>();
  /** Log lines from the client (`host.log`), for failure messages. */
  readonly logs: string[] = [];
  private disposed = false;

  constructor(private readonly options: NodeBridgeOptions) {}

  /**
   * Handles one up-call (its JSON text) and returns the reply text (empty: no up-call needs an answer). Never
   * calls into the engine synchronously.
   * @throws Error for an up-call it does not know (a bridge bug).
   */
  handle(text: string): string {
    const message = JSON.parse(text) as UpCall;
    switch (message.op) {
      case 'connect':
        this.connect(message);
        break;
      case 'write': {
        const bytes = Buffer.from(message.data, 'base64');
        const socket = this.sockets.get(message.id);
        if (socket && message.ack) {
          socket.write(bytes, (error) => {
            if (!error) this.send({ op: 'written', id: message.id, count: bytes.length });
          });
        } else {
          socket?.write(bytes);
        }
        break;
      }
      case 'close':
        this.sockets.get(message.id)?.end();
        break;
      case 'setTimer': {
        const timer = setTimeout(() => {
          this.timers.delete(message.id);
          this.send({ op: 'timer', id: message.id });
        }, message.ms);
        this.timers.set(message.id, timer);
        break;
      }
      case 'clearTimer':
        clearTimeout(this.timers.get(message.id));
        this.timers.delete(message.id);
        break;
      case 'log':
        this.logs.push(`${message.level}: ${message.message}`);
        break;
      case 'event':
        this.events.push({ name: message.name, data: message.data });
        for (const wake of this.waiters) wake();
        break;
      default:
        throw new Error(`bridge: unknown up-call ${JSON.stringify(message)}`);
    }
    return '';
  }

  /** Sends a command to the scenario. */
  command(name: string, fields: Record<string, unknown> = {}): void {
    this.send({ op: 'command', command: { ...fields, name } });
  }

  /**
   * Waits for the first not yet consumed event named `name` (optionally matching `accept`), consumes and returns
   * its data. An `uncaught` event (an exception in the engine) fails the wait at once.
   * @throws Error on timeout, on an `uncaught` event, or when the session is disposed.
   */
  next(name: string, timeoutMs = 20_000, accept: (data: unknown) => boolean = () => true): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const uncaught = this.events.find((event) => event.name === 'uncaught');
        if (uncaught) {
          finish();
          reject(new Error(`the engine threw: ${JSON.stringify(uncaught.data)}`));
          return true;
        }
        const index = this.events.findIndex((event) => event.name === name && accept(event.data));
        if (index >= 0) {
          const [event] = this.events.splice(index, 1);
          finish();
          resolve(event?.data);
          return true;
        }
        if (this.disposed) {
          finish();
          reject(new Error(`the session ended before "${name}"`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        const seen = this.events.map((event) => event.name).join(', ') || 'none';
        reject(new Error(`no "${name}" event within ${timeoutMs} ms (pending: ${seen}; log: ${this.logs.slice(-5)})`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
      };
      const wake = () => {
        check();
      };
      if (!check()) this.waiters.add(wake);
    });
  }

  /** Records an exception the engine let escape (a runner found it): pending and later waits fail on it. */
  recordUncaught(message: string): void {
    this.events.push({ name: 'uncaught', data: { message } });
    for (const wake of this.waiters) wake();
  }

  /** Names of events not consumed yet (a test asserts no unexpected `error` / `disconnect`). */
  pending(): string[] {
    return this.events.map((event) => event.name);
  }

  /** Destroys every socket and timer; later up-calls and socket events are ignored. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const socket of this.sockets.values()) socket.destroy();
    this.sockets.clear();
    for (const wake of this.waiters) wake();
  }

  private send(message: DownCall): void {
    if (!this.disposed) this.options.deliver(message);
  }

  private connect(message: Extract<UpCall, { op: 'connect' }>): void {
    const { id } = message;
    // The CA and the certificate check live here: TLS terminates in the test process, the engine sees bytes.
    const socket = message.tls
      ? tlsConnect({
          host: message.host,
          port: message.port,
          ca: this.options.ca,
          servername: message.tls.servername ?? message.host,
          rejectUnauthorized: true,
        })
      : netConnect({ host: message.host, port: message.port });
    this.sockets.set(id, socket);
    let failure: string | null = null;
    socket.once(message.tls ? 'secureConnect' : 'connect', () => this.send({ op: 'connected', id }));
    socket.on('data', (chunk: Buffer) => this.send({ op: 'data', id, data: chunk.toString('base64') }));
    socket.on('error', (error) => {
      failure = error.message;
    });
    socket.on('close', () => {
      this.sockets.delete(id);
      this.send({ op: 'closed', id, error: failure });
    });
  }
}
