/**
 * A WebSocket client (RFC 6455) as a byte stream, enough to carry AMQP over WebSockets (protocol-device.md §3.1:
 * `wss://<host>:443/$iothub/websocket`, subprotocol `AMQPWSB10`). rhea reads and writes a socket-shaped stream; this
 * is one, made from an HTTPS upgrade on `node:https`.
 *
 * Why not the `ws` package: ARCHITECTURE.md gives a transport exactly one wire library (here rhea-promise, which
 * brings no WebSocket of its own, unlike MQTT.js), and Node 20 has no WebSocket global (nor one that takes a
 * client certificate and an extra CA). AMQP needs little of WebSockets: binary messages in both directions
 * (fragmented or not, their payloads are the AMQP byte stream), ping/pong and the closing handshake; no text,
 * no extensions (none is offered, so none may be used, RFC 6455 §9.1).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { ConnectionOptions as TlsOptions } from 'node:tls';

/** RFC 6455 §1.3: appended to the key before hashing it into `Sec-WebSocket-Accept`. */
const acceptGuid = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Frame opcodes (RFC 6455 §5.2). */
const Opcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/**
 * The largest frame accepted from the server. AMQP frames are far smaller (the hub's max frame size); a bigger
 * length is a broken or hostile peer, not data to buffer.
 */
const maxFramePayloadBytes = 16 * 1024 * 1024;

/** Where and how to open the WebSocket. */
export interface WebSocketOptions {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly subprotocol: string;
  /** The HTTP `Host` header and TLS server name; defaults to `host`. */
  readonly hostHeader?: string;
  /** TLS options (ca, cert, key, servername, rejectUnauthorized). */
  readonly tls?: TlsOptions;
}

/** The `Sec-WebSocket-Accept` a server must answer for `key` (RFC 6455 §4.2.2). */
export function webSocketAccept(key: string): string {
  return createHash('sha1').update(`${key}${acceptGuid}`).digest('base64');
}

/** One frame, client to server: always masked (RFC 6455 §5.3). */
export function encodeFrame(opcode: number, payload: Uint8Array, mask: Uint8Array = randomBytes(4)): Buffer {
  const length = payload.byteLength;
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  frame.set(mask.subarray(0, 4), headerLength);
  const offset = headerLength + 4;
  for (let index = 0; index < length; index++) {
    frame[offset + index] = (payload[index] as number) ^ (mask[index & 3] as number);
  }
  return frame;
}

/** A parsed frame, server to client. */
export interface Frame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly payload: Buffer;
}

/**
 * Parses frames off the front of `buffer`; returns them and what is left (an incomplete frame).
 *
 * @throws Error for a frame RFC 6455 forbids from a server: reserved bits set (no extension was negotiated), a
 * payload over 16 MB, a control frame over 125 bytes or fragmented (§5.5).
 */
export function parseFrames(buffer: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let offset = 0;
  for (;;) {
    if (buffer.length - offset < 2) break;
    const first = buffer[offset] as number;
    const second = buffer[offset + 1] as number;
    if ((first & 0x70) !== 0) throw new Error('WebSocket frame with reserved bits set');
    const opcode = first & 0x0f;
    const masked = (second & 0x80) !== 0;
    let length = second & 0x7f;
    let header = 2;
    if (length === 126) {
      if (buffer.length - offset < 4) break;
      length = buffer.readUInt16BE(offset + 2);
      header = 4;
    } else if (length === 127) {
      if (buffer.length - offset < 10) break;
      const long = buffer.readBigUInt64BE(offset + 2);
      if (long > BigInt(maxFramePayloadBytes)) throw new Error(`WebSocket frame of ${long} bytes is too large`);
      length = Number(long);
      header = 10;
    }
    if (length > maxFramePayloadBytes) throw new Error(`WebSocket frame of ${length} bytes is too large`);
    if (opcode >= 0x8 && (length > 125 || (first & 0x80) === 0)) {
      throw new Error('WebSocket control frame that is fragmented or longer than 125 bytes');
    }
    const maskLength = masked ? 4 : 0;
    if (buffer.length - offset < header + maskLength + length) break;
    const start = offset + header + maskLength;
    let payload = buffer.subarray(start, start + length);
    if (masked) {
      // Servers must not mask (§5.1); unmasking costs nothing and hurts no one.
      const mask = buffer.subarray(offset + header, offset + header + 4);
      payload = Buffer.from(payload);
      for (let index = 0; index < payload.length; index++) {
        payload[index] = (payload[index] as number) ^ (mask[index & 3] as number);
      }
    }
    frames.push({ fin: (first & 0x80) !== 0, opcode, payload });
    offset = start + length;
  }
  return { frames, rest: offset === 0 ? buffer : buffer.subarray(offset) };
}

