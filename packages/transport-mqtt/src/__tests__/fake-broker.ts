/**
 * A scripted MQTT 3.1.1 server over TLS for unit tests: it decodes what the transport sends and lets the test
 * answer frame by frame (CONNACK codes, twin responses, cloud-to-device PUBLISHes, a dropped socket). Just
 * enough of the codec [MQTT-2], [MQTT-3] for the packets IoT Hub uses; the real hub is exercised by
 * @fieldhub/transport-testing.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';

const fixture = (name: string): string => readFileSync(new URL(`../__fixtures__/${name}`, import.meta.url), 'utf8');

/** The broker's certificate (CN=localhost, SAN localhost and 127.0.0.1): pass it as `ca`. */
export const brokerCa = fixture('broker-cert.pem');

/** A decoded packet from the client. */
export type ClientPacket =
  | {
      cmd: 'connect';
      protocolName: string;
      level: number;
      clean: boolean;
      keepalive: number;
      clientId: string;
      username?: string;
      password?: string;
    }
  | { cmd: 'publish'; qos: number; topic: string; messageId?: number; payload: Buffer }
  | { cmd: 'puback'; messageId: number }
  | { cmd: 'subscribe'; messageId: number; subscriptions: { topic: string; qos: number }[] }
  | { cmd: 'pingreq' }
  | { cmd: 'disconnect' }
  | { cmd: 'other'; type: number };

function encodeLength(length: number): Buffer {
  const bytes: number[] = [];
  let rest = length;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0);
  return Buffer.from(bytes);
}

function frame(firstByte: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), encodeLength(body.length), body]);
}

function mqttString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** Frames the broker sends. */
export const frames = {
  connack: (returnCode: number): Buffer => frame(0x20, Buffer.from([0, returnCode])),
  suback: (messageId: number, granted: number[]): Buffer => {
    const id = Buffer.alloc(2);
    id.writeUInt16BE(messageId);
    return frame(0x90, Buffer.concat([id, Buffer.from(granted)]));
  },
  puback: (messageId: number): Buffer => {
    const id = Buffer.alloc(2);
    id.writeUInt16BE(messageId);
    return frame(0x40, id);
  },
  publish: (topic: string, payload: string | Buffer, qos: 0 | 1 = 0, messageId = 1): Buffer => {
    const parts = [mqttString(topic)];
    if (qos > 0) {
      const id = Buffer.alloc(2);
      id.writeUInt16BE(messageId);
      parts.push(id);
    }
    parts.push(Buffer.isBuffer(payload) ? payload : Buffer.from(payload));
    return frame(0x30 | (qos << 1), Buffer.concat(parts));
  },
  pingresp: (): Buffer => Buffer.from([0xd0, 0]),
};

function decode(first: number, body: Buffer): ClientPacket {
  const type = first >> 4;
  let offset = 0;
  const readString = (): string => {
    const length = body.readUInt16BE(offset);
    const text = body.subarray(offset + 2, offset + 2 + length).toString('utf8');
    offset += 2 + length;
    return text;
  };
  switch (type) {
    case 1: {
      const protocolName = readString();
      const level = body[offset++] as number;
      const flags = body[offset++] as number;
      const keepalive = body.readUInt16BE(offset);
      offset += 2;
      const clientId = readString();
      if (flags & 0x04) {
        readString();
        readString();
      }
      const packet: ClientPacket = {
        cmd: 'connect',
        protocolName,
        level,
        clean: (flags & 0x02) !== 0,
        keepalive,
        clientId,
      };
      if (flags & 0x80) packet.username = readString();
      if (flags & 0x40) packet.password = readString();
      return packet;
    }
    case 3: {
      const qos = (first >> 1) & 0x03;
      const topic = readString();
      let messageId: number | undefined;
      if (qos > 0) {
        messageId = body.readUInt16BE(offset);
        offset += 2;
      }
      return {
        cmd: 'publish',
        qos,
        topic,
        ...(messageId === undefined ? {} : { messageId }),
        payload: body.subarray(offset),
      };
    }
    case 4:
      return { cmd: 'puback', messageId: body.readUInt16BE(0) };
    case 8: {
      const messageId = body.readUInt16BE(0);
      offset = 2;
      const subscriptions: { topic: string; qos: number }[] = [];
      while (offset < body.length) {
        const topic = readString();
        subscriptions.push({ topic, qos: body[offset++] as number });
      }
      return { cmd: 'subscribe', messageId, subscriptions };
    }
    case 12:
      return { cmd: 'pingreq' };
    case 14:
      return { cmd: 'disconnect' };
    default:
      return { cmd: 'other', type };
  }
}

