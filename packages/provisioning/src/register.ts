/**
 * `register()`: one device registration with the Device Provisioning Service, start to finish, over MQTT or HTTPS.
 * The flow is the official Node client's (protocol-device.md §5.1, §5.2): send the registration request; while
 * the operation is `assigning`, poll its status after `retry-after` seconds (2 when none is given); on 429 or 5xx
 * send the same request again after `retry-after`; stop at a final status. One connection per registration,
 * closed however it ends.
 */
import { X509Certificate } from 'node:crypto';
import { createSasToken } from '@fieldhub/auth';
import {
  AbortError,
  ArgumentError,
  type HubError,
  TimeoutError,
  UnsupportedFeatureError,
  validateRegistrationId,
} from '@fieldhub/protocol';
import type { DpsChannel, DpsChannelOptions } from './dps-channel';
import {
  defaultRetryAfterSeconds,
  dpsEndpoint,
  globalProvisioningHost,
  registrationRequestBody,
  registrationResource,
} from './dps-wire';
import { openHttpsChannel } from './https-channel';
import { openMqttChannel } from './mqtt-channel';
import { type DpsReply, type RegistrationResult, type ReplyOutcome, readReply } from './registration-result';

/** PEM text, or its bytes. */
export type Pem = string | Uint8Array;

/** The transport to register over, by name or with options. */
export type ProvisioningTransport =
  | 'mqtt'
  | 'https'
  | {
      readonly kind: 'mqtt';
      /** MQTT over WebSockets (`wss://host/$iothub/websocket`, port 443 by default) instead of TLS on 8883. */
      readonly webSockets?: boolean;
    }
  | { readonly kind: 'https' };

/** Options of {@link register}. */
export interface RegisterOptions {
  /** The DPS instance's ID scope (`0ne...`). */
  readonly idScope: string;
  /**
   * The registration id: letters, digits, `.`, `_`, `-` (1-128). With `x509` it defaults to the certificate's
   * subject CN, which DPS requires it to equal.
   */
  readonly registrationId?: string;
  /**
   * The device's symmetric key (base64): an individual enrollment's key, or for a group enrollment the key
   * derived with {@link deriveDeviceKey}. Exclusive with `x509`.
   */
  readonly symmetricKey?: string;
  /** The device's certificate (leaf first, intermediates after it) and private key, PEM. Exclusive with `symmetricKey`. */
  readonly x509?: { readonly cert: Pem; readonly key: Pem; readonly passphrase?: string };
  /** `'mqtt'` (default, TLS on 8883), `'https'` (443), or `{ kind: 'mqtt', webSockets: true }` (443). */
  readonly transport?: ProvisioningTransport;
  /** The DPS host, optionally with `:port`. Default `global.azure-devices-provisioning.net`. */
  readonly provisioningHost?: string;
  /** Extra CA certificates to trust (PEM), added to Node's roots: a Fieldhub hub's own CA, for instance. */
  readonly ca?: Pem;
  /** Data for a custom allocation policy: any JSON, sent as the request's `payload`. */
  readonly payload?: unknown;
  /**
   * Re-provision even when the device is already assigned (HTTPS `forceRegistration=true`). MQTT has no way to
   * say it: with the MQTT transport this option is refused.
   */
  readonly forceRegistration?: boolean;
  /** Aborts the registration: the promise rejects with AbortError and the connection closes. */
  readonly signal?: AbortSignal;
  /** How long the whole registration may take, polling included (ms). Default 60000. */
  readonly timeoutMs?: number;
}

const defaults = { timeoutMs: 60_000, sasTtlSeconds: 3600, mqttPort: 8883, httpsPort: 443 } as const;

function pemText(value: Pem, field: string): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  throw new ArgumentError(`${field} must be PEM text or bytes`, { field });
}

function transportOf(transport: ProvisioningTransport | undefined): { kind: 'mqtt' | 'https'; webSockets: boolean } {
  if (transport === undefined || transport === 'mqtt') return { kind: 'mqtt', webSockets: false };
  if (transport === 'https') return { kind: 'https', webSockets: false };
  if (
    typeof transport === 'object' &&
    transport !== null &&
    (transport.kind === 'mqtt' || transport.kind === 'https')
  ) {
    return { kind: transport.kind, webSockets: transport.kind === 'mqtt' && transport.webSockets === true };
  }
  throw new ArgumentError("transport must be 'mqtt', 'https' or { kind: 'mqtt' | 'https', webSockets? }", {
    field: 'transport',
  });
}

