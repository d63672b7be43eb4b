import { ArgumentError, AuthenticationError } from '@fieldhub/protocol';
import { type CertificateInfo, loadCertificate, type ParsedCertificate } from './certificate';
import { splitPemCertificates } from './pem';

/** Options of {@link verifyCertificateChain}. */
export interface VerifyChainOptions {
  /** The leaf (PEM). If it is a bundle, the first certificate is the leaf and the rest are intermediates. */
  certificate: string;
  /** Intermediates the peer sent (PEM strings or bundles), in any order. */
  intermediates?: readonly string[];
  /** Trust anchors (PEM): roots or verified CAs. The chain must end at one of them. */
  trustedCertificates: readonly string[];
  /** The clock. Default `new Date()`. */
  now?: Date;
  /** Require this extended key usage on the leaf when it lists any (`'clientAuth'` for devices). */
  extendedKeyUsage?: 'clientAuth' | 'serverAuth';
  /** Longest chain accepted, leaf and anchor included. Default 6. */
  maxDepth?: number;
}

/** A verified chain. */
export interface VerifiedChain {
  /** The leaf's subject CN: the device id for IoT Hub CA authentication. */
  commonName: string;
  /** The leaf. */
  leaf: CertificateInfo;
  /** The certificates from the leaf to the trust anchor, inclusive. */
  chain: CertificateInfo[];
}

function strip(parsed: ParsedCertificate): CertificateInfo {
  const { node: _n, ...info } = parsed;
  return info;
}

function issued(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  return child.node.checkIssued(parent.node) && child.node.verify(parent.node.publicKey);
}

function checkTime(certificate: ParsedCertificate, now: Date, role: string): void {
  const name = certificate.subject.commonName ?? '(no CN)';
  if (now.getTime() < certificate.notBefore.getTime()) {
    throw new AuthenticationError(
      `${role} certificate "${name}" is not yet valid (notBefore ${certificate.notBefore.toISOString()})`,
    );
  }
  if (now.getTime() > certificate.notAfter.getTime()) {
    throw new AuthenticationError(
      `${role} certificate "${name}" has expired (notAfter ${certificate.notAfter.toISOString()})`,
    );
  }
}

/**
 * Verifies a leaf certificate (RSA or EC, with Node's `X509Certificate`), through optional intermediates, up to one of the trusted certificates: each
 * signature, issuer name, validity period at `now`, CA flag of every issuer. Returns the leaf's CN.
 *
 * Path-length constraints, name constraints and revocation are not checked (IoT Hub does not check revocation).
 * @throws ArgumentError when an input is not a PEM certificate or no trusted certificate is given.
 * @throws AuthenticationError when the chain does not reach a trusted certificate, a certificate is expired or
 * not yet valid, an issuer is not a CA, the leaf lacks the required key usage or has no CN.
 */
export function verifyCertificateChain(options: VerifyChainOptions): VerifiedChain {
  if (!Array.isArray(options.trustedCertificates) || options.trustedCertificates.length === 0) {
    throw new ArgumentError('trustedCertificates must be a non-empty array of PEM certificates', {
      field: 'trustedCertificates',
    });
  }
  const now = options.now ?? new Date();
  const bundle = typeof options.certificate === 'string' ? splitPemCertificates(options.certificate) : [];
  const leaf = loadCertificate(bundle[0] ?? options.certificate, 'certificate');
  const intermediates: ParsedCertificate[] = bundle
    .slice(1)
    .map((pem, i) => loadCertificate(pem, `certificate[${i + 1}]`));
  (options.intermediates ?? []).forEach((pem, i) => {
    const parts = typeof pem === 'string' ? splitPemCertificates(pem) : [];
    (parts.length > 0 ? parts : [pem]).forEach((part) => {
      intermediates.push(loadCertificate(part, `intermediates[${i}]`));
    });
  });
  const anchors = options.trustedCertificates.map((pem, i) => loadCertificate(pem, `trustedCertificates[${i}]`));
  const maxDepth = options.maxDepth ?? 6;

  checkTime(leaf, now, 'leaf');
  const commonName = leaf.subject.commonName;
  if (!commonName) throw new AuthenticationError('leaf certificate has no subject common name');
  if (options.extendedKeyUsage && leaf.extendedKeyUsages.length > 0) {
    if (!leaf.extendedKeyUsages.includes(options.extendedKeyUsage)) {
      throw new AuthenticationError(`leaf certificate "${commonName}" is not valid for ${options.extendedKeyUsage}`);
    }
  }

  const chain: ParsedCertificate[] = [leaf];
  let current = leaf;
  while (chain.length < maxDepth) {
    const anchor = anchors.find((candidate) => issued(current, candidate));
    if (anchor) {
      if (anchor.thumbprintSha256 !== current.thumbprintSha256) {
        checkTime(anchor, now, 'trusted');
        chain.push(anchor);
      }
      return { commonName, leaf: strip(leaf), chain: chain.map(strip) };
    }
    const next = intermediates.find((candidate) => !chain.includes(candidate) && issued(current, candidate));
    if (!next) break;
    if (!next.isCa) throw new AuthenticationError(`issuer "${next.subject.commonName ?? ''}" is not a CA certificate`);
    checkTime(next, now, 'intermediate');
    chain.push(next);
    current = next;
  }
  throw new AuthenticationError(`certificate "${commonName}" does not chain to a trusted certificate`);
}
