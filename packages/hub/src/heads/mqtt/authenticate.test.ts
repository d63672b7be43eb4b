import { createSasTokenSync, parseSasToken, verifySasToken } from '@fieldhub/auth';
import { describe, expect, it } from 'vitest';
import { checkDeviceSasToken, normalizeHost, parseClientId, resourceCovers } from './authenticate';

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

describe('checkDeviceSasToken', () => {
  const primary = Buffer.alloc(32, 1).toString('base64');
  const secondary = Buffer.alloc(32, 2).toString('base64');
  const other = Buffer.alloc(32, 3).toString('base64');
  const nowMs = Date.UTC(2024, 0, 1);
  const tokenWith = (key: string, expiresAt = nowMs / 1000 + 3600, resourceUri = 'localhost/devices/d 1') =>
    createSasTokenSync({ resourceUri, key, expiresAt });

  it('accepts a token signed with either key, as verifySasToken does', async () => {
    for (const key of [primary, secondary]) {
      const token = tokenWith(key);
      expect(checkDeviceSasToken(parseSasToken(token), [primary, secondary], nowMs, 300)).toBeUndefined();
      await expect(verifySasToken(token, { keys: [primary, secondary], now: new Date(nowMs) })).resolves.toBeDefined();
    }
  });

  it('refuses another key, a tampered resource and missing keys', () => {
    expect(checkDeviceSasToken(parseSasToken(tokenWith(other)), [primary, secondary], nowMs, 300)).toBe(
      'SAS token signature does not match',
    );
    const tampered = parseSasToken(tokenWith(primary));
    expect(checkDeviceSasToken({ ...tampered, sr: 'localhost%2Fdevices%2Fd2' }, [primary], nowMs, 300)).toBe(
      'SAS token signature does not match',
    );
    expect(checkDeviceSasToken(tampered, [undefined, ''], nowMs, 300)).toBe('no key is known for this SAS token');
  });

  it('refuses a token past its expiry plus the clock skew, and accepts it within the skew', () => {
    const token = parseSasToken(tokenWith(primary, nowMs / 1000 - 60));
    expect(checkDeviceSasToken(token, [primary], nowMs, 300)).toBeUndefined();
    expect(checkDeviceSasToken(token, [primary], nowMs, 0)).toMatch(/^SAS token expired at /);
  });
});
