import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fieldOfError } from './__fixtures__/argument-error';
import { expectLinearTime, fuzzParser, identifier, requestId } from './__fixtures__/fuzz';
import {
  connectUsernames,
  deviceTopics,
  dpsUsername,
  hubTopics,
  nodeDeviceClientType,
  referenceTopics,
  subscriptions,
} from './__fixtures__/mqtt-captures';
import { isSystemPropertyKey, type MessageSystemProperties } from './property-bag';
import {
  buildDpsMqttUsername,
  buildMqttUsername,
  cloudToDeviceTopic,
  cloudToDeviceTopicFilter,
  dpsGetOperationStatusTopic,
  dpsRegisterTopic,
  dpsResponseTopic,
  methodRequestTopic,
  methodResponseTopic,
  moduleInputsTopicFilter,
  moduleInputTopic,
  mqttClientId,
  type ParsedDeviceTopic,
  parseDeviceTopic,
  parseDpsMqttUsername,
  parseMqttUsername,
  parseTopicFilter,
  TopicFilters,
  telemetryTopic,
  twinDesiredPatchTopic,
  twinGetTopic,
  twinReportedPatchTopic,
  twinResponseTopic,
} from './topics';

describe('parseDeviceTopic on the captured topics', () => {
  it('reads telemetry with system and application properties', () => {
    expect(parseDeviceTopic(deviceTopics.telemetry)).toEqual({
      kind: 'telemetry',
      deviceId: 'demo-dev1',
      systemProperties: {
        messageId: 'mid-1',
        correlationId: 'cid-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
      },
      properties: { alert: 'high temp', n: '1' },
    });
  });

  it('reads a cloud-to-device message', () => {
    expect(parseDeviceTopic(hubTopics.cloudToDevice)).toEqual({
      kind: 'cloudToDevice',
      deviceId: 'demo-dev1',
      systemProperties: {
        messageId: 'c2d-1',
        correlationId: 'corr-9',
        to: '/devices/demo-dev1/messages/devicebound',
        contentType: 'text/plain',
        contentEncoding: 'utf-8',
        ack: 'full',
      },
      properties: { color: 'blue' },
    });
  });

  it('reads twin requests and responses with UUID request ids', () => {
    expect(parseDeviceTopic(deviceTopics.twinGet)).toEqual({
      kind: 'twinGet',
      rid: 'ab7ca61c-2ed5-46d6-bb43-710e47a2f1bc',
    });
    expect(parseDeviceTopic(deviceTopics.twinReportedPatch)).toEqual({
      kind: 'twinReportedPatch',
      rid: '583a9742-86b4-4f00-84f7-51a0fca07de8',
    });
    expect(parseDeviceTopic(hubTopics.twinGetResponse)).toEqual({
      kind: 'twinResponse',
      status: 200,
      rid: 'ab7ca61c-2ed5-46d6-bb43-710e47a2f1bc',
    });
    expect(parseDeviceTopic(hubTopics.twinPatchResponse)).toEqual({
      kind: 'twinResponse',
      status: 204,
      rid: '583a9742-86b4-4f00-84f7-51a0fca07de8',
      version: 2,
    });
    expect(parseDeviceTopic(hubTopics.desiredPatch)).toEqual({ kind: 'twinDesiredPatch', version: 2 });
  });

  it('reads direct-method requests and responses with integer request ids', () => {
    expect(parseDeviceTopic(hubTopics.methodRequest)).toEqual({
      kind: 'methodRequest',
      methodName: 'reboot',
      rid: '42',
    });
    expect(parseDeviceTopic(deviceTopics.methodResponse)).toEqual({ kind: 'methodResponse', status: 200, rid: '42' });
  });

  it('reads the DPS topics', () => {
    expect(parseDeviceTopic(deviceTopics.dpsRegister)).toEqual({
      kind: 'dpsRegister',
      rid: 'db9be76f-2a73-46ef-8c93-4c61d3b1dea2',
    });
    expect(parseDeviceTopic(deviceTopics.dpsGetOperationStatus)).toEqual({
      kind: 'dpsGetOperationStatus',
      rid: '1c5e858c-f071-46b0-9354-4509919a6b49',
      operationId: 'op-1',
    });
    expect(parseDeviceTopic(hubTopics.dpsAssigning)).toEqual({
      kind: 'dpsResponse',
      status: 202,
      rid: 'db9be76f-2a73-46ef-8c93-4c61d3b1dea2',
      retryAfter: 1,
    });
    expect(parseDeviceTopic(hubTopics.dpsAssigned)).toEqual({
      kind: 'dpsResponse',
      status: 200,
      rid: '1c5e858c-f071-46b0-9354-4509919a6b49',
    });
  });
});

