import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AbortError, ArgumentError, AuthenticationError, UnsupportedFeatureError } from '@fieldhub/protocol';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { forgeIssuer, signCertificate, toForgePrivateKey, toForgePublicKey } from './forge';
import {
  type CertificateWithKey,
  certificateThumbprint,
  createCertificateSigningRequest,
  createIntermediateCa,
  createRootCa,
  createSelfSignedCertificate,
  createVerificationCertificate,
  issueDeviceCertificate,
  issueServerCertificate,
  matchesThumbprint,
  normalizeThumbprint,
  parseCertificate,
  parseCertificateSigningRequest,
  signCertificateSigningRequest,
  splitPemCertificates,
  verifyCertificateChain,
  verifyProofOfPossession,
} from './index';
import { nameAttributes } from './names';

const fixture = (name: string): string => readFileSync(join(__dirname, '../__fixtures__', name), 'utf8');

const now = new Date('2026-11-27T12:00:00.000Z');
const day = 86_400_000;
let root: CertificateWithKey;
let intermediate: CertificateWithKey;
let otherRoot: CertificateWithKey;

beforeAll(async () => {
  [root, otherRoot] = await Promise.all([
    createRootCa({ commonName: 'Fieldhub Test Root', organization: 'Fieldhub', country: 'DE', now }),
    createRootCa({ commonName: 'Someone Else Root', now }),
  ]);
  intermediate = await createIntermediateCa({ issuer: root, commonName: 'Fieldhub Test Intermediate', now });
});

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof ArgumentError) return error.field;
    throw error;
  }
  throw new Error('expected an ArgumentError');
}

