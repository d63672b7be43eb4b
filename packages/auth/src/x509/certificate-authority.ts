import type { Buffer } from 'node:buffer';
import type { KeyObject } from 'node:crypto';
import { ArgumentError } from '@fieldhub/protocol';
import { buildCertificate, keyIdentifier, loadCertificate, type ParsedCertificate } from './certificate';
import * as der from './der';
import { type KeyOptions, loadPrivateKey, publicKeyDerOf, subjectKey } from './keys';
import { ExtendedKeyUsage, ExtensionOid, encodeName, encodeSubjectAltName, extension, keyUsage } from './names';

/** A certificate with its private key, both PEM. */
export interface CertificateWithKey {
  certificate: string;
  privateKey: string;
}

/** An issued certificate; `privateKey` is absent when the caller supplied the public key (or a CSR). */
export interface IssuedCertificate {
  certificate: string;
  privateKey?: string;
}

/**
 * When a certificate is valid. Defaults: `notBefore` = now − 5 minutes (tolerates clock skew between issuer and
 * verifier), `notAfter` = now + `validityDays`.
 */
export interface ValidityOptions {
  /** The clock. Default `new Date()`. */
  now?: Date;
  notBefore?: Date;
  notAfter?: Date;
  /** Lifetime from now when `notAfter` is not given. Defaults: CAs 3650, leaves 365. */
  validityDays?: number;
}

/** Subject fields besides the common name. */
export interface SubjectOptions {
  organization?: string;
  organizationalUnit?: string;
  country?: string;
}

const dayMs = 86_400_000;
const backdateMs = 5 * 60_000;

/** @internal */
export function validity(options: ValidityOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const now = options.now ?? new Date();
  const days = options.validityDays ?? defaultDays;
  if (!Number.isFinite(days) || days <= 0) {
    throw new ArgumentError('validityDays must be a positive number', { field: 'validityDays' });
  }
  const notBefore = options.notBefore ?? new Date(now.getTime() - backdateMs);
  const notAfter = options.notAfter ?? new Date(now.getTime() + days * dayMs);
  for (const [field, date] of [
    ['notBefore', notBefore],
    ['notAfter', notAfter],
  ] as const) {
    if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
      throw new ArgumentError(`${field} must be a valid Date`, { field });
    }
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new ArgumentError('notAfter must be later than notBefore', { field: 'notAfter' });
  }
  return { notBefore, notAfter };
}

function subjectName(commonName: unknown, options: SubjectOptions, field: string): Buffer {
  if (typeof commonName !== 'string' || commonName.length === 0) {
    throw new ArgumentError(`${field} must be a non-empty string`, { field });
  }
  return encodeName({ commonName, ...pickSubject(options) }, 'subject');
}

function pickSubject(options: SubjectOptions): SubjectOptions {
  const out: SubjectOptions = {};
  if (options.organization !== undefined) out.organization = options.organization;
  if (options.organizationalUnit !== undefined) out.organizationalUnit = options.organizationalUnit;
  if (options.country !== undefined) out.country = options.country;
  return out;
}

/** @internal A loaded issuer: certificate, key, and the pieces a child certificate copies. */
export interface LoadedIssuer {
  certificate: ParsedCertificate;
  key: KeyObject;
}

/**
 * @internal Loads and cross-checks an issuer.
 * @throws ArgumentError when either PEM is unreadable, the certificate is not a CA, or the key does not match it.
 */
export function loadIssuer(issuer: CertificateWithKey | undefined, field = 'issuer'): LoadedIssuer {
  if (typeof issuer !== 'object' || issuer === null) {
    throw new ArgumentError(`${field} must be { certificate, privateKey }`, { field });
  }
  const certificate = loadCertificate(issuer.certificate, `${field}.certificate`);
  const key = loadPrivateKey(issuer.privateKey, `${field}.privateKey`);
  if (!publicKeyDerOf(key).equals(certificate.spkiRaw)) {
    throw new ArgumentError(`${field}.privateKey does not belong to ${field}.certificate`, {
      field: `${field}.privateKey`,
    });
  }
  return { certificate, key };
}

function authorityKeyIdentifier(issuer: LoadedIssuer): Buffer {
  const id = issuer.certificate.subjectKeyIdentifier ?? keyIdentifier(issuer.certificate.spkiRaw);
  return extension(ExtensionOid.authorityKeyIdentifier, der.sequence(der.implicitPrimitive(0, id)));
}

function caExtensions(spki: Buffer, pathLength: number | undefined): Buffer[] {
  const constraints = der.sequence(
    der.boolean(true),
    ...(pathLength === undefined ? [] : [der.smallInteger(pathLength)]),
  );
  return [
    extension(ExtensionOid.basicConstraints, constraints, true),
    keyUsage([0, 5, 6]),
    extension(ExtensionOid.subjectKeyIdentifier, der.octetString(keyIdentifier(spki))),
  ];
}

