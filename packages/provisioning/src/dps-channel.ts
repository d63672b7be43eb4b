/**
 * The seam between the registration flow (`register.ts`: polling, retries, timeout) and a transport (MQTT, HTTPS):
 * one connection that sends the two DPS requests and hands back raw replies. Transports hold no policy.
 */
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
