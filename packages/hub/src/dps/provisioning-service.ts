/**
 * The Device Provisioning Service in the hub process (issue #10): enrollments, attestation, allocation and the
 * registration operations the heads drive through {@link DpsService} (contract.ts).
 *
 * - Attestation (§5.5, §6): a SAS token over `{idScope}/registrations/{registrationId}` (`skn=registration`, `sr`
 *   verified literally, encoded or not) signed with the individual enrollment's key or the key derived from a
 *   group's key; or an X.509 chain whose leaf is the individual enrollment's client certificate, or chains to a
 *   group's signing certificate or to a *verified* CA of the hub (`caReferences`). The individual enrollment of a
 *   registration id, when there is one, decides alone (as in Azure); groups are tried otherwise.
 * - Allocation: one hub, this one. The device identity is created (or updated) in the registry with the
 *   enrollment's credentials, the initial twin applied on the first assignment and on a reprovision that does not
 *   migrate device data, and the registration state recorded durably.
 * - Operations live in memory for {@link operationTtlMs}: a device whose operation was lost to a restart simply
 *   registers again, as it does after any DPS failure.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseCertificate, verifyCertificateChain, verifySasToken } from '@fieldhub/auth';
import {
  ArgumentError,
  AuthenticationError,
  type DpsRegistrationOperation,
  type DpsRegistrationState,
  deriveDeviceKey,
  HubError,
  parseSasToken,
  type SasToken,
  type TwinObject,
  validateRegistrationId,
} from '@fieldhub/protocol';
import type { CertificateAuthorities } from '../core/certificate-authorities';
import type { CoreContext } from '../core/context';
import { KeyedSerial } from '../core/keyed-serial';
import type { Registry } from '../core/registry';
import { newIdentityEtag } from '../core/registry-records';
import type { NewTwinContents } from '../core/twin-records';
import type { Twins } from '../core/twins';
import { RevisionConflict } from '../store/store';
import type { DpsAnswer, DpsPrincipal, DpsProof, DpsRegisterOptions, DpsService } from './contract';
import { type EnrollmentGroup, EnrollmentStore, type IndividualEnrollment, type InitialTwin } from './enrollments';
import { RegistrationStates, renderRegistrationState, type StoredRegistrationState } from './registration-states';
import { DpsServicePolicies } from './service-policies';

/** How long a finished operation can still be polled. */
export const operationTtlMs = 30 * 60 * 1000;
/**
 * Registrations of one registration id still assigning; one more is refused 429 (as DPS throttles a device that
 * registers in a loop): each waits its turn behind the others, so without a bound a client could queue work and
 * memory without end (HTTPS has no connection to bound it, MQTT bounds its own to 16 as well).
 */
export const maxAssigningPerRegistration = 16;
/** Finished operations kept per registration id for polling; the oldest go first beyond this. */
export const maxOperationsPerRegistration = 64;
/** The `retry-after` DPS answers with 202 (seconds). */
export const retryAfterSeconds = 1;

/** The provisioning settings (`hub.json` `dps`). */
export interface DpsSettings {
  readonly idScope: string;
  /** The host name devices dial for provisioning. */
  readonly hostName: string;
  /** Default true; when false every registration is refused (401) and the service API answers 404. */
  readonly enabled?: boolean;
}

const settingsCollection = 'dps-settings';

/**
 * The ID scope of this hub's provisioning service: `configured` when given, else the one generated on first start
 * (Azure's form, `0ne` and 8 hex digits), kept in the store so that the same data dir always answers to it.
 */
export async function resolveIdScope(ctx: CoreContext, configured: string | undefined): Promise<string> {
  if (configured !== undefined) return configured;
  const stored = await ctx.store.documents.get<{ idScope: string }>(ctx.hubName, settingsCollection, 'idScope');
  if (stored) return stored.value.idScope;
  const idScope = `0ne${randomBytes(4).toString('hex').toUpperCase()}`;
  try {
    await ctx.store.documents.put(ctx.hubName, settingsCollection, 'idScope', { idScope }, 0);
    return idScope;
  } catch (error) {
    // Another process of the same hub chose first.
    if (!(error instanceof RevisionConflict)) throw error;
    const winner = await ctx.store.documents.get<{ idScope: string }>(ctx.hubName, settingsCollection, 'idScope');
    return winner?.value.idScope ?? idScope;
  }
}

