import type { ProvisioningService } from '../../src/dps/provisioning-service';
import type { TestHub } from './test-hub';

/** Enrollments for the device-side provisioning tests, made through the hub's provisioning service. */
export interface DpsEnrollments {
  /** An individual symmetric-key enrollment; resolves with its primary key. */
  symmetricKeyIndividual(registrationId: string, options?: { disabled?: boolean }): Promise<string>;
  /** A symmetric-key enrollment group; resolves with its primary (group) key. */
  symmetricKeyGroup(enrollmentGroupId: string): Promise<string>;
  /** An individual X.509 enrollment with the device's client certificate (PEM). */
  x509Individual(registrationId: string, certificate: string): Promise<void>;
}

/** The enrollment helpers of a test hub. */
export function dpsEnrollments(testHub: TestHub): DpsEnrollments {
  const service = () => testHub.hub.core.dps as ProvisioningService;
  return {
    async symmetricKeyIndividual(registrationId, options = {}) {
      const enrollment = await service().enrollments.putIndividual(registrationId, {
        registrationId,
        attestation: { type: 'symmetricKey' },
        ...(options.disabled ? { provisioningStatus: 'disabled' } : {}),
      });
      return enrollment.attestation.symmetricKey?.primaryKey as string;
    },
    async symmetricKeyGroup(enrollmentGroupId) {
      const group = await service().enrollments.putGroup(enrollmentGroupId, {
        enrollmentGroupId,
        attestation: { type: 'symmetricKey' },
      });
      return group.attestation.symmetricKey?.primaryKey as string;
    },
    async x509Individual(registrationId, certificate) {
      await service().enrollments.putIndividual(registrationId, {
        registrationId,
        attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate } } } },
      });
    },
  };
}
