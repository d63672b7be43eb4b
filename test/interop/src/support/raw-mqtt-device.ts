import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { createSasToken } from '@fieldhub/auth';
import * as mqttPacket from 'mqtt-packet';

/** The API version the official SDKs put in the MQTT username. */
export const mqttApiVersion = '2021-04-12';

/** A device SAS token for `<hostName>/devices/<deviceId>`, as the Node SDK signs it. */
export function deviceSasToken(
  hostName: string,
  deviceId: string,
  key: string,
  options: { ttlSeconds?: number; expiresAt?: number } = {},
): Promise<string> {
  const resourceUri = `${hostName}/devices/${deviceId}`;
  return options.expiresAt !== undefined
    ? createSasToken({ resourceUri, key, expiresAt: options.expiresAt })
    : createSasToken({ resourceUri, key, ttlSeconds: options.ttlSeconds ?? 3600 });
}

/** The CONNECT username IoT Hub expects (protocol-device.md §2.2). */
export function mqttUsername(hostName: string, deviceId: string): string {
  return `${hostName}/${deviceId}/?api-version=${mqttApiVersion}`;
}

/** Options of {@link RawMqttDevice.connect}. */
export interface RawMqttDeviceOptions {
  port: number;
  /** The hub's CA (PEM). */
  ca: string;
  clientId: string;
  username: string;
  password?: string;
  cert?: string;
  key?: string;
  keepalive?: number;
  clean?: boolean;
}

/** Thrown when the hub answers CONNECT with a refusal. */
export class ConnectRefusedError extends Error {
  constructor(readonly returnCode: number) {
    super(`CONNACK refused the connection with return code ${returnCode}`);
    this.name = 'ConnectRefusedError';
  }
}

/** Thrown for a QoS 1 publish whose connection closed before its PUBACK. */
export class NotAcknowledgedError extends Error {
  constructor() {
    super('the connection closed before the PUBACK');
    this.name = 'NotAcknowledgedError';
  }
}

/**
 * A lean MQTT 3.1.1 device over a raw TLS socket: mqtt-packet frames, no retries, no queue. For abuse tests (it can
 * write any bytes) and load (1,000 of these cost far less than 1,000 MQTT.js clients).
 */
export class RawMqttDevice {
  /** Resolves when the socket closed (for whatever reason). */
  readonly closed: Promise<void>;
  /** Every packet the hub sent, in order (PUBACKs excepted, to keep load runs lean). */
  readonly received: mqttPacket.Packet[] = [];
  private nextPacketId = 1;
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private isClosed = false;
  private readonly listeners = new Set<(packet: mqttPacket.Packet) => void>();

  private constructor(readonly socket: TLSSocket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet: mqttPacket.Packet) => this.onPacket(packet));
    parser.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    socket.on('error', () => {
      // The close event follows; the abuse tests expect resets.
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        for (const waiter of this.pending.values()) waiter.reject(new NotAcknowledgedError());
        this.pending.clear();
        resolve();
      });
    });
  }

  /** Opens TLS to 127.0.0.1 (SNI `localhost`), sends CONNECT and waits for CONNACK. */
  static async connect(options: RawMqttDeviceOptions): Promise<RawMqttDevice> {
    const device = await RawMqttDevice.open(options);
    const connack = await device.sendConnect(options);
    if (connack !== 0) {
      device.destroy();
      throw new ConnectRefusedError(connack);
    }
    return device;
  }

  /** Opens TLS only; the caller writes whatever it likes. */
  static open(options: Pick<RawMqttDeviceOptions, 'port' | 'ca' | 'cert' | 'key'>): Promise<RawMqttDevice> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: options.port,
        servername: 'localhost',
        ca: options.ca,
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
      });
      socket.setNoDelay(true);
      const onError = (error: Error) => reject(error);
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        socket.off('error', onError);
        resolve(new RawMqttDevice(socket));
      });
    });
  }

  /** Sends CONNECT and resolves with the CONNACK return code (rejects when the socket closes first). */
  sendConnect(options: RawMqttDeviceOptions): Promise<number> {
    const packet: mqttPacket.IConnectPacket = {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: options.clientId,
      clean: options.clean ?? false,
      keepalive: options.keepalive ?? 180,
      username: options.username,
      ...(options.password !== undefined ? { password: Buffer.from(options.password) } : {}),
    };
    const answer = new Promise<number>((resolve, reject) => {
      const unsubscribe = this.on((received) => {
        if (received.cmd === 'connack') {
          unsubscribe();
          resolve(received.returnCode ?? 0);
        }
      });
      void this.closed.then(() => {
        unsubscribe();
        reject(new Error('the connection closed before CONNACK'));
      });
    });
    this.write(mqttPacket.generate(packet));
    return answer;
  }

  /** True once the socket closed. */
  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Listens to every packet from the hub; returns an unsubscribe function. */
  on(listener: (packet: mqttPacket.Packet) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Writes raw bytes. */
  write(bytes: Buffer): void {
    if (!this.isClosed) this.socket.write(bytes);
  }

  /**
   * Publishes. QoS 1 resolves on PUBACK and rejects with NotAcknowledgedError if the connection closes first;
   * QoS 0 resolves once written.
   */
  publish(topic: string, payload: Buffer | string, qos: 0 | 1 = 1): Promise<void> {
    if (qos === 0) {
      this.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }));
      return Promise.resolve();
    }
    if (this.isClosed) return Promise.reject(new NotAcknowledgedError());
    const messageId = this.allocatePacketId();
    const acknowledged = new Promise<void>((resolve, reject) => this.pending.set(messageId, { resolve, reject }));
    this.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false, messageId }));
    return acknowledged;
  }

  /** Subscribes and resolves with the granted QoS list. */
  subscribe(topics: { topic: string; qos: 0 | 1 }[]): Promise<number[]> {
    const messageId = this.allocatePacketId();
    const answer = new Promise<number[]>((resolve, reject) => {
      const unsubscribe = this.on((packet) => {
        if (packet.cmd === 'suback' && packet.messageId === messageId) {
          unsubscribe();
          resolve(packet.granted as number[]);
        }
      });
      void this.closed.then(() => reject(new Error('the connection closed before SUBACK')));
    });
    this.write(mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: topics }));
    return answer;
  }

  /** Sends DISCONNECT and ends the socket; resolves once closed. */
  async close(): Promise<void> {
    if (!this.isClosed) {
      this.socket.end(mqttPacket.generate({ cmd: 'disconnect' }));
      // A hub that never closes its side would leave the socket half-open: destroy after the FIN went out.
      this.socket.once('finish', () => setImmediate(() => this.socket.destroy()));
    }
    await this.closed;
  }

  /** Closes the socket without DISCONNECT. */
  destroy(): void {
    this.socket.destroy();
  }

  private allocatePacketId(): number {
    for (;;) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 65535 ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  private onPacket(packet: mqttPacket.Packet): void {
    if (packet.cmd === 'puback') {
      const waiter = packet.messageId === undefined ? undefined : this.pending.get(packet.messageId);
      if (waiter && packet.messageId !== undefined) {
        this.pending.delete(packet.messageId);
        waiter.resolve();
      }
    } else {
      this.received.push(packet);
    }
    for (const listener of this.listeners) listener(packet);
  }
}
