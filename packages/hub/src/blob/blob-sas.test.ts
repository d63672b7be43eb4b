import { randomBytes } from 'node:crypto';
import {
  BlobSASPermissions,
  generateBlobSASQueryParameters,
  SASProtocol,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';
import { createBlobSas, verifyBlobSas } from './blob-sas';

const accountName = 'fieldhubblobs';
const accountKey = randomBytes(32).toString('base64');
const credential = new StorageSharedKeyCredential(accountName, accountKey);
const expiresOn = new Date('2030-01-02T03:04:05.678Z');
const startsOn = new Date('2029-12-31T00:00:00.000Z');

describe('createBlobSas', () => {
  for (const version of ['2015-04-05', '2018-03-28', '2018-11-09', '2020-10-02']) {
    it(`equals @azure/storage-blob's generateBlobSASQueryParameters for sv=${version}`, () => {
      const ours = createBlobSas({
        accountName,
        accountKey,
        containerName: 'fieldhub-uploads',
        blobName: 'device-1/reports/day 1.txt',
        permissions: 'wr',
        expiresOn,
        startsOn,
        version,
      });
      const theirs = generateBlobSASQueryParameters(
        {
          containerName: 'fieldhub-uploads',
          blobName: 'device-1/reports/day 1.txt',
          permissions: BlobSASPermissions.parse('rw'),
          expiresOn,
          startsOn,
          protocol: SASProtocol.Https,
          version,
        },
        credential,
      ).toString();
      expect(new URLSearchParams(ours).get('sig')).toBe(new URLSearchParams(theirs).get('sig'));
      expect(Object.fromEntries(new URLSearchParams(ours))).toEqual(Object.fromEntries(new URLSearchParams(theirs)));
    });
  }

  it('equals the SDK for a container SAS without a start', () => {
    const ours = createBlobSas({ accountName, accountKey, containerName: 'c1', permissions: 'r', expiresOn });
    const theirs = generateBlobSASQueryParameters(
      {
        containerName: 'c1',
        permissions: BlobSASPermissions.parse('r'),
        expiresOn,
        protocol: SASProtocol.Https,
        version: '2020-10-02',
      },
      credential,
    ).toString();
    expect(Object.fromEntries(new URLSearchParams(ours))).toEqual(Object.fromEntries(new URLSearchParams(theirs)));
  });
});

describe('verifyBlobSas', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const check = {
    accountName,
    accountKeys: [accountKey],
    containerName: 'up',
    blobName: 'd/f.bin',
    now,
    clockSkewMs: 300_000,
  };
  const sas = (overrides: Partial<Parameters<typeof createBlobSas>[0]> = {}) =>
    new URLSearchParams(
      createBlobSas({
        accountName,
        accountKey,
        containerName: 'up',
        blobName: 'd/f.bin',
        permissions: 'rw',
        expiresOn,
        ...overrides,
      }),
    );

  it('accepts the SAS it signed for the permission it grants, also one the SDK signed', () => {
    expect(verifyBlobSas(sas(), { ...check, permission: 'w' })).toBeUndefined();
    const sdk = generateBlobSASQueryParameters(
      {
        containerName: 'up',
        blobName: 'd/f.bin',
        permissions: BlobSASPermissions.parse('r'),
        expiresOn,
        version: '2018-03-28',
      },
      credential,
    ).toString();
    expect(verifyBlobSas(new URLSearchParams(sdk), { ...check, permission: 'r' })).toBeUndefined();
  });

  it('refuses a tampered signature or field, another blob, another key', () => {
    const tampered = sas();
    tampered.set('sp', 'rwd');
    expect(verifyBlobSas(tampered, { ...check, permission: 'd' })?.code).toBe('AuthenticationFailed');
    expect(verifyBlobSas(sas(), { ...check, blobName: 'd/other.bin', permission: 'r' })?.code).toBe(
      'AuthenticationFailed',
    );
    expect(
      verifyBlobSas(sas(), { ...check, accountKeys: [randomBytes(32).toString('base64')], permission: 'r' })?.code,
    ).toBe('AuthenticationFailed');
    const noSignature = sas();
    noSignature.delete('sig');
    expect(verifyBlobSas(noSignature, { ...check, permission: 'r' })?.code).toBe('AuthenticationFailed');
  });

  it('refuses an expired SAS beyond the clock skew and one not yet valid', () => {
    const expired = sas({ expiresOn: new Date(now - 400_000) });
    expect(verifyBlobSas(expired, { ...check, permission: 'r' })?.code).toBe('AuthenticationFailed');
    const withinSkew = sas({ expiresOn: new Date(now - 100_000) });
    expect(verifyBlobSas(withinSkew, { ...check, permission: 'r' })).toBeUndefined();
    const early = sas({ startsOn: new Date(now + 400_000) });
    expect(verifyBlobSas(early, { ...check, permission: 'r' })?.code).toBe('AuthenticationFailed');
  });

  it('refuses an operation the permissions do not cover', () => {
    expect(verifyBlobSas(sas({ permissions: 'r' }), { ...check, permission: 'w' })?.code).toBe(
      'AuthorizationPermissionMismatch',
    );
  });
});