function leafExtensions(spki: Buffer, usages: readonly string[], isRsa: boolean): Buffer[] {
  return [
    extension(ExtensionOid.basicConstraints, der.sequence(), true),
    keyUsage(isRsa ? [0, 2] : [0]),
    extension(ExtensionOid.extendedKeyUsage, der.sequence(...usages.map((usage) => der.oid(usage)))),
    extension(ExtensionOid.subjectKeyIdentifier, der.octetString(keyIdentifier(spki))),
  ];
}

function isRsaSpki(spki: Buffer): boolean {
  const algorithm = der.children(der.readNode(spki))[0];
  const oid = algorithm ? der.children(algorithm)[0] : undefined;
  return oid ? der.decodeOid(oid.value) === '1.2.840.113549.1.1.1' : false;
}

function checkPathLength(pathLength: number | undefined): void {
  if (pathLength !== undefined && (!Number.isInteger(pathLength) || pathLength < 0 || pathLength > 255)) {
    throw new ArgumentError('pathLength must be an integer from 0 to 255', { field: 'pathLength' });
  }
}

/** Options of {@link createRootCa}. */
export interface CreateRootCaOptions extends SubjectOptions, ValidityOptions, Omit<KeyOptions, 'publicKey'> {
  commonName: string;
  /** basicConstraints pathLenConstraint; default none (any depth). */
  pathLength?: number;
}

/**
 * Creates a self-signed root CA (basicConstraints cA, keyCertSign + cRLSign). RSA 2048 unless `keyType: 'ec'`.
 * @throws ArgumentError on a bad common name, subject field, validity or key option.
 * @throws AbortError when `signal` aborts.
 */
export async function createRootCa(options: CreateRootCaOptions): Promise<CertificateWithKey> {
  checkPathLength(options.pathLength);
  const name = subjectName(options.commonName, options, 'commonName');
  const dates = validity(options, 3650);
  const { spki, privateKey } = await subjectKey(options, 'rootCa');
  if (!privateKey) throw new ArgumentError('a root CA needs a generated key', { field: 'publicKey' });
  const key = loadPrivateKey(privateKey, 'privateKey');
  const certificate = buildCertificate({
    subjectName: name,
    issuerName: name,
    spki,
    ...dates,
    extensions: caExtensions(spki, options.pathLength),
    signingKey: key,
  });
  return { certificate, privateKey };
}

/** Options of {@link createIntermediateCa}. */
export interface CreateIntermediateCaOptions extends SubjectOptions, ValidityOptions, Omit<KeyOptions, 'publicKey'> {
  /** The CA that signs this one. */
  issuer: CertificateWithKey;
  commonName: string;
  /** basicConstraints pathLenConstraint. Default 0 (may issue only leaves). */
  pathLength?: number;
}

/**
 * Creates an intermediate CA signed by `issuer`.
 * @throws ArgumentError on a bad issuer (unreadable, not a CA, key mismatch) or bad options.
 * @throws AbortError when `signal` aborts.
 */
export async function createIntermediateCa(options: CreateIntermediateCaOptions): Promise<CertificateWithKey> {
  const issuer = loadIssuer(options.issuer);
  requireCa(issuer);
  const pathLength = options.pathLength ?? 0;
  checkPathLength(pathLength);
  const name = subjectName(options.commonName, options, 'commonName');
  const dates = validity(options, 3650);
  const { spki, privateKey } = await subjectKey(options, 'intermediateCa');
  if (!privateKey) throw new ArgumentError('an intermediate CA needs a generated key', { field: 'publicKey' });
  const certificate = buildCertificate({
    subjectName: name,
    issuerName: issuer.certificate.subjectRaw,
    spki,
    ...dates,
    extensions: [...caExtensions(spki, pathLength), authorityKeyIdentifier(issuer)],
    signingKey: issuer.key,
  });
  return { certificate, privateKey };
}

function requireCa(issuer: LoadedIssuer): void {
  if (!issuer.certificate.isCa) {
    throw new ArgumentError('issuer.certificate is not a CA certificate', { field: 'issuer.certificate' });
  }
}

/** @internal Issues a leaf for a given subject name and key, signed by a loaded issuer. */
export function issueLeaf(options: {
  issuer: LoadedIssuer;
  subjectName: Buffer;
  spki: Buffer;
  validity: { notBefore: Date; notAfter: Date };
  usages: readonly string[];
  subjectAltName?: Buffer;
}): string {
  requireCa(options.issuer);
  const extensions = [
    ...leafExtensions(options.spki, options.usages, isRsaSpki(options.spki)),
    authorityKeyIdentifier(options.issuer),
  ];
  if (options.subjectAltName) extensions.push(extension(ExtensionOid.subjectAltName, options.subjectAltName));
  return buildCertificate({
    subjectName: options.subjectName,
    issuerName: options.issuer.certificate.subjectRaw,
    spki: options.spki,
    ...options.validity,
    extensions,
    signingKey: options.issuer.key,
  });
}

