/**
 * CA certificates uploaded to the hub, for devices that authenticate with `authentication.type:
 * certificateAuthority` (protocol-device.md §6). Modelled on the ARM `certificates` resource of an IoT hub:
 * upload, proof of possession (`generateVerificationCode`, then `verify` with a certificate whose CN is the code,
 * signed by the CA's key), and only verified CAs are trust anchors for device chains.
 *
 * Stored in the `certificate-authorities` collection; every read goes to the store (no cache), so an upload or a
 * deletion by one hub process is seen by every head at once.
 */
import { randomBytes } from 'node:crypto';
import {
  type CertificateInfo,
  parseCertificate,
  verifyCertificateChain,
  verifyProofOfPossession,
} from '@fieldhub/auth';
import { ArgumentError, HubError } from '@fieldhub/protocol';
import { RevisionConflict, type StoredDocument } from '../store/store';
import type { CoreContext } from './context';
import { etagMatches, newIdentityEtag } from './registry-records';

const COLLECTION = 'certificate-authorities';

// ARM's rule for certificate resource names.
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** A CA certificate as the hub describes it (ARM `CertificateDescription`, flattened). */
export interface CertificateAuthorityDescription {
  /** The resource name chosen at upload. */
  readonly name: string;
  /** The certificate's subject CN (ARM's `subject`), or the full subject when it has no CN. */
  readonly subject: string;
  /** SHA-1 of the DER, uppercase hex: what Azure shows as `thumbprint`. */
  readonly thumbprint: string;
  /** SHA-256 of the DER, uppercase hex. */
  readonly thumbprintSha256: string;
  /** The certificate's notAfter, ISO 8601. */
  readonly expiry: string;
  /** Whether proof of possession was given (or the operator vouched for it at upload). */
  readonly isVerified: boolean;
  /** The uploaded certificate, PEM. */
  readonly certificate: string;
  /** Changes on every write; pass it as `ifMatch` for a conditional write. */
  readonly etag: string;
  /** ISO 8601. */
  readonly created: string;
  /** ISO 8601. */
  readonly updated: string;
}

/** What {@link CertificateAuthorities.generateVerificationCode} returns (ARM `CertificateWithNonceDescription`). */
export interface CertificateAuthorityWithCode extends CertificateAuthorityDescription {
  /** The code to write as CN of the verification certificate. */
  readonly verificationCode: string;
}

/** Options of {@link CertificateAuthorities.add}. */
export interface AddCertificateAuthorityOptions {
  /**
   * Mark the CA verified without proof of possession (Azure's "set certificate status to verified on upload").
   * This trusts the operator: whoever holds RegistryWrite vouches that the CA's key is theirs.
   */
  readonly verified?: boolean;
  /**
   * Needed to replace an existing CA (as ARM requires its etag): `'*'` or the current etag. Absent = create only.
   */
  readonly ifMatch?: string;
}

/** The outcome of {@link CertificateAuthorities.authenticateDevice}. */
export type DeviceCertificateCheck =
  | {
      readonly ok: true;
      /** The leaf's CN (equal to the device id). */
      readonly commonName: string;
      /** The verified CA the chain ended at. */
      readonly certificateAuthority: string;
    }
  | {
      readonly ok: false;
      /** One line, for logs and for the refusal a head sends. */
      readonly reason: string;
    };

interface StoredCertificateAuthority extends CertificateAuthorityDescription {
  /** Present between `generateVerificationCode` and a successful `verify`. */
  readonly verificationCode?: string;
}

/** The hub's CA certificates. */
export class CertificateAuthorities {
  constructor(private readonly ctx: CoreContext) {}

