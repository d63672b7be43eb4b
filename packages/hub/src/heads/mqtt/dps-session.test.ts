import type { IConnectPacket } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { isDpsConnect } from './dps-session';

const connect = (clientId: string, username?: string): IConnectPacket => ({
  cmd: 'connect',
  clientId,
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean: true,
  keepalive: 60,
  ...(username === undefined ? {} : { username }),
});

describe('isDpsConnect', () => {
  it('recognises the provisioning username of the official client (captures/dps.txt)', () => {
    const username =
      '0ne00000001/registrations/demo-dps-dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1';
    expect(isDpsConnect(connect('demo-dps-dev1', username))).toBe(true);
    expect(isDpsConnect(connect('demo-dps-dev1', '0ne00000001/registrations/demo-dps-dev1'))).toBe(true);
  });

  it('leaves every device and module CONNECT to the device path, a device named registrations included', () => {
    expect(isDpsConnect(connect('d1', 'localhost/d1/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('d1/m1', 'localhost/d1/m1/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('registrations', 'localhost/registrations/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('registrations/m1', 'localhost/registrations/m1/?api-version=2021-04-12'))).toBe(false);
    expect(isDpsConnect(connect('d1'))).toBe(false);
    expect(isDpsConnect(connect('', '0ne00000001/registrations//api-version=2019-03-31'))).toBe(false);
  });

  it('needs the client id to be the registration id of the username', () => {
    expect(isDpsConnect(connect('other', '0ne00000001/registrations/dev1/api-version=2019-03-31'))).toBe(false);
    expect(isDpsConnect(connect('dev', '0ne00000001/registrations/dev1/api-version=2019-03-31'))).toBe(false);
  });
});
