import {
  type CertificateWithKey,
  createIntermediateCa,
  createRootCa,
  createVerificationCertificate,
  issueDeviceCertificate,
  parseCertificate,
} from '@fieldhub/auth';
import { ArgumentError, HubError } from '@fieldhub/protocol';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CertificateAuthorities } from './certificate-authorities';
import { createTestCore, type TestCore } from './telemetry-test-support';

// The test core's clock starts here.
const now = new Date('2026-01-01T00:00:00.000Z');
const day = 86_400_000;

let root: CertificateWithKey;
let intermediate: CertificateWithKey;
let foreign: CertificateWithKey;
let shortLived: CertificateWithKey;

beforeAll(async () => {
  [root, foreign, shortLived] = await Promise.all([
    createRootCa({ commonName: 'Fleet Root', now }),
    createRootCa({ commonName: 'Someone Else', now }),
    createRootCa({ commonName: 'Short Lived', now, validityDays: 2 }),
  ]);
  intermediate = await createIntermediateCa({ issuer: root, commonName: 'Fleet Intermediate', now });
});

let core: TestCore;
let cas: CertificateAuthorities;

beforeEach(async () => {
  core = await createTestCore();
  cas = new CertificateAuthorities(core.ctx);
});

afterEach(async () => {
  await core.close();
});

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

async function proveAndVerify(name: string, ca: CertificateWithKey): Promise<void> {
  const { verificationCode } = await cas.generateVerificationCode(name);
  const proof = await createVerificationCertificate({ ca, verificationCode, now });
  await cas.verify(name, proof);
}

