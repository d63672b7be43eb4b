/**
 * The DPS wire vocabulary the client speaks (reference protocol-device.md §5.1, §5.2, capture dps.txt): the MQTT
 * user name and topics, the HTTPS paths, the SAS resource, where a `provisioningHost` points, and how a reply reads
 * (status, `retry-after`). Pure functions, unit-tested against the official client's frames.
 */
import { ArgumentError } from '@fieldhub/protocol';

/** The API version the official Node client sends (§5). */
export const dpsApiVersion = '2019-03-31';

/** The global provisioning endpoint of Azure. */
export const globalProvisioningHost = 'global.azure-devices-provisioning.net';

/** Seconds to wait before polling when a reply names none (the Node client's default, §5.1). */
export const defaultRetryAfterSeconds = 2;

/** The MQTT topic filter every response arrives on. */
export const dpsResponseTopicFilter = '$dps/registrations/res/#';

/** Where to dial: host, port and the TLS server name (none for an IP address: SNI carries host names only). */
export interface DpsEndpoint {
  readonly host: string;
  readonly port: number;
  readonly servername: string | undefined;
}

/**
 * Reads `provisioningHost` (`host` or `host:port`, IPv6 in brackets) with the port the transport uses by default.
 * @throws ArgumentError (field `provisioningHost`) when it is empty or the port is not 1-65535.
 */
export function dpsEndpoint(provisioningHost: string, defaultPort: number): DpsEndpoint {
  if (typeof provisioningHost !== 'string' || provisioningHost.trim() === '') {
    throw new ArgumentError('provisioningHost must be a host name, optionally with :port', {
      field: 'provisioningHost',
    });
  }
  const match = /^(\[[^\]]+\]|[^:/\s]+)(?::(\d{1,5}))?$/.exec(provisioningHost.trim());
  if (!match?.[1]) {
    throw new ArgumentError(`provisioningHost ${JSON.stringify(provisioningHost)} is not host or host:port`, {
      field: 'provisioningHost',
    });
  }
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ArgumentError('the port of provisioningHost must be 1-65535', { field: 'provisioningHost' });
  }
  const bracketed = match[1].startsWith('[');
  const host = bracketed ? match[1].slice(1, -1) : match[1];
  const isIp = bracketed || /^\d{1,3}(?:\.\d{1,3}){3}$/.test(host);
  return { host, port, servername: isIp ? undefined : host };
}

/** The SAS resource of a registration, raw as the Node client writes it: `{idScope}/registrations/{registrationId}`. */
export function registrationResource(idScope: string, registrationId: string): string {
  return `${idScope}/registrations/${registrationId}`;
}

/**
 * The MQTT user name: `{idScope}/registrations/{registrationId}/api-version=2019-03-31&ClientVersion=<encoded UA>`
 * (no `?` before `api-version`, as the official client sends it).
 */
export function mqttUsername(idScope: string, registrationId: string, clientVersion: string): string {
  return `${registrationResource(idScope, registrationId)}/api-version=${dpsApiVersion}&ClientVersion=${encodeURIComponent(clientVersion)}`;
}

/** The topic of a registration request with request id `rid`. */
export function mqttRegisterTopic(rid: string): string {
  return `$dps/registrations/PUT/iotdps-register/?$rid=${rid}`;
}

/** The topic of an operation status poll. */
export function mqttOperationStatusTopic(rid: string, operationId: string): string {
  return `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${rid}&operationId=${encodeURIComponent(operationId)}`;
}

/** A response topic, read: `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}]`. */
export interface MqttDpsResponse {
  readonly status: number;
  readonly rid: string;
  readonly retryAfterSeconds: number | undefined;
}

/** Reads a response topic; `undefined` for any other topic (or one without `$rid`). */
export function parseMqttResponseTopic(topic: string): MqttDpsResponse | undefined {
  const match = /^\$dps\/registrations\/res\/(\d{3})\/\?(.*)$/.exec(topic);
  if (!match?.[1]) return undefined;
  const query = new URLSearchParams(match[2] ?? '');
  const rid = query.get('$rid');
  if (rid === null || rid === '') return undefined;
  return { status: Number(match[1]), rid, retryAfterSeconds: parseRetryAfter(query.get('retry-after')) };
}

/** The HTTPS path of a registration request. */
export function httpsRegisterPath(idScope: string, registrationId: string, forceRegistration: boolean): string {
  const base = `/${encodeURIComponent(idScope)}/registrations/${encodeURIComponent(registrationId)}/register`;
  return `${base}?api-version=${dpsApiVersion}${forceRegistration ? '&forceRegistration=true' : ''}`;
}

/** The HTTPS path of an operation status poll. */
export function httpsOperationStatusPath(idScope: string, registrationId: string, operationId: string): string {
  return `/${encodeURIComponent(idScope)}/registrations/${encodeURIComponent(registrationId)}/operations/${encodeURIComponent(operationId)}?api-version=${dpsApiVersion}`;
}

/**
 * Reads a `retry-after` value in whole or fractional seconds (the MQTT query parameter and the HTTPS header carry
 * seconds, §5.1, §5.2); `undefined` when absent or not a non-negative number (the caller then waits its default).
 * An HTTP-date is accepted too, as HTTP allows it.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (/^\d+(?:\.\d+)?$/.test(text)) return Number(text);
  // An HTTP-date names its weekday and month; anything else (`-1`, `soon`) is no delay at all.
  if (!/^[A-Za-z]{3}, /.test(text)) return undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, (date - now) / 1000);
}

/** The body of a registration request: `{"registrationId":"..","payload":..}` (payload only when given). */
export function registrationRequestBody(registrationId: string, payload: unknown): string {
  return JSON.stringify(payload === undefined ? { registrationId } : { registrationId, payload });
}
