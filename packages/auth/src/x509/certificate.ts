import { Buffer } from 'node:buffer';
import { createHash, type KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import { ArgumentError } from '@fieldhub/protocol';
import * as der from './der';
import { signerFor } from './keys';
import { type DistinguishedName, decodeName, decodeSubjectAltName, ExtendedKeyUsage, ExtensionOid } from './names';
import { derToPem, pemToDer } from './pem';

/** What Fieldhub reads from a certificate. */
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

/** @internal The parse plus raw pieces needed to issue and verify. */
export interface ParsedCertificate extends CertificateInfo {
  subjectRaw: Buffer;
  spkiRaw: Buffer;
  subjectKeyIdentifier: Buffer | undefined;
  node: X509Certificate;
}

/** A certificate hash in IoT Hub's format: uppercase hex, no separators. */
export function thumbprintOf(derBytes: Uint8Array, algorithm: 'sha1' | 'sha256'): string {
  return createHash(algorithm).update(derBytes).digest('hex').toUpperCase();
}

/** @internal Parses DER into the fields above. @throws ArgumentError naming `field`. */
export function parseCertificateDer(bytes: Buffer, field: string): ParsedCertificate {
  let node: X509Certificate;
  try {
    node = new X509Certificate(bytes);
  } catch (error) {
    throw new ArgumentError(`${field} is not a valid X.509 certificate`, { field, cause: error });
  }
  try {
    const [tbs] = der.children(der.readNode(bytes));
    if (!tbs) throw new Error('no TBSCertificate');
    const parts = der.children(tbs);
    if (parts[0]?.tag === 0xa0) parts.shift();
    const [serial, , issuer, validity, subject, spki, ...rest] = parts;
    if (!serial || !issuer || !validity || !subject || !spki) throw new Error('short TBSCertificate');
    const [notBefore, notAfter] = der.children(validity);
    if (!notBefore || !notAfter) throw new Error('bad validity');
    let isCa = false;
    let dnsNames: string[] = [];
    let ipAddresses: string[] = [];
    const extendedKeyUsages: string[] = [];
    let subjectKeyIdentifier: Buffer | undefined;
    const extensions = rest.find((n) => n.tag === 0xa3);
    for (const ext of extensions ? der.children(der.children(extensions)[0] ?? extensions) : []) {
      const items = der.children(ext);
      const oid = der.decodeOid(items[0]?.value ?? Buffer.alloc(0));
      const value = items[items.length - 1]?.value ?? Buffer.alloc(0);
      if (oid === ExtensionOid.basicConstraints) {
        const first = der.children(der.readNode(value))[0];
        isCa = first?.tag === der.Tag.boolean && first.value[0] !== 0;
      } else if (oid === ExtensionOid.subjectAltName) {
        ({ dnsNames, ipAddresses } = decodeSubjectAltName(value));
      } else if (oid === ExtensionOid.extendedKeyUsage) {
        for (const usage of der.children(der.readNode(value))) {
          const dotted = der.decodeOid(usage.value);
          const name = Object.entries(ExtendedKeyUsage).find(([, known]) => known === dotted)?.[0];
          extendedKeyUsages.push(name ?? dotted);
        }
      } else if (oid === ExtensionOid.subjectKeyIdentifier) {
        subjectKeyIdentifier = der.readNode(value).value;
      }
    }
    return {
      pem: derToPem(bytes, 'CERTIFICATE'),
      der: new Uint8Array(bytes),
      subject: decodeName(subject),
      issuer: decodeName(issuer),
      serialNumber: serial.value
        .toString('hex')
        .toUpperCase()
        .replace(/^(00)+(?=.)/, ''),
      notBefore: der.decodeTime(notBefore),
      notAfter: der.decodeTime(notAfter),
      isCa,
      isSelfIssued: Buffer.compare(issuer.raw, subject.raw) === 0,
      dnsNames,
      ipAddresses,
      extendedKeyUsages,
      thumbprintSha1: thumbprintOf(bytes, 'sha1'),
      thumbprintSha256: thumbprintOf(bytes, 'sha256'),
      subjectRaw: Buffer.from(subject.raw),
      spkiRaw: Buffer.from(spki.raw),
      subjectKeyIdentifier,
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
 * Reads a PEM certificate: subject, issuer, validity, SANs, key usages and both thumbprints.
 * @throws ArgumentError (field `certificate`) when the text is not a PEM certificate.
 */
export function parseCertificate(pem: string): CertificateInfo {
  const {
    subjectRaw: _s,
    spkiRaw: _k,
    subjectKeyIdentifier: _i,
    node: _n,
    ...info
  } = loadCertificate(pem, 'certificate');
  return info;
}

/** @internal SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1). */
export function keyIdentifier(spki: Buffer): Buffer {
  const bits = der.children(der.readNode(spki))[1];
  return createHash('sha1')
    .update(bits ? bits.value.subarray(1) : spki)
    .digest();
}

/** @internal Everything needed to assemble and sign one certificate. */
export interface CertificateTemplate {
  subjectName: Buffer;
  issuerName: Buffer;
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  extensions: Buffer[];
  signingKey: KeyObject;
}

/** @internal Assembles the TBSCertificate (v3), signs it, returns PEM. */
export function buildCertificate(template: CertificateTemplate): string {
  const signer = signerFor(template.signingKey, 'issuer.privateKey');
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x40; // positive, 16 significant bytes
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)),
    der.unsignedInteger(serial),
    signer.algorithm,
    template.issuerName,
    der.sequence(der.time(template.notBefore), der.time(template.notAfter)),
    template.subjectName,
    template.spki,
    der.explicit(3, der.sequence(...template.extensions)),
  );
  const signature = signer.sign(tbs);
  return derToPem(der.sequence(tbs, signer.algorithm, der.bitString(signature)), 'CERTIFICATE');
}