describe('CertificateAuthorities', () => {
  it('adds a CA unverified, with both thumbprints, subject and expiry', async () => {
    const added = await cas.add('fleet', root.certificate);
    const info = parseCertificate(root.certificate);
    expect(added).toMatchObject({
      name: 'fleet',
      subject: 'Fleet Root',
      thumbprint: info.thumbprintSha1,
      thumbprintSha256: info.thumbprintSha256,
      expiry: info.notAfter.toISOString(),
      isVerified: false,
      created: now.toISOString(),
      updated: now.toISOString(),
    });
    expect(added.thumbprint).toMatch(/^[0-9A-F]{40}$/);
    expect(added.etag).toEqual(expect.any(String));
    expect(await cas.get('fleet')).toEqual(added);
    expect(await cas.list()).toEqual([added]);
    expect(await cas.verifiedCertificates()).toEqual([]);
  });

  it('refuses a bad PEM naming the certificate field, and a bad name naming name', async () => {
    const bad = await caught(cas.add('fleet', 'not a pem'));
    expect(bad).toBeInstanceOf(ArgumentError);
    expect((bad as ArgumentError).field).toBe('certificate');
    const badName = await caught(cas.add('no/slash', root.certificate));
    expect((badName as ArgumentError).field).toBe('name');
    expect(await cas.list()).toEqual([]);
  });

  it('answers ResourceNotFound for an unknown name on get, delete, code and verify', async () => {
    for (const call of [
      cas.get('nope'),
      cas.delete('nope'),
      cas.generateVerificationCode('nope'),
      cas.verify('nope', root.certificate),
    ]) {
      const error = await caught(call);
      expect(HubError.is(error) && error.code).toBe('ResourceNotFound');
    }
  });

  it('verifies a CA through proof of possession and clears the code', async () => {
    await cas.add('fleet', root.certificate);
    const withCode = await cas.generateVerificationCode('fleet');
    expect(withCode.verificationCode).toMatch(/^[0-9A-F]{48}$/);
    expect(withCode.isVerified).toBe(false);
    const proof = await createVerificationCertificate({ ca: root, verificationCode: withCode.verificationCode, now });
    const verified = await cas.verify('fleet', proof);
    expect(verified.isVerified).toBe(true);
    expect(verified).not.toHaveProperty('verificationCode');
    expect(await cas.verifiedCertificates()).toEqual([parseCertificate(root.certificate).pem]);
    // One code, one proof: the same proof again finds no code.
    const again = await caught(cas.verify('fleet', proof));
    expect((again as ArgumentError).field).toBe('verificationCode');
  });

  it('refuses a proof with the wrong code or signed by another key, as a 400 naming certificate', async () => {
    await cas.add('fleet', root.certificate);
    const { verificationCode } = await cas.generateVerificationCode('fleet');
    const wrongCode = await createVerificationCertificate({ ca: root, verificationCode: 'ABCDEF', now });
    const wrongKey = await createVerificationCertificate({ ca: foreign, verificationCode, now });
    for (const proof of [wrongCode, wrongKey]) {
      const error = await caught(cas.verify('fleet', proof));
      expect(error).toBeInstanceOf(ArgumentError);
      expect((error as ArgumentError).status).toBe(400);
      expect((error as ArgumentError).field).toBe('certificate');
    }
    const garbage = await caught(cas.verify('fleet', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'));
    expect((garbage as ArgumentError).field).toBe('certificate');
    expect((await cas.get('fleet')).isVerified).toBe(false);
  });

  it('a new code replaces the old one', async () => {
    await cas.add('fleet', root.certificate);
    const first = await cas.generateVerificationCode('fleet');
    await cas.generateVerificationCode('fleet');
    const stale = await createVerificationCertificate({ ca: root, verificationCode: first.verificationCode, now });
    expect(await caught(cas.verify('fleet', stale))).toBeInstanceOf(ArgumentError);
  });

  it('accepts { verified: true } at upload, trusting the operator', async () => {
    const added = await cas.add('fleet', root.certificate, { verified: true });
    expect(added.isVerified).toBe(true);
    expect(await cas.verifiedCertificates()).toHaveLength(1);
  });

  it('needs the etag to replace, keeps verification for the same certificate, drops it for another', async () => {
    const first = await cas.add('fleet', root.certificate, { verified: true });
    const exists = await caught(cas.add('fleet', root.certificate));
    expect(HubError.is(exists) && exists.code).toBe('PreconditionFailed');
    const stale = await caught(cas.add('fleet', root.certificate, { ifMatch: 'stale' }));
    expect(HubError.is(stale) && stale.code).toBe('PreconditionFailed');
    core.advance(1000);
    const same = await cas.add('fleet', root.certificate, { ifMatch: first.etag });
    expect(same.isVerified).toBe(true);
    expect(same.etag).not.toBe(first.etag);
    expect(same.created).toBe(first.created);
    expect(same.updated).not.toBe(first.updated);
    const other = await cas.add('fleet', foreign.certificate, { ifMatch: '*' });
    expect(other).toMatchObject({ isVerified: false, subject: 'Someone Else' });
  });

  it('deletes, honouring If-Match', async () => {
    const added = await cas.add('fleet', root.certificate);
    const stale = await caught(cas.delete('fleet', 'stale'));
    expect(HubError.is(stale) && stale.code).toBe('PreconditionFailed');
    await cas.delete('fleet', added.etag);
    expect(await cas.list()).toEqual([]);
  });

  it('code generation and verify honour If-Match', async () => {
    await cas.add('fleet', root.certificate);
    const error = await caught(cas.generateVerificationCode('fleet', 'stale'));
    expect(HubError.is(error) && error.code).toBe('PreconditionFailed');
  });

  it('leaves expired CAs out of verifiedCertificates', async () => {
    await cas.add('short', shortLived.certificate, { verified: true });
    expect(await cas.verifiedCertificates()).toHaveLength(1);
    core.advance(3 * day);
    expect(await cas.verifiedCertificates()).toEqual([]);
  });

  describe('authenticateDevice', () => {
    it('accepts a leaf issued by a verified CA whose CN is the device id', async () => {
      await cas.add('fleet', root.certificate);
      await proveAndVerify('fleet', root);
      const device = await issueDeviceCertificate({ issuer: root, deviceId: 'd1', now });
      expect(await cas.authenticateDevice('d1', [device.certificate])).toEqual({
        ok: true,
        commonName: 'd1',
        certificateAuthority: 'fleet',
      });
    });

    it('accepts a chain through an intermediate the device sends, without the root', async () => {
      await cas.add('fleet', root.certificate, { verified: true });
      const device = await issueDeviceCertificate({ issuer: intermediate, deviceId: 'd2', now });
      const result = await cas.authenticateDevice('d2', [device.certificate, intermediate.certificate]);
      expect(result).toMatchObject({ ok: true, certificateAuthority: 'fleet' });
      // Without the intermediate the chain cannot be built.
      expect((await cas.authenticateDevice('d2', [device.certificate])).ok).toBe(false);
    });

    it('refuses an unverified CA, a wrong CN, an expired leaf, a foreign CA and an empty chain', async () => {
      const device = await issueDeviceCertificate({ issuer: root, deviceId: 'd1', now });
      await cas.add('fleet', root.certificate);
      const unverified = await cas.authenticateDevice('d1', [device.certificate]);
      expect(unverified).toEqual({ ok: false, reason: 'the hub has no verified CA certificate' });

      await cas.add('other', foreign.certificate, { verified: true });
      const notChained = await cas.authenticateDevice('d1', [device.certificate]);
      expect(notChained).toMatchObject({ ok: false, reason: expect.stringContaining('does not chain') });

      await proveAndVerify('fleet', root);
      const wrongCn = await cas.authenticateDevice('d9', [device.certificate]);
      expect(wrongCn).toMatchObject({ ok: false, reason: expect.stringContaining("'d1'") });

      const expired = await issueDeviceCertificate({
        issuer: root,
        deviceId: 'd1',
        now,
        notBefore: new Date(now.getTime() - 10 * day),
        notAfter: new Date(now.getTime() - day),
      });
      expect(await cas.authenticateDevice('d1', [expired.certificate])).toMatchObject({
        ok: false,
        reason: expect.stringContaining('expired'),
      });

      const stranger = await issueDeviceCertificate({ issuer: foreign, deviceId: 'd1', now });
      await cas.delete('other');
      expect((await cas.authenticateDevice('d1', [stranger.certificate])).ok).toBe(false);
      expect(await cas.authenticateDevice('d1', [])).toEqual({
        ok: false,
        reason: 'the client presented no certificate',
      });
      expect((await cas.authenticateDevice('d1', ['garbage'])).ok).toBe(false);
    });

    it('uses the given clock: a leaf valid now is refused after it expires', async () => {
      await cas.add('fleet', root.certificate, { verified: true });
      const device = await issueDeviceCertificate({ issuer: root, deviceId: 'd1', now, validityDays: 1 });
      expect((await cas.authenticateDevice('d1', [device.certificate], now)).ok).toBe(true);
      const later = new Date(now.getTime() + 2 * day);
      expect(await cas.authenticateDevice('d1', [device.certificate], later)).toMatchObject({
        ok: false,
        reason: expect.stringContaining('expired'),
      });
    });
  });
});
