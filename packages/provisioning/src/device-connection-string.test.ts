import { ArgumentError, parseDeviceConnectionString } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { deviceConnectionString } from './device-connection-string';

const result = { assignedHub: 'myhub.example', deviceId: 'sensor-7' };

describe('deviceConnectionString', () => {
  it('writes a symmetric-key connection string for the assigned hub', () => {
    const text = deviceConnectionString(result, { symmetricKey: 'w7rmUUbbHo9krqzPOBU8w9+9VHWza9DEur/aJDeT9S4=' });
    expect(text).toBe(
      'HostName=myhub.example;DeviceId=sensor-7;SharedAccessKey=w7rmUUbbHo9krqzPOBU8w9+9VHWza9DEur/aJDeT9S4=',
    );
    expect(parseDeviceConnectionString(text).deviceId).toBe('sensor-7');
  });

  it('writes x509=true for a certificate identity', () => {
    expect(deviceConnectionString(result, { x509: true })).toBe('HostName=myhub.example;DeviceId=sensor-7;x509=true');
  });

  it('refuses a result without hub or device, and missing credentials', () => {
    expect(() => deviceConnectionString({ assignedHub: '', deviceId: 'd' }, { x509: true })).toThrow(ArgumentError);
    expect(() => deviceConnectionString(result, {} as never)).toThrow(ArgumentError);
    expect(() => deviceConnectionString(result, { symmetricKey: 'not base64!' })).toThrow(ArgumentError);
  });
});
