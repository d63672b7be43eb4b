/**
 * DPS enrollments in Azure's JSON shapes (the service API's `IndividualEnrollment` and `EnrollmentGroup`, as
 * `azure-iot-provisioning-service` sends and reads them): parsing and validation of what a client PUTs, and the
 * rendering a GET answers. Stored through the Store seam by {@link EnrollmentStore}, scoped by hub name:
 * - `dps-enrollments/<registrationId, lower case>`: individual enrollments (DPS compares registration ids without
 *   case, §5.4);
 * - `dps-enrollment-groups/<enrollmentGroupId, lower case>`: enrollment groups.
 * The stored value is the rendered enrollment plus the PEMs of its certificates (GET shows only their `info`, as
 * Azure does).
 */
import { randomBytes } from 'node:crypto';
import { type CertificateInfo, parseCertificate } from '@fieldhub/auth';
import { ArgumentError, HubError, validateRegistrationId, validateTwinSection } from '@fieldhub/protocol';
import type { CoreContext } from '../core/context';
import { newIdentityEtag } from '../core/registry-records';
import { RevisionConflict, type StoredDocument } from '../store/store';

/** The JSON object type of enrollment documents. */
export type JsonObject = Record<string, unknown>;

/** `x509 {clientCertificates|signingCertificates {primary|secondary}}` entries: the PEM kept, `info` shown. */
export interface X509CertificateWithInfo {
  /** PEM; dropped from answers (Azure answers `info` only). */
  certificate?: string;
  info: X509CertificateInfo;
}

/** Azure's `X509CertificateInfo`. */
export interface X509CertificateInfo {
  subjectName: string;
  sha1Thumbprint: string;
  sha256Thumbprint: string;
  issuerName: string;
  notBeforeUtc: string;
  notAfterUtc: string;
  serialNumber: string;
  version: number;
}

/** Azure's `AttestationMechanism` (TPM is not supported by this hub). */
export interface Attestation {
  type: 'symmetricKey' | 'x509';
  symmetricKey?: { primaryKey: string; secondaryKey: string };
  x509?: {
    clientCertificates?: { primary: X509CertificateWithInfo; secondary?: X509CertificateWithInfo };
    signingCertificates?: { primary: X509CertificateWithInfo; secondary?: X509CertificateWithInfo };
    caReferences?: { primary: string; secondary?: string };
  };
}

/** Azure's `ReprovisionPolicy`; both default to true. */
export interface ReprovisionPolicy {
  updateHubAssignment: boolean;
  migrateDeviceData: boolean;
}

/** Azure's `InitialTwin`. */
export interface InitialTwin {
  tags?: JsonObject;
  properties?: { desired?: JsonObject };
}

/** What individual enrollments and groups share. */
interface EnrollmentBase {
  attestation: Attestation;
  capabilities: { iotEdge: boolean };
  iotHubHostName: string;
  iotHubs: string[];
  initialTwin?: InitialTwin;
  etag: string;
  provisioningStatus: 'enabled' | 'disabled';
  reprovisionPolicy: ReprovisionPolicy;
  allocationPolicy: 'hashed';
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
}

/** Azure's `IndividualEnrollment`. */
export interface IndividualEnrollment extends EnrollmentBase {
  registrationId: string;
  deviceId?: string;
}

/** Azure's `EnrollmentGroup`. */
export interface EnrollmentGroup extends EnrollmentBase {
  enrollmentGroupId: string;
}

/** Either kind, tagged. */
export type AnyEnrollment =
  | { readonly kind: 'individual'; readonly enrollment: IndividualEnrollment }
  | { readonly kind: 'group'; readonly enrollment: EnrollmentGroup };

const individualCollection = 'dps-enrollments';
const groupCollection = 'dps-enrollment-groups';

// Azure: enrollment group ids follow the registration id rules (alphanumerics and `-._`, at most 128).
const idKey = (id: string) => id.toLowerCase();

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optional(object: JsonObject, key: string): unknown {
  const value = Object.hasOwn(object, key) ? object[key] : undefined;
  return value === null ? undefined : value;
}

