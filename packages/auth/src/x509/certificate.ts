import type { Buffer } from 'node:buffer';
import { X509Certificate } from 'node:crypto';
import { ArgumentError } from '@fieldhub/protocol';
import { type DistinguishedName, ExtendedKeyUsage, nameFromLegacy, parseSubjectAltName } from './names';
import { pemToDer } from './pem';

/** What Fieldhub reads from a certificate (RSA or EC). */
export interface CertificateInfo {
  /** The certificate as PEM (normalised). */
  pem: string;
  /** The DER bytes. */
  der: Uint8Array;
  /** Subject fields; `subject.commonName` is the device id for device certificates. */
  subject: DistinguishedName;
  /** Issuer fields. */
  issuer: DistinguishedName;
  /** Serial number, uppercase hex. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** basicConstraints cA. */
  isCa: boolean;
  /** Whether subject and issuer names are equal (a root or a self-signed leaf). */
  isSelfIssued: boolean;
  /** subjectAltName DNS names. */
  dnsNames: string[];
  /** subjectAltName IP addresses. */
  ipAddresses: string[];
  /** Extended key usages, by name when known (`'clientAuth'`, `'serverAuth'`), else dotted OID. */
  extendedKeyUsages: string[];
  /** SHA-1 of the DER, uppercase hex without colons (IoT Hub's thumbprint format). */
  thumbprintSha1: string;
  /** SHA-256 of the DER, uppercase hex without colons. */
  thumbprintSha256: string;
}

/** @internal The parse plus Node's certificate object, for signature and issuer checks. */
export interface ParsedCertificate extends CertificateInfo {
  node: X509Certificate;
}

function date(text: string, what: string): Date {
  const value = new Date(text);
  if (Number.isNaN(value.getTime())) throw new Error(`unreadable ${what} ${text}`);
  return value;
}

function usageName(oid: string): string {
  return Object.entries(ExtendedKeyUsage).find(([, known]) => known === oid)?.[0] ?? oid;
}

/**
 * @internal Parses DER with Node's `X509Certificate` (OpenSSL) into the fields above.
 * @throws ArgumentError naming `field`.
 */
export function parseCertificateDer(bytes: Buffer, field: string): ParsedCertificate {
  let node: X509Certificate;
  try {
    node = new X509Certificate(bytes);
  } catch (error) {
    throw new ArgumentError(`${field} is not a valid X.509 certificate`, { field, cause: error });
  }
  try {
    const legacy = node.toLegacyObject();
    const { dnsNames, ipAddresses } = parseSubjectAltName(node.subjectAltName);
    return {
      pem: node.toString(),
      der: new Uint8Array(node.raw),
      subject: nameFromLegacy(legacy.subject),
      issuer: nameFromLegacy(legacy.issuer),
      serialNumber: node.serialNumber.toUpperCase().replace(/^(00)+(?=.)/, ''),
      notBefore: date(node.validFrom, 'notBefore'),
      notAfter: date(node.validTo, 'notAfter'),
      isCa: node.ca,
      isSelfIssued: node.subject === node.issuer,
      dnsNames,
      ipAddresses,
      extendedKeyUsages: (node.keyUsage ?? []).map(usageName),
      thumbprintSha1: node.fingerprint.replace(/:/g, ''),
      thumbprintSha256: node.fingerprint256.replace(/:/g, ''),
      node,
    };
  } catch (error) {
    throw new ArgumentError(`${field} could not be decoded: ${(error as Error).message}`, { field, cause: error });
  }
}

/** @internal Parses PEM (first CERTIFICATE block). @throws ArgumentError naming `field`. */
export function loadCertificate(pem: unknown, field: string): ParsedCertificate {
  return parseCertificateDer(pemToDer(pem, 'CERTIFICATE', field), field);
}

/**
 * Reads a PEM certificate (RSA or EC, parsed by Node's `X509Certificate`): subject, issuer, validity, SANs, key
 * usages and both thumbprints.
 * @throws ArgumentError (field `certificate`) when the text is not a PEM certificate.
 */
export function parseCertificate(pem: string): CertificateInfo {
  const { node: _n, ...info } = loadCertificate(pem, 'certificate');
  return info;
}
