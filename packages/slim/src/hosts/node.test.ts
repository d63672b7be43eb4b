import { createServer, type Server, type Socket } from 'node:net';
import { hmacSha256 } from '@fieldhub/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import type { HostSocketEvents } from '../host';
import { createNodeHost } from './node';

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** An echo server on an ephemeral port of 127.0.0.1. */
async function echoServer(): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { port: address.port, sockets };
}

/** Records a socket's events; `closed` settles on onClose. */
function recorder() {
  const seen: string[] = [];
  let close: (error: unknown) => void = () => undefined;
  const closed = new Promise<unknown>((resolve) => {
    close = resolve;
  });
  const events: HostSocketEvents = {
    onConnect: () => seen.push('connect'),
    onData: (bytes) => seen.push(`data ${bytes.constructor.name} ${Array.from(bytes).join(',')}`),
    onClose: (error) => {
      seen.push('close');
      close(error);
    },
  };
  return { seen, events, closed };
}

describe('createNodeHost', () => {
  it('connects, writes, hands over data as plain Uint8Arrays and reports one close', async () => {
    const { port } = await echoServer();
    const host = createNodeHost();
    const { seen, events, closed } = recorder();
    const socket = host.connect({ host: '127.0.0.1', port }, events);
    await expect.poll(() => seen).toContain('connect');
    socket.write(new Uint8Array([1, 2, 3]));
    await expect.poll(() => seen).toContain('data Uint8Array 1,2,3');
    socket.close();
    socket.close();
    expect(await closed).toBeUndefined();
    expect(seen.filter((event) => event === 'close')).toHaveLength(1);
    socket.write(new Uint8Array([4]));
  });

  it('reports a peer that goes away, and a refused connection without a connect', async () => {
    const { port, sockets } = await echoServer();
    const host = createNodeHost();
    const first = recorder();
    host.connect({ host: '127.0.0.1', port }, first.events);
    await expect.poll(() => sockets.length).toBe(1);
    sockets[0]?.destroy();
    await first.closed;
    expect(first.seen).toEqual(['connect', 'close']);
    await new Promise((resolve) => servers.splice(0)[0]?.close(resolve));
    const refused = recorder();
    host.connect({ host: '127.0.0.1', port }, refused.events);
    expect(await refused.closed).toMatchObject({ code: 'ECONNREFUSED' });
    expect(refused.seen).toEqual(['close']);
  });

  it('signs with node:crypto as the portable HMAC-SHA256 does, runs timers and logs only when asked', async () => {
    const logged: string[] = [];
    const host = createNodeHost({ log: (level, message) => logged.push(`${level} ${message}`) });
    const key = new Uint8Array([1, 2, 3, 4]);
    const message = new TextEncoder().encode('hub.example%2Fdevices%2Fd1\n1800000000');
    expect(host.hmacSha256?.(key, message)).toEqual(hmacSha256(key, message));
    host.log?.('info', 'hello');
    expect(logged).toEqual(['info hello']);
    expect(createNodeHost().log).toBeUndefined();
    const fired = await new Promise<string>((resolve) => {
      const cancelled = host.setTimeout(() => resolve('cancelled fired'), 5);
      host.clearTimeout(cancelled);
      host.setTimeout(() => resolve('fired'), 10);
    });
    expect(fired).toBe('fired');
    expect(Math.abs(host.now() - Date.now())).toBeLessThan(1000);
  });
});
