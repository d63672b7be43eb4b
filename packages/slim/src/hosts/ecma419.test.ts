import { createHash } from 'node:crypto';
import { hmacSha256 } from '@fieldhub/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { recorder } from './__fixtures__/socket-recorder';
import {
  createEcma419Host,
  type Ecma419HostOptions,
  type Ecma419ResolveOptions,
  type Ecma419Socket,
  type Ecma419SocketOptions,
} from './ecma419';

// Fakes of the ECMA-419 runtime (Moddable), not of our server: sockets that behave as embedded-runtimes.md §4 says
// (first onWritable = connected, write() throws past the writable count, read() gives an ArrayBuffer or undefined,
// onError = gone, no callback after close()), calling back with `this` bound to a private object as Moddable's
// sample TLS socket does (§2.1); a DNS resolver; Moddable's `timer` module as a queue the test runs.

class FakeSocket implements Ecma419Socket {
  static made: FakeSocket[] = [];
  readonly options: Ecma419SocketOptions;
  written: number[] = [];
  writes: number[] = [];
  refusedWrites = 0;
  closed = false;
  /** Bytes a write costs beyond its length (a TLS record's overhead). */
  overhead = 0;
  private writable = 0;
  private received: number[] = [];
  private readonly callbacks: Pick<Ecma419SocketOptions, 'onReadable' | 'onWritable' | 'onError'>;

  constructor(options: Ecma419SocketOptions) {
    if (typeof options.address !== 'string' || !/^[\d.]+$|:/.test(options.address)) {
      throw new TypeError('TCP: address must be an IP address');
    }
    if (typeof options.port !== 'number') throw new TypeError('TCP: port required');
    this.options = options;
    this.callbacks = { onReadable: options.onReadable, onWritable: options.onWritable, onError: options.onError };
    FakeSocket.made.push(this);
  }
  read(): ArrayBuffer | undefined {
    if (this.closed) throw new Error('closed');
    if (this.received.length === 0) return undefined;
    const bytes = Uint8Array.from(this.received);
    this.received = [];
    return bytes.buffer;
  }
  write(data: Uint8Array | ArrayBuffer): void {
    if (this.closed) throw new Error('closed');
    if (!(data instanceof Uint8Array) && !(data instanceof ArrayBuffer)) throw new TypeError('buffer required');
    const bytes = new Uint8Array(data);
    if (bytes.length + this.overhead > this.writable) {
      this.refusedWrites++;
      throw new Error('write exceeds writable');
    }
    this.writable -= bytes.length + this.overhead;
    this.writes.push(bytes.length);
    this.written.push(...bytes);
  }
  close(): void {
    this.closed = true;
  }
  // The test's side of the wire.
  grant(count: number): void {
    if (this.closed) return;
    this.writable = count;
    this.callbacks.onWritable.call(this.callbacks, count);
  }
  deliver(bytes: number[]): void {
    if (this.closed) return;
    this.received.push(...bytes);
    this.callbacks.onReadable.call(this.callbacks, this.received.length);
  }
  fail(): void {
    if (this.closed) return;
    this.callbacks.onError.call(this.callbacks);
  }
}

class FakeResolver {
  static made: FakeResolver[] = [];
  readonly requests: Ecma419ResolveOptions[] = [];
  constructor(readonly options: Record<string, unknown>) {
    FakeResolver.made.push(this);
  }
  resolve(options: Ecma419ResolveOptions): void {
    this.requests.push(options);
  }
}

function fakeTimer() {
  let next = 1;
  const pending: Array<{ id: number; callback: () => void }> = [];
  return {
    set(callback: () => void, _ms: number): unknown {
      pending.push({ id: next, callback });
      return next++;
    },
    clear(id: unknown): void {
      const at = pending.findIndex((entry) => entry.id === id);
      if (at >= 0) pending.splice(at, 1);
    },
    run(): void {
      while (pending.length) pending.shift()?.callback();
    },
    get size(): number {
      return pending.length;
    },
  };
}

// Moddable's `crypt` Digest: reset(), write(buffer), close() -> ArrayBuffer, blockSize.
class FakeDigest {
  readonly blockSize = 64;
  private parts: Buffer[] = [];
  constructor(algorithm: string) {
    if (algorithm !== 'SHA256') throw new Error(`unsupported ${algorithm}`);
  }
  reset(): void {
    this.parts = [];
  }
  write(data: ArrayBuffer): void {
    if (!(data instanceof ArrayBuffer)) throw new TypeError('ArrayBuffer required');
    this.parts.push(Buffer.from(data));
  }
  close(): ArrayBuffer {
    const digest = createHash('sha256').update(Buffer.concat(this.parts)).digest();
    this.parts = [];
    return new Uint8Array(digest).buffer;
  }
}

