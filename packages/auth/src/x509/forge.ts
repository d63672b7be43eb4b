// The one place that talks to node-forge: typed wrappers around its loosely typed certificate and CSR API.
// node-forge creates and signs certificates and requests (RSA only); node:crypto generates keys and parses.
import { Buffer } from 'node:buffer';
import { createPublicKey, type KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { ArgumentError, UnsupportedFeatureError } from '@fieldhub/protocol';
import type forge from 'node-forge';

// node-forge (~40 ms to load) is needed only to create and sign certificates and requests, which a running hub
// rarely does: it loads on first use, so importing @fieldhub/auth for SAS tokens or certificate parsing stays cheap.
const requireHere = createRequire(import.meta.url);
let loadedForge: typeof forge | undefined;
function nodeForge(): typeof forge {
  loadedForge ??= requireHere('node-forge') as typeof forge;
  return loadedForge;
}

/** @internal A forge RSA private key. */
export type ForgePrivateKey = forge.pki.rsa.PrivateKey;
/** @internal A forge RSA public key. */
export type ForgePublicKey = forge.pki.rsa.PublicKey;

/** @internal One attribute of a Name as forge reads and writes it (`value` is a JS string). */
export interface ForgeAttribute {
  /** Dotted OID. */
  type: string;
  value: string;
  /** ASN.1 universal tag of the value (UTF8String 12, PrintableString 19, ...). */
  valueTagClass: number;
}

/** @internal A subjectAltName entry: DNS name (type 2) or IP address (type 7, textual `ip`). */
export type ForgeAltName = { type: 2; value: string } | { type: 7; ip: string };

/** @internal The extensions Fieldhub writes, in forge's shape. */
export type ForgeExtension =
  | { name: 'basicConstraints'; critical: true; cA?: true; pathLenConstraint?: number }
  | {
      name: 'keyUsage';
      critical: true;
      digitalSignature?: true;
      keyEncipherment?: true;
      keyCertSign?: true;
      cRLSign?: true;
    }
  | { name: 'extKeyUsage'; serverAuth?: true; clientAuth?: true }
  | { name: 'subjectKeyIdentifier' }
  | { name: 'authorityKeyIdentifier'; keyIdentifier: string }
  | { name: 'subjectAltName'; altNames: ForgeAltName[] };

/** @internal ASN.1 universal string tags used in names (forge.asn1.Type.UTF8 and PRINTABLESTRING). */
export const StringTag = { utf8: 12, printable: 19 } as const;

function unsupportedKey(key: KeyObject, field: string): UnsupportedFeatureError {
  return new UnsupportedFeatureError(
    `${field} is an ${key.asymmetricKeyType ?? 'unknown'} key; Fieldhub creates and signs certificates with ` +
      'node-forge, which supports RSA keys only (EC certificates can still be parsed and verified)',
  );
}

/**
 * @internal Converts a Node private key to forge (via PKCS#1 PEM).
 * @throws UnsupportedFeatureError when the key is not RSA.
 */
export function toForgePrivateKey(key: KeyObject, field: string): ForgePrivateKey {
  if (key.asymmetricKeyType !== 'rsa') throw unsupportedKey(key, field);
  const pem = key.export({ type: 'pkcs1', format: 'pem' }).toString();
  return nodeForge().pki.privateKeyFromPem(pem) as ForgePrivateKey;
}

/**
 * @internal Converts a Node public key to forge (via SPKI PEM).
 * @throws UnsupportedFeatureError when the key is not RSA.
 */
export function toForgePublicKey(key: KeyObject, field: string): ForgePublicKey {
  if (key.asymmetricKeyType !== 'rsa') throw unsupportedKey(key, field);
  return nodeForge().pki.publicKeyFromPem(key.export({ type: 'spki', format: 'pem' }).toString()) as ForgePublicKey;
}

/** @internal The public half of a forge private key. */
export function publicKeyOf(key: ForgePrivateKey): ForgePublicKey {
  return nodeForge().pki.setRsaPublicKey(key.n, key.e);
}

/** @internal A forge public key as SPKI PEM, formatted by Node. */
export function publicKeyPem(key: ForgePublicKey): string {
  const der = Buffer.from(nodeForge().asn1.toDer(nodeForge().pki.publicKeyToAsn1(key)).getBytes(), 'binary');
  return createPublicKey({ key: der, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * @internal forge stores UTF8String values as raw UTF-8 bytes when parsing but encodes them again when writing;
 * this returns attributes (e.g. a CSR subject or an issuer's subject) ready to write back unchanged.
 */
export function writableAttributes(attributes: readonly forge.pki.CertificateField[]): ForgeAttribute[] {
  return attributes.flatMap((attribute) => {
    if (typeof attribute.type !== 'string' || typeof attribute.value !== 'string') return [];
    const tag = Number(attribute.valueTagClass ?? StringTag.printable);
    const value = tag === StringTag.utf8 ? nodeForge().util.decodeUtf8(attribute.value) : attribute.value;
    return [{ type: attribute.type, value, valueTagClass: tag }];
  });
}

function asFields(attributes: readonly ForgeAttribute[]): forge.pki.CertificateField[] {
  // forge's typings call the tag `asn1.Class`; it is an `asn1.Type` (the universal tag number).
  return attributes.map((a) => ({ type: a.type, value: a.value, valueTagClass: a.valueTagClass as forge.asn1.Class }));
}

/** @internal What an issuer contributes to the certificates it signs. */
export interface ForgeIssuer {
  /** The issuer's subject, written as the child's issuer. */
  name: ForgeAttribute[];
  /** The issuer's subject key identifier (binary string), written as the child's authorityKeyIdentifier. */
  keyIdentifier: string;
}

/**
 * @internal Reads the issuer name and key identifier of an RSA CA certificate with forge.
 * @throws UnsupportedFeatureError when forge cannot read the certificate.
 */
export function forgeIssuer(pem: string, field: string): ForgeIssuer {
  let certificate: forge.pki.Certificate;
  try {
    certificate = nodeForge().pki.certificateFromPem(pem);
  } catch (error) {
    throw new UnsupportedFeatureError(`${field} cannot be used to sign: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const ski = certificate.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: unknown } | undefined;
  const keyIdentifier =
    typeof ski?.subjectKeyIdentifier === 'string'
      ? nodeForge().util.hexToBytes(ski.subjectKeyIdentifier)
      : certificate.generateSubjectKeyIdentifier().getBytes();
  return { name: writableAttributes(certificate.subject.attributes), keyIdentifier };
}

/** @internal Everything needed to assemble and sign one certificate. */
export interface CertificateTemplate {
  subject: readonly ForgeAttribute[];
  /** Omit for a self-signed certificate (issuer = subject). */
  issuer?: readonly ForgeAttribute[];
  publicKey: ForgePublicKey;
  notBefore: Date;
  notAfter: Date;
  extensions: readonly ForgeExtension[];
  signingKey: ForgePrivateKey;
}

/**
 * @internal Builds a v3 certificate with forge, signs it (SHA-256 with RSA) and returns PEM (formatted by Node,
 * which also checks that OpenSSL reads the result).
 * @throws ArgumentError when forge refuses a field (e.g. an address it cannot encode).
 */
export function signCertificate(template: CertificateTemplate): string {
  const certificate = nodeForge().pki.createCertificate();
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x40; // positive, 16 significant bytes
  certificate.serialNumber = serial.toString('hex');
  certificate.publicKey = template.publicKey;
  certificate.validity.notBefore = template.notBefore;
  certificate.validity.notAfter = template.notAfter;
  certificate.setSubject(asFields(template.subject));
  certificate.setIssuer(asFields(template.issuer ?? template.subject));
  try {
    certificate.setExtensions(template.extensions.map((extension) => ({ ...extension })));
  } catch (error) {
    throw new ArgumentError(`certificate extensions rejected: ${(error as Error).message}`, { cause: error });
  }
  certificate.sign(template.signingKey, nodeForge().md.sha256.create());
  const der = Buffer.from(nodeForge().asn1.toDer(nodeForge().pki.certificateToAsn1(certificate)).getBytes(), 'binary');
  return new X509Certificate(der).toString();
}

/** @internal A signed PKCS#10 request as DER. */
export function signRequest(options: {
  subject: readonly ForgeAttribute[];
  altNames: readonly ForgeAltName[];
  key: ForgePrivateKey;
}): Buffer {
  const request = nodeForge().pki.createCertificationRequest();
  request.publicKey = publicKeyOf(options.key);
  request.setSubject(asFields(options.subject));
  if (options.altNames.length > 0) {
    request.setAttributes([
      { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [...options.altNames] }] },
    ]);
  }
  request.sign(options.key, nodeForge().md.sha256.create());
  return Buffer.from(nodeForge().asn1.toDer(nodeForge().pki.certificationRequestToAsn1(request)).getBytes(), 'binary');
}

/** @internal A request as forge reads it, with its signature checked. */
export interface ForgeRequest {
  subject: ForgeAttribute[];
  /** subjectAltName entries of the extensionRequest: DNS names and textual IP addresses. */
  dnsNames: string[];
  ipAddresses: string[];
  publicKey: ForgePublicKey;
  signatureValid: boolean;
}

function requestKeyType(info: forge.asn1.Asn1): string | undefined {
  const parts = Array.isArray(info.value) ? info.value : [];
  const spki = parts[2];
  if (!spki) return undefined;
  const der = Buffer.from(nodeForge().asn1.toDer(spki).getBytes(), 'binary');
  return createPublicKey({ key: der, format: 'der', type: 'spki' }).asymmetricKeyType;
}

/**
 * @internal Reads a PKCS#10 request (DER) with forge and verifies its self-signature.
 * @throws ArgumentError (naming `field`) when it is not a readable request.
 * @throws UnsupportedFeatureError when the requested key is not RSA.
 */
export function readRequest(der: Buffer, field: string): ForgeRequest {
  let request: forge.pki.CertificateSigningRequest;
  try {
    const asn1 = nodeForge().asn1.fromDer(der.toString('binary'));
    const info = Array.isArray(asn1.value) ? asn1.value[0] : undefined;
    const keyType = info ? requestKeyType(info) : undefined;
    if (keyType !== undefined && keyType !== 'rsa') {
      throw new UnsupportedFeatureError(
        `${field} requests a certificate for an ${keyType} key; Fieldhub signs requests with node-forge, which ` +
          'supports RSA keys only',
      );
    }
    request = nodeForge().pki.certificationRequestFromAsn1(asn1, true);
  } catch (error) {
    if (error instanceof UnsupportedFeatureError) throw error;
    throw new ArgumentError(`${field} could not be decoded: ${(error as Error).message}`, { field, cause: error });
  }
  let signatureValid: boolean;
  try {
    signatureValid = request.verify();
  } catch {
    signatureValid = false;
  }
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const extensions = request.getAttribute({ name: 'extensionRequest' })?.extensions ?? [];
  for (const extension of extensions as { name?: unknown; altNames?: unknown }[]) {
    if (extension.name !== 'subjectAltName' || !Array.isArray(extension.altNames)) continue;
    for (const altName of extension.altNames as { type?: unknown; value?: unknown; ip?: unknown }[]) {
      if (altName.type === 2 && typeof altName.value === 'string') dnsNames.push(altName.value);
      if (altName.type === 7 && typeof altName.ip === 'string') ipAddresses.push(altName.ip);
    }
  }
  if (!request.publicKey) throw new ArgumentError(`${field} has no public key`, { field });
  return {
    subject: writableAttributes(request.subject.attributes),
    dnsNames,
    ipAddresses,
    publicKey: request.publicKey as ForgePublicKey,
    signatureValid,
  };
}