function newKey(): string {
  // DPS generates 64-byte keys.
  return randomBytes(64).toString('base64');
}

function checkKey(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new ArgumentError(`${field} must be a base64 string`, { field });
  const bytes = Buffer.from(value, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) || bytes.length < 16 || bytes.length > 64) {
    throw new ArgumentError(`${field} must be a base64 key of 16 to 64 bytes`, { field });
  }
  return value;
}

/** Turns base64 DER (what the portal and the C# SDK send) or PEM into PEM. */
function toPem(text: string): string {
  if (text.includes('-----BEGIN')) return text;
  const body = text.replace(/\s+/g, '');
  const lines = body.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

function distinguishedName(name: CertificateInfo['subject']): string {
  const parts: string[] = [];
  if (name.commonName) parts.push(`CN=${name.commonName}`);
  if (name.organizationalUnit) parts.push(`OU=${name.organizationalUnit}`);
  if (name.organization) parts.push(`O=${name.organization}`);
  if (name.country) parts.push(`C=${name.country}`);
  return parts.join(', ');
}

/** Reads one certificate entry `{certificate}`. @throws ArgumentError naming `field`. */
function certificateEntry(value: unknown, field: string): X509CertificateWithInfo {
  const certificate = isObject(value) ? optional(value, 'certificate') : undefined;
  if (typeof certificate !== 'string' || certificate.trim() === '') {
    throw new ArgumentError(`${field}.certificate must be a PEM or base64 certificate`, { field });
  }
  let info: CertificateInfo;
  try {
    info = parseCertificate(toPem(certificate));
  } catch (error) {
    throw new ArgumentError(`${field}.certificate is not a readable X.509 certificate`, { field, cause: error });
  }
  return {
    certificate: info.pem,
    info: {
      subjectName: distinguishedName(info.subject),
      sha1Thumbprint: info.thumbprintSha1,
      sha256Thumbprint: info.thumbprintSha256,
      issuerName: distinguishedName(info.issuer),
      notBeforeUtc: info.notBefore.toISOString(),
      notAfterUtc: info.notAfter.toISOString(),
      serialNumber: info.serialNumber,
      version: 3,
    },
  };
}

type CertificatePair = { primary: X509CertificateWithInfo; secondary?: X509CertificateWithInfo };

/**
 * Reads `{primary, secondary?}`. An entry with only the `info` a GET answered (a read-modify-write round trip)
 * keeps the stored certificate of the same thumbprint.
 */
function certificatePair(value: unknown, field: string, previous: CertificatePair | undefined): CertificatePair {
  if (!isObject(value)) throw new ArgumentError(`${field} must be an object with a primary certificate`, { field });
  const read = (entry: unknown, name: string): X509CertificateWithInfo => {
    const info = isObject(entry) ? optional(entry, 'info') : undefined;
    const certificate = isObject(entry) ? optional(entry, 'certificate') : undefined;
    if (certificate === undefined && isObject(info)) {
      const thumbprint = optional(info, 'sha256Thumbprint');
      const kept = [previous?.primary, previous?.secondary].find(
        (candidate) => candidate !== undefined && candidate.info.sha256Thumbprint === thumbprint,
      );
      if (kept) return kept;
    }
    return certificateEntry(entry, `${field}.${name}`);
  };
  const pair: CertificatePair = { primary: read(optional(value, 'primary'), 'primary') };
  const secondary = optional(value, 'secondary');
  if (secondary !== undefined) pair.secondary = read(secondary, 'secondary');
  return pair;
}

/**
 * Reads an `attestation`. Individual enrollments take `symmetricKey` or `x509.clientCertificates`; groups take
 * `symmetricKey`, `x509.signingCertificates` or `x509.caReferences`. Missing symmetric keys are generated, or kept
 * from `previous` when it has some (as Azure does on update).
 * @throws ArgumentError (400) for a missing or bad attestation, TPM, or an x509 form the kind does not take.
 */
export function parseAttestation(
  value: unknown,
  kind: 'individual' | 'group',
  previous: Attestation | undefined,
): Attestation {
  if (!isObject(value)) throw new ArgumentError('attestation is required', { field: 'attestation' });
  const type = optional(value, 'type');
  const symmetricKey = optional(value, 'symmetricKey');
  const x509 = optional(value, 'x509');
  const resolved = type ?? (x509 !== undefined ? 'x509' : symmetricKey !== undefined ? 'symmetricKey' : undefined);
  if (resolved === 'tpm') {
    throw new ArgumentError('TPM attestation is not supported by this hub; use symmetricKey or x509', {
      field: 'attestation.type',
    });
  }
  if (resolved === 'symmetricKey') {
    const keys = isObject(symmetricKey) ? symmetricKey : {};
    const kept = previous?.type === 'symmetricKey' ? previous.symmetricKey : undefined;
    const primaryKey =
      checkKey(optional(keys, 'primaryKey'), 'attestation.symmetricKey.primaryKey') ?? kept?.primaryKey ?? newKey();
    const secondaryKey =
      checkKey(optional(keys, 'secondaryKey'), 'attestation.symmetricKey.secondaryKey') ??
      kept?.secondaryKey ??
      newKey();
    return { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } };
  }
  if (resolved === 'x509') {
    if (!isObject(x509)) throw new ArgumentError('attestation.x509 is required', { field: 'attestation.x509' });
    const client = optional(x509, 'clientCertificates');
    const signing = optional(x509, 'signingCertificates');
    const references = optional(x509, 'caReferences');
    const given = [client, signing, references].filter((item) => item !== undefined).length;
    if (given !== 1) {
      throw new ArgumentError(
        'attestation.x509 must hold exactly one of clientCertificates, signingCertificates, caReferences',
        { field: 'attestation.x509' },
      );
    }
    if (kind === 'individual') {
      if (client === undefined) {
        throw new ArgumentError('An individual enrollment takes attestation.x509.clientCertificates', {
          field: 'attestation.x509.clientCertificates',
        });
      }
      return {
        type: 'x509',
        x509: {
          clientCertificates: certificatePair(
            client,
            'attestation.x509.clientCertificates',
            previous?.x509?.clientCertificates,
          ),
        },
      };
    }
    if (client !== undefined) {
      throw new ArgumentError('An enrollment group takes signingCertificates or caReferences, not clientCertificates', {
        field: 'attestation.x509.clientCertificates',
      });
    }
    if (signing !== undefined) {
      return {
        type: 'x509',
        x509: {
          signingCertificates: certificatePair(
            signing,
            'attestation.x509.signingCertificates',
            previous?.x509?.signingCertificates,
          ),
        },
      };
    }
    const field = 'attestation.x509.caReferences';
    if (!isObject(references)) throw new ArgumentError(`${field} must name a primary CA`, { field });
    const primary = optional(references, 'primary');
    const secondary = optional(references, 'secondary');
    if (typeof primary !== 'string' || primary === '') {
      throw new ArgumentError(`${field}.primary must name a CA certificate of the hub`, { field });
    }
    if (secondary !== undefined && (typeof secondary !== 'string' || secondary === '')) {
      throw new ArgumentError(`${field}.secondary must name a CA certificate of the hub`, { field });
    }
    return {
      type: 'x509',
      x509: { caReferences: secondary === undefined ? { primary } : { primary, secondary } },
    };
  }
  throw new ArgumentError(`attestation.type must be symmetricKey or x509, not '${String(resolved)}'`, {
    field: 'attestation.type',
  });
}

