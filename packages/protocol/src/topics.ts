/**
 * The IoT Hub and DPS MQTT topic catalogue, the topic filters devices subscribe to, and the CONNECT usernames
 * (reference: protocol-device.md §2.2, §2.4, §2.7, §5.1; exact strings checked against the captures).
 *
 * Parsing rule, the same for every parser here: input that belongs to a known topic family but is broken (no
 * `$rid`, a status that is not a number, an empty device id) throws an ArgumentError naming the field;
 * well-formed input of no known family yields `{ kind: 'unknown' }`, so that the hub can decide (the real hub
 * closes the connection, §2.9) and the SDK can ignore it.
 *
 * Identifiers in topics (device, module, method and input names) travel unencoded, as every SDK sends them;
 * `$rid` and `operationId` are opaque tokens, echoed back byte for byte, never decoded. Property bags are
 * percent-encoded (see property-bag.ts).
 */
import { ArgumentError } from './errors';
import {
  decodePropertyBag,
  encodePropertyBag,
  type MessageSystemProperties,
  percentDecode,
  percentEncode,
} from './property-bag';

/** API versions the SDK sends by default; parsers accept any (§8). */
export const ApiVersions = {
  /** IoT Hub device APIs (MQTT username, HTTPS query, AMQP link property). */
  iotHub: '2021-04-12',
  /** DPS device APIs. */
  dps: '2019-03-31',
} as const;