describe('certificate authorities', () => {
  it('creates a self-signed root CA that Node reads as a CA', () => {
    const info = parseCertificate(root.certificate);
    expect(info).toMatchObject({
      subject: { commonName: 'Fieldhub Test Root', organization: 'Fieldhub', country: 'DE' },
      issuer: { commonName: 'Fieldhub Test Root' },
      isCa: true,
      isSelfIssued: true,
    });
    expect(info.notBefore).toEqual(new Date(now.getTime() - 5 * 60_000));
    expect(info.notAfter).toEqual(new Date(now.getTime() + 3650 * day));
    const node = new X509Certificate(root.certificate);
    expect(node.ca).toBe(true);
    expect(node.verify(node.publicKey)).toBe(true);
    expect(node.subject).toContain('CN=Fieldhub Test Root');
  });

  it('creates an intermediate CA signed by the root', () => {
    const node = new X509Certificate(intermediate.certificate);
    const rootNode = new X509Certificate(root.certificate);
    expect(node.ca).toBe(true);
    expect(node.checkIssued(rootNode)).toBe(true);
    expect(node.verify(rootNode.publicKey)).toBe(true);
    expect(parseCertificate(intermediate.certificate).issuer.commonName).toBe('Fieldhub Test Root');
  });

  it('issues a device certificate: CN = device id, clientAuth, not a CA', async () => {
    const device = await issueDeviceCertificate({ issuer: intermediate, deviceId: 'd1', now });
    expect(device.privateKey).toContain('PRIVATE KEY');
    const info = parseCertificate(device.certificate);
    expect(info).toMatchObject({ subject: { commonName: 'd1' }, isCa: false, extendedKeyUsages: ['clientAuth'] });
    expect(info.notAfter).toEqual(new Date(now.getTime() + 365 * day));
    expect(new X509Certificate(device.certificate).keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
  });

  it('issues a server certificate with DNS and IP subject alternative names', async () => {
    const server = await issueServerCertificate({
      issuer: root,
      dnsNames: ['localhost', 'hub.example'],
      ipAddresses: ['127.0.0.1', '::1', 'fe80::1:2'],
      now,
    });
    const info = parseCertificate(server.certificate);
    expect(info).toMatchObject({
      subject: { commonName: 'localhost' },
      dnsNames: ['localhost', 'hub.example'],
      ipAddresses: ['127.0.0.1', '::1', 'fe80::1:2'],
      extendedKeyUsages: ['serverAuth'],
    });
    const node = new X509Certificate(server.certificate);
    expect(node.checkHost('hub.example')).toBe('hub.example');
    expect(node.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(node.checkIP('::1')).toBe('::1');
  });

  it('certifies a given public key without returning a private key', async () => {
    const device = await issueDeviceCertificate({ issuer: root, deviceId: 'd1', now });
    const publicKey = new X509Certificate(device.certificate).publicKey.export({ type: 'spki', format: 'pem' });
    const again = await issueDeviceCertificate({ issuer: root, deviceId: 'd1', publicKey: String(publicKey), now });
    expect(again.privateKey).toBeUndefined();
    expect(
      new X509Certificate(again.certificate).publicKey.equals(new X509Certificate(device.certificate).publicKey),
    ).toBe(true);
  });

  it('parses, fingerprints and verifies an EC device certificate it did not make (fixture)', () => {
    const ecRoot = fixture('ec-root-ca.pem');
    const ecDevice = fixture('ec-device.pem');
    const node = new X509Certificate(ecDevice);
    expect(node.publicKey.asymmetricKeyType).toBe('ec');
    expect(parseCertificate(ecDevice)).toMatchObject({
      subject: { commonName: 'ec-device-1' },
      issuer: { commonName: 'Fieldhub EC Fixture Root', organization: 'Fieldhub' },
      isCa: false,
      extendedKeyUsages: ['clientAuth'],
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2046-01-01T00:00:00Z'),
      thumbprintSha1: node.fingerprint.replace(/:/g, ''),
    });
    expect(certificateThumbprint(ecDevice)).toBe(node.fingerprint256.replace(/:/g, ''));
    expect(parseCertificate(ecRoot)).toMatchObject({ isCa: true, isSelfIssued: true });
    expect(
      verifyCertificateChain({
        certificate: ecDevice,
        trustedCertificates: [ecRoot],
        extendedKeyUsage: 'clientAuth',
        now,
      }),
    ).toMatchObject({ commonName: 'ec-device-1' });
    expect(() =>
      verifyCertificateChain({ certificate: ecDevice, trustedCertificates: [root.certificate], now }),
    ).toThrow(/does not chain/);
  });

  it('creates RSA certificates only: EC keys are refused with UnsupportedFeatureError', async () => {
    const ec = 'ec' as unknown as 'rsa'; // a JavaScript caller; TypeScript no longer allows it
    await expect(createRootCa({ commonName: 'EC Root', keyType: ec })).rejects.toBeInstanceOf(UnsupportedFeatureError);
    await expect(issueDeviceCertificate({ issuer: root, deviceId: 'ec-1', keyType: ec })).rejects.toThrow(/RSA only/);
    const ecPublicKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    await expect(
      issueDeviceCertificate({ issuer: root, deviceId: 'ec-1', publicKey: String(ecPublicKey), now }),
    ).rejects.toBeInstanceOf(UnsupportedFeatureError);
  });

  it('refuses to issue from a non-CA, a mismatched key, or with bad names', async () => {
    const device = await issueDeviceCertificate({ issuer: root, deviceId: 'd1', now });
    await expect(
      issueDeviceCertificate({
        issuer: { certificate: device.certificate, privateKey: device.privateKey! },
        deviceId: 'x',
      }),
    ).rejects.toMatchObject({ field: 'issuer.certificate' });
    await expect(
      issueDeviceCertificate({
        issuer: { certificate: root.certificate, privateKey: otherRoot.privateKey },
        deviceId: 'x',
      }),
    ).rejects.toMatchObject({ field: 'issuer.privateKey' });
    await expect(issueDeviceCertificate({ issuer: root, deviceId: '' })).rejects.toMatchObject({ field: 'deviceId' });
    await expect(issueServerCertificate({ issuer: root, dnsNames: ['bad name'] })).rejects.toMatchObject({
      field: 'server.dnsNames[0]',
    });
    await expect(issueServerCertificate({ issuer: root, ipAddresses: ['300.1.1.1'] })).rejects.toMatchObject({
      field: 'server.ipAddresses[0]',
    });
    await expect(issueServerCertificate({ issuer: root })).rejects.toBeInstanceOf(ArgumentError);
    await expect(createRootCa({ commonName: 'r', validityDays: 0 })).rejects.toMatchObject({ field: 'validityDays' });
    await expect(createRootCa({ commonName: 'r', country: 'Germany' })).rejects.toMatchObject({
      field: 'subject.country',
    });
  });
});

describe('thumbprints', () => {
  it("equal Node's fingerprints without colons (SHA-1 and SHA-256), upper-case hex", () => {
    const node = new X509Certificate(root.certificate);
    expect(certificateThumbprint(root.certificate, 'sha1')).toBe(node.fingerprint.replace(/:/g, ''));
    expect(certificateThumbprint(root.certificate)).toBe(node.fingerprint256.replace(/:/g, ''));
    expect(certificateThumbprint(root.certificate)).toMatch(/^[0-9A-F]{64}$/);
    const info = parseCertificate(root.certificate);
    expect(info.thumbprintSha1).toBe(node.fingerprint.replace(/:/g, ''));
    expect(info.thumbprintSha256).toBe(node.fingerprint256.replace(/:/g, ''));
  });

  it('match pasted thumbprints case- and colon-insensitively (selfSigned authentication)', async () => {
    const selfSigned = await createSelfSignedCertificate({ commonName: 'thumb-dev', now });
    const node = new X509Certificate(selfSigned.certificate);
    expect(matchesThumbprint(selfSigned.certificate, [undefined, node.fingerprint.toLowerCase()])).toBe(true);
    expect(matchesThumbprint(selfSigned.certificate, [node.fingerprint256])).toBe(true);
    expect(matchesThumbprint(selfSigned.certificate, [certificateThumbprint(root.certificate), 'junk'])).toBe(false);
    expect(normalizeThumbprint(node.fingerprint.toLowerCase())).toBe(node.fingerprint.replace(/:/g, ''));
    expect(() => normalizeThumbprint('abc')).toThrow(ArgumentError);
  });
});

describe('verifyCertificateChain', () => {
  let device: string;
  beforeAll(async () => {
    device = (await issueDeviceCertificate({ issuer: intermediate, deviceId: 'd1', now })).certificate;
  });

  it('accepts leaf -> intermediate -> root and returns the CN', () => {
    const result = verifyCertificateChain({
      certificate: device,
      intermediates: [intermediate.certificate],
      trustedCertificates: [otherRoot.certificate, root.certificate],
      extendedKeyUsage: 'clientAuth',
      now,
    });
    expect(result.commonName).toBe('d1');
    expect(result.chain.map((c) => c.subject.commonName)).toEqual([
      'd1',
      'Fieldhub Test Intermediate',
      'Fieldhub Test Root',
    ]);
  });

  it('accepts the leaf and intermediates as one bundle, and an intermediate as trust anchor', () => {
    expect(
      verifyCertificateChain({
        certificate: device + intermediate.certificate,
        trustedCertificates: [root.certificate],
        now,
      }).commonName,
    ).toBe('d1');
    expect(
      verifyCertificateChain({ certificate: device, trustedCertificates: [intermediate.certificate], now }).chain,
    ).toHaveLength(2);
    expect(splitPemCertificates(device + intermediate.certificate)).toHaveLength(2);
  });

  it('rejects a certificate from another CA', async () => {
    const foreign = await issueDeviceCertificate({ issuer: otherRoot, deviceId: 'd1', now });
    expect(() =>
      verifyCertificateChain({ certificate: foreign.certificate, trustedCertificates: [root.certificate], now }),
    ).toThrow(AuthenticationError);
  });

  it('rejects a chain with the intermediate missing', () => {
    expect(() => verifyCertificateChain({ certificate: device, trustedCertificates: [root.certificate], now })).toThrow(
      /does not chain/,
    );
  });

  it('rejects an expired and a not-yet-valid certificate (clock injectable)', async () => {
    const oldRoot = await createRootCa({ commonName: 'Old Root', notBefore: new Date(now.getTime() - 30 * day), now });
    const expired = await issueDeviceCertificate({
      issuer: oldRoot,
      deviceId: 'old',
      notBefore: new Date(now.getTime() - 10 * day),
      notAfter: new Date(now.getTime() - day),
    });
    const trust = { trustedCertificates: [oldRoot.certificate], now };
    expect(() => verifyCertificateChain({ certificate: expired.certificate, ...trust })).toThrow(/expired/);
    const earlier = new Date(now.getTime() - 2 * day);
    expect(verifyCertificateChain({ certificate: expired.certificate, ...trust, now: earlier }).commonName).toBe('old');
    const future = await issueDeviceCertificate({
      issuer: oldRoot,
      deviceId: 'new',
      notBefore: new Date(now.getTime() + day),
    });
    expect(() => verifyCertificateChain({ certificate: future.certificate, ...trust })).toThrow(/not yet valid/);
    const later = new Date(now.getTime() + 400 * day);
    expect(() =>
      verifyCertificateChain({
        certificate: device,
        intermediates: [intermediate.certificate],
        trustedCertificates: [root.certificate],
        now: later,
      }),
    ).toThrow(/expired/);
  });

  it('rejects a server certificate where clientAuth is required', async () => {
    const server = await issueServerCertificate({ issuer: root, dnsNames: ['localhost'], now });
    expect(() =>
      verifyCertificateChain({
        certificate: server.certificate,
        trustedCertificates: [root.certificate],
        extendedKeyUsage: 'clientAuth',
        now,
      }),
    ).toThrow(/clientAuth/);
  });

  it('rejects a chain through a certificate that is not a CA', async () => {
    const leaf = await issueDeviceCertificate({ issuer: root, deviceId: 'not-a-ca', now });
    const child = signCertificate({
      subject: nameAttributes({ commonName: 'child' }, 'subject'),
      issuer: forgeIssuer(leaf.certificate, 'leaf').name,
      publicKey: toForgePublicKey(new X509Certificate(leaf.certificate).publicKey, 'leaf'),
      notBefore: new Date(now.getTime() - day),
      notAfter: new Date(now.getTime() + day),
      extensions: [],
      signingKey: toForgePrivateKey(createPrivateKey(leaf.privateKey!), 'leaf'),
    });
    expect(() =>
      verifyCertificateChain({
        certificate: child,
        intermediates: [leaf.certificate],
        trustedCertificates: [root.certificate],
        now,
      }),
    ).toThrow(AuthenticationError); // OpenSSL's issuer check already refuses a key without keyCertSign
  });
});

describe('certificate signing requests', () => {
  it('round-trips: create, parse, sign as server with the requested names', async () => {
    const { csr, privateKey } = await createCertificateSigningRequest({
      commonName: 'hub.example',
      dnsNames: ['hub.example'],
      ipAddresses: ['10.0.0.1'],
    });
    expect(csr).toContain('BEGIN CERTIFICATE REQUEST');
    const info = parseCertificateSigningRequest(csr);
    expect(info).toMatchObject({
      subject: { commonName: 'hub.example' },
      dnsNames: ['hub.example'],
      ipAddresses: ['10.0.0.1'],
    });
    const certificate = signCertificateSigningRequest({ issuer: intermediate, csr, profile: 'server', now });
    const parsed = parseCertificate(certificate);
    expect(parsed).toMatchObject({
      dnsNames: ['hub.example'],
      ipAddresses: ['10.0.0.1'],
      extendedKeyUsages: ['serverAuth'],
    });
    const node = new X509Certificate(certificate);
    expect(node.checkPrivateKey(createPrivateKey(privateKey))).toBe(true);
  });

  it('signs a device CSR made with an existing RSA key', async () => {
    const { privateKey } = await createCertificateSigningRequest({ commonName: 'x' });
    const { csr } = await createCertificateSigningRequest({ commonName: 'd9', privateKey });
    const certificate = signCertificateSigningRequest({ issuer: root, csr, now });
    expect(verifyCertificateChain({ certificate, trustedCertificates: [root.certificate], now }).commonName).toBe('d9');
    expect(new X509Certificate(certificate).checkPrivateKey(createPrivateKey(privateKey))).toBe(true);
  });

  it('refuses EC requests and EC request keys with UnsupportedFeatureError (node-forge is RSA only)', async () => {
    const ecCsr = fixture('ec-device.csr');
    expect(() => parseCertificateSigningRequest(ecCsr)).toThrow(UnsupportedFeatureError);
    expect(() => signCertificateSigningRequest({ issuer: root, csr: ecCsr, now })).toThrow(/RSA keys only/);
    const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    await expect(
      createCertificateSigningRequest({ commonName: 'd1', privateKey: String(ecKey) }),
    ).rejects.toBeInstanceOf(UnsupportedFeatureError);
  });

  it('copies a non-ASCII subject from the request unchanged', async () => {
    const { csr } = await createCertificateSigningRequest({ commonName: 'Gerät-ü', organization: 'Zürich' });
    expect(parseCertificateSigningRequest(csr).subject).toEqual({ commonName: 'Gerät-ü', organization: 'Zürich' });
    const certificate = signCertificateSigningRequest({ issuer: root, csr, now });
    expect(parseCertificate(certificate).subject).toEqual({ commonName: 'Gerät-ü', organization: 'Zürich' });
    expect(new X509Certificate(certificate).subject).toContain('CN=Gerät-ü');
  });

  it('refuses a tampered or malformed CSR', async () => {
    const { csr } = await createCertificateSigningRequest({ commonName: 'd1' });
    const body = csr.split('\n').slice(1, -2).join('');
    const bytes = Buffer.from(body, 'base64');
    const at = bytes.indexOf(Buffer.from('d1'));
    bytes[at + 1] = '2'.charCodeAt(0);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${bytes.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(fieldOf(() => parseCertificateSigningRequest(tampered))).toBe('csr');
    expect(() => parseCertificateSigningRequest(tampered)).toThrow(/signature/);
    expect(fieldOf(() => signCertificateSigningRequest({ issuer: root, csr: root.certificate }))).toBe('csr');
    expect(fieldOf(() => signCertificateSigningRequest({ issuer: root, csr, profile: 'server' }))).toBe('dnsNames');
  });
});

describe('proof of possession', () => {
  it('round-trips: the CA signs the verification code, the hub verifies it', async () => {
    const code = '6C5D4E2B1A0F9E8D7C6B5A4F3E2D1C0B';
    const proof = await createVerificationCertificate({ ca: intermediate, verificationCode: code, now });
    expect(parseCertificate(proof).subject.commonName).toBe(code);
    expect(() =>
      verifyProofOfPossession({
        caCertificate: intermediate.certificate,
        verificationCertificate: proof,
        verificationCode: code,
        now,
      }),
    ).not.toThrow();
  });

  it('fails for another code, another CA, or an expired proof', async () => {
    const proof = await createVerificationCertificate({ ca: root, verificationCode: 'abc', now });
    const base = { caCertificate: root.certificate, verificationCertificate: proof, verificationCode: 'abc', now };
    expect(() => verifyProofOfPossession({ ...base, verificationCode: 'abd' })).toThrow(AuthenticationError);
    expect(() => verifyProofOfPossession({ ...base, caCertificate: otherRoot.certificate })).toThrow(/not signed/);
    expect(() => verifyProofOfPossession({ ...base, now: new Date(now.getTime() + 31 * day) })).toThrow(/validity/);
    await expect(
      createVerificationCertificate({
        ca: { certificate: root.certificate, privateKey: otherRoot.privateKey },
        verificationCode: 'a',
      }),
    ).rejects.toMatchObject({ field: 'ca.privateKey' });
  });
});

describe('PEM parsing', () => {
  it('names the field on malformed input', () => {
    expect(fieldOf(() => parseCertificate('hello'))).toBe('certificate');
    expect(fieldOf(() => parseCertificate('-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----'))).toBe(
      'certificate',
    );
    expect(fieldOf(() => parseCertificate('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'))).toBe(
      'certificate',
    );
    expect(fieldOf(() => parseCertificate(root.privateKey))).toBe('certificate');
    expect(fieldOf(() => parseCertificate(42 as unknown as string))).toBe('certificate');
    expect(fieldOf(() => certificateThumbprint('nope'))).toBe('certificate');
  });

  it('throws nothing but ArgumentError on random or corrupted PEM', () => {
    const der = Buffer.from(root.certificate.split('\n').slice(1, -2).join(''), 'base64');
    const corrupted = fc
      .tuple(fc.nat(der.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(der.length))
      .map(([at, value, cut]) => {
        const copy = Buffer.from(der);
        copy[at] = value;
        return `-----BEGIN CERTIFICATE-----\n${copy.subarray(0, Math.max(1, cut)).toString('base64')}\n-----END CERTIFICATE-----\n`;
      });
    const armored = fc.base64String().map((body) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----`);
    fc.assert(
      fc.property(fc.oneof(fc.string(), armored, corrupted), (text) => {
        try {
          parseCertificate(text);
        } catch (error) {
          if (!(error instanceof ArgumentError)) throw error;
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('AbortSignal', () => {
  it('abandons key generation with AbortError', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(createRootCa({ commonName: 'never', signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    const late = new AbortController();
    const pending = issueDeviceCertificate({ issuer: root, deviceId: 'd1', signal: late.signal });
    late.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortError);
  });
});