  /**
   * Uploads a CA certificate under `name`. It is unverified (a device chain to it is refused) until proof of
   * possession, unless `options.verified`. Replacing a CA with a different certificate drops its verification
   * unless `options.verified`; re-uploading the same certificate keeps it.
   * @throws {ArgumentError} for a bad name (field `name`) or a PEM that is not a certificate (field `certificate`).
   * @throws {HubError} PreconditionFailed (412001) when `name` exists and no `ifMatch` was given, or the etag is
   * stale; ResourceNotFound (404000) when `ifMatch` names a specific etag but nothing exists.
   */
  async add(
    name: string,
    pem: string,
    options: AddCertificateAuthorityOptions = {},
  ): Promise<CertificateAuthorityDescription> {
    checkName(name);
    const info = readCertificate(pem, 'certificate');
    for (;;) {
      const doc = await this.document(name);
      const now = new Date(this.ctx.now()).toISOString();
      if (doc && options.ifMatch === undefined) {
        throw new HubError(
          'PreconditionFailed',
          `Certificate '${name}' exists; pass its etag (If-Match) or '*' to replace it`,
        );
      }
      if (!doc && options.ifMatch !== undefined && options.ifMatch !== '*') throw notFound(name);
      if (doc && !etagMatches(options.ifMatch, doc.value.etag)) throw preconditionFailed(name);
      const sameCertificate = doc?.value.thumbprintSha256 === info.thumbprintSha256;
      const record: StoredCertificateAuthority = {
        name,
        subject: subjectOf(info),
        thumbprint: info.thumbprintSha1,
        thumbprintSha256: info.thumbprintSha256,
        expiry: info.notAfter.toISOString(),
        isVerified: options.verified === true || (sameCertificate && doc?.value.isVerified === true),
        certificate: info.pem,
        etag: newIdentityEtag(),
        created: doc?.value.created ?? now,
        updated: now,
      };
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, COLLECTION, name, record, doc?.revision ?? 0);
        this.ctx.logger.info({ certificate: name, isVerified: record.isVerified }, 'CA certificate uploaded');
        return describe(record);
      } catch (error) {
        // A concurrent writer: decide again against what it wrote.
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  /** Every CA certificate, by name. */
  async list(): Promise<CertificateAuthorityDescription[]> {
    const docs = await this.ctx.store.documents.list<StoredCertificateAuthority>(this.ctx.hubName, COLLECTION);
    return docs.map((doc) => describe(doc.value));
  }

  /**
   * One CA certificate.
   * @throws {HubError} ResourceNotFound (404000).
   */
  async get(name: string): Promise<CertificateAuthorityDescription> {
    const doc = await this.document(name);
    if (!doc) throw notFound(name);
    return describe(doc.value);
  }

  /**
   * Deletes a CA certificate; devices chaining only to it are refused from then on (sessions already open stay).
   * @param ifMatch `undefined` or `'*'` (unconditional) or the etag.
   * @throws {HubError} ResourceNotFound (404000), PreconditionFailed (412001).
   */
  async delete(name: string, ifMatch?: string): Promise<void> {
    for (;;) {
      const doc = await this.document(name);
      if (!doc) throw notFound(name);
      if (!etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(name);
      try {
        await this.ctx.store.documents.delete(this.ctx.hubName, COLLECTION, name, doc.revision);
        this.ctx.logger.info({ certificate: name }, 'CA certificate deleted');
        return;
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  /**
   * Issues a fresh random verification code for the CA and keeps it with the CA (a new call replaces the old
   * code). The owner proves possession of the CA key by signing a certificate with CN = the code.
   * @param ifMatch `undefined`, `'*'` or the etag (ARM requires the etag; the hub makes it optional).
   * @throws {HubError} ResourceNotFound (404000), PreconditionFailed (412001).
   */
  async generateVerificationCode(name: string, ifMatch?: string): Promise<CertificateAuthorityWithCode> {
    for (;;) {
      const doc = await this.document(name);
      if (!doc) throw notFound(name);
      if (!etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(name);
      const verificationCode = randomBytes(24).toString('hex').toUpperCase();
      const record: StoredCertificateAuthority = {
        ...doc.value,
        verificationCode,
        etag: newIdentityEtag(),
        updated: new Date(this.ctx.now()).toISOString(),
      };
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, COLLECTION, name, record, doc.revision);
        return { ...describe(record), verificationCode };
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  /**
   * Checks a proof of possession (protocol-device.md §6): the verification certificate's CN is the code last
   * issued for this CA, it is signed by the CA's key and valid now. Then marks the CA verified and forgets the
   * code (one code, one proof).
   * @throws {ArgumentError} field `certificate` when the PEM is unreadable or the proof does not hold (the reason
   * is in the message); field `verificationCode` when no code was generated.
   * @throws {HubError} ResourceNotFound (404000), PreconditionFailed (412001).
   */
  async verify(
    name: string,
    verificationCertificatePem: string,
    ifMatch?: string,
  ): Promise<CertificateAuthorityDescription> {
    readCertificate(verificationCertificatePem, 'certificate');
    for (;;) {
      const doc = await this.document(name);
      if (!doc) throw notFound(name);
      if (!etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(name);
      const { verificationCode, ...rest } = doc.value;
      if (verificationCode === undefined) {
        throw new ArgumentError(`Certificate '${name}' has no verification code; generate one first`, {
          field: 'verificationCode',
        });
      }
      try {
        verifyProofOfPossession({
          caCertificate: doc.value.certificate,
          verificationCertificate: verificationCertificatePem,
          verificationCode,
          now: new Date(this.ctx.now()),
        });
      } catch (error) {
        // auth reports a failed proof as AuthenticationError (401), which a REST caller would read as "bad SAS
        // token": the caller's credentials are fine, the uploaded certificate is not, so answer 400.
        const reason = error instanceof Error ? error.message : String(error);
        throw new ArgumentError(`Proof of possession failed for '${name}': ${reason}`, {
          field: 'certificate',
          cause: error,
        });
      }
      const record: StoredCertificateAuthority = {
        ...rest,
        isVerified: true,
        etag: newIdentityEtag(),
        updated: new Date(this.ctx.now()).toISOString(),
      };
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, COLLECTION, name, record, doc.revision);
        this.ctx.logger.info({ certificate: name }, 'CA certificate verified');
        return describe(record);
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  /** PEMs of the verified CAs that have not expired: the trust anchors for device certificate chains. */
  async verifiedCertificates(): Promise<string[]> {
    return (await this.verifiedRecords(this.ctx.now())).map((record) => record.certificate);
  }

  /**
   * Authenticates a device that presents a certificate chain (authentication type `certificateAuthority`,
   * protocol-device.md §6): the chain must reach a verified, unexpired CA (the root need not be sent), every
   * certificate must be valid at `now`, the leaf must allow clientAuth when it lists usages, and the leaf's
   * subject CN must equal `deviceId`. Shared by every protocol head; never throws for a bad chain.
   * @param peerChainPems The peer's certificates as the TLS handshake gave them: leaf first, then intermediates.
   * @param now Default: the core clock.
   */
  async authenticateDevice(
    deviceId: string,
    peerChainPems: readonly string[],
    now: Date = new Date(this.ctx.now()),
  ): Promise<DeviceCertificateCheck> {
    const [leaf, ...intermediates] = peerChainPems;
    if (leaf === undefined) return { ok: false, reason: 'the client presented no certificate' };
    const anchors = await this.verifiedRecords(now.getTime());
    if (anchors.length === 0) return { ok: false, reason: 'the hub has no verified CA certificate' };
    let chain: ReturnType<typeof verifyCertificateChain>;
    try {
      chain = verifyCertificateChain({
        certificate: leaf,
        intermediates,
        trustedCertificates: anchors.map((record) => record.certificate),
        now,
        extendedKeyUsage: 'clientAuth',
      });
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
    if (chain.commonName !== deviceId) {
      return {
        ok: false,
        reason: `certificate CN '${chain.commonName}' does not match device id '${deviceId}'`,
      };
    }
    const anchor = chain.chain[chain.chain.length - 1];
    const record = anchors.find((candidate) => candidate.thumbprintSha256 === anchor?.thumbprintSha256);
    // The anchor is one of `anchors` by construction; the fallback only guards a CA changed between the reads.
    return { ok: true, commonName: chain.commonName, certificateAuthority: record?.name ?? '' };
  }

  private async verifiedRecords(nowMs: number): Promise<StoredCertificateAuthority[]> {
    const docs = await this.ctx.store.documents.list<StoredCertificateAuthority>(this.ctx.hubName, COLLECTION);
    return docs.map((doc) => doc.value).filter((record) => record.isVerified && Date.parse(record.expiry) > nowMs);
  }

  private async document(name: string): Promise<StoredDocument<StoredCertificateAuthority> | undefined> {
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) return undefined;
    return this.ctx.store.documents.get<StoredCertificateAuthority>(this.ctx.hubName, COLLECTION, name);
  }
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new ArgumentError('name must be 1 to 64 letters, digits, hyphens, underscores or periods', {
      field: 'name',
    });
  }
}

function readCertificate(pem: unknown, field: string): CertificateInfo {
  if (typeof pem !== 'string' || pem.trim() === '') {
    throw new ArgumentError(`${field} must be a PEM certificate`, { field });
  }
  try {
    return parseCertificate(pem);
  } catch (error) {
    // auth names its own parameter (`certificate`); the caller's field is what the user must fix.
    const reason = error instanceof Error ? error.message : String(error);
    throw new ArgumentError(`${field} is not a PEM X.509 certificate (${reason})`, { field, cause: error });
  }
}

function subjectOf(info: CertificateInfo): string {
  if (info.subject.commonName) return info.subject.commonName;
  const parts = Object.entries(info.subject).map(([key, value]) => `${key}=${String(value)}`);
  return parts.join(', ');
}

function describe(record: StoredCertificateAuthority): CertificateAuthorityDescription {
  const { verificationCode: _code, ...description } = record;
  return description;
}

function notFound(name: string): HubError {
  return new HubError('ResourceNotFound', `Certificate '${name}' not found`);
}

function preconditionFailed(name: string): HubError {
  return new HubError('PreconditionFailed', `Certificate '${name}' has changed (etag mismatch)`);
}
