import { base64Decode, base64Encode, hmacSha256, parseSasToken, utf8Encode } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import type { Clock } from './clock';
import {
  credentialProviderFromConnectionString,
  sasKeyCredentialProvider,
  sasTokenCredentialProvider,
  x509CredentialProvider,
} from './credentials';
import { ArgumentError } from './errors';

const key = 'AAECAwQFBgcICQoLDA0ODw==';

function manualClock(start = Date.UTC(2026, 0, 1)): Clock & { now(): number; advance(ms: number): void } {
  let now = start;
  return {
    now: () => now,
    advance: (ms) => {
      now += ms;
    },
    setTimeout: () => undefined,
    clearTimeout: () => {},
  };
}

describe('sasKeyCredentialProvider', () => {
  it('signs sr\\nse with HMAC-SHA256 of the key, TTL 3600 s, margin 900 s', async () => {
    const clock = manualClock();
    const provider = sasKeyCredentialProvider({ hostName: 'hub.local', deviceId: 'dev1', key, clock });
    expect(provider).toMatchObject({ kind: 'sas', renewalMarginSeconds: 900, hostName: 'hub.local', deviceId: 'dev1' });
    const credentials = await provider.getCredentials();
    const token = parseSasToken(credentials.sasToken ?? '');
    const se = clock.now() / 1000 + 3600;
    expect(token.se).toBe(se);
    expect(credentials.sasTokenExpiresAt).toBe(se * 1000);
    expect(token.resourceUri).toBe('hub.local/devices/dev1');
    expect(token.sig).toBe(base64Encode(hmacSha256(base64Decode(key), utf8Encode(`${token.sr}\n${se}`))));
    expect(token.skn).toBeUndefined();
  });

  it('hands out the cached token until it is within the margin, or a refresh is asked', async () => {
    const clock = manualClock();
    const provider = sasKeyCredentialProvider({ hostName: 'h', deviceId: 'd', key, clock });
    const first = await provider.getCredentials();
    clock.advance(2_699_000);
    expect(await provider.getCredentials()).toBe(first);
    expect(await provider.getCredentials({ refresh: true })).not.toBe(first);
    const second = await provider.getCredentials();
    clock.advance(2_700_000);
    expect((await provider.getCredentials()).sasToken).not.toBe(second.sasToken);
  });

  it('signs module tokens with skn and an injected async signer', async () => {
    const signed: string[] = [];
    const provider = sasKeyCredentialProvider({
      hostName: 'h',
      deviceId: 'd',
      moduleId: 'm',
      key,
      keyName: 'policy',
      sign: async (_key, message) => {
        signed.push(new TextDecoder().decode(message));
        return new Uint8Array([1, 2, 3]);
      },
    });
    const token = parseSasToken((await provider.getCredentials()).sasToken ?? '');
    expect(token).toMatchObject({ resourceUri: 'h/devices/d/modules/m', skn: 'policy', sig: 'AQID' });
    expect(signed[0]).toMatch(/^h%2Fdevices%2Fd%2Fmodules%2Fm\n\d+$/);
  });

  it('refuses a TTL not above the margin and a key that is not base64', () => {
    expect(() => sasKeyCredentialProvider({ hostName: 'h', deviceId: 'd', key, ttlSeconds: 900 })).toThrow(
      ArgumentError,
    );
    expect(() => sasKeyCredentialProvider({ hostName: 'h', deviceId: 'd', key: 'not base64!' })).toThrow(ArgumentError);
    expect(() => sasKeyCredentialProvider({ hostName: 'h', deviceId: '', key })).toThrow(ArgumentError);
  });
});

describe('sasTokenCredentialProvider', () => {
  it('asks the external signer for tokens, reads their expiry, and says when the last was refused', async () => {
    const clock = manualClock();
    const requests: { resourceUri: string; refresh: boolean }[] = [];
    const provider = sasTokenCredentialProvider({
      hostName: 'h',
      deviceId: 'd',
      clock,
      getToken: ({ resourceUri, refresh }) => {
        requests.push({ resourceUri, refresh });
        return `SharedAccessSignature sr=h%2Fdevices%2Fd&sig=x&se=${clock.now() / 1000 + 3600}`;
      },
    });
    const credentials = await provider.getCredentials();
    expect(credentials.sasTokenExpiresAt).toBe(clock.now() + 3_600_000);
    await provider.getCredentials();
    await provider.getCredentials({ refresh: true });
    expect(requests).toEqual([
      { resourceUri: 'h/devices/d', refresh: false },
      { resourceUri: 'h/devices/d', refresh: true },
    ]);
  });

  it('rejects with ArgumentError when the signer returns something that is not a token', async () => {
    const provider = sasTokenCredentialProvider({ hostName: 'h', deviceId: 'd', getToken: () => 'nonsense' });
    await expect(provider.getCredentials()).rejects.toBeInstanceOf(ArgumentError);
  });
});

describe('credentialProviderFromConnectionString', () => {
  it('keeps ModuleId and GatewayHostName in the identity and the credentials', async () => {
    const provider = credentialProviderFromConnectionString(
      `HostName=hub.local;DeviceId=d;ModuleId=m;SharedAccessKey=${key};GatewayHostName=edge.local`,
    );
    expect(provider).toMatchObject({
      hostName: 'hub.local',
      deviceId: 'd',
      moduleId: 'm',
      gatewayHostName: 'edge.local',
    });
    expect(await provider.getCredentials()).toMatchObject({ gatewayHostName: 'edge.local', moduleId: 'm' });
  });

  it('uses a SharedAccessSignature as a fixed token and x509=true with certificates', async () => {
    const token = 'SharedAccessSignature sr=h%2Fdevices%2Fd&sig=x&se=2000000000';
    const fixed = credentialProviderFromConnectionString(`HostName=h;DeviceId=d;SharedAccessSignature=${token}`);
    expect(await fixed.getCredentials()).toMatchObject({ sasToken: token, sasTokenExpiresAt: 2_000_000_000_000 });
    const x509 = credentialProviderFromConnectionString('HostName=h;DeviceId=d;x509=true', {
      x509: { cert: 'C', key: 'K', passphrase: 'p' },
    });
    expect(x509.kind).toBe('x509');
    expect((await x509.getCredentials()).x509).toEqual({ certificate: 'C', privateKey: 'K', passphrase: 'p' });
    expect(() =>
      credentialProviderFromConnectionString(`HostName=h;DeviceId=d;SharedAccessKey=${key}`, {
        x509: { cert: 'C', key: 'K' },
      }),
    ).toThrow(ArgumentError);
    expect(() => credentialProviderFromConnectionString('HostName=h;SharedAccessKey=AA==')).toThrow(ArgumentError);
  });

  it('x509CredentialProvider needs a certificate and a key', () => {
    expect(() => x509CredentialProvider({ hostName: 'h', deviceId: 'd', cert: '', key: 'K' })).toThrow(ArgumentError);
  });
});
