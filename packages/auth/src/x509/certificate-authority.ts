import { ArgumentError } from '@fieldhub/protocol';
import { loadCertificate, type ParsedCertificate } from './certificate';
import {
  type ForgeAltName,
  type ForgeAttribute,
  type ForgeExtension,
  type ForgeIssuer,
  type ForgePrivateKey,
  type ForgePublicKey,
  forgeIssuer,
  publicKeyOf,
  signCertificate,
  toForgePrivateKey,
  toForgePublicKey,
} from './forge';
import { generateKeyPair, type KeyOptions, loadPrivateKey, subjectKey } from './keys';
import { altNames, nameAttributes } from './names';

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

function subjectName(commonName: unknown, options: SubjectOptions, field: string): ForgeAttribute[] {
  if (typeof commonName !== 'string' || commonName.length === 0) {
    throw new ArgumentError(`${field} must be a non-empty string`, { field });
  }
  return nameAttributes({ commonName, ...pickSubject(options) }, 'subject');
}

function pickSubject(options: SubjectOptions): SubjectOptions {
  const out: SubjectOptions = {};
  if (options.organization !== undefined) out.organization = options.organization;
  if (options.organizationalUnit !== undefined) out.organizationalUnit = options.organizationalUnit;
  if (options.country !== undefined) out.country = options.country;
  return out;
}

/** @internal A loaded issuer: the certificate (Node's parse), its key (forge) and what a child copies from it. */
export interface LoadedIssuer extends ForgeIssuer {
  certificate: ParsedCertificate;
  key: ForgePrivateKey;
}

/**
 * @internal Loads and cross-checks an issuer.
 * @throws ArgumentError when either PEM is unreadable or the key does not match the certificate.
 * @throws UnsupportedFeatureError when the issuer's key is not RSA (node-forge signs with RSA only).
 */
export function loadIssuer(issuer: CertificateWithKey | undefined, field = 'issuer'): LoadedIssuer {
  if (typeof issuer !== 'object' || issuer === null) {
    throw new ArgumentError(`${field} must be { certificate, privateKey }`, { field });
  }
  const certificate = loadCertificate(issuer.certificate, `${field}.certificate`);
  const nodeKey = loadPrivateKey(issuer.privateKey, `${field}.privateKey`);
  let matches: boolean;
  try {
    matches = certificate.node.checkPrivateKey(nodeKey);
  } catch {
    matches = false;
  }
  if (!matches) {
    throw new ArgumentError(`${field}.privateKey does not belong to ${field}.certificate`, {
      field: `${field}.privateKey`,
    });
  }
  const key = toForgePrivateKey(nodeKey, `${field}.privateKey`);
  return { certificate, key, ...forgeIssuer(certificate.pem, `${field}.certificate`) };
}

