import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateNodeKeyPair,
  type KeyObject,
  sign,
} from 'node:crypto';
import { ArgumentError } from '@fieldhub/protocol';
import { throwIfAborted } from '../hmac';
import * as der from './der';

const pemEncoding = {
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
} as const;

function settle(resolve: (pair: KeyPairPem) => void, reject: (error: Error) => void) {
  return (error: Error | null, publicKey: string, privateKey: string): void =>
    error ? reject(error) : resolve({ publicKey, privateKey });
}

function generate(type: 'rsa' | 'ec', bits: number): Promise<KeyPairPem> {
  return new Promise((resolve, reject) => {
    if (type === 'ec') generateNodeKeyPair('ec', { namedCurve: 'P-256', ...pemEncoding }, settle(resolve, reject));
    else generateNodeKeyPair('rsa', { modulusLength: bits, ...pemEncoding }, settle(resolve, reject));
  });
}

/** The key algorithms certificates can be made with: RSA (default, 2048 bits) or ECDSA on P-256. */
export type KeyType = 'rsa' | 'ec';

/** How to get the subject's key when issuing: generate one (`keyType`, `rsaBits`) or use a given public key. */
export interface KeyOptions {
  /** Generate this kind of key. Default `'rsa'`. */
  keyType?: KeyType;
  /** RSA modulus size when generating. Default 2048. */
  rsaBits?: number;
  /** Certify this public key (PEM, SPKI) instead of generating a pair; the result then has no private key. */
  publicKey?: string;
  /** Abandons the operation (key generation is the slow part). */
  signal?: AbortSignal;
}

/** A key pair as PEM: PKCS#8 private key, SPKI public key. */
export interface KeyPairPem {
  privateKey: string;
  publicKey: string;
}

/**
 * Generates a key pair with Node's crypto (OpenSSL), much faster than pure-JS generation.
 * @throws ArgumentError when `rsaBits` is not an integer from 2048 to 8192.
 * @throws AbortError when `signal` aborts (the result of a generation already running is discarded).
 */
export async function generateKeyPair(
  options: { keyType?: KeyType; rsaBits?: number; signal?: AbortSignal } = {},
): Promise<KeyPairPem> {
  throwIfAborted(options.signal);
  const pair = await generateUnchecked(options);
  throwIfAborted(options.signal);
  return pair;
}

function generateUnchecked(options: { keyType?: KeyType; rsaBits?: number }): Promise<KeyPairPem> {
  if (options.keyType === 'ec') return generate('ec', 0);
  if (options.keyType !== undefined && options.keyType !== 'rsa') {
    throw new ArgumentError(`keyType must be 'rsa' or 'ec'`, { field: 'keyType' });
  }
  const bits = options.rsaBits ?? 2048;
  if (!Number.isInteger(bits) || bits < 2048 || bits > 8192) {
    throw new ArgumentError('rsaBits must be an integer from 2048 to 8192', { field: 'rsaBits' });
  }
  return generate('rsa', bits);
}

/** @internal Loads a PEM private key. @throws ArgumentError naming `field`. */
export function loadPrivateKey(pem: unknown, field: string): KeyObject {
  if (typeof pem !== 'string' || !pem.includes('PRIVATE KEY-----')) {
    throw new ArgumentError(`${field} must be a PEM private key`, { field });
  }
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new ArgumentError(`${field} is not a readable private key`, { field, cause: error });
  }
}

/** @internal Loads a PEM (SPKI) public key and returns its DER. @throws ArgumentError naming `field`. */
export function loadPublicKeyDer(pem: unknown, field: string): Buffer {
  if (typeof pem !== 'string') throw new ArgumentError(`${field} must be a PEM public key`, { field });
  try {
    return createPublicKey(pem).export({ type: 'spki', format: 'der' });
  } catch (error) {
    throw new ArgumentError(`${field} is not a readable public key`, { field, cause: error });
  }
}

/** @internal SPKI DER of a private key's public half. */
export function publicKeyDerOf(privateKey: KeyObject): Buffer {
  return createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
}

/** @internal Resolves the subject key of a certificate being issued: given, or generated. */
export async function subjectKey(
  options: KeyOptions,
  field: string,
): Promise<{ spki: Buffer; privateKey: string | undefined }> {
  if (options.publicKey !== undefined) {
    return { spki: loadPublicKeyDer(options.publicKey, `${field}.publicKey`), privateKey: undefined };
  }
  const pair = await generateKeyPair({
    ...(options.keyType ? { keyType: options.keyType } : {}),
    ...(options.rsaBits ? { rsaBits: options.rsaBits } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { spki: loadPublicKeyDer(pair.publicKey, field), privateKey: pair.privateKey };
}

/** @internal The AlgorithmIdentifier (DER) and signer for a signing key: SHA-256 with RSA or ECDSA. */
export function signerFor(key: KeyObject, field: string): { algorithm: Buffer; sign: (data: Buffer) => Buffer } {
  if (key.asymmetricKeyType === 'rsa') {
    return {
      algorithm: der.sequence(der.oid('1.2.840.113549.1.1.11'), der.nullValue()),
      sign: (data) => sign('sha256', data, key),
    };
  }
  if (key.asymmetricKeyType === 'ec') {
    return { algorithm: der.sequence(der.oid('1.2.840.10045.4.3.2')), sign: (data) => sign('sha256', data, key) };
  }
  throw new ArgumentError(`${field} must be an RSA or EC key (got ${key.asymmetricKeyType})`, { field });
}

/** @internal Hash name for a signature AlgorithmIdentifier OID, for verifying CSRs. */
export function hashForSignatureOid(oid: string): string | undefined {
  const table: Record<string, string> = {
    '1.2.840.113549.1.1.5': 'sha1',
    '1.2.840.113549.1.1.11': 'sha256',
    '1.2.840.113549.1.1.12': 'sha384',
    '1.2.840.113549.1.1.13': 'sha512',
    '1.2.840.10045.4.3.2': 'sha256',
    '1.2.840.10045.4.3.3': 'sha384',
    '1.2.840.10045.4.3.4': 'sha512',
  };
  return table[oid];
}
