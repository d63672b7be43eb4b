// One raw MQTT-over-TLS connection of the load generator: CONNECT, wait for CONNACK, then hand every frame to
// `link.onFrame`. No queue, no retries: a benchmark that loses its connection fails loudly instead.
import { connect as tlsConnect } from 'node:tls';
import { encodeConnect, encodeSubscribe, FrameReader, PacketType } from './mqtt-frames.mjs';

/** A connected MQTT link. */
export class MqttLink {
  constructor(socket) {
    this.socket = socket;
    /** `(firstByte, buffer, bodyStart, bodyEnd) => void`, called for every frame after CONNACK. */
    this.onFrame = null;
    this.closed = new Promise((resolve) => socket.once('close', resolve));
  }

  write(buffer) {
    return this.socket.write(buffer);
  }

  /** Destroys the socket (no DISCONNECT: the caller writes one first when it wants a clean goodbye). */
  destroy() {
    this.socket.destroy();
  }
}

/**
 * Opens a TLS socket (Nagle off), sends CONNECT and resolves with the link once CONNACK accepted it.
 * `session`: a TLS session to resume (skips the full handshake; used to open thousands of idle connections).
 */
export function connectMqtt({
  port,
  ca,
  clientId,
  username,
  password,
  keepalive = 300,
  session,
  onSession,
  host = '127.0.0.1',
  timeoutMs = 30_000,
}) {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, ca, servername: 'localhost', ...(session ? { session } : {}) });
    socket.setNoDelay(true);
    if (onSession) socket.once('session', onSession);
    const link = new MqttLink(socket);
    let accepted = false;
    const timer = setTimeout(() => fail(new Error(`no CONNACK for ${clientId} within ${timeoutMs} ms`)), timeoutMs);
    const fail = (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const reader = new FrameReader((firstByte, buffer, bodyStart, bodyEnd) => {
      if (!accepted) {
        if (firstByte >> 4 !== PacketType.connack)
          return fail(new Error(`expected CONNACK, got type ${firstByte >> 4}`));
        const code = buffer[bodyStart + 1];
        if (code !== 0) return fail(new Error(`CONNACK refused ${clientId} with return code ${code}`));
        accepted = true;
        clearTimeout(timer);
        resolve(link);
        return;
      }
      link.onFrame?.(firstByte, buffer, bodyStart, bodyEnd);
    });
    socket.on('data', (chunk) => {
      try {
        reader.push(chunk);
      } catch (error) {
        fail(error);
      }
    });
    socket.on('error', (error) => {
      if (!accepted) fail(error);
    });
    socket.on('close', () => {
      if (!accepted) fail(new Error(`connection of ${clientId} closed before CONNACK`));
    });
    socket.once('secureConnect', () => {
      socket.write(encodeConnect({ clientId, username, password, keepalive }));
    });
  });
}

/** A TLS session ticket from one throwaway connection, to resume many connections cheaply. */
export function fetchTlsSession({ port, ca, host = '127.0.0.1' }) {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, ca, servername: 'localhost' });
    socket.once('session', (session) => {
      resolve(session);
      socket.destroy();
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      // TLS 1.3 sends the ticket after the handshake; a byte from us makes the server flush it. A bare 0xc0 is a
      // PINGREQ before CONNECT: both brokers close the socket, after the ticket went out.
      socket.write(Buffer.from([0xc0, 0x00]));
    });
  });
}

/** Subscribes `link` to one filter and resolves on the SUBACK (the link's frame handler is replaced meanwhile). */
export function subscribe(link, topic, qos) {
  return new Promise((resolve, reject) => {
    link.onFrame = (firstByte) => {
      if (firstByte >> 4 === PacketType.suback) resolve();
    };
    link.closed.then(() => reject(new Error(`closed before the SUBACK for ${topic}`)));
    link.write(encodeSubscribe(topic, qos, 1));
  });
}
