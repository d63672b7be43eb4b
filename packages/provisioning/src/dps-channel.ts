/**
 * The seam between the registration flow (`register.ts`: polling, retries, timeout) and a transport (MQTT, HTTPS):
 * one connection that sends the two DPS requests and hands back raw replies. Transports hold no policy.
 */
import { rootCertificates } from 'node:tls';
import type { DpsReply } from './registration-result';

/** One transport connection to DPS for one registration. */
export interface DpsChannel {
  /** Sends a registration request; resolves with DPS's reply, whatever its status. */
  register(body: string, signal: AbortSignal): Promise<DpsReply>;
  /** Sends an operation status poll; resolves with DPS's reply, whatever its status. */
  operationStatus(operationId: string, signal: AbortSignal): Promise<DpsReply>;
  /** Closes the connection and resolves once its socket is closed. Idempotent. */
  close(): Promise<void>;
}

/** What a transport needs to open a channel. */
export interface DpsChannelOptions {
  readonly host: string;
  readonly port: number;
  /** TLS server name (undefined for an IP address). */
  readonly servername: string | undefined;
  readonly idScope: string;
  readonly registrationId: string;
  /** The SAS token (symmetric key), or undefined with a client certificate. */
  readonly sasToken: string | undefined;
  /** The client certificate and key (X.509), PEM. */
  readonly x509: { readonly cert: string; readonly key: string; readonly passphrase?: string } | undefined;
  /** Extra trusted CA certificates (PEM), added to Node's roots. */
  readonly ca: string | undefined;
  /** `forceRegistration` on the registration request. */
  readonly forceRegistration: boolean;
  /** Aborts opening the channel. */
  readonly signal: AbortSignal;
}

/** What {@link channelTlsOptions} gives: the `node:tls` options, as undici and MQTT.js take them. */
export interface ChannelTlsOptions {
  readonly rejectUnauthorized: true;
  readonly ca?: string[];
  readonly cert?: string;
  readonly key?: string;
  readonly passphrase?: string;
  readonly servername?: string;
}

/**
 * The TLS options every transport dials DPS with: certificates checked against Node's roots plus `ca`, the client
 * certificate and key for X.509, and the server name.
 */
export function channelTlsOptions(options: DpsChannelOptions): ChannelTlsOptions {
  return {
    rejectUnauthorized: true,
    ...(options.ca === undefined ? {} : { ca: [...rootCertificates, options.ca] }),
    ...(options.x509 === undefined
      ? {}
      : {
          cert: options.x509.cert,
          key: options.x509.key,
          ...(options.x509.passphrase === undefined ? {} : { passphrase: options.x509.passphrase }),
        }),
    ...(options.servername === undefined ? {} : { servername: options.servername }),
  };
}

/** The host as a URL writes it: an IPv6 address in brackets. */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