function caExtensions(pathLength: number | undefined): ForgeExtension[] {
  return [
    {
      name: 'basicConstraints',
      critical: true,
      cA: true,
      ...(pathLength === undefined ? {} : { pathLenConstraint: pathLength }),
    },
    { name: 'keyUsage', critical: true, digitalSignature: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
  ];
}

function leafExtensions(usage: 'serverAuth' | 'clientAuth'): ForgeExtension[] {
  return [
    { name: 'basicConstraints', critical: true },
    { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', [usage]: true },
    { name: 'subjectKeyIdentifier' },
  ];
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
 * Creates a self-signed root CA (basicConstraints cA, keyCertSign + cRLSign) with a new RSA key (2048 bits unless
 * `rsaBits`), built and signed (SHA-256) with node-forge. RSA only: EC CAs cannot be created.
 * @throws ArgumentError on a bad common name, subject field, validity or key option.
 * @throws UnsupportedFeatureError when `keyType` is not `'rsa'`.
 * @throws AbortError when `signal` aborts.
 */
export async function createRootCa(options: CreateRootCaOptions): Promise<CertificateWithKey> {
  checkPathLength(options.pathLength);
  const name = subjectName(options.commonName, options, 'commonName');
  const dates = validity(options, 3650);
  const { privateKey, key } = await generatedKey(options, 'a root CA');
  const certificate = signCertificate({
    subject: name,
    publicKey: publicKeyOf(key),
    ...dates,
    extensions: caExtensions(options.pathLength),
    signingKey: key,
  });
  return { certificate, privateKey };
}

async function generatedKey(
  options: Omit<KeyOptions, 'publicKey'>,
  what: string,
): Promise<{ privateKey: string; key: ForgePrivateKey }> {
  if ((options as KeyOptions).publicKey !== undefined) {
    throw new ArgumentError(`${what} needs a generated key`, { field: 'publicKey' });
  }
  const { privateKey } = await generateKeyPair({
    ...(options.keyType ? { keyType: options.keyType } : {}),
    ...(options.rsaBits ? { rsaBits: options.rsaBits } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { privateKey, key: toForgePrivateKey(loadPrivateKey(privateKey, 'privateKey'), 'privateKey') };
}

/** Options of {@link createIntermediateCa}. */
export interface CreateIntermediateCaOptions extends SubjectOptions, ValidityOptions, Omit<KeyOptions, 'publicKey'> {
  /** The CA that signs this one (RSA). */
  issuer: CertificateWithKey;
  commonName: string;
  /** basicConstraints pathLenConstraint. Default 0 (may issue only leaves). */
  pathLength?: number;
}

/**
 * Creates an intermediate CA (new RSA key) signed by `issuer` with node-forge.
 * @throws ArgumentError on a bad issuer (unreadable, not a CA, key mismatch) or bad options.
 * @throws UnsupportedFeatureError when the issuer's key is not RSA, or `keyType` is not `'rsa'`.
 * @throws AbortError when `signal` aborts.
 */
export async function createIntermediateCa(options: CreateIntermediateCaOptions): Promise<CertificateWithKey> {
  const issuer = loadIssuer(options.issuer);
  requireCa(issuer);
  const pathLength = options.pathLength ?? 0;
  checkPathLength(pathLength);
  const name = subjectName(options.commonName, options, 'commonName');
  const dates = validity(options, 3650);
  const { privateKey, key } = await generatedKey(options, 'an intermediate CA');
  const certificate = signCertificate({
    subject: name,
    issuer: issuer.name,
    publicKey: publicKeyOf(key),
    ...dates,
    extensions: [...caExtensions(pathLength), { name: 'authorityKeyIdentifier', keyIdentifier: issuer.keyIdentifier }],
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
  subject: readonly ForgeAttribute[];
  publicKey: ForgePublicKey;
  validity: { notBefore: Date; notAfter: Date };
  usage: 'serverAuth' | 'clientAuth';
  altNames?: readonly ForgeAltName[];
}): string {
  requireCa(options.issuer);
  const extensions: ForgeExtension[] = [
    ...leafExtensions(options.usage),
    { name: 'authorityKeyIdentifier', keyIdentifier: options.issuer.keyIdentifier },
  ];
  if (options.altNames && options.altNames.length > 0) {
    extensions.push({ name: 'subjectAltName', altNames: [...options.altNames] });
  }
  return signCertificate({
    subject: options.subject,
    issuer: options.issuer.name,
    publicKey: options.publicKey,
    ...options.validity,
    extensions,
    signingKey: options.issuer.key,
  });
}

/** Options of {@link issueDeviceCertificate}. */
export interface IssueDeviceCertificateOptions extends SubjectOptions, ValidityOptions, KeyOptions {
  /** The signing CA (root or intermediate, RSA). */
  issuer: CertificateWithKey;
  /** The device id, written as the subject CN (IoT Hub matches it to the device id). */
  deviceId: string;
}

/**
 * Issues a device (client) certificate with node-forge: CN = device id, extendedKeyUsage clientAuth, signed by
 * `issuer`. Generates an RSA key pair unless `publicKey` (RSA) is given.
 * @throws ArgumentError on a bad issuer, device id or option.
 * @throws UnsupportedFeatureError when the issuer's key or `publicKey` is not RSA, or `keyType` is not `'rsa'`.
 * @throws AbortError when `signal` aborts.
 */
export async function issueDeviceCertificate(options: IssueDeviceCertificateOptions): Promise<IssuedCertificate> {
  const issuer = loadIssuer(options.issuer);
  const name = subjectName(options.deviceId, options, 'deviceId');
  const dates = validity(options, 365);
  const { publicKey, privateKey } = await subjectKey(options, 'device');
  const certificate = issueLeaf({
    issuer,
    subject: name,
    publicKey: toForgePublicKey(publicKey, 'device.publicKey'),
    validity: dates,
    usage: 'clientAuth',
  });
  return privateKey ? { certificate, privateKey } : { certificate };
}

/** Options of {@link issueServerCertificate}. */
export interface IssueServerCertificateOptions extends SubjectOptions, ValidityOptions, KeyOptions {
  /** The signing CA (RSA). */
  issuer: CertificateWithKey;
  /** Subject CN. Default: the first DNS name, else the first IP address. */
  commonName?: string;
  /** subjectAltName DNS names (what TLS clients check). */
  dnsNames?: readonly string[];
  /** subjectAltName IP addresses (IPv4 or IPv6). */
  ipAddresses?: readonly string[];
}

/**
 * Issues a TLS server certificate with node-forge: SANs from `dnsNames` and `ipAddresses`, extendedKeyUsage
 * serverAuth. Generates an RSA key pair unless `publicKey` (RSA) is given.
 * @throws ArgumentError when there is no name at all, a name is malformed, or the issuer is bad.
 * @throws UnsupportedFeatureError when the issuer's key or `publicKey` is not RSA, or `keyType` is not `'rsa'`.
 * @throws AbortError when `signal` aborts.
 */
export async function issueServerCertificate(options: IssueServerCertificateOptions): Promise<IssuedCertificate> {
  const issuer = loadIssuer(options.issuer);
  const dnsNames = options.dnsNames ?? [];
  const ipAddresses = options.ipAddresses ?? [];
  if (dnsNames.length === 0 && ipAddresses.length === 0) {
    throw new ArgumentError('a server certificate needs dnsNames or ipAddresses', { field: 'dnsNames' });
  }
  const san = altNames(dnsNames, ipAddresses, 'server');
  const name = subjectName(options.commonName ?? dnsNames[0] ?? ipAddresses[0], options, 'commonName');
  const dates = validity(options, 365);
  const { publicKey, privateKey } = await subjectKey(options, 'server');
  const certificate = issueLeaf({
    issuer,
    subject: name,
    publicKey: toForgePublicKey(publicKey, 'server.publicKey'),
    validity: dates,
    usage: 'serverAuth',
    altNames: san,
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
 * Creates a self-signed leaf certificate (new RSA key) with clientAuth, for devices that authenticate by
 * thumbprint (IoT Hub `authentication.type: 'selfSigned'`). Built and signed with node-forge.
 * @throws ArgumentError on bad options.
 * @throws UnsupportedFeatureError when `keyType` is not `'rsa'`.
 * @throws AbortError when `signal` aborts.
 */
export async function createSelfSignedCertificate(
  options: CreateSelfSignedCertificateOptions,
): Promise<CertificateWithKey> {
  const name = subjectName(options.commonName, options, 'commonName');
  const dates = validity(options, 365);
  const { privateKey, key } = await generatedKey(options, 'a self-signed certificate');
  const certificate = signCertificate({
    subject: name,
    publicKey: publicKeyOf(key),
    ...dates,
    extensions: leafExtensions('clientAuth'),
    signingKey: key,
  });
  return { certificate, privateKey };
}
