/**
 * Connection strings: `Key=value` pairs joined by `;` (reference: protocol-device.md §1.1, protocol-service.md
 * §1.2). Keys are case-sensitive, as in Azure's Node parser; a value is everything after the first `=`, so base64
 * padding and whole SAS tokens survive.
 */
import { ArgumentError } from './errors';
import { parseSasToken } from './sas';

/** Any connection string, device, module or service (policy), as typed fields. */
export interface ConnectionString {
  /** `HostName`: the hub's host name, with a port when there is one. Used in SAS `sr` and the MQTT username. */
  hostName: string;
  /** `DeviceId`. */
  deviceId?: string;
  /** `ModuleId`: makes it a module identity. */
  moduleId?: string;
  /** `SharedAccessKey`: base64 device, module or policy key. */
  sharedAccessKey?: string;
  /** `SharedAccessKeyName`: policy name; tokens then carry `skn`. */
  sharedAccessKeyName?: string;
  /** `SharedAccessSignature`: a complete token, which cannot be renewed. */
  sharedAccessSignature?: string;
  /** `x509=true`: certificate authentication; the certificate comes out of band. */
  x509?: boolean;
  /** `GatewayHostName`: where to connect (an edge gateway); `hostName` still names the hub. */
  gatewayHostName?: string;
}

/** A validated device or module connection string: a device id and exactly one credential. */
export type DeviceConnectionString = ConnectionString & { deviceId: string };

/** A validated service connection string: a policy name and key, or a complete token. */
export type ServiceConnectionString = ConnectionString &
  ({ sharedAccessKeyName: string; sharedAccessKey: string } | { sharedAccessSignature: string });

/** Wire key of each field, in the order {@link formatConnectionString} writes them. */
export const ConnectionStringKeys = {
  hostName: 'HostName',
  deviceId: 'DeviceId',
  moduleId: 'ModuleId',
  sharedAccessKeyName: 'SharedAccessKeyName',
  sharedAccessKey: 'SharedAccessKey',
  sharedAccessSignature: 'SharedAccessSignature',
  x509: 'x509',
  gatewayHostName: 'GatewayHostName',
} as const satisfies Record<keyof ConnectionString, string>;

type FieldName = keyof typeof ConnectionStringKeys;

const fieldNames = Object.keys(ConnectionStringKeys) as FieldName[];

function fieldOf(key: string): FieldName | undefined {
  for (const name of fieldNames) {
    if (ConnectionStringKeys[name] === key) return name;
  }
  return undefined;
}

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function checkValue(name: FieldName, value: string): void {
  const key = ConnectionStringKeys[name];
  if (name === 'hostName' || name === 'gatewayHostName') {
    if (/[\s/]/.test(value)) throw new ArgumentError(`${key} must be a host name, not '${value}'`, { field: key });
  } else if (name === 'deviceId' || name === 'moduleId') {
    // A slash would change the meaning of topics and SAS resource URIs built from the id.
    if (value.indexOf('/') >= 0) throw new ArgumentError(`${key} must not contain '/'`, { field: key });
  } else if (name === 'sharedAccessKey') {
    if (!base64Pattern.test(value)) throw new ArgumentError(`${key} must be base64`, { field: key });
  } else if (name === 'sharedAccessSignature') {
    try {
      parseSasToken(value);
    } catch (error) {
      const reason = error instanceof Error ? error.message : 'malformed';
      throw new ArgumentError(`${key} is not a SAS token: ${reason}`, { field: key, cause: error });
    }
  }
}

/**
 * Parses any connection string without checking which keys go together (see
 * {@link parseDeviceConnectionString} and {@link parseServiceConnectionString} for that).
 *
 * Lenient where Azure's parser is: whitespace around pairs, keys and values is ignored, as are empty pairs
 * (`a=1;;b=2;`) and pairs with an empty value; unknown keys are ignored. `x509` accepts `true`/`false` in any case.
 *
 * @throws ArgumentError naming the key when a pair has no `=` or an empty key (field `connectionString`), a key
 * repeats, `HostName` is missing or not a host name, an id contains `/`, `SharedAccessKey` is not base64,
 * `SharedAccessSignature` is not a SAS token, or `x509` is neither true nor false.
 */
export function parseConnectionString(text: string): ConnectionString {
  const fields: Partial<Record<FieldName, string>> = {};
  for (const rawPair of text.split(';')) {
    const pair = rawPair.trim();
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    if (equals <= 0) {
      throw new ArgumentError(`connection string part '${pair}' is not Key=value`, { field: 'connectionString' });
    }
    const key = pair.slice(0, equals).trim();
    const value = pair.slice(equals + 1).trim();
    if (key === '') throw new ArgumentError('connection string has an empty key', { field: 'connectionString' });
    const name = fieldOf(key);
    if (name === undefined) continue;
    if (fields[name] !== undefined) throw new ArgumentError(`${key} appears twice`, { field: key });
    if (value === '') continue;
    checkValue(name, value);
    fields[name] = value;
  }
  const hostName = fields.hostName;
  if (hostName === undefined) throw new ArgumentError('connection string has no HostName', { field: 'HostName' });
  const result: ConnectionString = { hostName };
  for (const name of fieldNames) {
    const value = fields[name];
    if (value === undefined || name === 'hostName') continue;
    if (name === 'x509') {
      const lower = value.toLowerCase();
      if (lower !== 'true' && lower !== 'false') {
        throw new ArgumentError(`x509 must be true or false, not '${value}'`, { field: 'x509' });
      }
      result.x509 = lower === 'true';
    } else {
      result[name] = value;
    }
  }
  return result;
}

