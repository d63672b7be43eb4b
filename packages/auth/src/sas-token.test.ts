import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AbortError, ArgumentError, AuthenticationError } from '@fieldhub/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createSasToken,
  createSasTokenSync,
  parseSasToken,
  sasResourceCovers,
  type VerifiedSasToken,
  verifySasToken,
} from './sas-token';

const key = randomBytes(32).toString('base64');
const otherKey = randomBytes(32).toString('base64');
const now = new Date('2026-11-27T12:00:00.000Z');
const nowSeconds = now.getTime() / 1000;

/** The signing algorithm of protocol-device.md §1.2, written independently with node:crypto. */
function referenceSignature(keyBase64: string, literalSr: string, se: number): string {
  return createHmac('sha256', Buffer.from(keyBase64, 'base64')).update(`${literalSr}\n${se}`).digest('base64');
}

function strictEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('createSasToken', () => {
  it('produces the Node SDK device token byte for byte: encoded sr, encoded sig, se = floor(now) + ttl', async () => {
    const token = await createSasToken({
      resourceUri: 'myhub.azure-devices.net/devices/dev1',
      key,
      ttlSeconds: 3600,
      now: new Date(now.getTime() + 999),
    });
    const se = nowSeconds + 3600;
    const sr = 'myhub.azure-devices.net%2Fdevices%2Fdev1';
    expect(token).toBe(`SharedAccessSignature sr=${sr}&sig=${strictEncode(referenceSignature(key, sr, se))}&se=${se}`);
  });

  it("writes Node's field order sr, sig, skn, se for policy tokens", async () => {
    const token = await createSasToken({
      resourceUri: 'myhub.example',
      key,
      keyName: 'iothubowner',
      expiresAt: 1795778630,
    });
    expect(token).toMatch(/^SharedAccessSignature sr=myhub\.example&sig=[^&]+&skn=iothubowner&se=1795778630$/);
    expect(token).toContain(`sig=${strictEncode(referenceSignature(key, 'myhub.example', 1795778630))}&`);
  });

  it("encodes ! ' ( ) * like encodeUriComponentStrict", async () => {
    const token = await createSasToken({ resourceUri: "h/devices/a!'()*b", key, expiresAt: 10 });
    expect(parseSasToken(token).sr).toBe('h%2Fdevices%2Fa%21%27%28%29%2Ab');
  });

  it('takes expiresAt as a Date or as seconds', async () => {
    const fromDate = await createSasToken({ resourceUri: 'h/devices/d1', key, expiresAt: new Date(1_795_778_630_900) });
    const fromSeconds = await createSasToken({ resourceUri: 'h/devices/d1', key, expiresAt: 1795778630 });
    expect(fromDate).toBe(fromSeconds);
  });

  it('writes a raw sr for the DPS style and signs that literal text', async () => {
    const token = await createSasToken({
      resourceUri: '0ne00000001/registrations/r1',
      key,
      keyName: 'registration',
      expiresAt: 1795778661,
      encodeResourceUri: false,
    });
    expect(token).toBe(
      `SharedAccessSignature sr=0ne00000001/registrations/r1&sig=${strictEncode(
        referenceSignature(key, '0ne00000001/registrations/r1', 1795778661),
      )}&skn=registration&se=1795778661`,
    );
  });

  it('has a synchronous variant with the same output', async () => {
    const options = { resourceUri: 'h/devices/d1/modules/m1', key, keyName: 'device', expiresAt: 1795778630 };
    expect(createSasTokenSync(options)).toBe(await createSasToken(options));
  });

  it('rejects bad input with ArgumentError naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ key, ttlSeconds: 1 }, 'resourceUri'],
      [{ resourceUri: 'h', key: '' }, 'key'],
      [{ resourceUri: 'h', key: 'not base64!' }, 'key'],
      [{ resourceUri: 'h', key, keyName: '' }, 'keyName'],
      [{ resourceUri: 'h', key, ttlSeconds: 0 }, 'ttlSeconds'],
      [{ resourceUri: 'h', key, expiresAt: -1 }, 'expiresAt'],
      [{ resourceUri: 'h', key, expiresAt: 1, ttlSeconds: 1 }, 'expiresAt'],
      [{ resourceUri: 'h', key, expiresAt: new Date(Number.NaN) }, 'expiresAt'],
    ];
    for (const [options, field] of cases) {
      const error = await rejection(createSasToken(options as never));
      expect(error, field).toBeInstanceOf(ArgumentError);
      expect((error as ArgumentError).field).toBe(field);
    }
  });
});

