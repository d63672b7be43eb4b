/**
 * The TLS side of every HTTPS request: Node's trusted roots plus the caller's `ca` (a hub with a private CA, or the
 * hub's own blob endpoint), the X.509 client certificate, and SNI with the host name (never an IP address or a
 * port). One undici connector per connection, so that its TLS session cache serves all of that connection's sockets.
 */
import type { Socket } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { TransportCredentials } from '@fieldhub/device-core/transport';
import { AbortError } from '@fieldhub/protocol';
import { buildConnector } from 'undici';
import type { Endpoint } from './endpoint';
import { requestFailure } from './http-error';

/** The TLS settings of one connection. */
export interface TlsSettings {
  /** Extra trusted CA certificates (PEM), added to Node's roots (they replace them in Node's own option). */
  readonly ca?: string | undefined;
  /** The client certificate (X.509 identities). */
  readonly x509?: TransportCredentials['x509'] | undefined;
  /** How long dialling one socket (TCP and TLS) may take, ms. */
  readonly timeoutMs: number;
}

/**
 * An undici connector for `target`.
 * @throws ArgumentError when undici refuses the options.
 */
export function tlsConnector(target: Endpoint, settings: TlsSettings): buildConnector.connector {
  try {
    return buildConnector({
      rejectUnauthorized: true,
      ...(settings.ca === undefined ? {} : { ca: [...rootCertificates, settings.ca] }),
      ...(settings.x509 === undefined
        ? {}
        : {
            cert: settings.x509.certificate,
            key: settings.x509.privateKey,
            ...(settings.x509.passphrase === undefined ? {} : { passphrase: settings.x509.passphrase }),
          }),
      ...(target.servername === undefined ? {} : { servername: target.servername }),
      timeout: settings.timeoutMs,
    });
  } catch (error) {
    throw requestFailure(error, target.origin);
  }
}

/**
 * Opens one TLS connection to `target` with `connector` and closes it again: the hub answers on that port, its
 * certificate chains to a trusted CA and names the host, and the client certificate and key are usable. Sends no
 * request.
 *
 * @throws ConnectionError when the host cannot be reached, the handshake fails or takes longer than the
 * connector's timeout; ArgumentError when TLS refuses the certificate, key or CA; AbortError when `signal` aborts.
 */
export function probeTls(target: Endpoint, connector: buildConnector.connector, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError(undefined, { cause: signal.reason }));
      return;
    }
    let socket: Socket | undefined;
    let done = false;
    const finish = (error?: unknown): void => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      if (error === undefined) resolve();
      else reject(requestFailure(error, target.origin, signal));
    };
    const onAbort = (): void => {
      socket?.destroy();
      finish(new AbortError(undefined, { cause: signal?.reason }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // undici's connector returns the socket it dials (its type says void).
      socket = (connector as unknown as (...args: Parameters<buildConnector.connector>) => Socket | undefined)(
        {
          hostname: target.host,
          host: `${target.host}:${target.port}`,
          protocol: 'https:',
          port: String(target.port),
          ...(target.servername === undefined ? {} : { servername: target.servername }),
        },
        (error, connected) => {
          if (error) {
            finish(error);
            return;
          }
          // A TLS close_notify and FIN: the hub sees a connection that asked for nothing.
          connected?.end();
          finish();
        },
      );
    } catch (error) {
      finish(error);
    }
  });
}