// Moddable's `hmac` module shape: new HMAC(digest, keyBuffer), update(buffer), close() -> ArrayBuffer (RFC 2104).
class FakeHmac {
  private readonly outer: Uint8Array;
  private readonly digest: FakeDigest;
  constructor(digestObject: unknown, key: ArrayBuffer) {
    const digest = digestObject as FakeDigest;
    this.digest = digest;
    let k = new Uint8Array(key);
    if (k.length > digest.blockSize) {
      digest.reset();
      digest.write(key);
      k = new Uint8Array(digest.close());
    }
    const inner = new Uint8Array(digest.blockSize).fill(0x36);
    this.outer = new Uint8Array(digest.blockSize).fill(0x5c);
    for (let i = 0; i < k.length; i++) {
      inner[i] = (inner[i] as number) ^ (k[i] as number);
      this.outer[i] = (this.outer[i] as number) ^ (k[i] as number);
    }
    digest.reset();
    digest.write(inner.buffer);
  }
  update(data: ArrayBuffer): void {
    this.digest.write(data);
  }
  close(): ArrayBuffer {
    const innerHash = this.digest.close();
    this.digest.reset();
    this.digest.write(this.outer.buffer as ArrayBuffer);
    this.digest.write(innerHash);
    return this.digest.close();
  }
}

function setup(extra: Partial<Ecma419HostOptions> = {}) {
  FakeSocket.made = [];
  FakeResolver.made = [];
  const timer = fakeTimer();
  const host = createEcma419Host({ TCP: FakeSocket, TLSSocket: FakeSocket, Timer: timer, ...extra });
  return { host, timer };
}

/** Opens a connection to an address and lets the fake accept it with `window` writable bytes. */
function connected(window: number) {
  const context = setup();
  const events = recorder();
  const connection = context.host.connect({ host: '192.0.2.7', port: 8883 }, events);
  context.timer.run();
  const socket = FakeSocket.made[0] as FakeSocket;
  socket.grant(window);
  return { ...context, events, connection, socket };
}

