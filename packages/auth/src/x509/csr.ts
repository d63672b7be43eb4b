import { ArgumentError } from '@fieldhub/protocol';
import {
  type CertificateWithKey,
  issueLeaf,
  loadIssuer,
  type SubjectOptions,
  type ValidityOptions,
  validity,
} from './certificate-authority';
import {
  type ForgeAttribute,
  type ForgePublicKey,
  publicKeyPem,
  readRequest,
  signRequest,
  toForgePrivateKey,
} from './forge';
import { generateKeyPair, type KeyType, loadPrivateKey } from './keys';
import { altNames, canonicalIp, type DistinguishedName, nameAttributes, nameFromAttributes } from './names';
import { derToPem, pemToDer } from './pem';

/** Options of {@link createCertificateSigningRequest}. */
export interface CreateCsrOptions extends SubjectOptions {
  /** Subject CN (a device id, or a host name for a server). */
  commonName: string;
  /** Requested subjectAltName DNS names. */
  dnsNames?: readonly string[];
  /** Requested subjectAltName IP addresses. */
  ipAddresses?: readonly string[];
  /** Sign with this PEM RSA private key; otherwise an RSA key pair is generated (2048 bits unless `rsaBits`). */
  privateKey?: string;
  /** Only `'rsa'` (the default): requests are built with node-forge, which signs with RSA only. */
  keyType?: KeyType;
  rsaBits?: number;
  /** Abandons key generation. */
  signal?: AbortSignal;
}

/** A PKCS#10 request and the private key that signed it (PEM). */
export interface CsrWithKey {
  csr: string;
  privateKey: string;
}

/**
 * Creates a PKCS#10 certificate signing request (PEM `CERTIFICATE REQUEST`) with node-forge, signed SHA-256 with
 * RSA, with a subjectAltName extension request when names are given.
 * @throws ArgumentError on a bad common name, name, or private key.
 * @throws UnsupportedFeatureError when `privateKey` is not RSA or `keyType` is not `'rsa'`.
 * @throws AbortError when `signal` aborts.
 */
export async function createCertificateSigningRequest(options: CreateCsrOptions): Promise<CsrWithKey> {
  if (typeof options.commonName !== 'string' || options.commonName.length === 0) {
    throw new ArgumentError('commonName must be a non-empty string', { field: 'commonName' });
  }
  const subject = nameAttributes(
    {
      commonName: options.commonName,
      ...(options.organization === undefined ? {} : { organization: options.organization }),
      ...(options.organizationalUnit === undefined ? {} : { organizationalUnit: options.organizationalUnit }),
      ...(options.country === undefined ? {} : { country: options.country }),
    },
    'subject',
  );
  const san = altNames(options.dnsNames ?? [], options.ipAddresses ?? [], 'csr');
  const privateKey =
    options.privateKey ??
    (
      await generateKeyPair({
        ...(options.keyType ? { keyType: options.keyType } : {}),
        ...(options.rsaBits ? { rsaBits: options.rsaBits } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      })
    ).privateKey;
  const key = toForgePrivateKey(loadPrivateKey(privateKey, 'privateKey'), 'privateKey');
  const csr = derToPem(signRequest({ subject, altNames: san, key }), 'CERTIFICATE REQUEST');
  return { csr, privateKey };
}

/** What a CSR asks for. */
export interface CsrInfo {
  subject: DistinguishedName;
  dnsNames: string[];
  ipAddresses: string[];
  /** The requested public key, PEM (SPKI). */
  publicKey: string;
}

interface ParsedCsr extends CsrInfo {
  subjectAttributes: ForgeAttribute[];
  forgePublicKey: ForgePublicKey;
}

function parseCsr(pem: unknown, field: string): ParsedCsr {
  const request = readRequest(pemToDer(pem, 'CERTIFICATE REQUEST', field), field);
  if (!request.signatureValid) throw new ArgumentError(`${field} has an invalid self-signature`, { field });
  return {
    subject: nameFromAttributes(request.subject),
    dnsNames: request.dnsNames,
    ipAddresses: request.ipAddresses.map(canonicalIp),
    publicKey: publicKeyPem(request.publicKey),
    subjectAttributes: request.subject,
    forgePublicKey: request.publicKey,
  };
}

/**
 * Reads a PEM CSR with node-forge and checks its self-signature (proof that the requester holds the key).
 * @throws ArgumentError (field `csr`) when the text is not a CSR, or its signature does not verify.
 * @throws UnsupportedFeatureError when the requested key is not RSA (node-forge reads RSA requests only).
 */
export function parseCertificateSigningRequest(pem: string): CsrInfo {
  const { subjectAttributes: _s, forgePublicKey: _k, ...info } = parseCsr(pem, 'csr');
  return info;
}

/** Options of {@link signCertificateSigningRequest}. */
export interface SignCsrOptions extends ValidityOptions {
  /** The signing CA. */
  issuer: CertificateWithKey;
  /** The PEM request. */
  csr: string;
  /** `'device'` (clientAuth, default) or `'server'` (serverAuth, SANs required). */
  profile?: 'device' | 'server';
  /** Override the requested DNS names (the CA decides, not the requester). */
  dnsNames?: readonly string[];
  /** Override the requested IP addresses. */
  ipAddresses?: readonly string[];
}

/**
 * Issues a certificate for a CSR with node-forge: the subject and public key are copied from the request (after
 * checking its signature); usages follow `profile`; SANs come from the request unless overridden. Returns PEM.
 * @throws ArgumentError when the CSR or issuer is bad, or a server profile has no names.
 * @throws UnsupportedFeatureError when the requested key or the issuer's key is not RSA.
 */
export function signCertificateSigningRequest(options: SignCsrOptions): string {
  const issuer = loadIssuer(options.issuer);
  const request = parseCsr(options.csr, 'csr');
  const profile = options.profile ?? 'device';
  if (profile !== 'device' && profile !== 'server') {
    throw new ArgumentError(`profile must be 'device' or 'server'`, { field: 'profile' });
  }
  if (!request.subject.commonName) throw new ArgumentError('csr has no subject common name', { field: 'csr' });
  const dnsNames = options.dnsNames ?? request.dnsNames;
  const ipAddresses = options.ipAddresses ?? request.ipAddresses;
  const hasNames = dnsNames.length > 0 || ipAddresses.length > 0;
  if (profile === 'server' && !hasNames) {
    throw new ArgumentError('a server certificate needs dnsNames or ipAddresses', { field: 'dnsNames' });
  }
  return issueLeaf({
    issuer,
    subject: request.subjectAttributes,
    publicKey: request.forgePublicKey,
    validity: validity(options, 365),
    usage: profile === 'server' ? 'serverAuth' : 'clientAuth',
    ...(hasNames ? { altNames: altNames(dnsNames, ipAddresses, 'csr') } : {}),
  });
}