/** The fixed topic filters a device subscribes to (§2.4, §5.1). */
export const TopicFilters = {
  /** Responses to twin GET and reported-property PATCH. */
  twinResponses: '$iothub/twin/res/#',
  /** Desired-property patches. */
  desiredProperties: '$iothub/twin/PATCH/properties/desired/#',
  /** Direct-method requests. */
  methods: '$iothub/methods/POST/#',
  /** DPS responses. */
  dpsResponses: '$dps/registrations/res/#',
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Validation shared by builders

function checkSegment(value: string, field: string): void {
  if (typeof value !== 'string' || value === '') {
    throw new ArgumentError(`${field} must be a non-empty string`, { field });
  }
  // A slash would add a topic level; `+` and `#` are MQTT wildcards, forbidden in topic names [MQTT-3.3.2-2];
  // NUL is forbidden in any MQTT string [MQTT-1.5.3-2].
  if (/[/+#]/.test(value) || value.indexOf(String.fromCharCode(0)) >= 0) {
    throw new ArgumentError(`${field} must not contain '/', '+', '#' or NUL`, { field });
  }
}

const tokenPattern = /^[A-Za-z0-9._~:@!$'()*,;-]+$/;

function checkToken(value: string, field: string): void {
  if (typeof value !== 'string' || !tokenPattern.test(value)) {
    throw new ArgumentError(
      `${field} must be a non-empty string of letters, digits and . _ ~ : @ ! $ ' ( ) * , ; -, not '${value}'`,
      { field },
    );
  }
}

function checkInteger(value: number, field: string, minimum: number, maximum: number): void {
  if (!Number.isSafeInteger(value) || value < minimum || value > maximum) {
    throw new ArgumentError(`${field} must be an integer from ${minimum} to ${maximum}, not ${value}`, { field });
  }
}

function checkStatus(status: number): void {
  checkInteger(status, 'status', 100, 999);
}

function checkVersion(version: number, field = '$version'): void {
  checkInteger(version, field, 0, Number.MAX_SAFE_INTEGER);
}

// ---------------------------------------------------------------------------------------------------------------
// Builders

/** Message properties, as both builders and parsers of message topics carry them. */
export interface MessageProperties {
  /** Application properties. */
  properties?: Record<string, string>;
  /** System properties. */
  systemProperties?: MessageSystemProperties;
}

function bagOf(options: MessageProperties): string {
  const bag: Parameters<typeof encodePropertyBag>[0] = {};
  if (options.properties !== undefined) bag.application = options.properties;
  if (options.systemProperties !== undefined) bag.system = options.systemProperties;
  return encodePropertyBag(bag);
}

/**
 * Telemetry topic: `devices/{deviceId}/messages/events/{bag}`, or for a module
 * `devices/{deviceId}/modules/{moduleId}/messages/events/{bag}`. The bag may be empty; the trailing `/` stays.
 *
 * @throws ArgumentError when an id is empty or contains `/`, `+`, `#` or NUL, or the properties cannot be
 * encoded (see {@link encodePropertyBag}).
 */
export function telemetryTopic(options: MessageProperties & { deviceId: string; moduleId?: string }): string {
  checkSegment(options.deviceId, 'deviceId');
  if (options.moduleId === undefined) return `devices/${options.deviceId}/messages/events/${bagOf(options)}`;
  checkSegment(options.moduleId, 'moduleId');
  return `devices/${options.deviceId}/modules/${options.moduleId}/messages/events/${bagOf(options)}`;
}

/**
 * Cloud-to-device topic the hub publishes on: `devices/{deviceId}/messages/devicebound/{bag}` (lower-case
 * `devicebound`, as Node's SDK subscribes).
 *
 * @throws ArgumentError as {@link telemetryTopic}.
 */
export function cloudToDeviceTopic(options: MessageProperties & { deviceId: string }): string {
  checkSegment(options.deviceId, 'deviceId');
  return `devices/${options.deviceId}/messages/devicebound/${bagOf(options)}`;
}

/**
 * The filter a device subscribes to for cloud-to-device messages: `devices/{deviceId}/messages/devicebound/#`.
 *
 * @throws ArgumentError when the id is empty or contains `/`, `+`, `#` or NUL.
 */
export function cloudToDeviceTopicFilter(deviceId: string): string {
  checkSegment(deviceId, 'deviceId');
  return `devices/${deviceId}/messages/devicebound/#`;
}

/**
 * Module input topic (IoT Edge): `devices/{deviceId}/modules/{moduleId}/inputs/{inputName}/{bag}`.
 *
 * @throws ArgumentError as {@link telemetryTopic}, and for a bad input name.
 */
export function moduleInputTopic(
  options: MessageProperties & { deviceId: string; moduleId: string; inputName: string },
): string {
  checkSegment(options.deviceId, 'deviceId');
  checkSegment(options.moduleId, 'moduleId');
  checkSegment(options.inputName, 'inputName');
  return `devices/${options.deviceId}/modules/${options.moduleId}/inputs/${options.inputName}/${bagOf(options)}`;
}

/**
 * The filter a module subscribes to for its inputs: `devices/{deviceId}/modules/{moduleId}/inputs/#`.
 *
 * @throws ArgumentError when an id is empty or contains `/`, `+`, `#` or NUL.
 */
export function moduleInputsTopicFilter(deviceId: string, moduleId: string): string {
  checkSegment(deviceId, 'deviceId');
  checkSegment(moduleId, 'moduleId');
  return `devices/${deviceId}/modules/${moduleId}/inputs/#`;
}

/**
 * Twin GET request: `$iothub/twin/GET/?$rid={rid}`.
 *
 * @throws ArgumentError when `rid` is empty or holds characters outside the safe set (letters, digits,
 * `. _ ~ : @ ! $ ' ( ) * , ; -`), which it must not since it is echoed verbatim.
 */
export function twinGetTopic(rid: string): string {
  checkToken(rid, '$rid');
  return `$iothub/twin/GET/?$rid=${rid}`;
}

/**
 * Reported-properties patch: `$iothub/twin/PATCH/properties/reported/?$rid={rid}[&$version={version}]`.
 *
 * @throws ArgumentError for a bad `rid` (see {@link twinGetTopic}) or a negative or fractional version.
 */
export function twinReportedPatchTopic(options: { rid: string; version?: number }): string {
  checkToken(options.rid, '$rid');
  let topic = `$iothub/twin/PATCH/properties/reported/?$rid=${options.rid}`;
  if (options.version !== undefined) {
    checkVersion(options.version);
    topic += `&$version=${options.version}`;
  }
  return topic;
}

/**
 * Twin response the hub sends: `$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]` (GET: 200 and the
 * twin; PATCH: 204 and the new reported version).
 *
 * @throws ArgumentError for a status outside 100-999, a bad `rid`, or a bad version.
 */
export function twinResponseTopic(options: { status: number; rid: string; version?: number }): string {
  checkStatus(options.status);
  checkToken(options.rid, '$rid');
  let topic = `$iothub/twin/res/${options.status}/?$rid=${options.rid}`;
  if (options.version !== undefined) {
    checkVersion(options.version);
    topic += `&$version=${options.version}`;
  }
  return topic;
}

/**
 * Desired-properties patch the hub sends: `$iothub/twin/PATCH/properties/desired/?$version={version}`.
 *
 * @throws ArgumentError when `version` is negative or fractional.
 */
export function twinDesiredPatchTopic(version: number): string {
  checkVersion(version);
  return `$iothub/twin/PATCH/properties/desired/?$version=${version}`;
}

/**
 * Direct-method request the hub sends: `$iothub/methods/POST/{methodName}/?$rid={rid}`.
 *
 * @throws ArgumentError for an empty method name or one containing `/`, `+`, `#`, `?` or NUL, or a bad `rid`.
 */
export function methodRequestTopic(options: { methodName: string; rid: string }): string {
  checkSegment(options.methodName, 'methodName');
  if (options.methodName.indexOf('?') >= 0) {
    throw new ArgumentError("methodName must not contain '?'", { field: 'methodName' });
  }
  checkToken(options.rid, '$rid');
  return `$iothub/methods/POST/${options.methodName}/?$rid=${options.rid}`;
}

/**
 * Direct-method response: `$iothub/methods/res/{status}/?$rid={rid}`. The status is the device's choice and
 * reaches the service caller unchanged, so any 32-bit integer is allowed.
 *
 * @throws ArgumentError for a status that is not a 32-bit integer, or a bad `rid`.
 */
export function methodResponseTopic(options: { status: number; rid: string }): string {
  checkInteger(options.status, 'status', -2147483648, 2147483647);
  checkToken(options.rid, '$rid');
  return `$iothub/methods/res/${options.status}/?$rid=${options.rid}`;
}

/**
 * DPS registration request: `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
 *
 * @throws ArgumentError for a bad `rid` (see {@link twinGetTopic}).
 */
export function dpsRegisterTopic(rid: string): string {
  checkToken(rid, '$rid');
  return `$dps/registrations/PUT/iotdps-register/?$rid=${rid}`;
}

/**
 * DPS operation-status poll:
 * `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operationId}`.
 *
 * @throws ArgumentError for a bad `rid` or `operationId` (same safe character set).
 */
export function dpsGetOperationStatusTopic(options: { rid: string; operationId: string }): string {
  checkToken(options.rid, '$rid');
  checkToken(options.operationId, 'operationId');
  return `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${options.rid}&operationId=${options.operationId}`;
}

/**
 * DPS response: `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}]`.
 *
 * @throws ArgumentError for a status outside 100-999, a bad `rid`, or a negative or fractional retry-after.
 */
export function dpsResponseTopic(options: { status: number; rid: string; retryAfter?: number }): string {
  checkStatus(options.status);
  checkToken(options.rid, '$rid');
  let topic = `$dps/registrations/res/${options.status}/?$rid=${options.rid}`;
  if (options.retryAfter !== undefined) {
    checkInteger(options.retryAfter, 'retry-after', 0, Number.MAX_SAFE_INTEGER);
    topic += `&retry-after=${options.retryAfter}`;
  }
  return topic;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing topics

/** Telemetry from a device or module. */
export interface ParsedTelemetryTopic {
  kind: 'telemetry';
  deviceId: string;
  moduleId?: string;
  properties: Record<string, string>;
  systemProperties: MessageSystemProperties;
}

/** A cloud-to-device message. */
export interface ParsedCloudToDeviceTopic {
  kind: 'cloudToDevice';
  deviceId: string;
  properties: Record<string, string>;
  systemProperties: MessageSystemProperties;
}

/** A module input message (IoT Edge). */
export interface ParsedModuleInputTopic {
  kind: 'moduleInput';
  deviceId: string;
  moduleId: string;
  inputName: string;
  properties: Record<string, string>;
  systemProperties: MessageSystemProperties;
}

/** Twin GET request. */
export interface ParsedTwinGetTopic {
  kind: 'twinGet';
  rid: string;
}

/** Reported-properties patch. */
export interface ParsedTwinReportedPatchTopic {
  kind: 'twinReportedPatch';
  rid: string;
  version?: number;
}

/** Twin response. */
export interface ParsedTwinResponseTopic {
  kind: 'twinResponse';
  status: number;
  rid: string;
  version?: number;
}

/** Desired-properties patch. */
export interface ParsedTwinDesiredPatchTopic {
  kind: 'twinDesiredPatch';
  version: number;
}

/** Direct-method request. */
export interface ParsedMethodRequestTopic {
  kind: 'methodRequest';
  methodName: string;
  rid: string;
}

/** Direct-method response. */
export interface ParsedMethodResponseTopic {
  kind: 'methodResponse';
  status: number;
  rid: string;
}

/** DPS registration request. */
export interface ParsedDpsRegisterTopic {
  kind: 'dpsRegister';
  rid: string;
}

/** DPS operation-status poll. */
export interface ParsedDpsGetOperationStatusTopic {
  kind: 'dpsGetOperationStatus';
  rid: string;
  operationId: string;
}

/** DPS response. */
export interface ParsedDpsResponseTopic {
  kind: 'dpsResponse';
  status: number;
  rid: string;
  retryAfter?: number;
}

/** A well-formed topic of no known family. */
export interface ParsedUnknownTopic {
  kind: 'unknown';
  topic: string;
}

/** Every topic {@link parseDeviceTopic} recognises, by `kind`. */
export type ParsedDeviceTopic =
  | ParsedTelemetryTopic
  | ParsedCloudToDeviceTopic
  | ParsedModuleInputTopic
  | ParsedTwinGetTopic
  | ParsedTwinReportedPatchTopic
  | ParsedTwinResponseTopic
  | ParsedTwinDesiredPatchTopic
  | ParsedMethodRequestTopic
  | ParsedMethodResponseTopic
  | ParsedDpsRegisterTopic
  | ParsedDpsGetOperationStatusTopic
  | ParsedDpsResponseTopic
  | ParsedUnknownTopic;

function requireId(value: string | undefined, field: string): string {
  if (value === undefined || value === '') {
    throw new ArgumentError(`${field} must not be empty`, { field });
  }
  return value;
}

function messageProperties(bag: string): MessageProperties & Required<MessageProperties> {
  const decoded = decodePropertyBag(bag);
  return { properties: decoded.application, systemProperties: decoded.system };
}

function parseDevicesTopic(topic: string, segments: string[]): ParsedDeviceTopic {
  const unknown: ParsedUnknownTopic = { kind: 'unknown', topic };
  if (segments.length < 4) return unknown;
  const deviceId = requireId(segments[1], 'deviceId');
  const rest = (from: number): string => segments.slice(from).join('/');
  if (segments[2] === 'messages') {
    // §0.1: both `devicebound` and `deviceBound` occur; compare without case.
    const channel = (segments[3] as string).toLowerCase();
    if (channel === 'events') return { kind: 'telemetry', deviceId, ...messageProperties(rest(4)) };
    if (channel === 'devicebound') return { kind: 'cloudToDevice', deviceId, ...messageProperties(rest(4)) };
    return unknown;
  }
  if (segments[2] === 'modules' && segments.length >= 5) {
    const moduleId = requireId(segments[3], 'moduleId');
    if (segments[4] === 'messages' && segments[5] === 'events') {
      return { kind: 'telemetry', deviceId, moduleId, ...messageProperties(rest(6)) };
    }
    if (segments[4] === 'inputs' && segments.length >= 6) {
      const inputName = requireId(segments[5], 'inputName');
      return { kind: 'moduleInput', deviceId, moduleId, inputName, ...messageProperties(rest(6)) };
    }
  }
  return unknown;
}

// Splits `a/b/c/?x=1&y=2` into path levels (trailing empty level dropped) and raw query parameters.
function splitPathAndQuery(text: string): { levels: string[]; query: Record<string, string> } {
  const mark = text.indexOf('?');
  const path = mark < 0 ? text : text.slice(0, mark);
  const levels = path.split('/');
  if (levels.length > 1 && levels[levels.length - 1] === '') levels.pop();
  const query: Record<string, string> = {};
  if (mark >= 0) {
    for (const pair of text.slice(mark + 1).split('&')) {
      if (pair === '') continue;
      const equals = pair.indexOf('=');
      const key = percentDecode(equals < 0 ? pair : pair.slice(0, equals), 'query');
      Object.defineProperty(query, key, {
        value: equals < 0 ? '' : pair.slice(equals + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return { levels, query };
}

function queryValue(query: Record<string, string>, key: string): string | undefined {
  return Object.hasOwn(query, key) ? query[key] : undefined;
}

function requireRid(query: Record<string, string>): string {
  const rid = queryValue(query, '$rid');
  if (rid === undefined) throw new ArgumentError('topic has no $rid', { field: '$rid' });
  return rid;
}

function parseNumber(text: string | undefined, field: string, pattern: RegExp): number {
  const value = text !== undefined && pattern.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw new ArgumentError(`topic ${field} must be an integer, not '${text ?? ''}'`, { field });
  }
  return value;
}

const statusPattern = /^\d{3}$/;
const methodStatusPattern = /^-?\d{1,10}$/;
const versionPattern = /^\d{1,16}$/;

function optionalVersion<T extends object>(target: T, query: Record<string, string>): T & { version?: number } {
  const text = queryValue(query, '$version');
  return text === undefined ? target : { ...target, version: parseNumber(text, '$version', versionPattern) };
}

function parseIotHubTopic(topic: string): ParsedDeviceTopic {
  const { levels, query } = splitPathAndQuery(topic);
  const path = levels.join('/');
  if (path === '$iothub/twin/GET') return { kind: 'twinGet', rid: requireRid(query) };
  if (path === '$iothub/twin/PATCH/properties/reported') {
    return optionalVersion({ kind: 'twinReportedPatch' as const, rid: requireRid(query) }, query);
  }
  if (path === '$iothub/twin/PATCH/properties/desired') {
    return {
      kind: 'twinDesiredPatch',
      version: parseNumber(queryValue(query, '$version'), '$version', versionPattern),
    };
  }
  if (levels.length === 4 && levels[1] === 'twin' && levels[2] === 'res') {
    const status = parseNumber(levels[3], 'status', statusPattern);
    return optionalVersion({ kind: 'twinResponse' as const, status, rid: requireRid(query) }, query);
  }
  if (levels.length === 4 && levels[1] === 'methods' && levels[2] === 'POST') {
    return { kind: 'methodRequest', methodName: requireId(levels[3], 'methodName'), rid: requireRid(query) };
  }
  if (levels.length === 4 && levels[1] === 'methods' && levels[2] === 'res') {
    const status = parseNumber(levels[3], 'status', methodStatusPattern);
    if (status < -2147483648 || status > 2147483647) {
      throw new ArgumentError(`method status ${status} is not a 32-bit integer`, { field: 'status' });
    }
    return { kind: 'methodResponse', status, rid: requireRid(query) };
  }
  return { kind: 'unknown', topic };
}

function parseDpsTopic(topic: string): ParsedDeviceTopic {
  const { levels, query } = splitPathAndQuery(topic);
  const path = levels.join('/');
  if (path === '$dps/registrations/PUT/iotdps-register') return { kind: 'dpsRegister', rid: requireRid(query) };
  if (path === '$dps/registrations/GET/iotdps-get-operationstatus') {
    const operationId = queryValue(query, 'operationId');
    if (operationId === undefined || operationId === '') {
      throw new ArgumentError('topic has no operationId', { field: 'operationId' });
    }
    return { kind: 'dpsGetOperationStatus', rid: requireRid(query), operationId };
  }
  if (levels.length === 4 && levels[1] === 'registrations' && levels[2] === 'res') {
    const status = parseNumber(levels[3], 'status', statusPattern);
    const result: ParsedDpsResponseTopic = { kind: 'dpsResponse', status, rid: requireRid(query) };
    const retryAfter = queryValue(query, 'retry-after');
    if (retryAfter !== undefined) result.retryAfter = parseNumber(retryAfter, 'retry-after', versionPattern);
    return result;
  }
  return { kind: 'unknown', topic };
}

/**
 * Classifies any topic a device or the hub publishes on (§2.4, §5.1) and extracts its parts.
 *
 * Lenient where SDKs differ (§0): `devicebound` in any case; a missing trailing `/` before an empty property bag
 * or before `?`; extra query parameters; `$rid` as any string (empty included), returned verbatim; a property
 * bag that itself contains `/` (everything after the fixed levels is the bag). When a query parameter repeats,
 * the last one wins.
 *
 * @returns the parsed topic, or `{ kind: 'unknown', topic }` for a well-formed topic of no known family.
 * @throws ArgumentError naming the field when the topic is empty, or belongs to a known family but is malformed:
 * an empty device/module/input/method name, a missing `$rid` / `$version` / `operationId`, a status, version or
 * retry-after that is not an integer, or a property bag that does not decode (see {@link decodePropertyBag}).
 */
export function parseDeviceTopic(topic: string): ParsedDeviceTopic {
  if (topic === '') throw new ArgumentError('topic must not be empty', { field: 'topic' });
  if (topic.startsWith('devices/')) return parseDevicesTopic(topic, topic.split('/'));
  if (topic.startsWith('$iothub/')) return parseIotHubTopic(topic);
  if (topic.startsWith('$dps/')) return parseDpsTopic(topic);
  return { kind: 'unknown', topic };
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing topic filters

/** Every topic filter {@link parseTopicFilter} recognises, by `kind`. */
export type ParsedTopicFilter =
  | { kind: 'cloudToDevice'; deviceId: string }
  | { kind: 'moduleInputs'; deviceId: string; moduleId: string }
  | { kind: 'twinResponses' }
  | { kind: 'desiredProperties' }
  | { kind: 'methods' }
  | { kind: 'dpsResponses' }
  | { kind: 'unknown'; filter: string };

/**
 * Classifies a SUBSCRIBE topic filter: the documented ones (§2.4) and nothing else, since the hub is not a
 * general broker. A filter with a wildcard where an id belongs (`devices/+/...`) is of no known family.
 *
 * @returns the parsed filter, or `{ kind: 'unknown', filter }`.
 * @throws ArgumentError (field `filter`, `deviceId` or `moduleId`) when the filter is empty or a documented
 * filter has an empty id.
 */
export function parseTopicFilter(filter: string): ParsedTopicFilter {
  if (filter === '') throw new ArgumentError('topic filter must not be empty', { field: 'filter' });
  if (filter === TopicFilters.twinResponses) return { kind: 'twinResponses' };
  if (filter === TopicFilters.desiredProperties) return { kind: 'desiredProperties' };
  if (filter === TopicFilters.methods) return { kind: 'methods' };
  if (filter === TopicFilters.dpsResponses) return { kind: 'dpsResponses' };
  const levels = filter.split('/');
  const unknown: ParsedTopicFilter = { kind: 'unknown', filter };
  if (levels[0] !== 'devices' || levels[levels.length - 1] !== '#') return unknown;
  const isId = (value: string | undefined): boolean => value !== undefined && !/[+#]/.test(value);
  if (levels.length === 5 && levels[2] === 'messages' && levels[3]?.toLowerCase() === 'devicebound') {
    const deviceId = requireId(levels[1], 'deviceId');
    return isId(deviceId) ? { kind: 'cloudToDevice', deviceId } : unknown;
  }
  if (levels.length === 6 && levels[2] === 'modules' && levels[4] === 'inputs') {
    const deviceId = requireId(levels[1], 'deviceId');
    const moduleId = requireId(levels[3], 'moduleId');
    return isId(deviceId) && isId(moduleId) ? { kind: 'moduleInputs', deviceId, moduleId } : unknown;
  }
  return unknown;
}

// ---------------------------------------------------------------------------------------------------------------
// CONNECT usernames and client ids

/**
 * The MQTT client id of a device (`{deviceId}`) or module (`{deviceId}/{moduleId}`) (§2.2).
 *
 * @throws ArgumentError when an id is empty or contains `/`, `+`, `#` or NUL.
 */
export function mqttClientId(deviceId: string, moduleId?: string): string {
  checkSegment(deviceId, 'deviceId');
  if (moduleId === undefined) return deviceId;
  checkSegment(moduleId, 'moduleId');
  return `${deviceId}/${moduleId}`;
}

/** What an IoT Hub CONNECT username says. */
export interface MqttUsername {
  /** The hub's host name (even when connecting through a gateway), with a port when there is one. */
  hostName: string;
  deviceId: string;
  moduleId?: string;
  /** `api-version`. */
  apiVersion?: string;
  /** `DeviceClientType`: the SDK's user agent, decoded. */
  deviceClientType?: string;
  /** `model-id`: the Plug and Play model (DTMI), decoded. */
  modelId?: string;
  /** Every query parameter, decoded, known ones included. */
  parameters: Record<string, string>;
}

/**
 * Builds an IoT Hub CONNECT username:
 * `{hostName}/{deviceId}[/{moduleId}]/?api-version={v}[&model-id={dtmi}][&DeviceClientType={ua}]`, values
 * percent-encoded (§2.2).
 *
 * @throws ArgumentError when the host name or an id is empty or contains `/`, `+`, `#` or NUL, or a value holds an
 * unpaired surrogate.
 */
export function buildMqttUsername(options: {
  hostName: string;
  deviceId: string;
  moduleId?: string;
  apiVersion?: string;
  deviceClientType?: string;
  modelId?: string;
}): string {
  checkSegment(options.hostName, 'hostName');
  const clientId = mqttClientId(options.deviceId, options.moduleId);
  let username = `${options.hostName}/${clientId}/?api-version=${percentEncode(options.apiVersion ?? ApiVersions.iotHub, 'apiVersion')}`;
  if (options.modelId !== undefined) username += `&model-id=${percentEncode(options.modelId, 'modelId')}`;
  if (options.deviceClientType !== undefined) {
    username += `&DeviceClientType=${percentEncode(options.deviceClientType, 'deviceClientType')}`;
  }
  return username;
}

function parseUsernameQuery(text: string): Record<string, string> {
  const parameters: Record<string, string> = {};
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const key = percentDecode(equals < 0 ? pair : pair.slice(0, equals), 'username', { plusAsSpace: true });
    const value = equals < 0 ? '' : percentDecode(pair.slice(equals + 1), key, { plusAsSpace: true });
    Object.defineProperty(parameters, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return parameters;
}

// Splits a username into its path levels and its query text, whichever of the three dialects it uses:
// `path/?query` (current), `path?query`, or `path/api-version=...` (old IoT Hub usernames and DPS, no `?`).
function splitUsername(username: string, minimumLevels: number): { levels: string[]; queryText: string } {
  let path = username;
  let queryText = '';
  const mark = username.indexOf('/?');
  const bareMark = username.indexOf('?');
  if (mark >= 0) {
    path = username.slice(0, mark);
    queryText = username.slice(mark + 2);
  } else if (bareMark >= 0) {
    path = username.slice(0, bareMark);
    queryText = username.slice(bareMark + 1);
  }
  const levels = path.split('/');
  // With `/?` the slash before the query is already consumed; otherwise one trailing slash is allowed.
  if (mark < 0 && levels.length > 1 && levels[levels.length - 1] === '') levels.pop();
  if (
    bareMark < 0 &&
    levels.length > minimumLevels &&
    (levels[levels.length - 1] as string).startsWith('api-version=')
  ) {
    queryText = levels.pop() as string;
  }
  return { levels, queryText };
}

/**
 * Parses an IoT Hub CONNECT username (§2.2), leniently: any api-version or none, extra parameters (`model-id`,
 * ...), no query at all (old docs), `?` without the `/` before it, the old `/api-version=...` form without `?`.
 *
 * @throws ArgumentError (field `username`, `hostName`, `deviceId`, `moduleId` or a parameter's name) when the path
 * is not `host/device` or `host/device/module`, a part is empty, or a value is badly percent-encoded.
 */
export function parseMqttUsername(username: string): MqttUsername {
  const { levels, queryText } = splitUsername(username, 2);
  if (levels.length < 2 || levels.length > 3) {
    throw new ArgumentError('username must be {hostName}/{deviceId}[/{moduleId}]/?api-version=...', {
      field: 'username',
    });
  }
  const result: MqttUsername = {
    hostName: requireId(levels[0], 'hostName'),
    deviceId: requireId(levels[1], 'deviceId'),
    parameters: parseUsernameQuery(queryText),
  };
  if (levels.length === 3) result.moduleId = requireId(levels[2], 'moduleId');
  const apiVersion = queryValue(result.parameters, 'api-version');
  if (apiVersion !== undefined) result.apiVersion = apiVersion;
  const deviceClientType = queryValue(result.parameters, 'DeviceClientType');
  if (deviceClientType !== undefined) result.deviceClientType = deviceClientType;
  const modelId = queryValue(result.parameters, 'model-id');
  if (modelId !== undefined) result.modelId = modelId;
  return result;
}

/** What a DPS CONNECT username says. */
export interface DpsMqttUsername {
  idScope: string;
  registrationId: string;
  /** `api-version`. */
  apiVersion?: string;
  /** `ClientVersion`: the SDK's user agent, decoded. */
  clientVersion?: string;
  /** Every query parameter, decoded, known ones included. */
  parameters: Record<string, string>;
}

/**
 * Builds a DPS CONNECT username: `{idScope}/registrations/{registrationId}/api-version={v}[&ClientVersion={ua}]`
 * (no `?`, as Node sends it, §5.1).
 *
 * @throws ArgumentError when the id scope or registration id is empty or contains `/`, `+`, `#` or NUL, or a
 * value holds an unpaired surrogate.
 */
export function buildDpsMqttUsername(options: {
  idScope: string;
  registrationId: string;
  apiVersion?: string;
  clientVersion?: string;
}): string {
  checkSegment(options.idScope, 'idScope');
  checkSegment(options.registrationId, 'registrationId');
  let username = `${options.idScope}/registrations/${options.registrationId}/api-version=${percentEncode(options.apiVersion ?? ApiVersions.dps, 'apiVersion')}`;
  if (options.clientVersion !== undefined) {
    username += `&ClientVersion=${percentEncode(options.clientVersion, 'clientVersion')}`;
  }
  return username;
}

/**
 * Parses a DPS CONNECT username (§5.1), leniently: with or without `?` before the parameters, with or without
 * parameters.
 *
 * @throws ArgumentError (field `username`, `idScope`, `registrationId` or a parameter's name) when the path is not
 * `{idScope}/registrations/{registrationId}`, a part is empty, or a value is badly percent-encoded.
 */
export function parseDpsMqttUsername(username: string): DpsMqttUsername {
  const { levels, queryText } = splitUsername(username, 3);
  if (levels.length !== 3 || levels[1] !== 'registrations') {
    throw new ArgumentError('username must be {idScope}/registrations/{registrationId}/api-version=...', {
      field: 'username',
    });
  }
  const result: DpsMqttUsername = {
    idScope: requireId(levels[0], 'idScope'),
    registrationId: requireId(levels[2], 'registrationId'),
    parameters: parseUsernameQuery(queryText),
  };
  const apiVersion = queryValue(result.parameters, 'api-version');
  if (apiVersion !== undefined) result.apiVersion = apiVersion;
  const clientVersion = queryValue(result.parameters, 'ClientVersion');
  if (clientVersion !== undefined) result.clientVersion = clientVersion;
  return result;
}
