import { describe, expect, it } from 'vitest';
import { normalizeHost, parseClientId, resourceCovers } from './authenticate';

describe('parseClientId', () => {
  it('splits device and module ids', () => {
    expect(parseClientId('dev1')).toEqual({ deviceId: 'dev1', moduleId: undefined });
    expect(parseClientId('dev1/$edgeAgent')).toEqual({ deviceId: 'dev1', moduleId: '$edgeAgent' });
  });

  it('refuses empty, over-long and malformed ids', () => {
    for (const id of ['', '/m', 'd/', 'd/m/x', 'a b', 'x'.repeat(129)]) expect(parseClientId(id), id).toBeUndefined();
  });
});

describe('normalizeHost', () => {
  it('drops a port and lower-cases (the captured SDK puts HostName with its port in sr)', () => {
    expect(normalizeHost('LocalHost:41883')).toBe('localhost');
    expect(normalizeHost('myhub.azure-devices.net')).toBe('myhub.azure-devices.net');
  });
});

describe('resourceCovers', () => {
  it('accepts the identity and whole-segment prefixes of it on this host', () => {
    expect(resourceCovers('localhost:41883/devices/d1', 'localhost', 'd1')).toBe(true);
    expect(resourceCovers('LOCALHOST/devices/d1/', 'localhost', 'd1')).toBe(true);
    expect(resourceCovers('localhost/devices', 'localhost', 'd1')).toBe(true);
    expect(resourceCovers('localhost/devices/d1/modules/m1', 'localhost', 'd1', 'm1')).toBe(true);
    expect(resourceCovers('localhost/devices/d1', 'localhost', 'd1', 'm1')).toBe(true);
  });

  it('refuses another host, another device, a partial segment or a module token for its device', () => {
    expect(resourceCovers('otherhub/devices/d1', 'localhost', 'd1')).toBe(false);
    expect(resourceCovers('localhost/devices/d2', 'localhost', 'd1')).toBe(false);
    expect(resourceCovers('localhost/devices/d', 'localhost', 'd1')).toBe(false);
    expect(resourceCovers('localhost/devices/d1/modules/m1', 'localhost', 'd1')).toBe(false);
  });
});
