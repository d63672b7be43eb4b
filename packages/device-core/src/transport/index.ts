/**
 * `@fieldhub/device-core/transport`: the Transport spec that protocol adapters implement. Types, and `blobUrlOf`.
 * @packageDocumentation
 */

export type {
  FileUploadData,
  FileUploadHubOptions,
  FileUploadOutcome,
  FileUploadProgress,
  FileUploadService,
  FileUploadTarget,
  PutBlobOptions,
} from './file-upload';
export { blobUrlOf } from './file-upload';
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