describe('createEcma419Host', () => {
  it('dials an IP address directly and reports connected on the first onWritable, once', () => {
    const context = setup();
    const events = recorder();
    context.host.connect({ host: '192.0.2.7', port: 1883 }, events);
    expect(FakeSocket.made).toEqual([]);
    context.timer.run();
    const socket = FakeSocket.made[0] as FakeSocket;
    expect(socket.options).toMatchObject({ address: '192.0.2.7', port: 1883, format: 'buffer' });
    expect(socket.options.tls).toBeUndefined();
    expect(events.log).toEqual([]);
    socket.grant(100);
    socket.grant(200);
    expect(events.log).toEqual(['connect']);
  });

  it('hands every chunk read to onData as a Uint8Array, in order', () => {
    const context = connected(100);
    context.socket.deliver([0x20, 2]);
    context.socket.deliver([0, 0, 0xd0]);
    context.socket.deliver([0]);
    expect(context.events.data.every((chunk) => chunk instanceof Uint8Array)).toBe(true);
    expect(context.events.data.map((chunk) => [...chunk])).toEqual([[0x20, 2], [0, 0, 0xd0], [0]]);
  });

  it('never writes more than onWritable allowed: queues, splits, and resumes on the next onWritable', () => {
    const context = connected(10);
    const bytes = Uint8Array.from({ length: 25 }, (_, i) => i);
    context.connection.write(bytes.subarray(0, 20));
    context.connection.write(bytes.subarray(20));
    expect(context.socket.written).toEqual([...bytes.subarray(0, 10)]);
    context.socket.grant(10);
    expect(context.socket.written).toEqual([...bytes.subarray(0, 20)]);
    context.socket.grant(100);
    expect(context.socket.written).toEqual([...bytes]);
    expect(context.socket.refusedWrites).toBe(0);
  });

  it('keeps writes made before the connection is up and sends them on the first onWritable', () => {
    const context = setup();
    const events = recorder();
    const connection = context.host.connect({ host: '192.0.2.7', port: 8883 }, events);
    connection.write(Uint8Array.of(1, 2, 3));
    context.timer.run();
    const socket = FakeSocket.made[0] as FakeSocket;
    connection.write(Uint8Array.of(4));
    expect(socket.written).toEqual([]);
    socket.grant(64);
    expect(socket.written).toEqual([1, 2, 3, 4]);
  });

  it('retries a write the socket refused (TLS record overhead) on the next onWritable, without losing bytes', () => {
    const context = connected(10);
    context.socket.overhead = 4;
    context.connection.write(Uint8Array.from({ length: 8 }, (_, i) => i));
    expect(context.socket.refusedWrites).toBe(1);
    expect(context.socket.written).toEqual([]);
    context.socket.grant(40);
    expect(context.socket.written).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('writes at most one TLS record (16384 bytes) at a time', () => {
    const context = connected(1 << 20);
    context.connection.write(new Uint8Array(40000));
    expect(context.socket.writes).toEqual([16384, 16384, 7232]);
  });

  it('closes the socket and reports onClose once, after close() returns, with nothing after it', () => {
    const context = connected(100);
    context.connection.close();
    expect(context.socket.closed).toBe(true);
    expect(context.events.log).toEqual(['connect']);
    context.connection.close();
    context.timer.run();
    context.socket.deliver([1]);
    context.socket.fail();
    context.connection.write(Uint8Array.of(1));
    context.timer.run();
    expect(context.events.log).toEqual(['connect', 'close']);
    expect(context.events.closes).toEqual([undefined]);
  });

  it('reports onError as one onClose with a SocketError and closes the socket', () => {
    const context = connected(100);
    context.socket.fail();
    context.connection.close();
    context.timer.run();
    expect(context.events.log).toEqual(['connect', 'close']);
    expect(context.events.closes[0]).toMatchObject({ code: 'SocketError' });
    expect(context.socket.closed).toBe(true);
  });

  it('stops reading when onData closes the connection', () => {
    const context = connected(100);
    context.events.onData = () => {
      context.events.log.push('data');
      context.connection.close();
    };
    context.socket.deliver([1, 2]);
    context.timer.run();
    expect(context.events.log).toEqual(['connect', 'data', 'close']);
  });

  it('resolves a host name with the injected resolver, then dials the address with TLS in both spellings', () => {
    const context = setup({ dns: { io: FakeResolver, servers: ['192.0.2.53'] } });
    const events = recorder();
    context.host.connect({ host: 'hub.example.net', port: 8883, tls: {} }, events);
    const resolver = FakeResolver.made[0] as FakeResolver;
    expect(resolver.options).toMatchObject({ io: FakeResolver, servers: ['192.0.2.53'] });
    expect(resolver.requests.map((request) => request.host)).toEqual(['hub.example.net']);
    expect(FakeSocket.made).toEqual([]);
    resolver.requests[0]?.onResolved('hub.example.net', '192.0.2.10');
    resolver.requests[0]?.onResolved('hub.example.net', '192.0.2.11');
    expect(FakeSocket.made.length).toBe(1);
    const options = (FakeSocket.made[0] as FakeSocket).options;
    expect(options.address).toBe('192.0.2.10');
    expect(options.tls).toEqual({ host: 'hub.example.net' });
    expect(options.host).toBe('hub.example.net');
    expect(options.secure).toEqual({ verify: true, serverName: 'hub.example.net' });
    expect(options.TCP).toEqual({ io: FakeSocket });
    // One resolver serves every connection.
    context.host.connect({ host: 'hub.example.net', port: 8883 }, recorder());
    expect(FakeResolver.made.length).toBe(1);
  });

  it('maps CA, client certificate, key, server name and verify onto the TLS options', () => {
    const context = setup();
    const ca = [Uint8Array.of(1), Uint8Array.of(2)];
    const cert = Uint8Array.of(3);
    const key = Uint8Array.of(4);
    context.host.connect(
      { host: '127.0.0.1', port: 8883, tls: { ca, cert, key, servername: 'hub.local', verify: false } },
      recorder(),
    );
    context.timer.run();
    const options = (FakeSocket.made[0] as FakeSocket).options;
    expect(options.tls).toEqual({ host: 'hub.local', ca, clientCertificate: cert, clientKey: key });
    expect(options.secure).toEqual({
      verify: false,
      serverName: 'hub.local',
      certificate: ca[0],
      clientKey: key,
      clientCertificates: [cert],
    });
  });

  it('sends no server name when dialling an address without one', () => {
    const context = setup();
    context.host.connect({ host: '127.0.0.1', port: 8883, tls: {} }, recorder());
    context.timer.run();
    const options = (FakeSocket.made[0] as FakeSocket).options;
    expect(options.tls).toEqual({});
    expect(options.secure).toEqual({ verify: true });
    expect(options.host).toBeUndefined();
  });

  it('reports a failed lookup, a missing resolver and a refused socket as one onClose after connect returns', () => {
    const lookup = setup({ dns: { io: FakeResolver } });
    const failedLookup = recorder();
    lookup.host.connect({ host: 'nowhere.example', port: 8883 }, failedLookup);
    FakeResolver.made[0]?.requests[0]?.onError();
    FakeResolver.made[0]?.requests[0]?.onError();
    expect(failedLookup.closes).toEqual([expect.objectContaining({ code: 'DnsFailed' })]);
    expect(FakeSocket.made).toEqual([]);

    const noResolver = setup();
    const missing = recorder();
    noResolver.host.connect({ host: 'hub.example.net', port: 8883 }, missing);
    expect(missing.log).toEqual([]);
    noResolver.timer.run();
    expect(missing.closes).toEqual([expect.objectContaining({ code: 'DnsFailed' })]);

    const refusing = setup();
    const refused = recorder();
    // The constructor throws (ECMA-419: a busy resource or refused options); the fake refuses a port that is no number.
    refusing.host.connect({ host: '::1', port: 'x' as unknown as number }, refused);
    expect(refused.log).toEqual([]);
    refusing.timer.run();
    expect(refused.closes).toEqual([expect.objectContaining({ code: 'SocketError' })]);
  });

  it('computes HMAC-SHA256 with Moddable Digest and HMAC exactly as @fieldhub/protocol does', () => {
    const context = setup({ Digest: FakeDigest, HMAC: FakeHmac });
    const sign = context.host.hmacSha256;
    if (!sign) throw new Error('hmacSha256 missing');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 300 }), (key, message) => {
        const offsetKey = new Uint8Array(key.length + 3).subarray(3);
        offsetKey.set(key);
        expect([...sign(offsetKey, message)]).toEqual([...hmacSha256(key, message)]);
      }),
      { numRuns: 100 },
    );
  });

  it('has no hmacSha256 without Digest and HMAC, and refuses one without the other', () => {
    expect(setup().host.hmacSha256).toBeUndefined();
    expect(() => setup({ Digest: FakeDigest })).toThrow(expect.objectContaining({ code: 'ArgumentError' }));
  });

  it('takes timers from setTimeout / clearTimeout when given, and refuses to work without any timer', () => {
    const calls: string[] = [];
    const host = createEcma419Host({
      TCP: FakeSocket,
      setTimeout: (callback, ms) => {
        calls.push(`set ${ms}`);
        callback();
        return 7;
      },
      clearTimeout: (handle) => calls.push(`clear ${String(handle)}`),
      now: () => 1234,
    });
    host.clearTimeout(host.setTimeout(() => calls.push('fired'), 5));
    expect(calls).toEqual(['set 5', 'fired', 'clear 7']);
    expect(host.now()).toBe(1234);
    expect(() => createEcma419Host({ TCP: FakeSocket })).toThrow(expect.objectContaining({ code: 'ArgumentError' }));
  });

  it('refuses TLS without a TLSSocket class, plain TCP without a TCP class, and neither class at all', () => {
    const plain = createEcma419Host({ TCP: FakeSocket, Timer: fakeTimer() });
    expect(() => plain.connect({ host: '127.0.0.1', port: 8883, tls: {} }, recorder())).toThrow(
      expect.objectContaining({ code: 'ArgumentError' }),
    );
    const secure = createEcma419Host({ TLSSocket: FakeSocket, Timer: fakeTimer() });
    expect(() => secure.connect({ host: '127.0.0.1', port: 1883 }, recorder())).toThrow(
      expect.objectContaining({ code: 'ArgumentError' }),
    );
    expect(() => createEcma419Host({ Timer: fakeTimer() })).toThrow(expect.objectContaining({ code: 'ArgumentError' }));
  });

  it('dials TLS with a TLSSocket class alone (a native TLS socket needs no TCP class)', () => {
    const timer = fakeTimer();
    FakeSocket.made = [];
    const host = createEcma419Host({ TLSSocket: FakeSocket, Timer: timer });
    host.connect({ host: '127.0.0.1', port: 8883, tls: { servername: 'hub.local' } }, recorder());
    timer.run();
    const options = (FakeSocket.made[0] as FakeSocket).options;
    expect(options.TCP).toBeUndefined();
    expect(options.tls).toEqual({ host: 'hub.local' });
  });
});
