import { createHash } from 'node:crypto';
import { hmacSha256 } from '@fieldhub/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { recorder } from './__fixtures__/socket-recorder';
import {
  createEspruinoHost,
  type EspruinoConnectOptions,
  type EspruinoHostOptions,
  type EspruinoNetModule,
  type EspruinoSocket,
} from './espruino';

// Fakes of Espruino's runtime, not of our server, shaped after Espruino's socketserver.c: `connect(options, cb)`
// registers `cb` for `connect`; on connecting, `connect` fires and, when nothing waits to be sent, `drain`; data
// arrives as binary strings; `write` appends its argument's toString() to a send buffer (so a Uint8Array would
// become "1,2,3") and throws once the socket is closed; the idle loop sends the buffer and fires `drain` when it
// is empty; `end()` closes once the buffer is out; on close come `error` (when there was one), `end`, `close`.

class FakeEspruinoSocket implements EspruinoSocket {
  readonly listeners: Record<string, Array<(value?: unknown) => void>> = {};
  sendBuffer = '';
  sent = '';
  writeCalls = 0;
  connected = false;
  ended = false;
  closed = false;

  constructor(
    readonly options: EspruinoConnectOptions,
    onConnected: () => void,
  ) {
    this.on('connect', onConnected);
  }
  on(event: string, listener: (value?: unknown) => void): this {
    const list = this.listeners[event] ?? [];
    list.push(listener);
    this.listeners[event] = list;
    return this;
  }
  write(data: string): boolean {
    if (this.closed || this.ended) throw new Error('This socket is closed.');
    this.writeCalls++;
    this.sendBuffer += String(data);
    return true;
  }
  end(): void {
    this.ended = true;
  }
  emit(event: string, value?: unknown): void {
    for (const listener of this.listeners[event] ?? []) listener(value);
  }
  // The network's side.
  accept(): void {
    const drained = this.sendBuffer === '';
    this.connected = true;
    this.emit('connect');
    if (drained) this.emit('drain');
  }
  /** One turn of Espruino's idle loop: send what is buffered, then close an ended socket. */
  idle(): void {
    if (this.closed) return;
    if (this.sendBuffer !== '' && this.connected) {
      this.sent += this.sendBuffer;
      this.sendBuffer = '';
      if (!this.ended) this.emit('drain');
    }
    if (this.ended && this.sendBuffer === '') this.hangUp();
  }
  receive(data: string | ArrayBuffer): void {
    this.emit('data', data);
  }
  hangUp(error?: { code: number; message: string }): void {
    if (this.closed) return;
    this.closed = true;
    if (error) this.emit('error', error);
    this.emit('end');
    this.emit('close', !!error);
  }
}

function fakeModule(name: string) {
  const sockets: FakeEspruinoSocket[] = [];
  let refuse = false;
  const module: EspruinoNetModule & { sockets: FakeEspruinoSocket[]; refuseNext(): void } = {
    sockets,
    refuseNext: () => {
      refuse = true;
    },
    connect: (options, onConnected) => {
      if (refuse) {
        refuse = false;
        throw new Error(`${name}: Unable to locate host`);
      }
      const socket = new FakeEspruinoSocket(options, onConnected);
      sockets.push(socket);
      return socket;
    },
  };
  return module;
}

// Espruino's crypto.SHA256: ArrayBuffer in, ArrayBuffer out.
const fakeCrypto = {
  SHA256: (data: ArrayBuffer): ArrayBuffer => {
    if (!(data instanceof ArrayBuffer)) throw new TypeError('ArrayBuffer required');
    return new Uint8Array(createHash('sha256').update(new Uint8Array(data)).digest()).buffer;
  },
};