describe('builders reproduce the captured topics byte for byte', () => {
  it('for telemetry and cloud-to-device messages', () => {
    expect(
      telemetryTopic({
        deviceId: 'demo-dev1',
        systemProperties: {
          messageId: 'mid-1',
          correlationId: 'cid-1',
          contentType: 'application/json',
          contentEncoding: 'utf-8',
        },
        properties: { alert: 'high temp', n: '1' },
      }),
    ).toBe(deviceTopics.telemetry);
    expect(
      cloudToDeviceTopic({
        deviceId: 'demo-dev1',
        systemProperties: {
          messageId: 'c2d-1',
          correlationId: 'corr-9',
          to: '/devices/demo-dev1/messages/devicebound',
          contentType: 'text/plain',
          contentEncoding: 'utf-8',
          ack: 'full',
        },
        properties: { color: 'blue' },
      }),
    ).toBe(hubTopics.cloudToDevice);
  });

  it('for twin, method and DPS topics', () => {
    expect(twinGetTopic('ab7ca61c-2ed5-46d6-bb43-710e47a2f1bc')).toBe(deviceTopics.twinGet);
    expect(twinReportedPatchTopic({ rid: '583a9742-86b4-4f00-84f7-51a0fca07de8' })).toBe(
      deviceTopics.twinReportedPatch,
    );
    expect(twinResponseTopic({ status: 200, rid: 'ab7ca61c-2ed5-46d6-bb43-710e47a2f1bc' })).toBe(
      hubTopics.twinGetResponse,
    );
    expect(twinResponseTopic({ status: 204, rid: '583a9742-86b4-4f00-84f7-51a0fca07de8', version: 2 })).toBe(
      hubTopics.twinPatchResponse,
    );
    expect(twinDesiredPatchTopic(2)).toBe(hubTopics.desiredPatch);
    expect(methodRequestTopic({ methodName: 'reboot', rid: '42' })).toBe(hubTopics.methodRequest);
    expect(methodResponseTopic({ status: 200, rid: '42' })).toBe(deviceTopics.methodResponse);
    expect(dpsRegisterTopic('db9be76f-2a73-46ef-8c93-4c61d3b1dea2')).toBe(deviceTopics.dpsRegister);
    expect(dpsGetOperationStatusTopic({ rid: '1c5e858c-f071-46b0-9354-4509919a6b49', operationId: 'op-1' })).toBe(
      deviceTopics.dpsGetOperationStatus,
    );
    expect(dpsResponseTopic({ status: 202, rid: 'db9be76f-2a73-46ef-8c93-4c61d3b1dea2', retryAfter: 1 })).toBe(
      hubTopics.dpsAssigning,
    );
  });

  it('for the subscription filters', () => {
    expect(cloudToDeviceTopicFilter('demo-dev1')).toBe(subscriptions.cloudToDevice);
    expect(TopicFilters).toEqual({
      twinResponses: subscriptions.twinResponses,
      desiredProperties: subscriptions.desiredProperties,
      methods: subscriptions.methods,
      dpsResponses: subscriptions.dpsResponses,
    });
  });

  it('keeps the trailing slash when the property bag is empty', () => {
    expect(telemetryTopic({ deviceId: 'dev1' })).toBe('devices/dev1/messages/events/');
    expect(telemetryTopic({ deviceId: 'dev1', moduleId: 'modA' })).toBe('devices/dev1/modules/modA/messages/events/');
  });
});

