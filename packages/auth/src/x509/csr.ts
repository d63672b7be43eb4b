import { Buffer } from 'node:buffer';
import { createPublicKey, verify } from 'node:crypto';
import { ArgumentError } from '@fieldhub/protocol';
import {
  type CertificateWithKey,
  issueLeaf,
  loadIssuer,
  type SubjectOptions,
  type ValidityOptions,
  validity,
} from './certificate-authority';
import * as der from './der';
import { generateKeyPair, hashForSignatureOid, type KeyType, loadPrivateKey, publicKeyDerOf, signerFor } from './keys';
import {
  type DistinguishedName,
  decodeName,
  decodeSubjectAltName,
  ExtendedKeyUsage,
  ExtensionOid,
  encodeName,
  encodeSubjectAltName,
  extension,
} from './names';
import { derToPem, pemToDer } from './pem';

/** Options of {@link createCertificateSigningRequest}. */
export interface CreateCsrOptions extends SubjectOptions {
  /** Subject CN (a device id, or a host name for a server). */
  commonName: string;
  /** Requested subjectAltName DNS names. */
  dnsNames?: readonly string[];
  /** Requested subjectAltName IP addresses. */
  ipAddresses?: readonly string[];
  /** Sign with this PEM private key; otherwise a key pair is generated (`keyType`, default RSA 2048). */
  privateKey?: string;
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
 * Creates a PKCS#10 certificate signing request (PEM `CERTIFICATE REQUEST`), with a subjectAltName extension
 * request when names are given.
 * @throws ArgumentError on a bad common name, name, or private key.
 * @throws AbortError when `signal` aborts.
 */
export async function createCertificateSigningRequest(options: CreateCsrOptions): Promise<CsrWithKey> {
  if (typeof options.commonName !== 'string' || options.commonName.length === 0) {
    throw new ArgumentError('commonName must be a non-empty string', { field: 'commonName' });
  }
  const subject = encodeName(
    {
      commonName: options.commonName,
      ...(options.organization === undefined ? {} : { organization: options.organization }),
      ...(options.organizationalUnit === undefined ? {} : { organizationalUnit: options.organizationalUnit }),
      ...(options.country === undefined ? {} : { country: options.country }),
    },
    'subject',
  );
  const dnsNames = options.dnsNames ?? [];
  const ipAddresses = options.ipAddresses ?? [];
  const attributes: Buffer[] = [];
  if (dnsNames.length > 0 || ipAddresses.length > 0) {
    const san = extension(ExtensionOid.subjectAltName, encodeSubjectAltName(dnsNames, ipAddresses, 'csr'));
    attributes.push(der.sequence(der.oid(ExtensionOid.extensionRequest), der.set(der.sequence(san))));
  }
  const privateKey =
    options.privateKey ??
    (
      await generateKeyPair({
        ...(options.keyType ? { keyType: options.keyType } : {}),
        ...(options.rsaBits ? { rsaBits: options.rsaBits } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      })
    ).privateKey;
  const key = loadPrivateKey(privateKey, 'privateKey');
  const signer = signerFor(key, 'privateKey');
  const info = der.sequence(
    der.smallInteger(0),
    subject,
    publicKeyDerOf(key),
    der.tlv(0xa0, Buffer.concat(attributes)),
  );
  const csr = derToPem(der.sequence(info, signer.algorithm, der.bitString(signer.sign(info))), 'CERTIFICATE REQUEST');
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
  subjectRaw: Buffer;
  spkiRaw: Buffer;
}

function parseCsr(pem: unknown, field: string): ParsedCsr {
  const bytes = pemToDer(pem, 'CERTIFICATE REQUEST', field);
  let parsed: ParsedCsr;
  let signatureOk: boolean;
  try {
    const [info, algorithm, signature] = der.children(der.readNode(bytes));
    if (!info || !algorithm || !signature) throw new Error('short CertificationRequest');
    const [version, subject, spki, attributes] = der.children(info);
    if (!version || !subject || !spki) throw new Error('short CertificationRequestInfo');
    const algorithmOid = der.decodeOid(der.children(algorithm)[0]?.value ?? Buffer.alloc(0));
    const hash = hashForSignatureOid(algorithmOid);
    if (!hash) throw new Error(`unsupported signature algorithm ${algorithmOid}`);
    const publicKey = createPublicKey({ key: Buffer.from(spki.raw), format: 'der', type: 'spki' });
    signatureOk = verify(hash, info.raw, publicKey, signature.value.subarray(1));
    let dnsNames: string[] = [];
    let ipAddresses: string[] = [];
    for (const attribute of attributes ? der.children(attributes) : []) {
      const [type, values] = der.children(attribute);
      if (!type || !values || der.decodeOid(type.value) !== ExtensionOid.extensionRequest) continue;
      const extensions = der.children(values)[0];
      for (const ext of extensions ? der.children(extensions) : []) {
        const items = der.children(ext);
        if (der.decodeOid(items[0]?.value ?? Buffer.alloc(0)) !== ExtensionOid.subjectAltName) continue;
        ({ dnsNames, ipAddresses } = decodeSubjectAltName(items[items.length - 1]?.value ?? Buffer.alloc(0)));
      }
    }
    parsed = {
      subject: decodeName(subject),
      dnsNames,
      ipAddresses,
      publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      subjectRaw: Buffer.from(subject.raw),
      spkiRaw: Buffer.from(spki.raw),
    };
  } catch (error) {
    throw new ArgumentError(`${field} could not be decoded: ${(error as Error).message}`, { field, cause: error });
  }
  if (!signatureOk) throw new ArgumentError(`${field} has an invalid self-signature`, { field });
  return parsed;
}

/**
 * Reads a PEM CSR and checks its self-signature (proof that the requester holds the key).
 * @throws ArgumentError (field `csr`) when the text is not a CSR, or its signature does not verify.
 */
export function parseCertificateSigningRequest(pem: string): CsrInfo {
  const { subjectRaw: _s, spkiRaw: _k, ...info } = parseCsr(pem, 'csr');
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
 * Issues a certificate for a CSR: the subject and public key are copied from the request (after checking its
 * signature); usages follow `profile`; SANs come from the request unless overridden. Returns PEM.
 * @throws ArgumentError when the CSR or issuer is bad, or a server profile has no names.
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
    subjectName: request.subjectRaw,
    spki: request.spkiRaw,
    validity: validity(options, 365),
    usages: [profile === 'server' ? ExtendedKeyUsage.serverAuth : ExtendedKeyUsage.clientAuth],
    ...(hasNames ? { subjectAltName: encodeSubjectAltName(dnsNames, ipAddresses, 'csr') } : {}),
  });
}
