import { createPrivateKey, createPublicKey, generateKeyPair as generateNodeKeyPair, type KeyObject } from 'node:crypto';
import { ArgumentError, UnsupportedFeatureError } from '@fieldhub/protocol';
import { throwIfAborted } from '../hmac';

/**
 * The key algorithm of certificates the toolkit creates: RSA only. Certificates are built and signed with
 * node-forge, which cannot sign with or certify EC keys; EC certificates that devices bring are still parsed,
 * fingerprinted and verified (`parseCertificate`, `verifyCertificateChain`).
 */
export type KeyType = 'rsa';

/** How to get the subject's key when issuing: generate an RSA pair (`rsaBits`) or use a given RSA public key. */
export interface KeyOptions {
  /** Generate this kind of key. Only `'rsa'` (the default); EC creation is not supported. */
  keyType?: KeyType;
  /** RSA modulus size when generating. Default 2048. */
  rsaBits?: number;
  /** Certify this RSA public key (PEM, SPKI) instead of generating a pair; the result then has no private key. */
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
 * Generates an RSA key pair with Node's crypto (OpenSSL, asynchronous), much faster than pure-JS generation.
 * @throws ArgumentError when `rsaBits` is not an integer from 2048 to 8192.
 * @throws UnsupportedFeatureError when `keyType` is not `'rsa'` (EC keys are not supported for creation).
 * @throws AbortError when `signal` aborts (the result of a generation already running is discarded).
 */
export async function generateKeyPair(
  options: { keyType?: KeyType; rsaBits?: number; signal?: AbortSignal } = {},
): Promise<KeyPairPem> {
  throwIfAborted(options.signal);
  const bits = checkKeyOptions(options);
  const pair = await new Promise<KeyPairPem>((resolve, reject) => {
    generateNodeKeyPair(
      'rsa',
      {
        modulusLength: bits,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      },
      (error, publicKey, privateKey) => (error ? reject(error) : resolve({ publicKey, privateKey })),
    );
  });
  throwIfAborted(options.signal);
  return pair;
}

function checkKeyOptions(options: { keyType?: unknown; rsaBits?: number }): number {
  if (options.keyType !== undefined && options.keyType !== 'rsa') {
    throw new UnsupportedFeatureError(
      `keyType ${JSON.stringify(options.keyType)} is not supported: certificates are created with node-forge, ` +
        "RSA only (keyType 'rsa')",
    );
  }
  const bits = options.rsaBits ?? 2048;
  if (!Number.isInteger(bits) || bits < 2048 || bits > 8192) {
    throw new ArgumentError('rsaBits must be an integer from 2048 to 8192', { field: 'rsaBits' });
  }
  return bits;
}

/** @internal Loads a PEM private key with Node. @throws ArgumentError naming `field`. */
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

/** @internal Loads a PEM (SPKI) public key with Node. @throws ArgumentError naming `field`. */
export function loadPublicKey(pem: unknown, field: string): KeyObject {
  if (typeof pem !== 'string') throw new ArgumentError(`${field} must be a PEM public key`, { field });
  try {
    return createPublicKey(pem);
  } catch (error) {
    throw new ArgumentError(`${field} is not a readable public key`, { field, cause: error });
  }
}

/**
 * @internal Resolves the subject key of a certificate being issued: the given public key, or a generated pair.
 * @throws ArgumentError on a bad key option; UnsupportedFeatureError for a non-RSA `keyType`; AbortError.
 */
export async function subjectKey(
  options: KeyOptions,
  field: string,
): Promise<{ publicKey: KeyObject; privateKey: string | undefined }> {
  if (options.publicKey !== undefined) {
    return { publicKey: loadPublicKey(options.publicKey, `${field}.publicKey`), privateKey: undefined };
  }
  const pair = await generateKeyPair({
    ...(options.keyType ? { keyType: options.keyType } : {}),
    ...(options.rsaBits ? { rsaBits: options.rsaBits } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { publicKey: createPublicKey(pair.publicKey), privateKey: pair.privateKey };
}