describe('parseDeviceTopic leniency', () => {
  it('accepts deviceBound in camel case, as in the reference example', () => {
    expect(parseDeviceTopic(referenceTopics.cloudToDeviceCamelCase)).toEqual({
      kind: 'cloudToDevice',
      deviceId: 'd1',
      systemProperties: { to: '/devices/d1/messages/deviceBound' },
      properties: { foo: 'bar' },
    });
  });

  it('accepts a property bag after /? with null and empty values', () => {
    const parsed = parseDeviceTopic(`devices/d1/messages/devicebound${referenceTopics.nullAndEmptyValues}`);
    expect(parsed).toMatchObject({ kind: 'cloudToDevice', properties: { prop1: '', prop2: '', prop3: 'a string' } });
  });

  it('accepts the routing-header example with an unescaped $', () => {
    expect(parseDeviceTopic(referenceTopics.routingHeader)).toMatchObject({
      kind: 'telemetry',
      systemProperties: { contentType: 'application/json;charset=utf-8' },
    });
  });

  it('accepts telemetry without the trailing slash', () => {
    expect(parseDeviceTopic('devices/d1/messages/events')).toEqual({
      kind: 'telemetry',
      deviceId: 'd1',
      properties: {},
      systemProperties: {},
    });
  });

  it('reads module telemetry with its output name and module input messages', () => {
    expect(parseDeviceTopic('devices/d1/modules/m1/messages/events/%24.on=out1')).toEqual({
      kind: 'telemetry',
      deviceId: 'd1',
      moduleId: 'm1',
      properties: {},
      systemProperties: { outputName: 'out1' },
    });
    expect(parseDeviceTopic('devices/d1/modules/m1/inputs/in1/%24.cdid=d2&%24.cmid=m2&k=v')).toEqual({
      kind: 'moduleInput',
      deviceId: 'd1',
      moduleId: 'm1',
      inputName: 'in1',
      properties: { k: 'v' },
      systemProperties: { connectionDeviceId: 'd2', connectionModuleId: 'm2' },
    });
  });

  it('accepts twin and method topics without the slash before ? and with extra parameters', () => {
    expect(parseDeviceTopic('$iothub/twin/GET?$rid=7')).toEqual({ kind: 'twinGet', rid: '7' });
    expect(parseDeviceTopic('$iothub/methods/POST/m/?$rid=1&foo=bar')).toEqual({
      kind: 'methodRequest',
      methodName: 'm',
      rid: '1',
    });
    expect(parseDeviceTopic(referenceTopics.twinPatchResponseShortRid)).toEqual({
      kind: 'twinResponse',
      status: 204,
      rid: 'ho',
      version: 88,
    });
  });

  it('reads a reported patch that carries an optional $version', () => {
    expect(parseDeviceTopic('$iothub/twin/PATCH/properties/reported/?$rid=1&$version=5')).toEqual({
      kind: 'twinReportedPatch',
      rid: '1',
      version: 5,
    });
  });

  it('accepts an empty $rid, as the throttling example shows, and a negative method status', () => {
    expect(parseDeviceTopic('$iothub/twin/res/429/?$rid=')).toEqual({ kind: 'twinResponse', status: 429, rid: '' });
    expect(parseDeviceTopic('$iothub/methods/res/-1/?$rid=9')).toEqual({
      kind: 'methodResponse',
      status: -1,
      rid: '9',
    });
  });

  it('returns the request id verbatim, without decoding it', () => {
    expect(parseDeviceTopic('$iothub/twin/GET/?$rid=a%20b')).toEqual({ kind: 'twinGet', rid: 'a%20b' });
  });

  it.each([
    'foo/bar',
    '$iothub/unknown',
    '$iothub/twin/DELETE/?$rid=1',
    '$iothub/twin/GET/extra/?$rid=1',
    '$dps/registrations/DELETE/x/?$rid=1',
    'devices/d1/messages/other/',
    'devices/d1/twin',
    'devices/d1/modules/m1/messages/devicebound/',
    'devices/d1',
    '$SYS/broker/uptime',
  ])('classifies the well-formed but unknown topic %j as unknown', (topic) => {
    expect(parseDeviceTopic(topic)).toEqual({ kind: 'unknown', topic });
  });

  it.each([
    ['', 'topic'],
    ['devices//messages/events/', 'deviceId'],
    ['devices/d1/modules//messages/events/', 'moduleId'],
    ['devices/d1/modules/m1/inputs//', 'inputName'],
    ['devices/d1/messages/events/a=%ZZ', 'a'],
    ['devices/d1/messages/devicebound/iothub-ack=always', 'iothub-ack'],
    ['$iothub/twin/GET/', '$rid'],
    ['$iothub/twin/GET/?rid=1', '$rid'],
    ['$iothub/twin/PATCH/properties/reported/?$rid=1&$version=x', '$version'],
    ['$iothub/twin/PATCH/properties/desired/', '$version'],
    ['$iothub/twin/PATCH/properties/desired/?$version=-1', '$version'],
    ['$iothub/twin/res/ok/?$rid=1', 'status'],
    ['$iothub/twin/res/2000/?$rid=1', 'status'],
    ['$iothub/methods/POST//?$rid=1', 'methodName'],
    ['$iothub/methods/POST/m/', '$rid'],
    ['$iothub/methods/res/1.5/?$rid=1', 'status'],
    ['$dps/registrations/PUT/iotdps-register/', '$rid'],
    ['$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1', 'operationId'],
    ['$dps/registrations/res/202/?$rid=1&retry-after=soon', 'retry-after'],
    ['$dps/registrations/res/202/?retry-after=1', '$rid'],
    ['$iothub/twin/GET/?%ZZ=1', 'query'],
  ])('rejects the malformed topic %j with an ArgumentError naming %s', (topic, field) => {
    expect(fieldOfError(() => parseDeviceTopic(topic))).toBe(field);
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseDeviceTopic);
    fuzzParser((text) => parseDeviceTopic(`devices/${text}`));
    fuzzParser((text) => parseDeviceTopic(`$iothub/${text}`));
    fuzzParser((text) => parseDeviceTopic(`$dps/registrations/${text}`));
  });

  it('parses large input in linear time', () => {
    expectLinearTime(parseDeviceTopic);
    expectLinearTime(parseTopicFilter);
    expectLinearTime(parseMqttUsername);
    expectLinearTime(parseDpsMqttUsername);
  });
});