/** The subject CN of a PEM certificate (the first one in the text). */
function commonName(certificate: string): string | undefined {
  let subject: string;
  try {
    subject = new X509Certificate(certificate).subject;
  } catch (error) {
    throw new ArgumentError('x509.cert is not a PEM certificate', { field: 'x509.cert', cause: error });
  }
  return /(?:^|\n)CN=([^\n]+)/.exec(subject)?.[1];
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Registers a device with the Device Provisioning Service and returns where it was assigned.
 *
 * @example
 * ```ts
 * const result = await register({ idScope, registrationId: 'sensor-7', symmetricKey: deriveDeviceKey(groupKey, 'sensor-7') });
 * const client = await createDeviceClient({ connectionString: deviceConnectionString(result, { symmetricKey }) });
 * ```
 * @throws ArgumentError (naming the field) for missing, conflicting or malformed options, or a 4xx DPS answered
 * for a malformed request; AuthenticationError when DPS refuses the credentials (wrong key, unknown or disabled
 * enrollment, a certificate from an unverified CA: HTTPS 401, MQTT CONNACK 4/5); ProvisioningError when DPS ends
 * the registration without assigning the device (`failed`, `disabled`), with DPS's `errorCode` and `errorMessage`;
 * ConnectionError when DPS cannot be reached or the connection drops; TimeoutError when `timeoutMs` passes;
 * AbortError when `signal` aborts; UnsupportedFeatureError for `forceRegistration` over MQTT.
 */
export async function register(options: RegisterOptions): Promise<RegistrationResult> {
  if (typeof options !== 'object' || options === null) {
    throw new ArgumentError('options are required', { field: 'options' });
  }
  const { idScope, symmetricKey, x509 } = options;
  if (typeof idScope !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(idScope)) {
    throw new ArgumentError('idScope must be the DPS ID scope (letters and digits, e.g. 0ne0001234A)', {
      field: 'idScope',
    });
  }
  if ((symmetricKey === undefined) === (x509 === undefined)) {
    throw new ArgumentError('give exactly one of symmetricKey and x509', { field: 'symmetricKey' });
  }
  const transport = transportOf(options.transport);
  if (options.forceRegistration === true && transport.kind === 'mqtt') {
    throw new UnsupportedFeatureError('forceRegistration is carried over HTTPS only; use transport: "https"');
  }
  const timeoutMs = options.timeoutMs ?? defaults.timeoutMs;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ArgumentError('timeoutMs must be a positive number', { field: 'timeoutMs' });
  }
  const certificate =
    x509 === undefined
      ? undefined
      : {
          cert: pemText(x509.cert, 'x509.cert'),
          key: pemText(x509.key, 'x509.key'),
          ...(x509.passphrase === undefined ? {} : { passphrase: x509.passphrase }),
        };
  const registrationId = options.registrationId ?? (certificate ? commonName(certificate.cert) : undefined);
  if (registrationId === undefined) {
    throw new ArgumentError('registrationId is required (with x509 it defaults to the certificate CN)', {
      field: 'registrationId',
    });
  }
  validateRegistrationId(registrationId);
  const endpoint = dpsEndpoint(
    options.provisioningHost ?? globalProvisioningHost,
    transport.kind === 'https' || transport.webSockets ? defaults.httpsPort : defaults.mqttPort,
  );
  const sasToken =
    symmetricKey === undefined
      ? undefined
      : await createSasToken({
          // Raw `sr` and `skn=registration`, as the official client signs (§5.5, capture dps.txt).
          resourceUri: registrationResource(idScope, registrationId),
          key: symmetricKey,
          keyName: 'registration',
          ttlSeconds: defaults.sasTtlSeconds,
          encodeResourceUri: false,
        }).catch((error: unknown) => {
          throw error instanceof ArgumentError && error.field === 'key'
            ? new ArgumentError('symmetricKey must be a base64 key', { field: 'symmetricKey', cause: error })
            : error;
        });
  const body = registrationRequestBody(registrationId, options.payload);

  // One signal for the caller's abort and our own deadline; its reason says which.
  const controller = new AbortController();
  const timedOut = new TimeoutError(`the registration did not finish within ${timeoutMs} ms`);
  const aborted = (): AbortError => new AbortError(undefined, { cause: options.signal?.reason });
  const onCallerAbort = (): void => controller.abort(aborted());
  if (options.signal?.aborted) throw aborted();
  options.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const timer = setTimeout(() => controller.abort(timedOut), timeoutMs);
  const signal = controller.signal;

  const channelOptions: DpsChannelOptions = {
    host: endpoint.host,
    port: endpoint.port,
    servername: endpoint.servername,
    idScope,
    registrationId,
    sasToken,
    x509: certificate,
    ca: options.ca === undefined ? undefined : pemText(options.ca, 'ca'),
    forceRegistration: options.forceRegistration === true,
    signal,
  };
  let channel: DpsChannel | undefined;
  try {
    channel =
      transport.kind === 'https'
        ? openHttpsChannel(channelOptions)
        : await openMqttChannel({ ...channelOptions, webSockets: transport.webSockets });
    return await run(channel, body, signal);
  } catch (error) {
    // Whatever failed while our signal was aborting failed because of it: report the reason (abort or timeout).
    if (signal.aborted) throw signal.reason as HubError;
    throw error;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onCallerAbort);
    await channel?.close();
  }
}

async function run(channel: DpsChannel, body: string, signal: AbortSignal): Promise<RegistrationResult> {
  let operationId: string | undefined;
  for (;;) {
    const reply: DpsReply =
      operationId === undefined
        ? await channel.register(body, signal)
        : await channel.operationStatus(operationId, signal);
    const outcome: ReplyOutcome = readReply(reply);
    switch (outcome.kind) {
      case 'assigned':
        return outcome.result;
      case 'error':
        throw outcome.error;
      case 'poll':
        operationId = outcome.operationId;
        await sleep((outcome.retryAfterSeconds ?? defaultRetryAfterSeconds) * 1000, signal);
        break;
      case 'retry':
        // Same request again: a new registration before an operation id, the same poll after (§5.1).
        await sleep((outcome.retryAfterSeconds ?? defaultRetryAfterSeconds) * 1000, signal);
        break;
    }
  }
}
