import { createRootCa, createSelfSignedCertificate } from '@fieldhub/auth';
import { describe, expect, it } from 'vitest';
import { parseAttestation, parseEnrollmentGroup, parseIndividualEnrollment, renderEnrollment } from './enrollments';

const now = '2026-11-27T10:00:00.000Z';

describe('parseIndividualEnrollment', () => {
  it('fills Azure defaults and generates 64-byte keys', () => {
    const enrollment = parseIndividualEnrollment(
      'dev-1',
      { attestation: { type: 'symmetricKey' } },
      'hub.local',
      undefined,
      now,
    );
    expect(enrollment).toMatchObject({
      registrationId: 'dev-1',
      iotHubHostName: 'hub.local',
      iotHubs: ['hub.local'],
      provisioningStatus: 'enabled',
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: true },
      capabilities: { iotEdge: false },
      allocationPolicy: 'hashed',
      createdDateTimeUtc: now,
      lastUpdatedDateTimeUtc: now,
    });
    expect(enrollment.deviceId).toBeUndefined();
    const keys = enrollment.attestation.symmetricKey;
    expect(Buffer.from(keys?.primaryKey ?? '', 'base64')).toHaveLength(64);
    expect(keys?.primaryKey).not.toBe(keys?.secondaryKey);
  });

  it('keeps the keys and creation time of the previous version when an update omits them', () => {
    const first = parseIndividualEnrollment('dev-1', { attestation: { type: 'symmetricKey' } }, 'hub', undefined, now);
    const later = '2026-11-28T00:00:00.000Z';
    const second = parseIndividualEnrollment(
      'DEV-1',
      { attestation: { symmetricKey: {} }, provisioningStatus: 'disabled' },
      'hub',
      first,
      later,
    );
    expect(second.registrationId).toBe('dev-1');
    expect(second.attestation.symmetricKey).toEqual(first.attestation.symmetricKey);
    expect(second.createdDateTimeUtc).toBe(now);
    expect(second.lastUpdatedDateTimeUtc).toBe(later);
    expect(second.etag).not.toBe(first.etag);
  });

  it('accepts null members as absent, as other SDKs serialise them', () => {
    const enrollment = parseIndividualEnrollment(
      'dev-2',
      {
        attestation: { type: 'symmetricKey', symmetricKey: null, x509: null, tpm: null },
        deviceId: null,
        initialTwin: null,
      },
      'hub',
      undefined,
      now,
    );
    expect(enrollment.attestation.type).toBe('symmetricKey');
  });

  it('accepts the hub host with a port and refuses another hub', () => {
    expect(() =>
      parseIndividualEnrollment(
        'd',
        { attestation: { type: 'symmetricKey' }, iotHubHostName: 'HUB:8443' },
        'hub',
        undefined,
        now,
      ),
    ).not.toThrow();
    expect(() =>
      parseIndividualEnrollment(
        'd',
        { attestation: { type: 'symmetricKey' }, iotHubHostName: 'other' },
        'hub',
        undefined,
        now,
      ),
    ).toThrow(/iotHubHostName/);
  });

  it('drops $metadata and $version from initial desired properties', () => {
    const enrollment = parseIndividualEnrollment(
      'd',
      {
        attestation: { type: 'symmetricKey' },
        initialTwin: { properties: { desired: { a: 1, $metadata: {}, $version: 3 } } },
      },
      'hub',
      undefined,
      now,
    );
    expect(enrollment.initialTwin).toEqual({ properties: { desired: { a: 1 } } });
  });

  it('refuses a bad registration id', () => {
    expect(() =>
      parseIndividualEnrollment('bad id', { attestation: { type: 'symmetricKey' } }, 'h', undefined, now),
    ).toThrow(/registrationId/);
  });
});

describe('parseAttestation', () => {
  it('reads an X.509 client certificate given as PEM or base64 DER and renders only its info', async () => {
    const { certificate } = await createSelfSignedCertificate({ commonName: 'x-dev' });
    const base64 = certificate.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
    for (const given of [certificate, base64]) {
      const attestation = parseAttestation(
        { type: 'x509', x509: { clientCertificates: { primary: { certificate: given } } } },
        'individual',
        undefined,
      );
      expect(attestation.x509?.clientCertificates?.primary.info).toMatchObject({
        subjectName: 'CN=x-dev',
        sha1Thumbprint: expect.stringMatching(/^[0-9A-F]{40}$/),
        sha256Thumbprint: expect.stringMatching(/^[0-9A-F]{64}$/),
        version: 3,
      });
    }
    const enrollment = parseIndividualEnrollment(
      'x-dev',
      { attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate } } } } },
      'hub',
      undefined,
      now,
    );
    const rendered = renderEnrollment(enrollment);
    expect(rendered.attestation.x509?.clientCertificates?.primary.certificate).toBeUndefined();
    expect(rendered.attestation.x509?.clientCertificates?.primary.info.subjectName).toBe('CN=x-dev');
    // A GET's answer PUT back (info only) keeps the stored certificate.
    const roundTrip = parseIndividualEnrollment('x-dev', rendered, 'hub', enrollment, now);
    expect(roundTrip.attestation.x509?.clientCertificates?.primary.certificate).toBe(
      enrollment.attestation.x509?.clientCertificates?.primary.certificate,
    );
  });

  it('takes the group forms only for groups and exactly one x509 form', async () => {
    const root = await createRootCa({ commonName: 'Unit Root' });
    const group = parseEnrollmentGroup(
      'g1',
      { attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: root.certificate } } } } },
      'hub',
      undefined,
      now,
    );
    expect(group.attestation.x509?.signingCertificates?.primary.info.subjectName).toBe('CN=Unit Root');
    expect(parseAttestation({ x509: { caReferences: { primary: 'my-ca' } } }, 'group', undefined)).toEqual({
      type: 'x509',
      x509: { caReferences: { primary: 'my-ca' } },
    });
    expect(() => parseAttestation({ x509: { caReferences: { primary: 'my-ca' } } }, 'individual', undefined)).toThrow(
      /clientCertificates/,
    );
    expect(() =>
      parseAttestation(
        {
          x509: { caReferences: { primary: 'a' }, signingCertificates: { primary: { certificate: root.certificate } } },
        },
        'group',
        undefined,
      ),
    ).toThrow(/exactly one/);
    expect(() => parseAttestation({ type: 'tpm' }, 'individual', undefined)).toThrow(/TPM/);
    expect(() => parseAttestation(undefined, 'group', undefined)).toThrow(/attestation is required/);
    expect(() =>
      parseAttestation({ type: 'symmetricKey', symmetricKey: { primaryKey: 'not base64!' } }, 'group', undefined),
    ).toThrow(/primaryKey/);
  });
});
