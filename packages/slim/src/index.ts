/**
 * @fieldhub/slim: an IoT Hub device client for constrained JavaScript runtimes (Espruino, Moddable XS, QuickJS).
 *
 * Written in a restricted dialect (no async/await, generators, destructuring, spread, default parameters,
 * Map/Set/Symbol, nor reliance on function hoisting: see ARCHITECTURE.md, "Embedded targets"), on
 * `@fieldhub/protocol` and its own MQTT 3.1.1 codec, against an injected {@link Host}. It must not import Node
 * APIs (the Node host lives in `@fieldhub/slim/node`). Host adapters: {@link createEcma419Host} (Moddable XS),
 * {@link createEspruinoHost} (Espruino), `createNodeHost` from `@fieldhub/slim/node`.
 *
 * @example
 * ```ts
 * import { createClient } from '@fieldhub/slim';
 * import { createNodeHost } from '@fieldhub/slim/node';
 * const client = createClient(createNodeHost(), { connectionString, onConnect: () => client.sendTelemetry('{"t":21}', null) });
 * client.open();
 * ```
 * @packageDocumentation
 */

export { createClient } from './client';
export type { Host, HostConnectOptions, HostLogLevel, HostSocket, HostSocketEvents, HostTlsOptions } from './host';
export {
  createEcma419Host,
  type Ecma419DigestClass,
  type Ecma419DnsOptions,
  type Ecma419HmacClass,
  type Ecma419HostOptions,
  type Ecma419ResolveOptions,
  type Ecma419Resolver,
  type Ecma419SecureOptions,
  type Ecma419Socket,
  type Ecma419SocketClass,
  type Ecma419SocketOptions,
  type Ecma419TimerModule,
  type Ecma419TlsOptions,
} from './hosts/ecma419';
export {
  createEspruinoHost,
  type EspruinoConnectOptions,
  type EspruinoCryptoModule,
  type EspruinoHmacModule,
  type EspruinoHostOptions,
  type EspruinoNetModule,
  type EspruinoSocket,
} from './hosts/espruino';
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