/** Options of {@link issueDeviceCertificate}. */
export interface IssueDeviceCertificateOptions extends SubjectOptions, ValidityOptions, KeyOptions {
  /** The signing CA (root or intermediate). */
  issuer: CertificateWithKey;
  /** The device id, written as the subject CN (IoT Hub matches it to the device id). */
  deviceId: string;
}

/**
 * Issues a device (client) certificate: CN = device id, extendedKeyUsage clientAuth, signed by `issuer`.
 * Generates the key pair unless `publicKey` is given.
 * @throws ArgumentError on a bad issuer, device id or option.
 * @throws AbortError when `signal` aborts.
 */
export async function issueDeviceCertificate(options: IssueDeviceCertificateOptions): Promise<IssuedCertificate> {
  const issuer = loadIssuer(options.issuer);
  const name = subjectName(options.deviceId, options, 'deviceId');
  const dates = validity(options, 365);
  const { spki, privateKey } = await subjectKey(options, 'device');
  const certificate = issueLeaf({
    issuer,
    subjectName: name,
    spki,
    validity: dates,
    usages: [ExtendedKeyUsage.clientAuth],
  });
  return privateKey ? { certificate, privateKey } : { certificate };
}

/** Options of {@link issueServerCertificate}. */
export interface IssueServerCertificateOptions extends SubjectOptions, ValidityOptions, KeyOptions {
  issuer: CertificateWithKey;
  /** Subject CN. Default: the first DNS name, else the first IP address. */
  commonName?: string;
  /** subjectAltName DNS names (what TLS clients check). */
  dnsNames?: readonly string[];
  /** subjectAltName IP addresses (IPv4 or IPv6). */
  ipAddresses?: readonly string[];
}

/**
 * Issues a TLS server certificate: SANs from `dnsNames` and `ipAddresses`, extendedKeyUsage serverAuth.
 * @throws ArgumentError when there is no name at all, a name is malformed, or the issuer is bad.
 * @throws AbortError when `signal` aborts.
 */
export async function issueServerCertificate(options: IssueServerCertificateOptions): Promise<IssuedCertificate> {
  const issuer = loadIssuer(options.issuer);
  const dnsNames = options.dnsNames ?? [];
  const ipAddresses = options.ipAddresses ?? [];
  if (dnsNames.length === 0 && ipAddresses.length === 0) {
    throw new ArgumentError('a server certificate needs dnsNames or ipAddresses', { field: 'dnsNames' });
  }
  const san = encodeSubjectAltName(dnsNames, ipAddresses, 'server');
  const name = subjectName(options.commonName ?? dnsNames[0] ?? ipAddresses[0], options, 'commonName');
  const dates = validity(options, 365);
  const { spki, privateKey } = await subjectKey(options, 'server');
  const certificate = issueLeaf({
    issuer,
    subjectName: name,
    spki,
    validity: dates,
    usages: [ExtendedKeyUsage.serverAuth],
    subjectAltName: san,
  });
  return privateKey ? { certificate, privateKey } : { certificate };
}

/** Options of {@link createSelfSignedCertificate}. */
export interface CreateSelfSignedCertificateOptions
  extends SubjectOptions,
    ValidityOptions,
    Omit<KeyOptions, 'publicKey'> {
  /** Subject CN (the device id for IoT Hub's `selfSigned` thumbprint authentication). */
  commonName: string;
}

/**
 * Creates a self-signed leaf certificate with clientAuth, for devices that authenticate by thumbprint
 * (IoT Hub `authentication.type: 'selfSigned'`).
 * @throws ArgumentError on bad options.
 * @throws AbortError when `signal` aborts.
 */
export async function createSelfSignedCertificate(
  options: CreateSelfSignedCertificateOptions,
): Promise<CertificateWithKey> {
  const name = subjectName(options.commonName, options, 'commonName');
  const dates = validity(options, 365);
  const { spki, privateKey } = await subjectKey(options, 'selfSigned');
  if (!privateKey) throw new ArgumentError('a self-signed certificate needs a generated key', { field: 'publicKey' });
  const certificate = buildCertificate({
    subjectName: name,
    issuerName: name,
    spki,
    ...dates,
    extensions: leafExtensions(spki, [ExtendedKeyUsage.clientAuth], isRsaSpki(spki)),
    signingKey: loadPrivateKey(privateKey, 'privateKey'),
  });
  return { certificate, privateKey };
}