describe('parseSasToken', () => {
  it('parses every token shape the official clients sent in the captures', () => {
    const tokens = readFileSync(join(__dirname, '__fixtures__/captured-sas-tokens.txt'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('SharedAccessSignature '));
    expect(tokens.length).toBeGreaterThanOrEqual(5);
    for (const token of tokens) {
      const parsed = parseSasToken(token);
      expect(parsed.se).toBeGreaterThan(1_700_000_000);
      expect(parsed.sig).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      expect(parsed.resourceUri).not.toContain('%');
    }
    const dps = parseSasToken(tokens.find((t) => t.includes('registrations'))!);
    expect(dps).toMatchObject({ sr: '0ne00000001/registrations/demo-dps-dev1', skn: 'registration' });
    const device = parseSasToken(tokens.find((t) => t.startsWith('SharedAccessSignature sr=localhost%2F'))!);
    expect(device.resourceUri).toBe('localhost/devices/demo-dev1');
    expect(device.skn).toBeUndefined();
  });

  it('reads fields in any order', () => {
    const a = parseSasToken('SharedAccessSignature se=5&skn=p&sig=abc%3D&sr=h%2Fdevices%2Fd1');
    expect(a).toEqual({ sr: 'h%2Fdevices%2Fd1', resourceUri: 'h/devices/d1', sig: 'abc=', se: 5, skn: 'p' });
  });

  it('names the missing or malformed field', () => {
    const cases: [string, string][] = [
      ['sr=h&sig=a&se=1', 'sasToken'],
      ['SharedAccessSignature sig=a&se=1', 'sr'],
      ['SharedAccessSignature sr=h&se=1', 'sig'],
      ['SharedAccessSignature sr=h&sig=a', 'se'],
      ['SharedAccessSignature sr=h&sig=a&se=soon', 'se'],
      ['SharedAccessSignature sr=h&sig=a&se=1&sr=g', 'sr'],
      ['SharedAccessSignature sr=h%ZZ&sig=a&se=1', 'sr'],
    ];
    for (const [token, field] of cases) {
      expect(() => parseSasToken(token), token).toThrow(ArgumentError);
      try {
        parseSasToken(token);
      } catch (error) {
        expect((error as ArgumentError).field, token).toBe(field);
      }
    }
  });
});

describe('verifySasToken', () => {
  const resourceUri = 'myhub.example/devices/d1';

  it('accepts what createSasToken made, and says what it grants', async () => {
    const token = await createSasToken({ resourceUri, key, ttlSeconds: 3600, now });
    await expect(verifySasToken(token, { keys: key, expectedResourceUri: resourceUri, now })).resolves.toEqual({
      resourceUri,
      expiresAt: new Date((nowSeconds + 3600) * 1000),
      keyIndex: 0,
    });
  });

  it('tries every key and reports which matched (secondary = 1)', async () => {
    const token = await createSasToken({ resourceUri, key, ttlSeconds: 60, now });
    const result = await verifySasToken(token, { keys: [otherKey, key], expectedResourceUri: resourceUri, now });
    expect(result.keyIndex).toBe(1);
  });

  it('refuses a token signed with another key', async () => {
    const token = await createSasToken({ resourceUri, key: otherKey, ttlSeconds: 60, now });
    const error = await rejection(verifySasToken(token, { keys: [key], expectedResourceUri: resourceUri, now }));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toMatch(/signature/);
  });

  it('refuses a token whose sr was changed after signing', async () => {
    const token = await createSasToken({ resourceUri, key, ttlSeconds: 60, now });
    const tampered = token.replace('%2Fd1&', '%2Fd2&');
    expect(tampered).not.toBe(token);
    await expect(verifySasToken(tampered, { keys: key, now })).rejects.toThrow(/signature/);
  });

  it('refuses an expired token, honouring the clock skew', async () => {
    const token = await createSasToken({ resourceUri, key, expiresAt: nowSeconds, now });
    const at = (seconds: number) => new Date((nowSeconds + seconds) * 1000);
    await expect(
      verifySasToken(token, { keys: key, expectedResourceUri: resourceUri, now: at(300) }),
    ).resolves.toBeTruthy();
    await expect(verifySasToken(token, { keys: key, expectedResourceUri: resourceUri, now: at(301) })).rejects.toThrow(
      /expired/,
    );
    await expect(verifySasToken(token, { keys: key, now: at(1), clockSkewSeconds: 0 })).rejects.toBeInstanceOf(
      AuthenticationError,
    );
    await expect(verifySasToken(token, { keys: key, now: at(0), clockSkewSeconds: 0 })).resolves.toBeTruthy();
  });

  it('verifies over the literal sr, whatever percent-encoding case the client used', async () => {
    // Docs say lower-case encoding; Node sends upper-case. Both must verify (protocol-device.md §0.1).
    const sr = 'myhub.example%2fdevices%2fd1';
    const se = nowSeconds + 60;
    const token = `SharedAccessSignature sr=${sr}&sig=${strictEncode(referenceSignature(key, sr, se))}&se=${se}`;
    await expect(verifySasToken(token, { keys: key, expectedResourceUri: resourceUri, now })).resolves.toMatchObject({
      resourceUri,
    });
  });

  it('verifies the raw-sr DPS style', async () => {
    const token = await createSasToken({
      resourceUri: '0ne00000001/registrations/r1',
      key,
      keyName: 'registration',
      ttlSeconds: 60,
      now,
      encodeResourceUri: false,
    });
    await expect(
      verifySasToken(token, { keys: key, expectedResourceUri: '0ne00000001/registrations/r1', now }),
    ).resolves.toMatchObject({ keyName: 'registration' });
  });

  it('authorises on the decoded sr: device scope, segment prefix, case-insensitive host only', async () => {
    const token = await createSasToken({ resourceUri: 'MyHub.Example/devices/d1', key, ttlSeconds: 60, now });
    await expect(
      verifySasToken(token, { keys: key, expectedResourceUri: 'myhub.example/devices/d1', now }),
    ).resolves.toBeTruthy();
    await expect(
      verifySasToken(token, { keys: key, expectedResourceUri: 'amqps://myhub.example/devices/d1/', now }),
    ).resolves.toBeTruthy();
    await expect(
      verifySasToken(token, { keys: key, expectedResourceUri: 'myhub.example/devices/d1/modules/m1', now }),
    ).resolves.toBeTruthy();
    for (const other of ['myhub.example/devices/D1', 'myhub.example/devices/d10', 'other.example/devices/d1']) {
      await expect(verifySasToken(token, { keys: key, expectedResourceUri: other, now }), other).rejects.toThrow(
        /does not grant/,
      );
    }
    expect(sasResourceCovers('h/devices/d', 'h/devices/d1')).toBe(false);
    expect(sasResourceCovers('h/devices', 'h/devices/d1')).toBe(true);
    expect(sasResourceCovers('h/devices/d1/modules/m1', 'h/devices/d1')).toBe(false);
  });

  it('accepts a hub-level policy token for any device when authorize allows the policy', async () => {
    const policies: Record<string, { key: string; permissions: string[] }> = {
      device: { key, permissions: ['DeviceConnect'] },
      service: { key: otherKey, permissions: ['ServiceConnect'] },
    };
    const options = (requested: string) => ({
      keys: (token: { skn?: string }) => (token.skn ? policies[token.skn]?.key : undefined),
      expectedResourceUri: requested,
      authorize: (verified: VerifiedSasToken) =>
        policies[verified.keyName ?? '']?.permissions.includes('DeviceConnect') ?? false,
      now,
    });
    const deviceToken = await createSasToken({
      resourceUri: 'myhub.example',
      key,
      keyName: 'device',
      ttlSeconds: 60,
      now,
    });
    await expect(verifySasToken(deviceToken, options('myhub.example/devices/d7'))).resolves.toMatchObject({
      keyName: 'device',
      resourceUri: 'myhub.example',
    });
    const serviceToken = await createSasToken({
      resourceUri: 'myhub.example',
      key: otherKey,
      keyName: 'service',
      ttlSeconds: 60,
      now,
    });
    await expect(verifySasToken(serviceToken, options('myhub.example/devices/d7'))).rejects.toThrow(/not authorized/);
    const unknown = await createSasToken({ resourceUri: 'myhub.example', key, keyName: 'nope', ttlSeconds: 60, now });
    await expect(verifySasToken(unknown, options('myhub.example/devices/d7'))).rejects.toThrow(/no key/);
  });

  it('turns a malformed token into AuthenticationError with the ArgumentError as cause', async () => {
    const error = await rejection(verifySasToken('Bearer abc', { keys: key }));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).cause).toBeInstanceOf(ArgumentError);
  });

  it('rejects bad options with ArgumentError', async () => {
    const token = await createSasToken({ resourceUri, key, ttlSeconds: 60, now });
    await expect(verifySasToken(token, { keys: 'not base64!', now })).rejects.toBeInstanceOf(ArgumentError);
    await expect(verifySasToken(token, { keys: key, clockSkewSeconds: -1 })).rejects.toBeInstanceOf(ArgumentError);
  });
});

