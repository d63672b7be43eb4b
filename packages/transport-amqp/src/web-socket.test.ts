import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fakeHubCa } from './__tests__/fake-hub';
import { encodeFrame, parseFrames, WebSocketStream, webSocketAccept } from './web-socket';

const key = (await import('node:fs')).readFileSync(new URL('./__fixtures__/broker-key.pem', import.meta.url), 'utf8');

/** A server frame (unmasked), as RFC 6455 §5.1 wants them. */
function serverFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const header =
    payload.length < 126
      ? Buffer.from([(fin ? 0x80 : 0) | opcode, payload.length])
      : Buffer.from([(fin ? 0x80 : 0) | opcode, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([header, payload]);
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('WebSocket frames', () => {
  it('encodes masked client frames that unmask to the payload, with 7-, 16- and 64-bit lengths', () => {
    for (const length of [0, 125, 126, 65535, 65536, 100_000]) {
      const payload = Buffer.alloc(length, 0x5a);
      const frame = encodeFrame(0x2, payload, Buffer.from([1, 2, 3, 4]));
      expect(frame[0]).toBe(0x82);
      expect((frame[1] as number) & 0x80).toBe(0x80);
      const { frames, rest } = parseFrames(frame);
      expect(rest.length).toBe(0);
      expect(frames).toHaveLength(1);
      expect(frames[0]?.payload.equals(payload)).toBe(true);
    }
  });

  it('parses frames split anywhere, keeping the incomplete rest', () => {
    const stream = Buffer.concat([serverFrame(0x2, Buffer.from('AMQP')), serverFrame(0x9, Buffer.from('hi'))]);
    for (let split = 0; split <= stream.length; split++) {
      const first = parseFrames(stream.subarray(0, split));
      const second = parseFrames(Buffer.concat([first.rest, stream.subarray(split)]));
      const all = [...first.frames, ...second.frames].map((frame) => [frame.opcode, frame.payload.toString()]);
      expect(all).toEqual([
        [0x2, 'AMQP'],
        [0x9, 'hi'],
      ]);
    }
  });

  it('refuses reserved bits, oversize frames and long or fragmented control frames', () => {
    expect(() => parseFrames(Buffer.from([0xc2, 0x00]))).toThrow(/reserved/);
    const huge = Buffer.from([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]);
    expect(() => parseFrames(huge)).toThrow(/too large/);
    expect(() => parseFrames(Buffer.from([0x09, 0x00]))).toThrow(/control frame/);
    expect(() => parseFrames(serverFrame(0x9, Buffer.alloc(126)))).toThrow(/control frame/);
  });

  it('computes the RFC 6455 §1.3 example accept value', () => {
    expect(webSocketAccept('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });
});

describe('WebSocketStream', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  /** An HTTPS server whose upgrade handler the test writes. */
  async function server(onUpgrade: (request: { headers: Record<string, unknown> }, socket: Socket) => void) {
    const https = createServer({ cert: fakeHubCa, key });
    https.on('upgrade', onUpgrade);
    https.listen(0, '127.0.0.1');
    servers.push(https);
    await once(https, 'listening');
    return (https.address() as AddressInfo).port;
  }

  function accept(request: { headers: Record<string, unknown> }, socket: Socket, protocol = 'AMQPWSB10'): void {
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${webSocketAccept(String(request.headers['sec-websocket-key']))}\r\n` +
        `Sec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
    );
  }

  const open = (port: number, onOpen?: () => void) =>
    new WebSocketStream(
      {
        host: '127.0.0.1',
        port,
        path: '/$iothub/websocket',
        subprotocol: 'AMQPWSB10',
        hostHeader: 'localhost',
        tls: { ca: fakeHubCa, servername: 'localhost' },
      },
      onOpen,
    );

  it('carries bytes both ways, answers ping with pong and a close frame with a close frame', async () => {
    const seen: Buffer[] = [];
    let serverSocket: Socket | undefined;
    const port = await server((request, socket) => {
      expect(request.headers['sec-websocket-protocol']).toBe('AMQPWSB10');
      expect(request.headers.host).toBe(`localhost:${socket.localPort as number}`);
      serverSocket = socket;
      accept(request, socket);
      socket.on('data', (data: Buffer) => seen.push(data));
      // Fragmented binary message and a ping in between.
      socket.write(serverFrame(0x2, Buffer.from('AM'), false));
      socket.write(serverFrame(0x9, Buffer.from('p')));
      socket.write(serverFrame(0x0, Buffer.from('QP')));
    });
    let opened = false;
    const stream = open(port, () => {
      opened = true;
    });
    // Written before the upgrade completes: sent after it.
    stream.write(Buffer.from('hello'));
    const received: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => received.push(chunk));
    await until(
      () => Buffer.concat(received).length === 4 && parseFrames(Buffer.concat(seen)).frames.length === 2,
      'the exchange',
    );
    expect(opened).toBe(true);
    expect(Buffer.concat(received).toString()).toBe('AMQP');
    const frames = parseFrames(Buffer.concat(seen)).frames;
    expect(frames.map((frame) => [frame.opcode, frame.payload.toString()])).toEqual([
      [0x2, 'hello'],
      [0xa, 'p'],
    ]);
    const ended = once(stream, 'end');
    serverSocket?.write(serverFrame(0x8, Buffer.from([0x03, 0xe8])));
    await ended;
    await until(() => parseFrames(Buffer.concat(seen)).frames.length === 3, 'the closing frame');
    const closing = parseFrames(Buffer.concat(seen)).frames.at(-1);
    expect(closing?.opcode).toBe(0x8);
    expect(closing?.payload.readUInt16BE(0)).toBe(1000);
  });

  it('fails when the server refuses the upgrade or picks another subprotocol', async () => {
    const refusing = await server((_request, socket) => {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
    });
    const [refused] = await once(open(refusing), 'error');
    expect(String(refused)).toMatch(/401|upgrade/i);
    const other = await server((request, socket) => accept(request, socket, 'mqtt'));
    const [wrong] = await once(open(other), 'error');
    expect(String(wrong)).toMatch(/subprotocol AMQPWSB10/);
  });
});
