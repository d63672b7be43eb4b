export { type CertificateInfo, parseCertificate } from './certificate';
export {
  type CertificateWithKey,
  type CreateIntermediateCaOptions,
  type CreateRootCaOptions,
  type CreateSelfSignedCertificateOptions,
  createIntermediateCa,
  createRootCa,
  createSelfSignedCertificate,
  type IssueDeviceCertificateOptions,
  type IssuedCertificate,
  type IssueServerCertificateOptions,
  issueDeviceCertificate,
  issueServerCertificate,
  type SubjectOptions,
  type ValidityOptions,
} from './certificate-authority';
export { type VerifiedChain, type VerifyChainOptions, verifyCertificateChain } from './chain';
export {
  type CreateCsrOptions,
  type CsrInfo,
  type CsrWithKey,
  createCertificateSigningRequest,
  parseCertificateSigningRequest,
  type SignCsrOptions,
  signCertificateSigningRequest,
} from './csr';
export { generateKeyPair, type KeyOptions, type KeyPairPem, type KeyType } from './keys';
export { type DistinguishedName, ExtendedKeyUsage } from './names';
export { derToPem, pemToDer, splitPemCertificates } from './pem';
export {
  type CreateVerificationCertificateOptions,
  createVerificationCertificate,
  type VerifyProofOfPossessionOptions,
  verifyProofOfPossession,
} from './proof-of-possession';
export { certificateThumbprint, matchesThumbprint, normalizeThumbprint, type ThumbprintAlgorithm } from './thumbprint';
