import { ArgumentError, AuthenticationError } from '@fieldhub/protocol';
import { loadCertificate } from './certificate';
import {
  type CertificateWithKey,
  issueLeaf,
  loadIssuer,
  type ValidityOptions,
  validity,
} from './certificate-authority';
import { toForgePublicKey } from './forge';
import { subjectKey } from './keys';
import { nameAttributes } from './names';

/** Options of {@link createVerificationCertificate}. */
export interface CreateVerificationCertificateOptions extends ValidityOptions {
  /** The CA whose key possession is being proven. */
  ca: CertificateWithKey;
  /** The code the hub issued (`generateVerificationCode`); it becomes the subject CN. */
  verificationCode: string;
  /** Abandons key generation. */
  signal?: AbortSignal;
}

/**
 * Creates the proof-of-possession certificate IoT Hub asks for when a CA certificate is uploaded: a leaf with
 * CN = the verification code, signed by the CA's private key (reference protocol-device.md §6), built with
 * node-forge. Returns PEM.
 * @throws ArgumentError when the CA (certificate, key, CA flag, key match) or the code is bad.
 * @throws UnsupportedFeatureError when the CA's key is not RSA.
 * @throws AbortError when `signal` aborts.
 */
export async function createVerificationCertificate(options: CreateVerificationCertificateOptions): Promise<string> {
  const ca = loadIssuer(options.ca, 'ca');
  if (typeof options.verificationCode !== 'string' || options.verificationCode.length === 0) {
    throw new ArgumentError('verificationCode must be a non-empty string', { field: 'verificationCode' });
  }
  const { publicKey } = await subjectKey(options.signal ? { signal: options.signal } : {}, 'verification');
  return issueLeaf({
    issuer: ca,
    subject: nameAttributes({ commonName: options.verificationCode }, 'subject'),
    publicKey: toForgePublicKey(publicKey, 'verification.publicKey'),
    validity: validity(options, 30),
    usage: 'clientAuth',
  });
}

/** Options of {@link verifyProofOfPossession}. */
export interface VerifyProofOfPossessionOptions {
  /** The uploaded CA certificate (PEM). */
  caCertificate: string;
  /** The certificate the owner made (PEM). */
  verificationCertificate: string;
  /** The code the hub issued. */
  verificationCode: string;
  /** The clock. Default `new Date()`. */
  now?: Date;
}

/**
 * Checks a proof of possession: the verification certificate's CN equals the code (exactly), it is signed by the
 * CA certificate's key and is within its validity period.
 * @throws ArgumentError when a PEM is unreadable.
 * @throws AuthenticationError when the CN differs, the signature is not the CA's, or the certificate is not valid now.
 */
export function verifyProofOfPossession(options: VerifyProofOfPossessionOptions): void {
  const ca = loadCertificate(options.caCertificate, 'caCertificate');
  const proof = loadCertificate(options.verificationCertificate, 'verificationCertificate');
  if (typeof options.verificationCode !== 'string' || options.verificationCode.length === 0) {
    throw new ArgumentError('verificationCode must be a non-empty string', { field: 'verificationCode' });
  }
  if (proof.subject.commonName !== options.verificationCode) {
    throw new AuthenticationError('verification certificate CN does not match the verification code');
  }
  if (!proof.node.checkIssued(ca.node) || !proof.node.verify(ca.node.publicKey)) {
    throw new AuthenticationError('verification certificate is not signed by the CA certificate');
  }
  const now = (options.now ?? new Date()).getTime();
  if (now < proof.notBefore.getTime() || now > proof.notAfter.getTime()) {
    throw new AuthenticationError('verification certificate is not within its validity period');
  }
}
