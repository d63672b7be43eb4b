/**
 * The seam between the provisioning service (this folder: enrollments, attestation, allocation, registration
 * operations) and the protocol heads that carry device registrations (MQTT, HTTPS, AMQP; protocol-device.md §5).
 * Heads translate frames into these calls and answers back into frames; they hold no provisioning logic.
 *
 * Flow (§5.1–5.3): the head authenticates the registration (`authenticate`: at MQTT CONNECT / AMQP SASL or CBS / each
 * HTTPS request), then `register` starts an operation that answers 202 `assigning` with an `operationId` and a
 * `retry-after`, and `operationStatus` answers 202 until the operation is done, then 200 with the final status
 * (`assigned`, `failed`, `disabled`) and the `registrationState`.
 */
import type { DpsRegistrationOperation } from '@fieldhub/protocol';

/** What a device presents to prove it may register as `registrationId`. */
export type DpsProof =
  /** `SharedAccessSignature sr={idScope}/registrations/{registrationId}&sig=..&se=..&skn=registration` (§5.5). */
  | { readonly kind: 'sas'; readonly token: string }
  /** The TLS client certificate chain, leaf first, PEM (the leaf's CN is the registration id, §5.5). */
  | { readonly kind: 'x509'; readonly chain: readonly string[] };

/** An authenticated registration: who, under which enrollment. Opaque to heads beyond these fields. */
export interface DpsPrincipal {
  readonly idScope: string;
  readonly registrationId: string;
  /** When a SAS proof stops being accepted (ms since epoch); undefined for X.509. */
  readonly expiresAtMs: number | undefined;
}

/** A head's answer: the status code to send (200 done, 202 still assigning) and the JSON body. */
export interface DpsAnswer {
  readonly status: 200 | 202;
  readonly body: DpsRegistrationOperation;
  /** Seconds the device should wait before polling again (`retry-after`), with 202. */
  readonly retryAfterSeconds?: number;
}

/** Options of a registration request. */
export interface DpsRegisterOptions {
  /** The request's `payload` (custom allocation data): any JSON. */
  readonly payload?: unknown;
  /** `forceRegistration=true` (HTTPS query) / `iotdps-forceRegistration` (AMQP): re-provision even if assigned. */
  readonly forceRegistration?: boolean;
}

/**
 * The provisioning service as heads see it. Every method throws `HubError`s whose `code`/`status` the head maps to
 * its protocol (HTTPS status + DPS error body `{errorCode, trackingId, message, timestampUtc}`; MQTT
 * `$dps/registrations/res/{status}/?$rid=..`; AMQP the same status in the response): AuthenticationError (401) for
 * a wrong key, an unknown or disabled enrollment where Azure refuses authentication, an unverified CA; ArgumentError
 * (400) for malformed requests; a 404 for an unknown operation id.
 */
export interface DpsService {
  /** The service's ID scope (`hub.json` `dps.idScope`). */
  readonly idScope: string;
  /** The host name devices dial for provisioning (`hub.json` `dps.host`). */
  readonly hostName: string;
  /** @throws AuthenticationError (401) when the proof does not authenticate `registrationId` in `idScope`. */
  authenticate(idScope: string, registrationId: string, proof: DpsProof): Promise<DpsPrincipal>;
  /** Starts (or, for an assigned device without `forceRegistration`, may short-cut) a registration. */
  register(principal: DpsPrincipal, options?: DpsRegisterOptions): Promise<DpsAnswer>;
  /** The status of an operation this registration started. @throws HubError 404 for an unknown operation. */
  operationStatus(principal: DpsPrincipal, operationId: string): Promise<DpsAnswer>;
}
