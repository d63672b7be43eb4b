/**
 * Device Provisioning Service shapes: the registration request, the operation status (RegistrationOperationStatus
 * and its DeviceRegistrationResult), the error body, and group-enrollment key derivation (reference:
 * protocol-device.md §5.4, §5.5). The same JSON travels over MQTT, HTTPS and AMQP.
 *
 * Parsers take either JSON text or an already parsed value, check the types of the fields they know, drop the
 * fields they do not know, and throw nothing but ArgumentError.
 */
import { base64Decode, base64Encode, utf8Encode } from './encoding';
import { ArgumentError } from './errors';
import { hmacSha256 } from './hmac';

/** Status of a registration operation and of a registration (§5.4). */
export const DpsRegistrationStatus = {
  unassigned: 'unassigned',
  assigning: 'assigning',
  assigned: 'assigned',
  failed: 'failed',
  disabled: 'disabled',
} as const;

/** One of {@link DpsRegistrationStatus}. */
export type DpsRegistrationStatus = (typeof DpsRegistrationStatus)[keyof typeof DpsRegistrationStatus];

/** Known values of `registrationState.substatus`; parsers accept others, as new ones may appear. */
export const DpsSubstatus = {
  initialAssignment: 'initialAssignment',
  deviceDataMigrated: 'deviceDataMigrated',
  deviceDataReset: 'deviceDataReset',
  reprovisionedToInitialAssignment: 'reprovisionedToInitialAssignment',
} as const;

/** TPM attestation data a registration request may carry (HTTPS only). */
export interface DpsTpmAttestation {
  /** base64 endorsement key. */
  endorsementKey: string;
  /** base64 storage root key. */
  storageRootKey?: string;
}

/** Body of a registration request (`iotdps-register`, `PUT .../register`). */
export interface DpsRegistrationRequest {
  registrationId: string;
  /** Custom data for a custom allocation policy: any JSON. */
  payload?: unknown;
  /** A certificate signing request (base64 DER or PEM) for DPS-issued certificates. */
  csr?: string;
  tpm?: DpsTpmAttestation;
}

/** X.509 attestation details of a registration result. */
export interface DpsX509RegistrationResult {
  enrollmentGroupId?: string;
  certificateInfo?: Record<string, unknown>;
  signingCertificateInfo?: Record<string, unknown>;
}

/** Symmetric-key attestation details of a registration result. */
export interface DpsSymmetricKeyRegistrationResult {
  enrollmentGroupId?: string;
}

/** TPM attestation details of a registration result. */
export interface DpsTpmRegistrationResult {
  /** base64 key, encrypted for the TPM. */
  authenticationKey?: string;
}

/** `registrationState` (DeviceRegistrationResult). */
export interface DpsRegistrationState {
  registrationId?: string;
  createdDateTimeUtc?: string;
  /** Host name of the hub the device was assigned to. */
  assignedHub?: string;
  deviceId?: string;
  status?: DpsRegistrationStatus;
  /** Usually one of {@link DpsSubstatus}. */
  substatus?: string;
  errorCode?: number;
  errorMessage?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
  /** Data returned by a custom allocation policy: any JSON. */
  payload?: unknown;
  x509?: DpsX509RegistrationResult;
  symmetricKey?: DpsSymmetricKeyRegistrationResult;
  tpm?: DpsTpmRegistrationResult;
  /** Certificates DPS issued for a `csr`, leaf first (base64 DER). */
  issuedCertificateChain?: string[];
}

/** RegistrationOperationStatus: the answer to a register request or a status poll. */
export interface DpsRegistrationOperation {
  operationId: string;
  status: DpsRegistrationStatus;
  registrationState?: DpsRegistrationState;
}

/** The JSON error body DPS answers failures with. */
export interface DpsErrorBody {
  /** Six-digit code whose first three digits are the HTTP status, e.g. 401002. */
  errorCode: number;
  message: string;
  trackingId?: string;
  timestampUtc?: string;
  info?: unknown;
}

// ---------------------------------------------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;

function toJson(input: unknown, field: string): unknown {
  if (typeof input !== 'string') return input;
  try {
    return JSON.parse(input) as unknown;
  } catch {
    throw new ArgumentError(`${field} is not valid JSON`, { field });
  }
}

function asObject(value: unknown, field: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArgumentError(`${field} must be a JSON object`, { field });
  }
  return value as JsonObject;
}

