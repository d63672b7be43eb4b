/**
 * @fieldhub/auth: SAS tokens (sign, parse, verify, renewal schedule, DPS group-key derivation) and X.509
 * certificates (CAs, device and server certificates, CSRs, thumbprints, chain checks, proof of possession).
 *
 * Depends on @fieldhub/protocol and node-forge. The SAS half is portable (Web Crypto, or the pure-JS HMAC of
 * @fieldhub/protocol); the X.509 half needs Node: node-forge builds and signs certificates and CSRs (RSA only),
 * node:crypto generates keys and, through `X509Certificate`, parses, fingerprints and verifies (RSA and EC).
 *
 * @example
 * ```ts
 * import { createSasToken, verifySasToken } from '@fieldhub/auth';
 * const token = await createSasToken({ resourceUri: 'myhub.example/devices/d1', key, ttlSeconds: 3600 });
 * const { resourceUri } = await verifySasToken(token, { keys: [key], resourceUri: 'myhub.example/devices/d1' });
 * ```
 * @packageDocumentation
 */
export * from './sas-renewal';
export * from './sas-token';
export * from './symmetric-key';
export * from './x509/index';