function parseInitialTwin(value: unknown): InitialTwin | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) throw new ArgumentError('initialTwin must be an object', { field: 'initialTwin' });
  const twin: InitialTwin = {};
  const tags = optional(value, 'tags');
  if (tags !== undefined) {
    if (!isObject(tags)) throw new ArgumentError('initialTwin.tags must be an object', { field: 'initialTwin.tags' });
    // Checked now, as Azure does: a twin the registry refuses would fail every registration of the enrollment.
    validateTwinSection(tags, { kind: 'tags' });
    twin.tags = tags;
  }
  const properties = optional(value, 'properties');
  if (properties !== undefined) {
    if (!isObject(properties)) {
      throw new ArgumentError('initialTwin.properties must be an object', { field: 'initialTwin.properties' });
    }
    const desired = optional(properties, 'desired');
    if (desired !== undefined) {
      if (!isObject(desired)) {
        throw new ArgumentError('initialTwin.properties.desired must be an object', {
          field: 'initialTwin.properties.desired',
        });
      }
      // `$metadata` / `$version` that a GET answered may come back on a PUT: they are not the device's data.
      const { $metadata: _m, $version: _v, ...clean } = desired;
      validateTwinSection(clean, { kind: 'desired' });
      twin.properties = { desired: clean };
    }
  }
  return twin;
}