function own(object: JsonObject, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

// `null` counts as absent: JSON serialisers of other SDKs write null for unset members.
function optionalString(object: JsonObject, key: string, field: string): string | undefined {
  const value = own(object, key);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ArgumentError(`${field} must be a string`, { field });
  return value;
}

function requiredString(object: JsonObject, key: string, field: string): string {
  const value = optionalString(object, key, field);
  if (value === undefined || value === '') throw new ArgumentError(`${field} is required`, { field });
  return value;
}

function optionalObject(object: JsonObject, key: string, field: string): JsonObject | undefined {
  const value = own(object, key);
  if (value === undefined || value === null) return undefined;
  return asObject(value, field);
}

function parseStatus(value: unknown, field: string): DpsRegistrationStatus {
  // Node's client branches on the lower-cased status (§5.4), so other casings are accepted.
  const lower = typeof value === 'string' ? value.toLowerCase() : undefined;
  if (
    lower === 'unassigned' ||
    lower === 'assigning' ||
    lower === 'assigned' ||
    lower === 'failed' ||
    lower === 'disabled'
  ) {
    return lower;
  }
  throw new ArgumentError(`${field} must be unassigned, assigning, assigned, failed or disabled`, { field });
}

function parseErrorCode(value: unknown, field: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'string' && /^\d{1,15}$/.test(value)) return Number(value);
  throw new ArgumentError(`${field} must be an integer`, { field });
}

function copyStrings<T extends object>(target: T, source: JsonObject, keys: readonly string[], prefix: string): void {
  for (const key of keys) {
    const value = optionalString(source, key, `${prefix}.${key}`);
    if (value !== undefined) (target as Record<string, unknown>)[key] = value;
  }
}

/**
 * Parses a registration request body.
 *
 * @param input JSON text or an already parsed value.
 * @throws ArgumentError (field `body`, `registrationId`, `csr`, `tpm`, `tpm.endorsementKey`, ...) when the body is
 * not a JSON object, `registrationId` is missing or empty, or a known field has the wrong type.
 */
export function parseDpsRegistrationRequest(input: unknown): DpsRegistrationRequest {
  const body = asObject(toJson(input, 'body'), 'body');
  const request: DpsRegistrationRequest = { registrationId: requiredString(body, 'registrationId', 'registrationId') };
  const payload = own(body, 'payload');
  if (payload !== undefined && payload !== null) request.payload = payload;
  const csr = optionalString(body, 'csr', 'csr');
  if (csr !== undefined) request.csr = csr;
  const tpm = optionalObject(body, 'tpm', 'tpm');
  if (tpm !== undefined) {
    const attestation: DpsTpmAttestation = {
      endorsementKey: requiredString(tpm, 'endorsementKey', 'tpm.endorsementKey'),
    };
    const storageRootKey = optionalString(tpm, 'storageRootKey', 'tpm.storageRootKey');
    if (storageRootKey !== undefined) attestation.storageRootKey = storageRootKey;
    request.tpm = attestation;
  }
  return request;
}

function parseRegistrationState(state: JsonObject): DpsRegistrationState {
  const result: DpsRegistrationState = {};
  copyStrings(
    result,
    state,
    [
      'registrationId',
      'createdDateTimeUtc',
      'assignedHub',
      'deviceId',
      'substatus',
      'errorMessage',
      'lastUpdatedDateTimeUtc',
      'etag',
    ],
    'registrationState',
  );
  const status = own(state, 'status');
  if (status !== undefined && status !== null) result.status = parseStatus(status, 'registrationState.status');
  const errorCode = own(state, 'errorCode');
  if (errorCode !== undefined && errorCode !== null) {
    result.errorCode = parseErrorCode(errorCode, 'registrationState.errorCode');
  }
  const payload = own(state, 'payload');
  if (payload !== undefined && payload !== null) result.payload = payload;
  const x509 = optionalObject(state, 'x509', 'registrationState.x509');
  if (x509 !== undefined) {
    const details: DpsX509RegistrationResult = {};
    copyStrings(details, x509, ['enrollmentGroupId'], 'registrationState.x509');
    for (const key of ['certificateInfo', 'signingCertificateInfo'] as const) {
      const info = optionalObject(x509, key, `registrationState.x509.${key}`);
      if (info !== undefined) details[key] = info;
    }
    result.x509 = details;
  }
  const symmetricKey = optionalObject(state, 'symmetricKey', 'registrationState.symmetricKey');
  if (symmetricKey !== undefined) {
    const details: DpsSymmetricKeyRegistrationResult = {};
    copyStrings(details, symmetricKey, ['enrollmentGroupId'], 'registrationState.symmetricKey');
    result.symmetricKey = details;
  }
  const tpm = optionalObject(state, 'tpm', 'registrationState.tpm');
  if (tpm !== undefined) {
    const details: DpsTpmRegistrationResult = {};
    copyStrings(details, tpm, ['authenticationKey'], 'registrationState.tpm');
    result.tpm = details;
  }
  const chain = own(state, 'issuedCertificateChain');
  if (chain !== undefined && chain !== null) {
    if (!Array.isArray(chain) || !chain.every((item) => typeof item === 'string')) {
      throw new ArgumentError('registrationState.issuedCertificateChain must be an array of strings', {
        field: 'registrationState.issuedCertificateChain',
      });
    }
    result.issuedCertificateChain = chain.slice() as string[];
  }
  return result;
}