/** A principal as {@link ProvisioningService.authenticate} returns it: which enrollment vouched for it. */
export interface DpsAuthenticatedRegistration extends DpsPrincipal {
  readonly attestationType: 'symmetricKey' | 'x509';
  /** The group that vouched; absent when the individual enrollment did. */
  readonly enrollmentGroupId: string | undefined;
  /** SHA-1 thumbprint of the X.509 leaf the device presented. */
  readonly leafThumbprint?: string;
}

interface Operation {
  readonly operationId: string;
  readonly registrationKey: string;
  answer: DpsAnswer | undefined;
  expiresAt: number;
}

/** What the service needs of the rest of the core. */
export interface ProvisioningDependencies {
  readonly registry: Registry;
  readonly twins: Twins;
  readonly certificateAuthorities: CertificateAuthorities;
}

function refuse(message: string): AuthenticationError {
  return new AuthenticationError(message);
}

/** The provisioning service. */
export class ProvisioningService implements DpsService {
  readonly idScope: string;
  readonly hostName: string;
  /** Whether the service is on (config `dps.enabled`). */
  readonly enabled: boolean;
  /** Individual enrollments and enrollment groups. */
  readonly enrollments: EnrollmentStore;
  /** Registration states. */
  readonly registrations: RegistrationStates;
  /** The `provisioningserviceowner` policy of the service API. */
  readonly policies: DpsServicePolicies;
  private readonly operations = new Map<string, Operation>();
  /** Operation ids by registration key, oldest first (bounds {@link operations} per registration). */
  private readonly operationIds = new Map<string, string[]>();
  private readonly turns = new KeyedSerial();
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly ctx: CoreContext,
    private readonly dependencies: ProvisioningDependencies,
    settings: DpsSettings,
  ) {
    this.idScope = settings.idScope;
    this.hostName = settings.hostName;
    this.enabled = settings.enabled ?? true;
    this.enrollments = new EnrollmentStore(ctx, (name) =>
      dependencies.certificateAuthorities.get(name).then(
        () => true,
        () => false,
      ),
    );
    this.registrations = new RegistrationStates(ctx);
    this.policies = new DpsServicePolicies(ctx, settings.hostName);
  }

  /**
   * Authenticates a registration (§5.5, §6).
   * @throws AuthenticationError (401002) for another ID scope, a malformed, expired or wrongly signed token, an
   * unknown registration, a certificate that matches no enrollment or chains to an unverified CA.
   * @throws ArgumentError (400) for a malformed registration id.
   */
  async authenticate(idScope: string, registrationId: string, proof: DpsProof): Promise<DpsAuthenticatedRegistration> {
    validateRegistrationId(registrationId);
    if (!this.enabled) throw refuse('The provisioning service is disabled on this hub');
    if (idScope.toLowerCase() !== this.idScope.toLowerCase()) throw refuse(`Unknown ID scope '${idScope}'`);
    const principal =
      proof.kind === 'sas'
        ? await this.authenticateSas(registrationId, proof.token)
        : await this.authenticateX509(registrationId, proof.chain);
    this.ctx.logger.debug(
      { registrationId, attestation: principal.attestationType, group: principal.enrollmentGroupId },
      'DPS registration authenticated',
    );
    return principal;
  }

  /**
   * Starts a registration: answers 202 `assigning` at once; the assignment runs in the background (one at a time
   * per registration id) and its result is what {@link operationStatus} answers.
   * @throws AuthenticationError (401002) for a principal this service did not authenticate.
   * @throws HubError ThrottlingException (429) with {@link maxAssigningPerRegistration} registrations of this
   * registration id still assigning.
   */
  async register(principal: DpsPrincipal, options: DpsRegisterOptions = {}): Promise<DpsAnswer> {
    const registration = this.checkPrincipal(principal);
    this.sweep();
    const registrationKey = registration.registrationId.toLowerCase();
    const ids = this.operationIds.get(registrationKey) ?? [];
    const assigning = ids.filter((id) => this.operations.get(id)?.answer === undefined).length;
    if (assigning >= maxAssigningPerRegistration) {
      throw new HubError(
        'ThrottlingException',
        `Too many registrations of '${registration.registrationId}' in progress; retry later`,
      );
    }
    while (ids.length >= maxOperationsPerRegistration) {
      const index = ids.findIndex((id) => this.operations.get(id)?.answer !== undefined);
      if (index < 0) break;
      const [oldest] = ids.splice(index, 1);
      if (oldest !== undefined) this.operations.delete(oldest);
    }
    const operationId = `4.${randomBytes(8).toString('hex')}.${randomUUID()}`;
    const operation: Operation = {
      operationId,
      registrationKey,
      answer: undefined,
      expiresAt: this.ctx.now() + operationTtlMs,
    };
    this.operations.set(operationId, operation);
    ids.push(operationId);
    this.operationIds.set(registrationKey, ids);
    const work = this.turns
      .run(operation.registrationKey, () => this.assign(registration, options))
      .then(
        (outcome) => {
          operation.answer = { status: 200, body: { operationId, ...outcome } };
        },
        (error: unknown) => {
          const failure = HubError.is(error) ? error : new HubError('ServerError', String(error), { cause: error });
          if (failure.status >= 500) this.ctx.logger.error({ err: error, operationId }, 'DPS assignment failed');
          else this.ctx.logger.info({ code: failure.code, operationId }, failure.message);
          const now = new Date(this.ctx.now()).toISOString();
          operation.answer = {
            status: 200,
            body: {
              operationId,
              status: 'failed',
              registrationState: {
                registrationId: registration.registrationId,
                status: 'failed',
                errorCode: failure.hubCode,
                errorMessage: failure.message,
                createdDateTimeUtc: now,
                lastUpdatedDateTimeUtc: now,
              },
            },
          };
        },
      )
      .finally(() => {
        operation.expiresAt = this.ctx.now() + operationTtlMs;
        this.pending.delete(work);
      });
    this.pending.add(work);
    return { status: 202, body: { operationId, status: 'assigning' }, retryAfterSeconds };
  }

  /**
   * The status of an operation: 202 `assigning` while it runs, then 200 with its final status.
   * @throws HubError ResourceNotFound (404000) for an unknown or expired operation, or one of another registration.
   */
  async operationStatus(principal: DpsPrincipal, operationId: string): Promise<DpsAnswer> {
    this.sweep();
    const operation = this.operations.get(operationId);
    if (!operation || operation.registrationKey !== principal.registrationId.toLowerCase()) {
      throw new HubError('ResourceNotFound', `Operation '${operationId}' does not exist`);
    }
    if (operation.answer === undefined) {
      return { status: 202, body: { operationId, status: 'assigning' }, retryAfterSeconds };
    }
    return operation.answer;
  }

  /** Waits for the assignments in flight (the hub stops after them). */
  async stop(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  // ---- attestation ---------------------------------------------------------------------------------------------

  private async authenticateSas(registrationId: string, token: string): Promise<DpsAuthenticatedRegistration> {
    let parsed: SasToken;
    try {
      parsed = parseSasToken(token);
    } catch (error) {
      throw new AuthenticationError(`Malformed SharedAccessSignature: ${(error as Error).message}`, { cause: error });
    }
    // §5.5: `sr` is `{idScope}/registrations/{registrationId}`, encoded (docs) or not (Node); the signature is
    // checked over the literal `sr` by verifySasToken.
    const expected = `${this.idScope}/registrations/${registrationId}`.toLowerCase();
    if (parsed.resourceUri.toLowerCase() !== expected) {
      throw refuse(
        `The token's resource '${parsed.resourceUri}' is not ${this.idScope}/registrations/${registrationId}`,
      );
    }
    if (parsed.skn !== undefined && parsed.skn !== 'registration') {
      throw refuse(`The token's key name must be 'registration', not '${parsed.skn}'`);
    }
    const now = new Date(this.ctx.now());
    const individual = await this.enrollments.getIndividual(registrationId);
    if (individual) {
      const keys = individual.attestation.symmetricKey;
      if (individual.attestation.type !== 'symmetricKey' || !keys) {
        throw refuse(`The enrollment of '${registrationId}' does not use symmetric keys`);
      }
      const verified = await this.verify(token, [keys.primaryKey, keys.secondaryKey], now);
      return this.principal(registrationId, 'symmetricKey', undefined, verified);
    }
    for (const group of await this.enrollments.allGroups()) {
      const keys = group.attestation.symmetricKey;
      if (group.attestation.type !== 'symmetricKey' || !keys) continue;
      const derived = [
        deriveDeviceKey(keys.primaryKey, registrationId),
        deriveDeviceKey(keys.secondaryKey, registrationId),
      ];
      const verified = await this.verify(token, derived, now).catch(() => undefined);
      if (verified !== undefined)
        return this.principal(registrationId, 'symmetricKey', group.enrollmentGroupId, verified);
    }
    throw refuse(`No enrollment accepts the token of '${registrationId}'`);
  }

  private async verify(token: string, keys: string[], now: Date): Promise<number> {
    try {
      const verified = await verifySasToken(token, { keys, now });
      return verified.expiresAt.getTime();
    } catch (error) {
      throw new AuthenticationError(`SAS token refused: ${(error as Error).message}`, { cause: error });
    }
  }

  private async authenticateX509(
    registrationId: string,
    chain: readonly string[],
  ): Promise<DpsAuthenticatedRegistration> {
    const [leafPem, ...intermediates] = chain;
    if (leafPem === undefined) throw refuse('The client presented no certificate');
    let leaf: ReturnType<typeof parseCertificate>;
    try {
      leaf = parseCertificate(leafPem);
    } catch (error) {
      throw new AuthenticationError('The client certificate is unreadable', { cause: error });
    }
    const commonName = leaf.subject.commonName ?? '';
    // §5.5: the registration id is the leaf's CN.
    if (commonName.toLowerCase() !== registrationId.toLowerCase()) {
      throw refuse(`Certificate CN '${commonName}' does not match registration id '${registrationId}'`);
    }
    const now = new Date(this.ctx.now());
    const individual = await this.enrollments.getIndividual(registrationId);
    if (individual) {
      const certificates = individual.attestation.x509?.clientCertificates;
      if (individual.attestation.type !== 'x509' || !certificates) {
        throw refuse(`The enrollment of '${registrationId}' does not use X.509 certificates`);
      }
      const matches = [certificates.primary, certificates.secondary].some(
        (entry) =>
          entry !== undefined &&
          (entry.info.sha1Thumbprint === leaf.thumbprintSha1 || entry.info.sha256Thumbprint === leaf.thumbprintSha256),
      );
      if (!matches) throw refuse(`The certificate is not the one enrolled for '${registrationId}'`);
      if (now < leaf.notBefore || now > leaf.notAfter) throw refuse('The client certificate is not valid now');
      return this.principal(registrationId, 'x509', undefined, undefined);
    }
    const reasons: string[] = [];
    for (const group of await this.enrollments.allGroups()) {
      const x509 = group.attestation.x509;
      if (group.attestation.type !== 'x509' || !x509) continue;
      const anchors = await this.groupAnchors(group, reasons);
      if (anchors.length === 0) continue;
      try {
        verifyCertificateChain({
          certificate: leafPem,
          intermediates,
          trustedCertificates: anchors,
          now,
          extendedKeyUsage: 'clientAuth',
        });
        return {
          ...this.principal(registrationId, 'x509', group.enrollmentGroupId, undefined),
          leafThumbprint: leaf.thumbprintSha1,
        };
      } catch (error) {
        reasons.push(`${group.enrollmentGroupId}: ${(error as Error).message}`);
      }
    }
    throw refuse(
      `No enrollment accepts the certificate of '${registrationId}'${reasons.length > 0 ? ` (${reasons.join('; ')})` : ''}`,
    );
  }

  /** The trust anchors of an X.509 group: its signing certificates, or its CAs when verified and unexpired. */
  private async groupAnchors(group: EnrollmentGroup, reasons: string[]): Promise<string[]> {
    const x509 = group.attestation.x509;
    if (x509?.signingCertificates) {
      return [x509.signingCertificates.primary, x509.signingCertificates.secondary]
        .map((entry) => entry?.certificate)
        .filter((pem): pem is string => pem !== undefined);
    }
    const anchors: string[] = [];
    for (const name of [x509?.caReferences?.primary, x509?.caReferences?.secondary]) {
      if (name === undefined) continue;
      const ca = await this.dependencies.certificateAuthorities.get(name).catch(() => undefined);
      if (!ca) reasons.push(`${group.enrollmentGroupId}: CA '${name}' does not exist`);
      else if (!ca.isVerified) reasons.push(`${group.enrollmentGroupId}: CA '${name}' is not verified`);
      else if (Date.parse(ca.expiry) <= this.ctx.now())
        reasons.push(`${group.enrollmentGroupId}: CA '${name}' expired`);
      else anchors.push(ca.certificate);
    }
    return anchors;
  }

  private principal(
    registrationId: string,
    attestationType: 'symmetricKey' | 'x509',
    enrollmentGroupId: string | undefined,
    expiresAtMs: number | undefined,
  ): DpsAuthenticatedRegistration {
    return { idScope: this.idScope, registrationId, expiresAtMs, attestationType, enrollmentGroupId };
  }

  private checkPrincipal(principal: DpsPrincipal): DpsAuthenticatedRegistration {
    const candidate = principal as Partial<DpsAuthenticatedRegistration>;
    if (
      candidate.attestationType === undefined ||
      principal.idScope.toLowerCase() !== this.idScope.toLowerCase() ||
      (principal.expiresAtMs !== undefined && principal.expiresAtMs + 300_000 < this.ctx.now())
    ) {
      throw refuse('The registration is not authenticated (or its token expired)');
    }
    return candidate as DpsAuthenticatedRegistration;
  }

  // ---- allocation ----------------------------------------------------------------------------------------------

  private async assign(
    registration: DpsAuthenticatedRegistration,
    _options: DpsRegisterOptions,
  ): Promise<Omit<DpsRegistrationOperation, 'operationId'>> {
    const { registrationId, enrollmentGroupId } = registration;
    const enrollment: IndividualEnrollment | EnrollmentGroup | undefined =
      enrollmentGroupId === undefined
        ? await this.enrollments.getIndividual(registrationId)
        : await this.enrollments.getGroup(enrollmentGroupId);
    if (!enrollment || enrollment.attestation.type !== registration.attestationType) {
      throw refuse(`The enrollment of '${registrationId}' no longer exists`);
    }
    const nowIso = new Date(this.ctx.now()).toISOString();
    if (enrollment.provisioningStatus === 'disabled') {
      // Azure completes the operation with status `disabled`; Node's client ends with an error on it.
      this.ctx.logger.info({ registrationId, enrollmentGroupId }, 'DPS registration refused: enrollment disabled');
      const state: DpsRegistrationState = {
        registrationId,
        status: 'disabled',
        errorCode: 401002,
        errorMessage: 'The enrollment is disabled',
        createdDateTimeUtc: nowIso,
        lastUpdatedDateTimeUtc: nowIso,
      };
      return { status: 'disabled', registrationState: state };
    }
    const { registry, twins } = this.dependencies;
    const previous = await this.registrations.get(registrationId);
    // Registration ids compare without case, device ids with: a device registering as `Dev1` after `dev1` keeps
    // the identity it got first.
    const sameRegistration = previous?.deviceId.toLowerCase() === registrationId.toLowerCase();
    const deviceId =
      ('deviceId' in enrollment ? enrollment.deviceId : undefined) ??
      (sameRegistration ? previous?.deviceId : undefined) ??
      registrationId;
    const authentication = this.deviceAuthentication(enrollment, registration);
    const known = previous !== undefined && previous.deviceId === deviceId && previous.status === 'assigned';
    const device = await registry.getDeviceRecord(deviceId);
    let substatus: string;
    if (!device) {
      // First assignment, or the device identity was deleted by hand: a new identity with the initial twin.
      await registry.createDevice(
        deviceId,
        { authentication, capabilities: { iotEdge: enrollment.capabilities.iotEdge } },
        twinContents(enrollment.initialTwin),
      );
      substatus = 'initialAssignment';
    } else {
      // Same identity (generation id kept); its credentials follow the enrollment's.
      await registry.updateDevice(
        deviceId,
        { authentication, capabilities: { iotEdge: enrollment.capabilities.iotEdge } },
        '*',
      );
      const policy = enrollment.reprovisionPolicy;
      if (!known) substatus = 'initialAssignment';
      else if (!policy.updateHubAssignment) substatus = previous.substatus ?? 'initialAssignment';
      else if (policy.migrateDeviceData) substatus = 'deviceDataMigrated';
      else {
        await twins.replace(deviceId, undefined, {
          tags: enrollment.initialTwin?.tags ?? {},
          properties: { desired: enrollment.initialTwin?.properties?.desired ?? {} },
        });
        substatus = 'deviceDataReset';
      }
    }
    const state: StoredRegistrationState = {
      registrationId: previous?.registrationId ?? registrationId,
      createdDateTimeUtc: previous?.createdDateTimeUtc ?? nowIso,
      assignedHub: this.ctx.hostName,
      deviceId,
      status: 'assigned',
      substatus,
      lastUpdatedDateTimeUtc: nowIso,
      etag: newIdentityEtag(),
      attestationType: registration.attestationType,
      ...(enrollmentGroupId === undefined ? {} : { enrollmentGroupId }),
    };
    await this.registrations.put(state);
    this.ctx.logger.info({ registrationId, deviceId, substatus, enrollmentGroupId }, 'DPS registration assigned');
    return { status: 'assigned', registrationState: renderRegistrationState(state) };
  }

  private deviceAuthentication(
    enrollment: IndividualEnrollment | EnrollmentGroup,
    registration: DpsAuthenticatedRegistration,
  ): Record<string, unknown> {
    const { attestation } = enrollment;
    if (attestation.type === 'symmetricKey' && attestation.symmetricKey) {
      const { primaryKey, secondaryKey } = attestation.symmetricKey;
      const group = registration.enrollmentGroupId !== undefined;
      return {
        type: 'sas',
        symmetricKey: group
          ? {
              primaryKey: deriveDeviceKey(primaryKey, registration.registrationId),
              secondaryKey: deriveDeviceKey(secondaryKey, registration.registrationId),
            }
          : { primaryKey, secondaryKey },
      };
    }
    const client = attestation.x509?.clientCertificates;
    if (client) {
      return {
        type: 'selfSigned',
        x509Thumbprint: {
          primaryThumbprint: client.primary.info.sha1Thumbprint,
          secondaryThumbprint: client.secondary?.info.sha1Thumbprint ?? client.primary.info.sha1Thumbprint,
        },
      };
    }
    // A group whose CA is one of the hub's (caReferences): the hub checks the chain at every connection. A group
    // with its own signing certificate, which the hub does not trust: the device is pinned to the certificate it
    // registered with.
    if (attestation.x509?.caReferences) return { type: 'certificateAuthority' };
    if (attestation.type === 'x509' && registration.leafThumbprint !== undefined) {
      return {
        type: 'selfSigned',
        x509Thumbprint: {
          primaryThumbprint: registration.leafThumbprint,
          secondaryThumbprint: registration.leafThumbprint,
        },
      };
    }
    throw new ArgumentError('The enrollment has no usable attestation', { field: 'attestation' });
  }

  private sweep(): void {
    const now = this.ctx.now();
    for (const [id, operation] of this.operations) {
      if (operation.answer === undefined || operation.expiresAt > now) continue;
      this.operations.delete(id);
      const ids = this.operationIds.get(operation.registrationKey);
      const index = ids?.indexOf(id) ?? -1;
      if (ids && index >= 0) ids.splice(index, 1);
      if (ids?.length === 0) this.operationIds.delete(operation.registrationKey);
    }
  }
}

function twinContents(initialTwin: InitialTwin | undefined): NewTwinContents {
  const contents: NewTwinContents = {};
  if (initialTwin?.tags) contents.tags = initialTwin.tags as TwinObject;
  if (initialTwin?.properties?.desired) contents.desired = initialTwin.properties.desired as TwinObject;
  return contents;
}
