/**
 * @fieldhub/slim: an IoT Hub device client for constrained JavaScript runtimes (Espruino, Moddable XS, QuickJS).
 *
 * Written in a restricted dialect (no async/await, generators, destructuring, spread, default parameters,
 * Map/Set/Symbol, nor reliance on function hoisting: see ARCHITECTURE.md, "Embedded targets"), on
 * `@fieldhub/protocol` and its own MQTT 3.1.1 codec, against an injected {@link Host}. It must not import Node
 * APIs (the Node host lives in `@fieldhub/slim/node`).
 *
 * @packageDocumentation
 */

export { createClient } from './client';
export type { Host, HostConnectOptions, HostLogLevel, HostSocket, HostSocketEvents, HostTlsOptions } from './host';
export type {
  ConnackPacket,
  ConnectPacket,
  DisconnectPacket,
  Packet,
  PacketDecoder,
  PingreqPacket,
  PingrespPacket,
  PubackPacket,
  PublishPacket,
  SubackPacket,
  SubscribePacket,
} from './mqtt/packets';
export { PacketType } from './mqtt/packets';
export type {
  SlimCallback,
  SlimClient,
  SlimClientOptions,
  SlimError,
  SlimMessage,
  SlimMethodRequest,
  SlimProperties,
  SlimTwin,
} from './types';