// The EspruinoDocs hmac module's shape: new HMAC(key, hasher, blockSize, outputSize).digest(message) (RFC 2104).
const fakeHmacModule = {
  HMAC: class {
    private readonly inner: Uint8Array;
    private readonly outer: Uint8Array;
    constructor(
      key: ArrayBuffer,
      private readonly hash: (data: ArrayBuffer) => ArrayBuffer,
      blockSize: number,
      private readonly outputSize: number,
    ) {
      let k = new Uint8Array(key);
      if (k.length > blockSize) k = new Uint8Array(hash(key));
      this.inner = new Uint8Array(blockSize).fill(0x36);
      this.outer = new Uint8Array(blockSize).fill(0x5c);
      for (let i = 0; i < k.length; i++) {
        this.inner[i] = (this.inner[i] as number) ^ (k[i] as number);
        this.outer[i] = (this.outer[i] as number) ^ (k[i] as number);
      }
    }
    digest(message: ArrayBuffer): ArrayBuffer {
      const join = (a: Uint8Array, b: Uint8Array) => {
        const out = new Uint8Array(a.length + b.length);
        out.set(a);
        out.set(b, a.length);
        return out.buffer;
      };
      const innerHash = new Uint8Array(this.hash(join(this.inner, new Uint8Array(message))));
      return this.hash(join(this.outer, innerHash)).slice(0, this.outputSize);
    }
  },
};

function setup(extra: Partial<EspruinoHostOptions> = {}) {
  const net = fakeModule('net');
  const tls = fakeModule('tls');
  const timers: Array<() => void> = [];
  const host = createEspruinoHost({
    net,
    tls,
    setTimeout: (callback) => timers.push(callback),
    clearTimeout: () => {},
    ...extra,
  });
  const runTimers = () => {
    while (timers.length) timers.shift()?.();
  };
  return { host, net, tls, runTimers };
}

function connected() {
  const context = setup();
  const events = recorder();
  const connection = context.host.connect({ host: 'broker.local', port: 1883 }, events);
  const socket = context.net.sockets[0] as FakeEspruinoSocket;
  socket.accept();
  return { ...context, events, connection, socket };
}

const binary = (bytes: number[]) => String.fromCharCode(...bytes);