describe('builders refuse what would change the topic', () => {
  it.each([
    ['an empty device id', () => telemetryTopic({ deviceId: '' }), 'deviceId'],
    ['a slash in a device id', () => cloudToDeviceTopic({ deviceId: 'a/b' }), 'deviceId'],
    ['a wildcard in a module id', () => telemetryTopic({ deviceId: 'd', moduleId: 'm#' }), 'moduleId'],
    ['a + in a device id', () => cloudToDeviceTopicFilter('a+b'), 'deviceId'],
    ['an empty rid', () => twinGetTopic(''), '$rid'],
    ['an & in a rid', () => twinGetTopic('1&$version=2'), '$rid'],
    ['a space in an operation id', () => dpsGetOperationStatusTopic({ rid: '1', operationId: 'a b' }), 'operationId'],
    ['a fractional version', () => twinDesiredPatchTopic(1.5), '$version'],
    ['a negative version', () => twinReportedPatchTopic({ rid: '1', version: -1 }), '$version'],
    ['a four-digit twin status', () => twinResponseTopic({ status: 2000, rid: '1' }), 'status'],
    ['a ? in a method name', () => methodRequestTopic({ methodName: 'a?b', rid: '1' }), 'methodName'],
    ['a method status beyond 32 bits', () => methodResponseTopic({ status: 2 ** 31, rid: '1' }), 'status'],
    ['a negative retry-after', () => dpsResponseTopic({ status: 202, rid: '1', retryAfter: -1 }), 'retry-after'],
  ])('%s', (_name, build, field) => {
    expect(fieldOfError(build)).toBe(field);
  });
});

const properties = fc.dictionary(
  fc.string({ unit: 'binary', minLength: 1 }).filter((key) => !isSystemPropertyKey(key)),
  fc.string({ unit: 'binary' }),
  { maxKeys: 5 },
);
const systemProperties: fc.Arbitrary<MessageSystemProperties> = fc.record(
  {
    messageId: fc.string({ unit: 'binary' }),
    correlationId: fc.string(),
    contentType: fc.constantFrom('application/json', 'text/plain; charset=utf-8'),
    contentEncoding: fc.constantFrom('utf-8', 'utf-16'),
    outputName: fc.string(),
    ack: fc.constantFrom('none' as const, 'full' as const),
  },
  { requiredKeys: [] },
);

