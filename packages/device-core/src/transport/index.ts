/**
 * `@fieldhub/device-core/transport`: the Transport spec that protocol adapters implement. Types only.
 * @packageDocumentation
 */
export type {
  CloudToDeviceSettlement,
  CredentialProvider,
  IncomingCloudToDeviceMessage,
  IncomingMethodRequest,
  OperationOptions,
  OutgoingMessage,
  Transport,
  TransportCapabilities,
  TransportConnectOptions,
  TransportCredentials,
  TransportEvents,
  TransportFactory,
  TwinProperties,
} from './transport';
