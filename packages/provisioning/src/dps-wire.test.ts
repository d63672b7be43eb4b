import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import {
  dpsEndpoint,
  httpsOperationStatusPath,
  httpsRegisterPath,
  mqttOperationStatusTopic,
  mqttRegisterTopic,
  mqttUsername,
  parseMqttResponseTopic,
  parseRetryAfter,
  registrationRequestBody,
  registrationResource,
} from './dps-wire';

describe('MQTT frames', () => {
  it('builds the user name as the official client (capture dps.txt)', () => {
    expect(mqttUsername('0ne00000001', 'demo-dps-dev1', 'azure-iot-provisioning-device/1.9.1')).toBe(
      '0ne00000001/registrations/demo-dps-dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1',
    );
  });

  it('builds the register and poll topics', () => {
    expect(mqttRegisterTopic('db9be76f')).toBe('$dps/registrations/PUT/iotdps-register/?$rid=db9be76f');
    expect(mqttOperationStatusTopic('1c5e858c', 'op-1')).toBe(
      '$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1c5e858c&operationId=op-1',
    );
  });

  it('reads a response topic with and without retry-after', () => {
    expect(parseMqttResponseTopic('$dps/registrations/res/202/?$rid=db9be76f&retry-after=1')).toEqual({
      status: 202,
      rid: 'db9be76f',
      retryAfterSeconds: 1,
    });
    expect(parseMqttResponseTopic('$dps/registrations/res/200/?$rid=abc')).toEqual({
      status: 200,
      rid: 'abc',
      retryAfterSeconds: undefined,
    });
    expect(parseMqttResponseTopic('$dps/registrations/res/401/?$rid=x')?.status).toBe(401);
  });

  it('ignores topics that are no DPS response or carry no $rid', () => {
    expect(parseMqttResponseTopic('$dps/registrations/res/200/')).toBeUndefined();
    expect(parseMqttResponseTopic('$dps/registrations/res/200/?x=1')).toBeUndefined();
    expect(parseMqttResponseTopic('devices/d1/messages/devicebound/')).toBeUndefined();
  });
});

describe('HTTPS paths', () => {
  it('builds the register path, with forceRegistration when asked', () => {
    expect(httpsRegisterPath('0ne00000001', 'demo-dps-dev1', false)).toBe(
      '/0ne00000001/registrations/demo-dps-dev1/register?api-version=2019-03-31',
    );
    expect(httpsRegisterPath('0ne00000001', 'd1', true)).toBe(
      '/0ne00000001/registrations/d1/register?api-version=2019-03-31&forceRegistration=true',
    );
  });

  it('builds the operation status path', () => {
    expect(httpsOperationStatusPath('0ne00000001', 'demo-dps-dev1', 'op-1')).toBe(
      '/0ne00000001/registrations/demo-dps-dev1/operations/op-1?api-version=2019-03-31',
    );
  });
});

describe('registration resource and body', () => {
  it('writes the SAS resource raw', () => {
    expect(registrationResource('0ne00000001', 'demo-dps-dev1')).toBe('0ne00000001/registrations/demo-dps-dev1');
  });

  it('writes the body as the official client, payload only when given', () => {
    expect(registrationRequestBody('demo-dps-dev1', undefined)).toBe('{"registrationId":"demo-dps-dev1"}');
    expect(registrationRequestBody('d1', { model: 'm1' })).toBe('{"registrationId":"d1","payload":{"model":"m1"}}');
  });
});

describe('dpsEndpoint', () => {
  it('uses the default port and the host as TLS server name', () => {
    expect(dpsEndpoint('global.azure-devices-provisioning.net', 8883)).toEqual({
      host: 'global.azure-devices-provisioning.net',
      port: 8883,
      servername: 'global.azure-devices-provisioning.net',
    });
  });

  it('takes a port and sends no server name for an IP address', () => {
    expect(dpsEndpoint('127.0.0.1:41884', 8883)).toEqual({ host: '127.0.0.1', port: 41884, servername: undefined });
    expect(dpsEndpoint('[::1]:443', 8883)).toEqual({ host: '::1', port: 443, servername: undefined });
  });

  it('refuses an empty host, a path and a bad port', () => {
    for (const bad of ['', 'host/path', 'host:0', 'host:70000', 'https://host']) {
      expect(() => dpsEndpoint(bad, 443)).toThrow(ArgumentError);
    }
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds, ignores garbage and reads an HTTP date', () => {
    expect(parseRetryAfter('3')).toBe(3);
    expect(parseRetryAfter('0.5')).toBe(0.5);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('')).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter('-1')).toBeUndefined();
    const now = Date.parse('2026-11-27T10:00:00Z');
    expect(parseRetryAfter('Fri, 27 Nov 2026 10:00:04 GMT', now)).toBe(4);
  });
});
