import { describe, expect, it } from 'vitest';
import { deviceOfPath, parseAudience } from './credentials';

describe('AMQP audiences', () => {
  it.each([
    ['myhub.azure-devices.net%2Fdevices%2Fd1', 'myhub.azure-devices.net', ['devices', 'd1']],
    ['localhost%3A41671%2Fdevices%2Fdemo-dev1', 'localhost:41671', ['devices', 'demo-dev1']],
    ['amqps://myhub.azure-devices.net/devices/d1/', 'myhub.azure-devices.net', ['devices', 'd1']],
    [
      'sb://host:5671/hub/ConsumerGroups/$default/Partitions/0',
      'host:5671',
      ['hub', 'ConsumerGroups', '$default', 'Partitions', '0'],
    ],
    ['myhub.azure-devices.net', 'myhub.azure-devices.net', []],
    ['host/devices/100%', 'host', ['devices', '100%']],
  ])('reads %s', (audience, host, path) => {
    expect(parseAudience(audience)).toEqual({ host, path });
  });

  it('names a device or module only for devices/{d} and devices/{d}/modules/{m}', () => {
    expect(deviceOfPath(['devices', 'd1'])).toEqual({ deviceId: 'd1', moduleId: undefined });
    expect(deviceOfPath(['Devices', 'd1', 'Modules', 'm1'])).toEqual({ deviceId: 'd1', moduleId: 'm1' });
    expect(deviceOfPath(['devices'])).toBeUndefined();
    expect(deviceOfPath(['devices', 'd1', 'messages'])).toBeUndefined();
    expect(deviceOfPath(['hub', 'ConsumerGroups'])).toBeUndefined();
    expect(deviceOfPath(['devices', 'bad id!'])).toBeUndefined();
  });
});