/**
 * Parses and validates a device or module connection string: `HostName`, `DeviceId`, optional `ModuleId` and
 * `GatewayHostName`, and exactly one of `SharedAccessKey`, `SharedAccessSignature`, `x509=true` (§1.1).
 * `SharedAccessKeyName` (a policy key used on behalf of the device) only goes with `SharedAccessKey`.
 *
 * @throws ArgumentError as {@link parseConnectionString} does, and naming the key when `DeviceId` is missing,
 * when there is no credential or more than one, or `SharedAccessKeyName` comes without `SharedAccessKey`.
 */
export function parseDeviceConnectionString(text: string): DeviceConnectionString {
  const cs = parseConnectionString(text);
  const deviceId = cs.deviceId;
  if (deviceId === undefined) throw new ArgumentError('connection string has no DeviceId', { field: 'DeviceId' });
  const credentials = [
    cs.sharedAccessKey !== undefined ? 'SharedAccessKey' : undefined,
    cs.sharedAccessSignature !== undefined ? 'SharedAccessSignature' : undefined,
    cs.x509 === true ? 'x509' : undefined,
  ].filter((key): key is string => key !== undefined);
  if (credentials.length === 0) {
    throw new ArgumentError('device connection string needs SharedAccessKey, SharedAccessSignature or x509=true', {
      field: 'SharedAccessKey',
    });
  }
  if (credentials.length > 1) {
    throw new ArgumentError(`device connection string has both ${credentials.join(' and ')}`, {
      field: credentials[1] as string,
    });
  }
  if (cs.sharedAccessKeyName !== undefined && cs.sharedAccessKey === undefined) {
    throw new ArgumentError('SharedAccessKeyName needs SharedAccessKey', { field: 'SharedAccessKeyName' });
  }
  return { ...cs, deviceId };
}

/**
 * Parses and validates a service (shared access policy) connection string: `HostName` and either
 * `SharedAccessKeyName` + `SharedAccessKey` or `SharedAccessSignature` (protocol-service.md §1.2).
 *
 * @throws ArgumentError as {@link parseConnectionString} does, and naming the key when the credential is
 * missing or incomplete, when both a key and a signature are given, or when `DeviceId`, `ModuleId` or `x509`
 * shows that this is a device connection string.
 */
export function parseServiceConnectionString(text: string): ServiceConnectionString {
  const cs = parseConnectionString(text);
  for (const name of ['deviceId', 'moduleId', 'x509'] as const) {
    if (cs[name] !== undefined) {
      const key = ConnectionStringKeys[name];
      throw new ArgumentError(`a service connection string has no ${key}; this looks like a device one`, {
        field: key,
      });
    }
  }
  const { sharedAccessKeyName, sharedAccessKey, sharedAccessSignature } = cs;
  if (sharedAccessSignature !== undefined) {
    if (sharedAccessKey !== undefined) {
      throw new ArgumentError('service connection string has both SharedAccessKey and SharedAccessSignature', {
        field: 'SharedAccessSignature',
      });
    }
    return { ...cs, sharedAccessSignature };
  }
  if (sharedAccessKeyName === undefined) {
    throw new ArgumentError('service connection string has no SharedAccessKeyName', { field: 'SharedAccessKeyName' });
  }
  if (sharedAccessKey === undefined) {
    throw new ArgumentError('service connection string has no SharedAccessKey', { field: 'SharedAccessKey' });
  }
  return { ...cs, sharedAccessKeyName, sharedAccessKey };
}

/**
 * Formats a connection string, keys in the order HostName, DeviceId, ModuleId, SharedAccessKeyName,
 * SharedAccessKey, SharedAccessSignature, x509, GatewayHostName; `x509` is written only when true.
 *
 * @throws ArgumentError naming the key when a value is empty, contains `;`, or would not parse back (see
 * {@link parseConnectionString}).
 */
export function formatConnectionString(cs: ConnectionString): string {
  const parts: string[] = [];
  for (const name of fieldNames) {
    const key = ConnectionStringKeys[name];
    const raw = cs[name];
    if (raw === undefined || raw === false) continue;
    const value = raw === true ? 'true' : raw;
    if (typeof value !== 'string' || value === '' || value.trim() !== value || value.indexOf(';') >= 0) {
      throw new ArgumentError(`${key} must be a non-empty string without ';' or surrounding spaces`, {
        field: key,
      });
    }
    checkValue(name, value);
    parts.push(`${key}=${value}`);
  }
  if (cs.hostName === undefined) throw new ArgumentError('HostName is required', { field: 'HostName' });
  return parts.join(';');
}

/**
 * Splits `host`, `host:port`, `[v6]` or `[v6]:port`. Connection strings may carry a port in `HostName`
 * (`localhost:8443`).
 *
 * @throws ArgumentError (field `hostName`) when the text is empty or the port is not 1..65535.
 */
export function splitHostPort(text: string): { host: string; port?: number } {
  let host = text;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new ArgumentError(`host name '${text}' has an unclosed '['`, { field: 'hostName' });
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest.startsWith(':')) portText = rest.slice(1);
    else if (rest !== '') throw new ArgumentError(`host name '${text}' is malformed`, { field: 'hostName' });
  } else {
    const colon = text.lastIndexOf(':');
    // A bare IPv6 address has several colons and no port.
    if (colon >= 0 && text.indexOf(':') === colon) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
  }
  if (host === '') throw new ArgumentError('host name must not be empty', { field: 'hostName' });
  if (portText === undefined) return { host };
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new ArgumentError(`port '${portText}' in host name '${text}' is not 1..65535`, { field: 'hostName' });
  }
  return { host, port };
}
