/**
 * The hub's error-code table, shared by the hub (which emits codes) and the SDK (which parses them).
 * Numbers and names follow Azure IoT Hub (reference: protocol-service.md §2.2); the first three digits of a
 * numeric code are its HTTP status.
 */

/** One row of the error-code table. */
export interface ErrorCodeEntry {
  /** Azure's numeric code, e.g. 404001. */
  readonly code: number;
  /** The HTTP status a REST answer carries. */
  readonly status: number;
  /** Whether trying the same operation again later can succeed. */
  readonly retryable: boolean;
}

const entry = (code: number, retryable = false): ErrorCodeEntry => ({
  code,
  status: Math.floor(code / 1000),
  retryable,
});

/** Every error code the hub emits or the SDK recognises, by Azure's name. */
export const ErrorCodes = {
  InvalidProtocolVersion: entry(400001),
  InvalidOperation: entry(400003),
  ArgumentInvalid: entry(400004),
  ArgumentNull: entry(400005),
  IotHubFormatError: entry(400006),
  DeviceDefinedMultipleTimes: entry(400011),
  BulkRegistryOperationFailure: entry(400013),
  // File upload (Azure's IoT Hub error reference, 4000xx and 403006).
  InvalidFileUploadCorrelationId: entry(400015),
  ExpiredFileUploadCorrelationId: entry(400016),
  InvalidFileUploadCompletionStatus: entry(400019),
  InvalidStorageEndpointOrBlob: entry(400020),
  IotHubNotFound: entry(401001),
  IotHubUnauthorizedAccess: entry(401002),
  IotHubUnauthorized: entry(401003),
  IotHubSuspended: entry(403001),
  IotHubQuotaExceeded: entry(403002),
  JobQuotaExceeded: entry(403003),
  DeviceMaximumQueueDepthExceeded: entry(403004),
  IotHubMaxCbsTokenExceeded: entry(403005),
  DeviceMaximumActiveFileUploadLimitExceeded: entry(403006),
  DeviceNotFound: entry(404001),
  JobNotFound: entry(404002),
  ModuleNotFound: entry(404010),
  DeviceNotOnline: entry(404103, true),
  DeviceAlreadyExists: entry(409001),
  ModuleAlreadyExistsOnDevice: entry(409301),
  PreconditionFailed: entry(412001),
  DeviceMessageLockLost: entry(412002),
  MessageTooLarge: entry(413001),
  TooManyDevices: entry(413002),
  TooManyModulesOnDevice: entry(413003),
  ThrottlingException: entry(429001, true),
  ThrottleBacklogLimitExceeded: entry(429002, true),
  ThrottlingBacklogTimeout: entry(429003, true),
  ServerError: entry(500001, true),
  JobCancelled: entry(500002),
  ServiceUnavailable: entry(503001, true),
  PartitionNotFound: entry(503003, true),
  GatewayTimeout: entry(504101, true),
  // Not Azure codes (Fieldhub's own, Azure answers these cases with a bare status): an unknown REST path, a
  // known path with the wrong HTTP method, and an operation the caller aborted. Kept in the table so every
  // error has a row.
  ResourceNotFound: entry(404000),
  MethodNotAllowed: entry(405000),
  OperationAborted: { code: 499001, status: 499, retryable: false },
} as const satisfies Record<string, ErrorCodeEntry>;

/** The name of an error code, e.g. `'DeviceNotFound'`. */
export type ErrorCodeName = keyof typeof ErrorCodes;

const byNumber: Record<number, ErrorCodeName> = {};
for (const name of Object.keys(ErrorCodes) as ErrorCodeName[]) byNumber[ErrorCodes[name].code] = name;

/** Whether `name` is a known error-code name. */
export function isErrorCodeName(name: string): name is ErrorCodeName {
  return Object.hasOwn(ErrorCodes, name);
}

/** The name for a numeric code (`404001` -> `'DeviceNotFound'`), or `undefined` when unknown. */
export function errorCodeName(code: number): ErrorCodeName | undefined {
  return byNumber[code];
}

/** The table row for a name. */
export function errorCodeEntry(name: ErrorCodeName): ErrorCodeEntry {
  return ErrorCodes[name];
}

/** What an IoT Hub error body says: the error code (a name or the six-digit number) and its text. */
export interface ErrorEnvelope {
  code?: string | number;
  text?: string;
}

/**
 * Reads IoT Hub's JSON error body `{"Message": ...}` (protocol-service.md §2.2): the legacy
 * `"ErrorCode:<Name>;<text>"` form, or a JSON string with a numeric `errorCode`. Anything else gives what it can
 * (`{}` for a body that is not such JSON); never throws.
 */
export function parseErrorEnvelope(body: string): ErrorEnvelope {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return {};
  }
  if (typeof parsed !== 'object' || parsed === null) return {};
  const message = (parsed as { Message?: unknown }).Message;
  if (typeof message !== 'string') return {};
  const legacy = /^ErrorCode:([^;]*);?([\s\S]*)$/.exec(message);
  if (legacy) {
    const name = legacy[1]?.trim();
    return { ...(name ? { code: name } : {}), text: legacy[2] ?? '' };
  }
  try {
    const inner = JSON.parse(message) as { errorCode?: unknown; message?: unknown };
    const result: ErrorEnvelope = { text: typeof inner.message === 'string' ? inner.message : message };
    if (typeof inner.errorCode === 'number' || typeof inner.errorCode === 'string') result.code = inner.errorCode;
    return result;
  } catch {
    return { text: message };
  }
}
