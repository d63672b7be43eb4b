import { ArgumentError } from '@fieldhub/protocol';
import { loadCertificate } from './certificate';

/** The hash algorithms IoT Hub uses for thumbprints: SHA-1 (40 hex digits) and SHA-256 (64). */
export type ThumbprintAlgorithm = 'sha1' | 'sha256';

/**
 * The thumbprint of a PEM certificate in IoT Hub's format: uppercase hex of the hash of the DER, no colons.
 * Default algorithm SHA-256.
 * @throws ArgumentError (field `certificate`) when the text is not a PEM certificate.
 */
export function certificateThumbprint(pem: string, algorithm: ThumbprintAlgorithm = 'sha256'): string {
  if (algorithm !== 'sha1' && algorithm !== 'sha256') {
    throw new ArgumentError(`algorithm must be 'sha1' or 'sha256'`, { field: 'algorithm' });
  }
  const certificate = loadCertificate(pem, 'certificate');
  return algorithm === 'sha1' ? certificate.thumbprintSha1 : certificate.thumbprintSha256;
}

/**
 * Normalises a thumbprint as people paste them (`ab:cd:…`, spaces, lower case) to IoT Hub's format.
 * @throws ArgumentError (field `thumbprint`) unless the result is 40 or 64 hex digits.
 */
export function normalizeThumbprint(thumbprint: string): string {
  const value = typeof thumbprint === 'string' ? thumbprint.replace(/[\s:]/g, '').toUpperCase() : '';
  if (!/^([0-9A-F]{40}|[0-9A-F]{64})$/.test(value)) {
    throw new ArgumentError('thumbprint must be 40 (SHA-1) or 64 (SHA-256) hex digits', { field: 'thumbprint' });
  }
  return value;
}

/**
 * Whether a certificate matches any of the given thumbprints (IoT Hub's `selfSigned` authentication: primary or
 * secondary, SHA-1 or SHA-256 by length, case and colons ignored). Malformed thumbprints never match.
 * @throws ArgumentError (field `certificate`) when the certificate is not PEM.
 */
export function matchesThumbprint(pem: string, thumbprints: readonly (string | undefined | null)[]): boolean {
  const certificate = loadCertificate(pem, 'certificate');
  return thumbprints.some((candidate) => {
    if (typeof candidate !== 'string') return false;
    const value = candidate.replace(/[\s:]/g, '').toUpperCase();
    return value === certificate.thumbprintSha1 || value === certificate.thumbprintSha256;
  });
}