/** One client connection as the broker sees it. */
export interface BrokerConnection {
  readonly socket: TLSSocket;
  readonly packets: ClientPacket[];
  /** Resolves with the next packet matching `predicate` (already received ones included, in order). */
  next<C extends ClientPacket['cmd']>(cmd: C, timeoutMs?: number): Promise<Extract<ClientPacket, { cmd: C }>>;
  send(bytes: Buffer): void;
}

/** A listening fake broker. */
export interface FakeBroker {
  readonly port: number;
  /** Resolves with the next connection. */
  nextConnection(): Promise<BrokerConnection>;
  close(): Promise<void>;
}

/**
 * Starts the broker on 127.0.0.1. `onConnect` answers each CONNECT (default: CONNACK 0); SUBSCRIBEs are granted
 * as asked unless `grant` says otherwise; PINGREQs are answered.
 */
export async function startFakeBroker(
  options: { onConnect?: (connection: BrokerConnection) => void; grant?: (topic: string, qos: number) => number } = {},
): Promise<FakeBroker> {
  const waiting: ((connection: BrokerConnection) => void)[] = [];
  const pending: BrokerConnection[] = [];
  const sockets = new Set<TLSSocket>();
  const server: Server = createServer({ cert: brokerCa, key: fixture('broker-key.pem') }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = Buffer.alloc(0);
    const packets: ClientPacket[] = [];
    const readers: { cmd: string; resolve: (packet: ClientPacket) => void }[] = [];
    const consumed = new Set<number>();
    const connection: BrokerConnection = {
      socket,
      packets,
      next(cmd, timeoutMs = 5000) {
        const index = packets.findIndex((packet, i) => packet.cmd === cmd && !consumed.has(i));
        if (index >= 0) {
          consumed.add(index);
          return Promise.resolve(packets[index] as never);
        }
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no ${cmd} within ${timeoutMs} ms`)), timeoutMs);
          readers.push({
            cmd,
            resolve: (packet) => {
              clearTimeout(timer);
              resolve(packet as never);
            },
          });
        });
      },
      send(bytes) {
        socket.write(bytes);
      },
    };
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (buffer.length < 2) return;
        let multiplier = 1;
        let length = 0;
        let index = 1;
        let byte: number;
        do {
          if (index >= buffer.length) return;
          byte = buffer[index++] as number;
          length += (byte & 0x7f) * multiplier;
          multiplier *= 128;
        } while (byte & 0x80);
        if (buffer.length < index + length) return;
        const packet = decode(buffer[0] as number, buffer.subarray(index, index + length));
        buffer = buffer.subarray(index + length);
        packets.push(packet);
        if (packet.cmd === 'connect') {
          if (options.onConnect) options.onConnect(connection);
          else connection.send(frames.connack(0));
          const waiter = waiting.shift();
          if (waiter) waiter(connection);
          else pending.push(connection);
        } else if (packet.cmd === 'subscribe') {
          const granted = packet.subscriptions.map(({ topic, qos }) => options.grant?.(topic, qos) ?? qos);
          connection.send(frames.suback(packet.messageId, granted));
        } else if (packet.cmd === 'pingreq') {
          connection.send(frames.pingresp());
        }
        const readerIndex = readers.findIndex((reader) => reader.cmd === packet.cmd);
        if (readerIndex >= 0) {
          const [reader] = readers.splice(readerIndex, 1);
          consumed.add(packets.length - 1);
          reader?.resolve(packet);
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    nextConnection() {
      const ready = pending.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve) => waiting.push(resolve));
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
