/**
 * @fieldhub/auth: SAS tokens (sign, parse, verify, renewal schedule) and X.509 certificates (CAs, device and
 * server certificates, CSRs, thumbprints, chain checks, proof of possession) on node-forge.
 * Depends only on @fieldhub/protocol and node-forge.
 * @packageDocumentation
 */
export * from './sas-token';
export * from './x509';