describe('topic round trips with random values', () => {
  it('telemetry, device and module', () => {
    fc.assert(
      fc.property(
        identifier,
        fc.option(identifier, { nil: undefined }),
        properties,
        systemProperties,
        (deviceId, moduleId, props, system) => {
          const options = moduleId === undefined ? { deviceId } : { deviceId, moduleId };
          const expected: ParsedDeviceTopic = {
            kind: 'telemetry',
            ...options,
            properties: props,
            systemProperties: system,
          };
          expect(parseDeviceTopic(telemetryTopic({ ...options, properties: props, systemProperties: system }))).toEqual(
            expected,
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('cloud-to-device and module input', () => {
    fc.assert(
      fc.property(
        identifier,
        identifier,
        identifier,
        properties,
        systemProperties,
        (deviceId, moduleId, inputName, props, system) => {
          expect(
            parseDeviceTopic(cloudToDeviceTopic({ deviceId, properties: props, systemProperties: system })),
          ).toEqual({
            kind: 'cloudToDevice',
            deviceId,
            properties: props,
            systemProperties: system,
          });
          expect(
            parseDeviceTopic(
              moduleInputTopic({ deviceId, moduleId, inputName, properties: props, systemProperties: system }),
            ),
          ).toEqual({
            kind: 'moduleInput',
            deviceId,
            moduleId,
            inputName,
            properties: props,
            systemProperties: system,
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('twin, method and DPS topics', () => {
    const version = fc.option(fc.maxSafeNat(), { nil: undefined });
    const status = fc.integer({ min: 100, max: 999 });
    const methodName = identifier.filter((name) => !name.includes('?'));
    fc.assert(
      fc.property(
        requestId,
        requestId,
        version,
        status,
        methodName,
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        (rid, operationId, maybeVersion, code, name, methodStatus) => {
          const withVersion = <T extends object>(value: T) =>
            maybeVersion === undefined ? value : { ...value, version: maybeVersion };
          expect(parseDeviceTopic(twinGetTopic(rid))).toEqual({ kind: 'twinGet', rid });
          expect(parseDeviceTopic(twinReportedPatchTopic(withVersion({ rid })))).toEqual(
            withVersion({ kind: 'twinReportedPatch', rid }),
          );
          expect(parseDeviceTopic(twinResponseTopic(withVersion({ status: code, rid })))).toEqual(
            withVersion({ kind: 'twinResponse', status: code, rid }),
          );
          expect(parseDeviceTopic(twinDesiredPatchTopic(maybeVersion ?? 0))).toEqual({
            kind: 'twinDesiredPatch',
            version: maybeVersion ?? 0,
          });
          expect(parseDeviceTopic(methodRequestTopic({ methodName: name, rid }))).toEqual({
            kind: 'methodRequest',
            methodName: name,
            rid,
          });
          expect(parseDeviceTopic(methodResponseTopic({ status: methodStatus, rid }))).toEqual({
            kind: 'methodResponse',
            status: methodStatus,
            rid,
          });
          expect(parseDeviceTopic(dpsRegisterTopic(rid))).toEqual({ kind: 'dpsRegister', rid });
          expect(parseDeviceTopic(dpsGetOperationStatusTopic({ rid, operationId }))).toEqual({
            kind: 'dpsGetOperationStatus',
            rid,
            operationId,
          });
          const retry = maybeVersion === undefined ? {} : { retryAfter: maybeVersion };
          expect(parseDeviceTopic(dpsResponseTopic({ status: code, rid, ...retry }))).toEqual({
            kind: 'dpsResponse',
            status: code,
            rid,
            ...retry,
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('parseTopicFilter', () => {
  it('recognises every filter the SDK subscribes to in the captures', () => {
    expect(parseTopicFilter(subscriptions.twinResponses)).toEqual({ kind: 'twinResponses' });
    expect(parseTopicFilter(subscriptions.desiredProperties)).toEqual({ kind: 'desiredProperties' });
    expect(parseTopicFilter(subscriptions.methods)).toEqual({ kind: 'methods' });
    expect(parseTopicFilter(subscriptions.dpsResponses)).toEqual({ kind: 'dpsResponses' });
    expect(parseTopicFilter(subscriptions.cloudToDevice)).toEqual({ kind: 'cloudToDevice', deviceId: 'demo-dev1' });
  });

  it('recognises deviceBound and module inputs', () => {
    expect(parseTopicFilter('devices/d1/messages/deviceBound/#')).toEqual({ kind: 'cloudToDevice', deviceId: 'd1' });
    expect(parseTopicFilter(moduleInputsTopicFilter('d1', 'm1'))).toEqual({
      kind: 'moduleInputs',
      deviceId: 'd1',
      moduleId: 'm1',
    });
  });

  it.each(['#', 'devices/+/messages/devicebound/#', 'devices/d1/messages/events/#', '$iothub/#', '$iothub/twin/res/+'])(
    'classifies %j as unknown',
    (filter) => {
      expect(parseTopicFilter(filter)).toEqual({ kind: 'unknown', filter });
    },
  );

  it('rejects an empty filter or an empty device id', () => {
    expect(fieldOfError(() => parseTopicFilter(''))).toBe('filter');
    expect(fieldOfError(() => parseTopicFilter('devices//messages/devicebound/#'))).toBe('deviceId');
  });

  it('round-trips random device and module ids', () => {
    fc.assert(
      fc.property(identifier, identifier, (deviceId, moduleId) => {
        expect(parseTopicFilter(cloudToDeviceTopicFilter(deviceId))).toEqual({ kind: 'cloudToDevice', deviceId });
        expect(parseTopicFilter(moduleInputsTopicFilter(deviceId, moduleId))).toEqual({
          kind: 'moduleInputs',
          deviceId,
          moduleId,
        });
      }),
    );
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseTopicFilter);
  });
});

describe('MQTT CONNECT usernames', () => {
  it('parses the captured usernames, with and without a port', () => {
    expect(parseMqttUsername(connectUsernames.mqttWithPort)).toEqual({
      hostName: 'localhost:41883',
      deviceId: 'demo-dev1',
      apiVersion: '2021-04-12',
      deviceClientType: nodeDeviceClientType,
      parameters: { 'api-version': '2021-04-12', DeviceClientType: nodeDeviceClientType },
    });
    expect(parseMqttUsername(connectUsernames.mqttWs)).toMatchObject({ hostName: 'localhost', deviceId: 'demo-dev1' });
    expect(parseMqttUsername(connectUsernames.x509)).toMatchObject({ deviceId: 'demo-x509-dev' });
  });

  it('builds the captured username byte for byte', () => {
    expect(
      buildMqttUsername({ hostName: 'localhost:41883', deviceId: 'demo-dev1', deviceClientType: nodeDeviceClientType }),
    ).toBe(connectUsernames.mqttWithPort);
  });

  it('parses module usernames and the model id', () => {
    expect(
      parseMqttUsername(
        'myhub.azure-devices.net/dev1/modA/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1&DeviceClientType=java%20sdk',
      ),
    ).toEqual({
      hostName: 'myhub.azure-devices.net',
      deviceId: 'dev1',
      moduleId: 'modA',
      apiVersion: '2021-04-12',
      modelId: 'dtmi:com:example:Thermostat;1',
      deviceClientType: 'java sdk',
      parameters: {
        'api-version': '2021-04-12',
        'model-id': 'dtmi:com:example:Thermostat;1',
        DeviceClientType: 'java sdk',
      },
    });
  });

  it.each([
    ['contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12', { apiVersion: '2021-04-12' }],
    ['contoso.azure-devices.net/MyDevice01', {}],
    ['contoso.azure-devices.net/MyDevice01/', {}],
    ['contoso.azure-devices.net/MyDevice01?api-version=2018-06-30', { apiVersion: '2018-06-30' }],
    ['contoso.azure-devices.net/MyDevice01/api-version=2016-11-14', { apiVersion: '2016-11-14' }],
    ['contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12&foo&bar=baz+qux', { apiVersion: '2021-04-12' }],
  ])('accepts the dialect %j', (username, expected) => {
    expect(parseMqttUsername(username)).toMatchObject({
      hostName: 'contoso.azure-devices.net',
      deviceId: 'MyDevice01',
      ...expected,
    });
  });

  it.each([
    ['', 'username'],
    ['hostonly', 'username'],
    ['h/d/m/extra/?api-version=1', 'username'],
    ['/d/?api-version=1', 'hostName'],
    ['h//?api-version=1', 'deviceId'],
    ['h/d/?DeviceClientType=%E2%82', 'DeviceClientType'],
  ])('rejects %j with an ArgumentError naming %s', (username, field) => {
    expect(fieldOfError(() => parseMqttUsername(username))).toBe(field);
  });

  it('round-trips random hosts, ids and user agents', () => {
    fc.assert(
      fc.property(
        identifier,
        identifier,
        fc.option(identifier, { nil: undefined }),
        fc.string({ unit: 'binary' }),
        (hostName, deviceId, moduleId, userAgent) => {
          fc.pre(!hostName.includes('?') && !deviceId.includes('?') && !(moduleId ?? '').includes('?'));
          const ids = moduleId === undefined ? { hostName, deviceId } : { hostName, deviceId, moduleId };
          expect(parseMqttUsername(buildMqttUsername({ ...ids, deviceClientType: userAgent }))).toEqual({
            ...ids,
            apiVersion: '2021-04-12',
            deviceClientType: userAgent,
            parameters: { 'api-version': '2021-04-12', DeviceClientType: userAgent },
          });
        },
      ),
    );
  });

  it('makes client ids for devices and modules', () => {
    expect(mqttClientId('dev1')).toBe('dev1');
    expect(mqttClientId('dev1', 'modA')).toBe('dev1/modA');
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseMqttUsername);
  });
});

describe('DPS CONNECT usernames', () => {
  it('parses the captured username, which has no ? before api-version', () => {
    expect(parseDpsMqttUsername(dpsUsername)).toEqual({
      idScope: '0ne00000001',
      registrationId: 'demo-dps-dev1',
      apiVersion: '2019-03-31',
      clientVersion: 'azure-iot-provisioning-device/1.9.1',
      parameters: { 'api-version': '2019-03-31', ClientVersion: 'azure-iot-provisioning-device/1.9.1' },
    });
  });

  it('builds the captured username byte for byte', () => {
    expect(
      buildDpsMqttUsername({
        idScope: '0ne00000001',
        registrationId: 'demo-dps-dev1',
        clientVersion: 'azure-iot-provisioning-device/1.9.1',
      }),
    ).toBe(dpsUsername);
  });

  it('accepts ?api-version and no parameters at all', () => {
    expect(parseDpsMqttUsername('s/registrations/r/?api-version=2021-06-01')).toMatchObject({
      apiVersion: '2021-06-01',
    });
    expect(parseDpsMqttUsername('s/registrations/r')).toEqual({ idScope: 's', registrationId: 'r', parameters: {} });
  });

  it.each([
    ['s/devices/r/api-version=1', 'username'],
    ['s/registrations', 'username'],
    ['/registrations/r', 'idScope'],
    ['s/registrations//api-version=1', 'registrationId'],
  ])('rejects %j with an ArgumentError naming %s', (username, field) => {
    expect(fieldOfError(() => parseDpsMqttUsername(username))).toBe(field);
  });

  it('round-trips random scopes and registration ids', () => {
    fc.assert(
      fc.property(identifier, identifier, (idScope, registrationId) => {
        fc.pre(!idScope.includes('?') && !registrationId.includes('?') && !registrationId.startsWith('api-version='));
        expect(parseDpsMqttUsername(buildDpsMqttUsername({ idScope, registrationId }))).toEqual({
          idScope,
          registrationId,
          apiVersion: '2019-03-31',
          parameters: { 'api-version': '2019-03-31' },
        });
      }),
    );
  });

  it('throws nothing but ArgumentError on random input', () => {
    fuzzParser(parseDpsMqttUsername);
  });
});