/**
 * A WebSocket connection as a Duplex of the bytes carried in its binary messages. Writes before the upgrade
 * completes wait for it. `end()` sends a close frame (1000) and ends the socket; a close frame from the server is
 * answered and ends the readable side.
 */
export class WebSocketStream extends Duplex {
  #socket: Socket | undefined;
  readonly #upgrade: ClientRequest;
  #pending: { chunk: Buffer; callback: (error?: Error | null) => void }[] = [];
  #received: Buffer = Buffer.alloc(0);
  #closeSent = false;
  #ended = false;

  /**
   * Starts the upgrade; `onOpen` runs once the server accepted it (rhea's `connect` callback).
   */
  constructor(options: WebSocketOptions, onOpen?: () => void) {
    super();
    const key = randomBytes(16).toString('base64');
    const hostHeader = options.hostHeader ?? options.host;
    const upgrade = request({
      host: options.host,
      port: options.port,
      path: options.path,
      method: 'GET',
      agent: false,
      ...options.tls,
      headers: {
        host: options.port === 443 ? hostHeader : `${hostHeader}:${options.port}`,
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': key,
        'sec-websocket-protocol': options.subprotocol,
      },
    });
    upgrade.on('upgrade', (response: IncomingMessage, socket: Socket, head: Buffer) => {
      const accept = response.headers['sec-websocket-accept'];
      const protocol = response.headers['sec-websocket-protocol'];
      if (accept !== webSocketAccept(key)) {
        socket.destroy();
        this.destroy(new Error('the server answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept'));
        return;
      }
      if (protocol !== options.subprotocol) {
        socket.destroy();
        this.destroy(
          new Error(`the server did not accept the WebSocket subprotocol ${options.subprotocol} (got ${protocol})`),
        );
        return;
      }
      this.#open(socket, head);
      onOpen?.();
    });
    upgrade.on('response', (response: IncomingMessage) => {
      response.resume();
      this.destroy(new Error(`the server refused the WebSocket upgrade with HTTP ${response.statusCode}`));
    });
    upgrade.on('error', (error) => this.destroy(error));
    upgrade.end();
    this.#upgrade = upgrade;
  }

  #open(socket: Socket, head: Buffer): void {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (data: Buffer) => this.#input(data));
    socket.on('error', (error) => this.destroy(error));
    socket.on('end', () => this.#finish());
    socket.on('close', () => {
      this.#finish();
      // A socket gone without a closing handshake still ends the stream: the reader sees `end` first.
      if (!this.destroyed) this.destroy();
    });
    if (head.length > 0) this.#input(head);
    for (const { chunk, callback } of this.#pending.splice(0))
      socket.write(encodeFrame(Opcode.binary, chunk), callback);
  }

  #input(data: Buffer): void {
    let parsed: { frames: Frame[]; rest: Buffer };
    try {
      parsed = parseFrames(this.#received.length === 0 ? data : Buffer.concat([this.#received, data]));
    } catch (error) {
      // RFC 6455 §7.4.1: 1002 protocol error.
      this.#sendClose(1002);
      this.destroy(error as Error);
      return;
    }
    this.#received = parsed.rest;
    for (const frame of parsed.frames) {
      switch (frame.opcode) {
        case Opcode.binary:
        case Opcode.continuation:
        case Opcode.text:
          if (!this.#ended && frame.payload.length > 0 && !this.push(frame.payload)) this.#socket?.pause();
          break;
        case Opcode.ping:
          this.#socket?.write(encodeFrame(Opcode.pong, frame.payload));
          break;
        case Opcode.close:
          // Echo the status (§5.5.1), then the server closes the TCP connection.
          this.#sendClose(frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1000);
          this.#finish();
          this.#socket?.end();
          return;
        default:
          break;
      }
    }
  }

  #sendClose(code: number): void {
    if (this.#closeSent || this.#socket === undefined || this.#socket.destroyed) return;
    this.#closeSent = true;
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code, 0);
    this.#socket.write(encodeFrame(Opcode.close, payload));
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.push(null);
  }

  override _read(): void {
    this.#socket?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#socket === undefined) this.#pending.push({ chunk, callback });
    else this.#socket.write(encodeFrame(Opcode.binary, chunk), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#sendClose(1000);
    this.#socket?.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    for (const { callback: pending } of this.#pending.splice(0)) pending(error ?? new Error('WebSocket destroyed'));
    if (this.#socket === undefined) this.#upgrade.destroy();
    else this.#socket.destroy();
    callback(error);
  }
}
