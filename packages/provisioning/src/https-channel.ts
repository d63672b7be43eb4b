/**
 * DPS over HTTPS, on one undici `Client` (one keep-alive connection) per registration, as the official Node client
 * (protocol-device.md §5.2, capture dps.txt): `PUT /{idScope}/registrations/{id}/register?api-version=2019-03-31`
 * with the registration body, then `GET .../operations/{operationId}?api-version=..`; `Authorization` carries the
 * SAS token (none with a client certificate, which travels in the TLS handshake).
 */
import { randomUUID } from 'node:crypto';
import { AbortError, ArgumentError, ConnectionError, HubError } from '@fieldhub/protocol';
import { buildConnector, Client } from 'undici';
import { channelTlsOptions, type DpsChannel, type DpsChannelOptions, urlHost } from './dps-channel';
import { httpsOperationStatusPath, httpsRegisterPath, parseRetryAfter } from './dps-wire';
import type { DpsReply } from './registration-result';
import { userAgent } from './version';

/** How long one request may wait for its answer's headers and body before it fails (ms). */
const requestTimeoutMs = 30_000;

function failure(error: unknown, origin: string, signal: AbortSignal): HubError {
  if (HubError.is(error)) return error;
  if (signal.aborted) return new AbortError(undefined, { cause: signal.reason ?? error });
  const code = String((error as { code?: unknown } | null)?.code ?? '');
  const reason = error instanceof Error ? error.message : String(error);
  if (code === 'UND_ERR_INVALID_ARG' || code.startsWith('ERR_OSSL_') || code === 'ERR_INVALID_ARG_TYPE') {
    return new ArgumentError(`the request to ${origin} could not be made: ${reason}`, { cause: error });
  }
  return new ConnectionError(`cannot reach DPS at ${origin}: ${reason}`, { cause: error });
}

/**
 * Prepares an HTTPS connection to DPS (dialled on the first request).
 * @throws ArgumentError when TLS refuses the certificate, key or CA.
 */
export function openHttpsChannel(options: DpsChannelOptions): DpsChannel {
  const origin = `https://${urlHost(options.host)}:${options.port}`;
  let client: Client;
  try {
    client = new Client(origin, {
      connect: buildConnector({ ...channelTlsOptions(options), timeout: requestTimeoutMs }),
      headersTimeout: requestTimeoutMs,
      bodyTimeout: requestTimeoutMs,
    });
  } catch (error) {
    throw failure(error, origin, options.signal);
  }

  const send = async (method: 'PUT' | 'GET', path: string, body: string, signal: AbortSignal): Promise<DpsReply> => {
    if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason });
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/json; charset=utf-8',
      'user-agent': userAgent,
      'request-id': randomUUID(),
    };
    if (options.sasToken !== undefined) headers.authorization = options.sasToken;
    try {
      const response = await client.request({ method, path, headers, body, signal });
      const text = await response.body.text();
      const header = response.headers['retry-after'];
      return {
        status: response.statusCode,
        retryAfterSeconds: parseRetryAfter(Array.isArray(header) ? header[0] : header),
        body: text,
      };
    } catch (error) {
      throw failure(error, origin, signal);
    }
  };

  let closing: Promise<void> | undefined;
  return {
    register: (body, signal) =>
      send('PUT', httpsRegisterPath(options.idScope, options.registrationId, options.forceRegistration), body, signal),
    // The official client sends `{}` with its GET (capture dps.txt); the service reads no body here either way.
    operationStatus: (operationId, signal) =>
      send('GET', httpsOperationStatusPath(options.idScope, options.registrationId, operationId), '{}', signal),
    close() {
      closing ??= client.close().catch(() => client.destroy());
      return closing;
    },
  };
}