function parseBoolean(value: unknown, field: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new ArgumentError(`${field} must be true or false`, { field });
  return value;
}

/** The parts of a PUT body both kinds share. @throws ArgumentError (400) naming the bad field. */
function parseCommon(
  body: JsonObject,
  kind: 'individual' | 'group',
  hubHostName: string,
  previous: EnrollmentBase | undefined,
  now: string,
): EnrollmentBase {
  const status = optional(body, 'provisioningStatus') ?? 'enabled';
  if (status !== 'enabled' && status !== 'disabled') {
    throw new ArgumentError('provisioningStatus must be enabled or disabled', { field: 'provisioningStatus' });
  }
  const hostName = optional(body, 'iotHubHostName');
  if (hostName !== undefined && (typeof hostName !== 'string' || !sameHost(hostName, hubHostName))) {
    throw new ArgumentError(`iotHubHostName must be this hub, '${hubHostName}'`, { field: 'iotHubHostName' });
  }
  const hubs = optional(body, 'iotHubs');
  if (hubs !== undefined) {
    if (!Array.isArray(hubs) || !hubs.every((hub) => typeof hub === 'string' && sameHost(hub, hubHostName))) {
      throw new ArgumentError(`iotHubs may only name this hub, '${hubHostName}'`, { field: 'iotHubs' });
    }
  }
  const allocation = optional(body, 'allocationPolicy');
  if (allocation !== undefined && allocation !== 'hashed' && allocation !== 'geoLatency' && allocation !== 'static') {
    // One hub: every built-in policy picks it. A custom policy needs an Azure Function this hub cannot call.
    throw new ArgumentError(`allocationPolicy '${String(allocation)}' is not supported; use hashed`, {
      field: 'allocationPolicy',
    });
  }
  const capabilities = optional(body, 'capabilities');
  if (capabilities !== undefined && !isObject(capabilities)) {
    throw new ArgumentError('capabilities must be an object', { field: 'capabilities' });
  }
  const reprovision = optional(body, 'reprovisionPolicy');
  if (reprovision !== undefined && !isObject(reprovision)) {
    throw new ArgumentError('reprovisionPolicy must be an object', { field: 'reprovisionPolicy' });
  }
  const common: EnrollmentBase = {
    attestation: parseAttestation(optional(body, 'attestation'), kind, previous?.attestation),
    capabilities: {
      iotEdge: parseBoolean(
        capabilities === undefined ? undefined : optional(capabilities, 'iotEdge'),
        'capabilities.iotEdge',
        false,
      ),
    },
    iotHubHostName: hubHostName,
    iotHubs: [hubHostName],
    etag: newIdentityEtag(),
    provisioningStatus: status,
    reprovisionPolicy: {
      updateHubAssignment: parseBoolean(
        reprovision === undefined ? undefined : optional(reprovision, 'updateHubAssignment'),
        'reprovisionPolicy.updateHubAssignment',
        true,
      ),
      migrateDeviceData: parseBoolean(
        reprovision === undefined ? undefined : optional(reprovision, 'migrateDeviceData'),
        'reprovisionPolicy.migrateDeviceData',
        true,
      ),
    },
    allocationPolicy: 'hashed',
    createdDateTimeUtc: previous?.createdDateTimeUtc ?? now,
    lastUpdatedDateTimeUtc: now,
  };
  const initialTwin = parseInitialTwin(optional(body, 'initialTwin'));
  if (initialTwin !== undefined) common.initialTwin = initialTwin;
  return common;
}