describe('SAS parsing and verification under random input', () => {
  const field = fc.constantFrom('sr', 'sig', 'se', 'skn', 'x', '');
  const tokenLike = fc
    .array(
      fc.tuple(field, fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^%[0-9A-Fa-f]{0,2}$/))),
      {
        maxLength: 6,
      },
    )
    .map((pairs) => `SharedAccessSignature ${pairs.map(([name, value]) => `${name}=${value}`).join('&')}`);
  const anyText = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), tokenLike);

  it('parseSasToken throws nothing but ArgumentError', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        try {
          parseSasToken(text);
        } catch (error) {
          if (!(error instanceof ArgumentError)) throw error;
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('verifySasToken throws nothing but AuthenticationError', async () => {
    await fc.assert(
      fc.asyncProperty(anyText, async (text) => {
        try {
          await verifySasToken(text, { keys: [key], expectedResourceUri: 'h/devices/d1', now });
          throw new Error(`accepted ${text}`);
        } catch (error) {
          if (!(error instanceof AuthenticationError)) throw error;
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('verifySasToken and AbortSignal', () => {
  it('rejects with AbortError when the signal aborts during a slow key lookup', async () => {
    const token = await createSasToken({ resourceUri: 'h/devices/d1', key, ttlSeconds: 60, now });
    const controller = new AbortController();
    const seen: (AbortSignal | undefined)[] = [];
    const pending = verifySasToken(token, {
      keys: async (_token, { signal }) => {
        seen.push(signal);
        controller.abort(new Error('shutting down'));
        return key;
      },
      now,
      signal: controller.signal,
    });
    await expect(pending).rejects.toBeInstanceOf(AbortError);
    expect(seen).toEqual([controller.signal]);
  });
});