describe('createEspruinoHost', () => {
  it('reports connected on the connect callback, once', () => {
    const context = setup();
    const events = recorder();
    context.host.connect({ host: 'broker.local', port: 1883 }, events);
    const socket = context.net.sockets[0] as FakeEspruinoSocket;
    expect(socket.options).toEqual({ host: 'broker.local', port: 1883 });
    expect(events.log).toEqual([]);
    socket.accept();
    expect(events.log).toEqual(['connect']);
  });

  it('turns binary-string and ArrayBuffer data into Uint8Arrays with every byte value intact', () => {
    const context = connected();
    const all = Array.from({ length: 256 }, (_, i) => i);
    context.socket.receive(binary(all.slice(0, 100)));
    context.socket.receive(binary(all.slice(100)));
    context.socket.receive(Uint8Array.of(7, 8).buffer);
    expect(context.events.data.every((chunk) => chunk instanceof Uint8Array)).toBe(true);
    expect(context.events.data.map((chunk) => [...chunk])).toEqual([all.slice(0, 100), all.slice(100), [7, 8]]);
  });

  it('writes bytes as a binary string and waits for drain before the next batch', () => {
    const context = connected();
    // Espruino queued a drain at connect time (nothing was buffered); it has run.
    context.connection.write(Uint8Array.of(0x10, 0x00, 0xff));
    expect(context.socket.sendBuffer).toBe(binary([0x10, 0x00, 0xff]));
    context.connection.write(Uint8Array.of(0x80));
    context.connection.write(Uint8Array.of(0x81, 0x82));
    expect(context.socket.writeCalls).toBe(1);
    context.socket.idle();
    expect(context.socket.writeCalls).toBe(2);
    expect(context.socket.sendBuffer).toBe(binary([0x80, 0x81, 0x82]));
    context.socket.idle();
    expect(context.socket.sent).toBe(binary([0x10, 0x00, 0xff, 0x80, 0x81, 0x82]));
  });

  it('keeps writes made before the connection is up and sends them on connect', () => {
    const context = setup();
    const connection = context.host.connect({ host: 'broker.local', port: 1883 }, recorder());
    connection.write(Uint8Array.of(1, 2));
    const socket = context.net.sockets[0] as FakeEspruinoSocket;
    expect(socket.writeCalls).toBe(0);
    socket.accept();
    expect(socket.sendBuffer).toBe(binary([1, 2]));
  });

  it('dials TLS with the CA, key, certificate and server name', () => {
    const context = setup();
    context.host.connect(
      { host: 'hub.example.net', port: 8883, tls: { ca: 'CA PEM', key: 'KEY PEM', cert: 'CERT PEM' } },
      recorder(),
    );
    expect(context.net.sockets).toEqual([]);
    expect(context.tls.sockets[0]?.options).toEqual({
      host: 'hub.example.net',
      port: 8883,
      ca: 'CA PEM',
      key: 'KEY PEM',
      cert: 'CERT PEM',
      servername: 'hub.example.net',
    });
  });

  it('ends the socket on close() and reports onClose once when Espruino closes it, with nothing after', () => {
    const context = connected();
    context.connection.write(Uint8Array.of(1));
    context.connection.close();
    context.connection.close();
    expect(context.socket.ended).toBe(true);
    context.socket.receive('x');
    context.connection.write(Uint8Array.of(2));
    expect(context.events.log).toEqual(['connect']);
    context.socket.idle();
    expect(context.events.log).toEqual(['connect', 'close']);
    expect(context.events.closes).toEqual([undefined]);
  });

  it('reports an error then close as one onClose carrying the error message', () => {
    const context = connected();
    context.socket.hangUp({ code: -14, message: 'Connection reset' });
    context.connection.close();
    context.socket.idle();
    expect(context.events.log).toEqual(['connect', 'close']);
    expect(context.events.closes[0]).toMatchObject({ code: 'SocketError', message: 'Connection reset' });
  });

  it('reports a close by the peer as an error', () => {
    const context = connected();
    context.socket.hangUp();
    expect(context.events.closes).toEqual([expect.objectContaining({ code: 'SocketError' })]);
  });

  it('reports a connect that throws (host not found) as onClose after connect returns', () => {
    const context = setup();
    context.net.refuseNext();
    const events = recorder();
    const connection = context.host.connect({ host: 'nowhere', port: 1883 }, events);
    connection.write(Uint8Array.of(1));
    connection.close();
    expect(events.log).toEqual([]);
    context.runTimers();
    expect(events.closes).toEqual([expect.objectContaining({ code: 'SocketError' })]);
  });

  it('computes HMAC-SHA256 with the hmac module over crypto.SHA256 exactly as @fieldhub/protocol does', () => {
    const context = setup({ crypto: fakeCrypto, hmac: fakeHmacModule });
    const sign = context.host.hmacSha256;
    if (!sign) throw new Error('hmacSha256 missing');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 300 }), (key, message) => {
        const offsetMessage = new Uint8Array(message.length + 5).subarray(5);
        offsetMessage.set(message);
        expect([...sign(key, offsetMessage)]).toEqual([...hmacSha256(key, message)]);
      }),
      { numRuns: 100 },
    );
  });

  it('has no hmacSha256 without crypto and hmac, and refuses one without the other', () => {
    expect(setup().host.hmacSha256).toBeUndefined();
    expect(() => setup({ crypto: fakeCrypto })).toThrow(expect.objectContaining({ code: 'ArgumentError' }));
  });

  it('refuses TLS without the tls module', () => {
    const host = createEspruinoHost({ net: fakeModule('net'), setTimeout: () => 0, clearTimeout: () => {} });
    expect(() => host.connect({ host: 'hub', port: 8883, tls: {} }, recorder())).toThrow(
      expect.objectContaining({ code: 'ArgumentError' }),
    );
  });

  it('uses the injected timers and clock, or the global timers and Date.now()', () => {
    const calls: string[] = [];
    const injected = createEspruinoHost({
      net: fakeModule('net'),
      setTimeout: (callback, ms) => {
        calls.push(`set ${ms}`);
        callback();
        return 3;
      },
      clearTimeout: (handle) => calls.push(`clear ${String(handle)}`),
      now: () => 42,
    });
    injected.clearTimeout(injected.setTimeout(() => calls.push('fired'), 9));
    expect(calls).toEqual(['set 9', 'fired', 'clear 3']);
    expect(injected.now()).toBe(42);
    const globals = createEspruinoHost({ net: fakeModule('net') });
    globals.clearTimeout(globals.setTimeout(() => calls.push('never'), 60_000));
    expect(typeof globals.now()).toBe('number');
    expect(calls).not.toContain('never');
  });
});