function stripPort(host: string): string {
  return host.replace(/:\d+$/, '').toLowerCase();
}

function sameHost(a: string, b: string): boolean {
  return stripPort(a) === stripPort(b);
}

/**
 * Checks an enrollment group id: as registration ids (§5.4), 1-128 letters, digits, `.`, `_`, `-`.
 * @throws ArgumentError (field `enrollmentGroupId`).
 */
export function validateEnrollmentGroupId(id: string): void {
  try {
    validateRegistrationId(id);
  } catch (error) {
    throw new ArgumentError(
      'enrollmentGroupId must be 1-128 letters, digits, ., _ or -, starting and ending with a letter or digit',
      { field: 'enrollmentGroupId', cause: error },
    );
  }
}

/**
 * Reads the body of `PUT /enrollments/{id}`.
 * @throws ArgumentError (400) for a bad body; the id in the body, when given, must equal the path's;
 * HubError MessageTooLarge (413) for an initial twin over Azure's size limit.
 */
export function parseIndividualEnrollment(
  registrationId: string,
  body: unknown,
  hubHostName: string,
  previous: IndividualEnrollment | undefined,
  now: string,
): IndividualEnrollment {
  validateRegistrationId(registrationId);
  if (!isObject(body)) throw new ArgumentError('The enrollment must be a JSON object', { field: 'body' });
  const inBody = optional(body, 'registrationId');
  if (inBody !== undefined && (typeof inBody !== 'string' || inBody.toLowerCase() !== registrationId.toLowerCase())) {
    throw new ArgumentError(`registrationId in the body differs from '${registrationId}' in the path`, {
      field: 'registrationId',
    });
  }
  const common = parseCommon(body, 'individual', hubHostName, previous, now);
  const enrollment: IndividualEnrollment = { registrationId: previous?.registrationId ?? registrationId, ...common };
  const deviceId = optional(body, 'deviceId');
  if (deviceId !== undefined && deviceId !== '') {
    if (typeof deviceId !== 'string' || deviceId.length > 128 || !/^[A-Za-z0-9\-.+%_#*?!(),:=@$']+$/.test(deviceId)) {
      throw new ArgumentError('deviceId must be a valid IoT Hub device id', { field: 'deviceId' });
    }
    enrollment.deviceId = deviceId;
  }
  return enrollment;
}

/**
 * Reads the body of `PUT /enrollmentGroups/{id}`.
 * @throws ArgumentError (400) for a bad body; the id in the body, when given, must equal the path's;
 * HubError MessageTooLarge (413) for an initial twin over Azure's size limit.
 */
export function parseEnrollmentGroup(
  enrollmentGroupId: string,
  body: unknown,
  hubHostName: string,
  previous: EnrollmentGroup | undefined,
  now: string,
): EnrollmentGroup {
  validateEnrollmentGroupId(enrollmentGroupId);
  if (!isObject(body)) throw new ArgumentError('The enrollment group must be a JSON object', { field: 'body' });
  const inBody = optional(body, 'enrollmentGroupId');
  if (
    inBody !== undefined &&
    (typeof inBody !== 'string' || inBody.toLowerCase() !== enrollmentGroupId.toLowerCase())
  ) {
    throw new ArgumentError(`enrollmentGroupId in the body differs from '${enrollmentGroupId}' in the path`, {
      field: 'enrollmentGroupId',
    });
  }
  const common = parseCommon(body, 'group', hubHostName, previous, now);
  return { enrollmentGroupId: previous?.enrollmentGroupId ?? enrollmentGroupId, ...common };
}

/** The enrollment as GET answers it: certificate PEMs are replaced by their `info`, as Azure does. */
export function renderEnrollment<T extends IndividualEnrollment | EnrollmentGroup>(enrollment: T): T {
  const x509 = enrollment.attestation.x509;
  if (x509 === undefined) return enrollment;
  const strip = (pair?: { primary: X509CertificateWithInfo; secondary?: X509CertificateWithInfo }) =>
    pair === undefined
      ? undefined
      : {
          primary: { info: pair.primary.info },
          ...(pair.secondary === undefined ? {} : { secondary: { info: pair.secondary.info } }),
        };
  const rendered: NonNullable<Attestation['x509']> = {};
  const client = strip(x509.clientCertificates);
  const signing = strip(x509.signingCertificates);
  if (client) rendered.clientCertificates = client;
  if (signing) rendered.signingCertificates = signing;
  if (x509.caReferences) rendered.caReferences = x509.caReferences;
  return { ...enrollment, attestation: { type: 'x509', x509: rendered } };
}

function notFound(what: string, id: string): HubError {
  return new HubError('ResourceNotFound', `${what} '${id}' does not exist`);
}

/** `value[key]` when `value` is a JSON object, else undefined. */
function member(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)[key]
    : undefined;
}