/**
 * Parses a RegistrationOperationStatus (the body of a DPS response with status 200 or 202). `status` is accepted in
 * any case and returned lower-case.
 *
 * @param input JSON text or an already parsed value.
 * @throws ArgumentError (field `body`, `operationId`, `status`, `registrationState`, `registrationState.<name>`)
 * when the body is not a JSON object, `operationId` is missing, `status` is not a known status, or a known field
 * has the wrong type.
 */
export function parseDpsRegistrationOperation(input: unknown): DpsRegistrationOperation {
  const body = asObject(toJson(input, 'body'), 'body');
  const operation: DpsRegistrationOperation = {
    operationId: requiredString(body, 'operationId', 'operationId'),
    status: parseStatus(own(body, 'status'), 'status'),
  };
  const state = optionalObject(body, 'registrationState', 'registrationState');
  if (state !== undefined) operation.registrationState = parseRegistrationState(state);
  return operation;
}

/**
 * Parses a DPS error body: `{"errorCode":401002,"trackingId":"...","message":"...","timestampUtc":"..."}`.
 *
 * @param input JSON text or an already parsed value.
 * @throws ArgumentError (field `body`, `errorCode`, `message`, ...) when the body is not a JSON object, or
 * `errorCode` or `message` is missing or of the wrong type.
 */
export function parseDpsErrorBody(input: unknown): DpsErrorBody {
  const body = asObject(toJson(input, 'body'), 'body');
  const errorCode = own(body, 'errorCode');
  if (errorCode === undefined || errorCode === null) {
    throw new ArgumentError('errorCode is required', { field: 'errorCode' });
  }
  const message = optionalString(body, 'message', 'message');
  if (message === undefined) throw new ArgumentError('message is required', { field: 'message' });
  const result: DpsErrorBody = { errorCode: parseErrorCode(errorCode, 'errorCode'), message };
  copyStrings(result, body, ['trackingId', 'timestampUtc'], 'body');
  const info = own(body, 'info');
  if (info !== undefined && info !== null) result.info = info;
  return result;
}

/**
 * Checks a registration id against DPS's rules (§5.4): 1 to 128 characters, letters, digits, `.`, `_` and `-`,
 * starting and ending with a letter or digit. DPS compares registration ids without case.
 *
 * @throws ArgumentError (field `registrationId`) when the id breaks a rule.
 */
export function validateRegistrationId(registrationId: string): void {
  if (
    typeof registrationId !== 'string' ||
    registrationId.length > 128 ||
    !/^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(registrationId)
  ) {
    throw new ArgumentError(
      'registrationId must be 1-128 letters, digits, ., _ or -, starting and ending with a letter or digit',
      { field: 'registrationId' },
    );
  }
}

/**
 * Derives a device's symmetric key from its enrollment group's key (§5.5):
 * `base64(HMAC-SHA256(base64decode(groupKey), UTF-8(registrationId)))`. Individual enrollments use their own key.
 *
 * @throws ArgumentError (field `groupKey`) when the group key is not base64 or empty, (field `registrationId`) when
 * the registration id is empty.
 */
export function deriveDeviceKey(groupKeyBase64: string, registrationId: string): string {
  if (registrationId === '') throw new ArgumentError('registrationId must not be empty', { field: 'registrationId' });
  let key: Uint8Array;
  try {
    key = base64Decode(groupKeyBase64);
  } catch (error) {
    throw new ArgumentError('groupKey must be base64', { field: 'groupKey', cause: error });
  }
  if (key.length === 0) throw new ArgumentError('groupKey must not be empty', { field: 'groupKey' });
  return base64Encode(hmacSha256(key, utf8Encode(registrationId)));
}
