/**
 * The MQTT 3.1.1 packets the slim client speaks, as plain objects (OASIS MQTT 3.1.1 §3): CONNECT, CONNACK,
 * PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT; QoS 0 and 1 only. `codec.ts` encodes and
 * decodes them; it is checked against mqtt-packet on random packets, both directions, split at every byte.
 */

/** Control packet type numbers (the high nibble of the fixed header). */
export const PacketType = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  subscribe: 8,
  suback: 9,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
} as const;

export interface ConnectPacket {
  type: 1;
  clientId: string;
  /** Seconds; 0 disables keep-alive. */
  keepAlive: number;
  clean: boolean;
  username?: string;
  password?: string;
}

export interface ConnackPacket {
  type: 2;
  sessionPresent: boolean;
  /** 0 accepted; 1..5 refused (§3.2.2.3). */
  returnCode: number;
}

export interface PublishPacket {
  type: 3;
  topic: string;
  payload: Uint8Array;
  qos: 0 | 1;
  /** Present exactly when qos is 1. */
  messageId?: number;
  dup: boolean;
  retain: boolean;
}

export interface PubackPacket {
  type: 4;
  messageId: number;
}

export interface SubscribePacket {
  type: 8;
  messageId: number;
  subscriptions: Array<{ topic: string; qos: 0 | 1 }>;
}

export interface SubackPacket {
  type: 9;
  messageId: number;
  /** One per subscription: the granted QoS, or 0x80 for failure. */
  granted: number[];
}

export interface PingreqPacket {
  type: 12;
}

export interface PingrespPacket {
  type: 13;
}

export interface DisconnectPacket {
  type: 14;
}

export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | PubackPacket
  | SubscribePacket
  | SubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket;

/**
 * A streaming decoder (created by `createDecoder` in `codec.ts`): `push` takes bytes as they arrive, in chunks of
 * any size, and calls `onPacket` for every complete packet, in order. Malformed input (reserved flags, a remaining
 * length over four bytes or over the limit, QoS 2, a truncated field, an unknown type) calls `onError` once, after
 * which the decoder ignores further input: the connection is to be dropped ([MQTT-4.8.0-1]).
 */
export interface PacketDecoder {
  push(bytes: Uint8Array): void;
  /** Forget any partial packet (after a reconnect). */
  reset(): void;
}