function preconditionFailed(what: string, id: string): HubError {
  return new HubError('PreconditionFailed', `The etag of ${what} '${id}' does not match If-Match`);
}

function etagMatches(ifMatch: string | undefined, etag: string): boolean {
  return ifMatch === undefined || ifMatch === '*' || ifMatch === etag;
}

/** One page of a query. */
export interface EnrollmentPage<T> {
  readonly items: T[];
  /** Pass back as `x-ms-continuation` for the next page; absent on the last. */
  readonly continuationToken: string | undefined;
}

/** Individual enrollments and enrollment groups in the store. Every read goes to the store (no cache). */
export class EnrollmentStore {
  /**
   * @param caExists whether the hub's CA store holds a CA of that name: a group naming an unknown CA
   * (`caReferences`) is refused, as no device could ever register through it. Omitted: not checked.
   */
  constructor(
    private readonly ctx: CoreContext,
    private readonly caExists?: (name: string) => Promise<boolean>,
  ) {}

  /** The individual enrollment of a registration id (any case), or `undefined`. */
  async getIndividual(registrationId: string): Promise<IndividualEnrollment | undefined> {
    return (await this.individualDocument(registrationId))?.value;
  }

  /** An enrollment group, or `undefined`. */
  async getGroup(enrollmentGroupId: string): Promise<EnrollmentGroup | undefined> {
    return (await this.groupDocument(enrollmentGroupId))?.value;
  }

  /**
   * Creates or replaces an individual enrollment (`PUT /enrollments/{id}`): without `ifMatch` it creates or
   * replaces, with one it must match (`*` = any existing).
   * @throws ArgumentError (400) for a bad body; HubError PreconditionFailed (412001); ResourceNotFound (404000)
   * when `ifMatch` is given and nothing exists.
   */
  async putIndividual(registrationId: string, body: unknown, ifMatch?: string): Promise<IndividualEnrollment> {
    validateRegistrationId(registrationId);
    return this.put(individualCollection, 'Enrollment', registrationId, ifMatch, (previous, now) =>
      parseIndividualEnrollment(
        registrationId,
        body,
        this.ctx.hostName,
        previous as IndividualEnrollment | undefined,
        now,
      ),
    );
  }

  /**
   * Creates or replaces an enrollment group (`PUT /enrollmentGroups/{id}`); as {@link putIndividual}.
   * @throws as {@link putIndividual}.
   */
  async putGroup(enrollmentGroupId: string, body: unknown, ifMatch?: string): Promise<EnrollmentGroup> {
    validateEnrollmentGroupId(enrollmentGroupId);
    await this.checkCaReferences(body);
    return this.put(groupCollection, 'Enrollment group', enrollmentGroupId, ifMatch, (previous, now) =>
      parseEnrollmentGroup(enrollmentGroupId, body, this.ctx.hostName, previous as EnrollmentGroup | undefined, now),
    );
  }

  /** @throws ArgumentError (400) when the body's `attestation.x509.caReferences` names a CA the hub does not hold. */
  private async checkCaReferences(body: unknown): Promise<void> {
    if (this.caExists === undefined) return;
    const references = member(member(member(body, 'attestation'), 'x509'), 'caReferences');
    for (const key of ['primary', 'secondary'] as const) {
      const name = member(references, key);
      if (typeof name !== 'string' || name === '') continue;
      if (!(await this.caExists(name))) {
        const field = `attestation.x509.caReferences.${key}`;
        throw new ArgumentError(`${field} names no CA certificate of the hub: '${name}'`, { field });
      }
    }
  }

