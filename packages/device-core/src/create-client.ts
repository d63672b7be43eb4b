/** `createDeviceClient()`: the async factory of device and module clients. */
import type { Clock } from './clock';
import { ConnectionManager } from './connection-manager';
import { credentialProviderFromConnectionString, type SasSigner } from './credentials';
import { DeviceClient, type DeviceClientFeatureOptions } from './device-client';
import { ArgumentError } from './errors';
import type { Logger } from './logger';
import type { OfflineQueueOptions } from './offline-queue';
import type { RetryPolicy } from './retry-policy';
import type { CredentialProvider, TransportFactory } from './transport/transport';

/** Options of {@link createDeviceClient}. Give exactly one of `connectionString`, `credentialProvider`, `sasTokenProvider`. */
export interface DeviceClientOptions extends DeviceClientFeatureOptions {
  /**
   * `HostName=...;DeviceId=...[;ModuleId=...];SharedAccessKey=...` (or `SharedAccessSignature=...`, or `x509=true`
   * with `x509`); `GatewayHostName` makes the transport dial the gateway.
   */
  readonly connectionString?: string;
  /** Where credentials come from: `sasKeyCredentialProvider`, `sasTokenCredentialProvider`, `x509CredentialProvider`. */
  readonly credentialProvider?: CredentialProvider;
  /** The same as `credentialProvider`, by the name the issue uses for tokens signed elsewhere. */
  readonly sasTokenProvider?: CredentialProvider;
  /** Client certificate and key, with a `x509=true` connection string. */
  readonly x509?: { readonly cert: string; readonly key: string; readonly passphrase?: string };
  /** SAS tokens made from a connection string's key. Defaults: TTL 3600 s, renewal margin 900 s, portable HMAC. */
  readonly sas?: { readonly ttlSeconds?: number; readonly renewalMarginSeconds?: number; readonly sign?: SasSigner };
  /** Required here (`@fieldhub/device` defaults it to MQTT): `mqtt()`, `mqtt({ webSockets: true })`, ... */
  readonly transport: TransportFactory;
  /** Extra trusted CA certificates (PEM), for a hub with a private CA. */
  readonly ca?: string;
  /** Keep-alive passed to the transport, seconds. */
  readonly keepAliveSeconds?: number;
  /** Per connection attempt, ms. */
  readonly connectTimeoutMs?: number;
  /** Default: exponential backoff with full jitter, 1 s initial cap, 60 s max, never gives up. */
  readonly retryPolicy?: RetryPolicy;
  /** Default: 1000 messages, `'reject-new'`, 32 in flight, not durable. */
  readonly offlineQueue?: OfflineQueueOptions;
  readonly logger?: Logger;
  /** Default: the system clock. */
  readonly clock?: Clock;
  /** Aborts the first connection. */
  readonly signal?: AbortSignal;
}

/**
 * Makes a client and connects it (retryable failures are tried again under the retry policy, so a device started
 * before its hub connects once the hub is up; bound the wait with `signal`). Resolves
 * with a connected client or throws; nothing is left running when it throws.
 *
 * @throws ArgumentError for bad options or a malformed connection string; AuthenticationError when the hub refused
 * the credentials; ConnectionError when it could not be reached and the retry policy gave up; AbortError when
 * `signal` aborted.
 * @example
 * ```ts
 * await using client = await createDeviceClient({ connectionString, transport: mqtt() });
 * await client.sendTelemetry({ body: { temperature: 21.5 } });
 * ```
 */
export async function createDeviceClient(options: DeviceClientOptions): Promise<DeviceClient> {
  const credentialProvider = credentialProviderOf(options);
  if (!options.transport || typeof options.transport.create !== 'function') {
    throw new ArgumentError('transport is required (a TransportFactory such as mqtt())', { field: 'transport' });
  }
  const manager = new ConnectionManager({
    transport: options.transport,
    credentialProvider,
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
    ...(options.keepAliveSeconds !== undefined ? { keepAliveSeconds: options.keepAliveSeconds } : {}),
    ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
    ...(options.retryPolicy !== undefined ? { retryPolicy: options.retryPolicy } : {}),
    ...(options.offlineQueue !== undefined ? { offlineQueue: options.offlineQueue } : {}),
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
  });
  const client = new DeviceClient(manager, options);
  try {
    await manager.start(options.signal ? { signal: options.signal } : {});
  } catch (error) {
    await manager.close();
    throw error;
  }
  return client;
}

function credentialProviderOf(options: DeviceClientOptions): CredentialProvider {
  if (options === null || typeof options !== 'object') {
    throw new ArgumentError('options are required', { field: 'options' });
  }
  const given = [
    options.connectionString !== undefined ? 'connectionString' : undefined,
    options.credentialProvider !== undefined ? 'credentialProvider' : undefined,
    options.sasTokenProvider !== undefined ? 'sasTokenProvider' : undefined,
  ].filter((name) => name !== undefined);
  if (given.length !== 1) {
    throw new ArgumentError(
      given.length === 0
        ? 'give one of connectionString, credentialProvider or sasTokenProvider'
        : `give only one of ${given.join(', ')}`,
      { field: given[1] ?? 'connectionString' },
    );
  }
  if (options.connectionString !== undefined) {
    return credentialProviderFromConnectionString(options.connectionString, {
      ...(options.x509 !== undefined ? { x509: options.x509 } : {}),
      ...(options.sas?.ttlSeconds !== undefined ? { ttlSeconds: options.sas.ttlSeconds } : {}),
      ...(options.sas?.renewalMarginSeconds !== undefined
        ? { renewalMarginSeconds: options.sas.renewalMarginSeconds }
        : {}),
      ...(options.sas?.sign !== undefined ? { sign: options.sas.sign } : {}),
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
    });
  }
  if (options.x509 !== undefined) {
    throw new ArgumentError('x509 goes with a connection string (x509=true); else use x509CredentialProvider', {
      field: 'x509',
    });
  }
  return (options.credentialProvider ?? options.sasTokenProvider) as CredentialProvider;
}