  /**
   * Deletes an individual enrollment. Its registration state and device stay (as in Azure).
   * @throws HubError ResourceNotFound (404000), PreconditionFailed (412001).
   */
  async deleteIndividual(registrationId: string, ifMatch?: string): Promise<void> {
    await this.delete(individualCollection, 'Enrollment', registrationId, ifMatch);
  }

  /**
   * Deletes an enrollment group.
   * @throws HubError ResourceNotFound (404000), PreconditionFailed (412001).
   */
  async deleteGroup(enrollmentGroupId: string, ifMatch?: string): Promise<void> {
    await this.delete(groupCollection, 'Enrollment group', enrollmentGroupId, ifMatch);
  }

  /** Individual enrollments in id order, a page at a time. */
  async listIndividual(top: number, continuation?: string): Promise<EnrollmentPage<IndividualEnrollment>> {
    return this.page<IndividualEnrollment>(individualCollection, top, continuation);
  }

  /** Enrollment groups in id order, a page at a time. */
  async listGroups(top: number, continuation?: string): Promise<EnrollmentPage<EnrollmentGroup>> {
    return this.page<EnrollmentGroup>(groupCollection, top, continuation);
  }

  /** Every enrollment group (attestation looks through them). */
  async allGroups(): Promise<EnrollmentGroup[]> {
    const docs = await this.ctx.store.documents.list<EnrollmentGroup>(this.ctx.hubName, groupCollection);
    return docs.map((doc) => doc.value);
  }

  private async page<T>(collection: string, top: number, continuation?: string): Promise<EnrollmentPage<T>> {
    const docs = await this.ctx.store.documents.list<T>(this.ctx.hubName, collection, {
      ...(continuation === undefined ? {} : { after: continuation }),
      limit: top + 1,
    });
    const items = docs.slice(0, top);
    const last = items[items.length - 1];
    return { items: items.map((doc) => doc.value), continuationToken: docs.length > top ? last?.key : undefined };
  }

  private async put<T extends EnrollmentBase>(
    collection: string,
    what: string,
    id: string,
    ifMatch: string | undefined,
    build: (previous: T | undefined, now: string) => T,
  ): Promise<T> {
    for (;;) {
      const doc = await this.ctx.store.documents.get<T>(this.ctx.hubName, collection, idKey(id));
      if (!doc && ifMatch !== undefined && ifMatch !== '*') throw notFound(what, id);
      if (doc && !etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(what, id);
      const next = build(doc?.value, new Date(this.ctx.now()).toISOString());
      try {
        await this.ctx.store.documents.put(this.ctx.hubName, collection, idKey(id), next, doc?.revision ?? 0);
        this.ctx.logger.info({ collection, id, created: doc === undefined }, 'DPS enrollment written');
        return next;
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  private async delete(collection: string, what: string, id: string, ifMatch: string | undefined): Promise<void> {
    for (;;) {
      const doc = await this.ctx.store.documents.get<EnrollmentBase>(this.ctx.hubName, collection, idKey(id));
      if (!doc) throw notFound(what, id);
      if (!etagMatches(ifMatch, doc.value.etag)) throw preconditionFailed(what, id);
      try {
        await this.ctx.store.documents.delete(this.ctx.hubName, collection, idKey(id), doc.revision);
        this.ctx.logger.info({ collection, id }, 'DPS enrollment deleted');
        return;
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  private async individualDocument(id: string): Promise<StoredDocument<IndividualEnrollment> | undefined> {
    return this.ctx.store.documents.get<IndividualEnrollment>(this.ctx.hubName, individualCollection, idKey(id));
  }

  private async groupDocument(id: string): Promise<StoredDocument<EnrollmentGroup> | undefined> {
    return this.ctx.store.documents.get<EnrollmentGroup>(this.ctx.hubName, groupCollection, idKey(id));
  }
}
