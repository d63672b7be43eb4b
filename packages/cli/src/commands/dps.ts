/**
 * `fieldhub dps`: the hub's Device Provisioning Service from the command line. Enrollments (individual and groups,
 * symmetric key or X.509) and registration records go through the provisioning service API on the hub's HTTPS port,
 * the paths and JSON Azure DPS uses (`/enrollments/{id}`, `/enrollmentGroups/{id}`, `/registrations/{id}`), signed
 * with the `provisioningserviceowner` key from `hub.json` `dps.serviceConnectionString` (or `--connection-string`).
 * Group key derivation (`derive-key`) is local: `base64(HMAC-SHA256(base64decode(groupKey), registrationId))`
 * (protocol-device.md §5.5).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  ArgumentError,
  deriveDeviceKey,
  HubError,
  parseServiceConnectionString,
  validateRegistrationId,
} from '@fieldhub/protocol';
import { type Command, Option } from 'commander';
import { connectToHub, defaultDataDir, httpsSend, readFlagFile, readHubJson, splitHostPort } from '../hub-connection';
import { fields, note, parseJsonFlag, table, write, writeJson } from '../output';

/** The API version the CLI asks for (Azure DPS service API; the hub accepts any). */
export const provisioningServiceApiVersion = '2021-10-01';

// A CLI call that hangs is worse than one that fails: give up on a silent service.
const requestTimeoutMs = 30_000;
// One query page: Azure's service answers at most this many records per page and a continuation header.
const queryPageSize = 100;

/** What `hub.json` holds under `dps` (written by a hub that runs the provisioning service). */
export interface DpsHubJson {
  /** The host name devices dial for provisioning (`provisioningHost` of the device SDKs). */
  host: string;
  /** The ID scope devices register in. */
  idScope: string;
  /** Where the service listens: the hub's ports (`null` for a protocol not served). */
  ports: { https: number; mqtt: number | null; amqp: number | null };
  /** `HostName=..;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=..`: the enrollment API's key. */
  serviceConnectionString: string;
}

/** The flags every `fieldhub dps` command that talks to the service accepts. */
export interface DpsConnectionOptions {
  /** The hub's data directory, holding `hub.json` (default `./.fieldhub`). */
  dataDir?: string;
  /** The provisioning service's connection string; then `hub.json` is not read. */
  connectionString?: string;
  /** A PEM file of the CA that signed the hub's TLS certificate. */
  ca?: string;
}

/** A symmetric-key or X.509 attestation, as the provisioning service API has it. */
export interface AttestationMechanism {
  type: 'symmetricKey' | 'x509' | 'tpm' | 'none';
  symmetricKey?: { primaryKey?: string | null; secondaryKey?: string | null };
  x509?: {
    clientCertificates?: { primary?: X509CertificateWithInfo; secondary?: X509CertificateWithInfo };
    signingCertificates?: { primary?: X509CertificateWithInfo; secondary?: X509CertificateWithInfo };
    caReferences?: { primary?: string; secondary?: string };
  };
  tpm?: Record<string, unknown>;
}

/** A certificate an X.509 attestation holds, with what the service read from it. */
export interface X509CertificateWithInfo {
  certificate?: string;
  info?: Record<string, unknown>;
}

/** The twin a device starts with when it is first assigned. */
export interface InitialTwin {
  tags?: Record<string, unknown>;
  properties?: { desired?: Record<string, unknown> };
}

/** What happens on re-registration (Azure's `reprovisionPolicy`). */
export interface ReprovisionPolicy {
  updateHubAssignment?: boolean;
  migrateDeviceData?: boolean;
}

/** Registration state of one device (the `/registrations/{id}` record). */
export interface DeviceRegistrationState {
  registrationId: string;
  status?: string;
  substatus?: string;
  assignedHub?: string;
  deviceId?: string;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  errorCode?: number;
  errorMessage?: string;
  etag?: string;
}

/** Fields individual enrollments and enrollment groups share. */
interface EnrollmentCommon {
  attestation: AttestationMechanism;
  provisioningStatus?: 'enabled' | 'disabled';
  initialTwin?: InitialTwin;
  reprovisionPolicy?: ReprovisionPolicy;
  capabilities?: { iotEdge: boolean };
  iotHubHostName?: string;
  etag?: string;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
}

/** An individual enrollment. */
export interface IndividualEnrollment extends EnrollmentCommon {
  registrationId: string;
  deviceId?: string;
  registrationState?: DeviceRegistrationState;
}

/** An enrollment group. */
export interface EnrollmentGroup extends EnrollmentCommon {
  enrollmentGroupId: string;
}

/** The provisioning service as the CLI reaches it. */
interface ProvisioningService {
  /** The service's host name (TLS server name, SAS resource). */
  readonly hostName: string;
  readonly port: number;
  /** The ID scope, when hub.json names it (not with a connection string). */
  readonly idScope: string | undefined;
  request<T>(method: string, path: string, options?: { body?: unknown; headers?: Record<string, string> }): Promise<T>;
  /** A query, following continuation tokens to the end. */
  query<T>(path: string): Promise<T[]>;
}

interface JsonOption {
  json?: boolean;
}

interface TargetOptions {
  registrationId?: string;
  group?: string;
}

interface CreateOptions extends DpsConnectionOptions, TargetOptions, JsonOption {
  deviceId?: string;
  primaryKey?: string;
  secondaryKey?: string;
  certificate?: string;
  secondaryCertificate?: string;
  caName?: string;
  signingCertificate?: string;
  initialTwin?: string;
  tags?: string;
  desired?: string;
  disabled?: boolean;
  reprovision?: ReprovisionChoice;
  edge?: boolean;
  iotHub?: string;
  replace?: boolean;
}

const reprovisionChoices = ['migrate', 'reset', 'never'] as const;
type ReprovisionChoice = (typeof reprovisionChoices)[number];

/** Azure's three re-provisioning policies (az iot dps `--reprovision-policy`). */
const reprovisionPolicies: Record<ReprovisionChoice, ReprovisionPolicy> = {
  migrate: { updateHubAssignment: true, migrateDeviceData: true },
  reset: { updateHubAssignment: true, migrateDeviceData: false },
  never: { updateHubAssignment: false, migrateDeviceData: false },
};

const enrollmentPath = (id: string, action = ''): string =>
  `/enrollments/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;
const groupPath = (id: string, action = ''): string =>
  `/enrollmentGroups/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;
const registrationPath = (id: string, action = ''): string =>
  `/registrations/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;

/**
 * Adds `fieldhub dps info`, `dps enrollment create|list|show|delete`, `dps registration list|show|delete` and
 * `dps derive-key`.
 */
export function addDpsCommands(program: Command): void {
  const dps = program
    .command('dps')
    .description('the Device Provisioning Service: enrollments, registrations, group key derivation');

  dps
    .command('info')
    .description("print where devices register (hub.json's dps section): provisioning host, ID scope, ports")
    .option('--data-dir <dir>', `the local hub's data directory, holding hub.json (default ${defaultDataDir})`)
    .option('--json', 'print { host, idScope, ports } (without the connection string)')
    .action(async (options: { dataDir?: string } & JsonOption) => {
      const dpsJson = await readDpsHubJson(options.dataDir ?? defaultDataDir);
      const { serviceConnectionString: _secret, ...info } = dpsJson;
      if (options.json) {
        writeJson(info);
        return;
      }
      write(
        fields([
          ['provisioning host', info.host],
          ['ID scope', info.idScope],
          ['HTTPS port', String(info.ports.https)],
          ['MQTT port', info.ports.mqtt === null ? '-' : String(info.ports.mqtt)],
          ['AMQP port', info.ports.amqp === null ? '-' : String(info.ports.amqp)],
        ]),
      );
    });

  addEnrollmentCommands(dps);
  addRegistrationCommands(dps);

  addDpsConnectionOptions(
    dps
      .command('derive-key')
      .summary("derive a device's key from its enrollment group's key")
      .description(
        "derive a device's symmetric key from its enrollment group's key: base64(HMAC-SHA256(base64decode(groupKey), registrationId)). With --group-key nothing is sent anywhere; with --group the group's primary key is read from the hub",
      )
      .requiredOption('--registration-id <id>', "the device's registration id")
      .option('--group-key <key>', "the group's symmetric key (base64)")
      .option('--group <name>', "read the key of this enrollment group from the hub's provisioning service")
      .option('--secondary', "with --group: derive from the group's secondary key")
      .option('--json', 'print { registrationId, derivedKey, enrollmentGroupId }'),
  ).action(
    async (
      options: DpsConnectionOptions &
        JsonOption & { registrationId: string; groupKey?: string; group?: string; secondary?: boolean },
    ) => {
      if ((options.groupKey === undefined) === (options.group === undefined)) {
        throw new ArgumentError('give --group-key <key> or --group <name>, one of them');
      }
      if (options.secondary && options.group === undefined) throw new ArgumentError('--secondary needs --group');
      validateRegistrationId(options.registrationId);
      let groupKey = options.groupKey;
      if (options.group !== undefined) {
        const service = await connectToProvisioningService(options);
        const group = await service.request<EnrollmentGroup>('GET', groupPath(options.group));
        const keys = await symmetricKeysOf(service, 'group', options.group, group.attestation);
        groupKey = options.secondary ? keys.secondaryKey : keys.primaryKey;
      }
      const derivedKey = deriveDeviceKey(groupKey ?? '', options.registrationId);
      if (options.json) {
        writeJson({
          registrationId: options.registrationId,
          derivedKey,
          enrollmentGroupId: options.group ?? null,
        });
        return;
      }
      write(derivedKey);
    },
  );
}

function addEnrollmentCommands(dps: Command): void {
  const enrollment = dps
    .command('enrollment')
    .description('manage enrollments: individual (--registration-id) and groups (--group)');

  addDpsConnectionOptions(
    enrollment
      .command('create')
      .summary('create an individual enrollment or an enrollment group')
      .description(
        'create an individual enrollment (--registration-id) or an enrollment group (--group). Attestation: a symmetric key (made by the service unless --primary-key is given), an X.509 device certificate (--certificate, individual), or for groups a verified CA of the hub (--ca-name) or a signing certificate (--signing-certificate)',
      )
      .option('--registration-id <id>', 'an individual enrollment for this registration id (for X.509: the CN)')
      .option('--group <name>', 'an enrollment group of this name')
      .option('--device-id <id>', 'individual: the device id to assign (default: the registration id)')
      .option('--primary-key <key>', 'symmetric key (base64); the service makes one when omitted')
      .option('--secondary-key <key>', 'second symmetric key (base64)')
      .option('--certificate <pemFile>', "individual X.509: the device's certificate (its CN is the registration id)")
      .option('--secondary-certificate <pemFile>', 'individual X.509: a second accepted device certificate')
      .option(
        '--ca-name <name>',
        'group X.509: a verified CA of the hub (fieldhub ca add / verify) issuing the devices',
      )
      .option('--signing-certificate <pemFile>', 'group X.509: the root or intermediate CA certificate, PEM')
      .option('--initial-twin <json>', 'the twin devices start with: {"tags":{..},"properties":{"desired":{..}}}')
      .option('--tags <json>', 'initial twin tags (merged into --initial-twin)')
      .option('--desired <json>', 'initial desired properties (merged into --initial-twin)')
      .option('--disabled', 'create it disabled: its devices are refused until it is enabled')
      .addOption(
        new Option(
          '--reprovision <policy>',
          'on re-registration: migrate (keep the twin, default), reset (initial twin again), never (keep the assignment)',
        ).choices(reprovisionChoices),
      )
      .option('--edge', 'the devices are IoT Edge devices')
      .option('--iot-hub <hostName>', 'the hub to assign devices to (default: this hub)')
      .option('--replace', 'replace an existing enrollment of that id')
      .option('--json', 'print the enrollment as JSON, keys included'),
  ).action(async (options: CreateOptions) => {
    const kind = targetOf(options);
    const attestation = await attestationOf(kind, options);
    const twin = initialTwinOf(options);
    const common: Omit<EnrollmentCommon, 'attestation'> = {
      provisioningStatus: options.disabled ? 'disabled' : 'enabled',
      ...(twin === undefined ? {} : { initialTwin: twin }),
      ...(options.reprovision === undefined ? {} : { reprovisionPolicy: reprovisionPolicies[options.reprovision] }),
      ...(options.edge ? { capabilities: { iotEdge: true } } : {}),
      ...(options.iotHub === undefined ? {} : { iotHubHostName: options.iotHub }),
    };
    if (options.caName !== undefined && options.connectionString === undefined) {
      await checkHubCa(options.caName, options);
    }
    const id = kind.id;
    const path = kind.kind === 'group' ? groupPath(id) : enrollmentPath(id);
    const service = await connectToProvisioningService(options);
    const existing = await getIfExists<EnrollmentCommon>(service, path);
    if (existing && !options.replace) {
      throw new Error(
        `${describeKind(kind.kind)} '${id}' already exists: pass --replace to overwrite it, or delete it first`,
      );
    }
    const body =
      kind.kind === 'group'
        ? { enrollmentGroupId: id, attestation, ...common }
        : {
            registrationId: id,
            ...(options.deviceId === undefined ? {} : { deviceId: options.deviceId }),
            attestation,
            ...common,
          };
    // Replacing sends the etag read above: a concurrent change in between fails instead of being overwritten.
    const headers: Record<string, string> = existing?.etag ? { 'if-match': existing.etag } : {};
    const created = await service.request<IndividualEnrollment | EnrollmentGroup>('PUT', path, { body, headers });
    const withKeys = await withSymmetricKeys(service, kind.kind, id, created);
    if (options.json) {
      writeJson(withKeys);
      return;
    }
    const verb = existing ? 'Replaced' : 'Created';
    write(
      `${verb} ${describeKind(kind.kind)} '${id}' (${describeAttestation(withKeys.attestation)}, ${withKeys.provisioningStatus ?? 'enabled'}).`,
    );
    const where =
      service.idScope === undefined
        ? 'Devices register with the provisioning service'
        : `Devices register at ${service.hostName} with ID scope ${service.idScope}`;
    if (withKeys.attestation.type === 'symmetricKey' && kind.kind === 'group') {
      write(`${where}, each with its derived key: fieldhub dps derive-key --group ${id} --registration-id <id>`);
    } else if (withKeys.attestation.type === 'symmetricKey') {
      write(`${where}, with the enrollment's primary key: fieldhub dps enrollment show --registration-id ${id} --json`);
    } else {
      write(`${where}, with their certificate (registration id = the certificate's CN).`);
    }
  });

  addDpsConnectionOptions(
    enrollment
      .command('list')
      .description('list individual enrollments and enrollment groups')
      .option('--individual', 'only individual enrollments')
      .option('--groups', 'only enrollment groups')
      .option('--json', 'print { enrollments: [..], enrollmentGroups: [..] }'),
  ).action(async (options: DpsConnectionOptions & JsonOption & { individual?: boolean; groups?: boolean }) => {
    const service = await connectToProvisioningService(options);
    const both = options.individual === options.groups;
    const [individual, groups] = await Promise.all([
      both || options.individual
        ? service.query<IndividualEnrollment>('/enrollments/query')
        : Promise.resolve<IndividualEnrollment[]>([]),
      both || options.groups
        ? service.query<EnrollmentGroup>('/enrollmentGroups/query')
        : Promise.resolve<EnrollmentGroup[]>([]),
    ]);
    if (options.json) {
      writeJson({
        ...(both || options.individual ? { enrollments: individual } : {}),
        ...(both || options.groups ? { enrollmentGroups: groups } : {}),
      });
      return;
    }
    if (individual.length === 0 && groups.length === 0) {
      write(
        'No enrollments. Create one with: fieldhub dps enrollment create --group <name> (or --registration-id <id>)',
      );
      return;
    }
    const rows = [
      ...[...groups]
        .sort((a, b) => a.enrollmentGroupId.localeCompare(b.enrollmentGroupId))
        .map((g) => [
          'group',
          g.enrollmentGroupId,
          describeAttestation(g.attestation),
          g.provisioningStatus ?? '-',
          '-',
        ]),
      ...[...individual]
        .sort((a, b) => a.registrationId.localeCompare(b.registrationId))
        .map((e) => [
          'individual',
          e.registrationId,
          describeAttestation(e.attestation),
          e.provisioningStatus ?? '-',
          e.deviceId ?? e.registrationId,
        ]),
    ];
    write(table(['KIND', 'ID', 'ATTESTATION', 'STATUS', 'DEVICE ID'], rows));
  });

  addDpsConnectionOptions(
    enrollment
      .command('show')
      .description('show one enrollment (keys only with --json)')
      .option('--registration-id <id>', 'an individual enrollment')
      .option('--group <name>', 'an enrollment group')
      .option('--json', 'print the enrollment as JSON, keys included'),
  ).action(async (options: DpsConnectionOptions & TargetOptions & JsonOption) => {
    const kind = targetOf(options);
    const service = await connectToProvisioningService(options);
    const path = kind.kind === 'group' ? groupPath(kind.id) : enrollmentPath(kind.id);
    const one = await service.request<IndividualEnrollment | EnrollmentGroup>('GET', path);
    if (options.json) {
      writeJson(await withSymmetricKeys(service, kind.kind, kind.id, one));
      return;
    }
    // Azure's individual enrollment may carry its registration state; otherwise the registration record has it.
    const state =
      'registrationId' in one
        ? (one.registrationState ??
          (await getIfExists<DeviceRegistrationState>(service, registrationPath(one.registrationId))))
        : undefined;
    write(fields(enrollmentRows(kind.kind, kind.id, one, state)));
  });

  addDpsConnectionOptions(
    enrollment
      .command('delete')
      .description('delete an enrollment (its devices can no longer register; their hub identities stay)')
      .option('--registration-id <id>', 'an individual enrollment')
      .option('--group <name>', 'an enrollment group'),
  ).action(async (options: DpsConnectionOptions & TargetOptions) => {
    const kind = targetOf(options);
    const service = await connectToProvisioningService(options);
    await service.request<undefined>('DELETE', kind.kind === 'group' ? groupPath(kind.id) : enrollmentPath(kind.id));
    write(`Deleted ${describeKind(kind.kind)} '${kind.id}'.`);
  });
}

function addRegistrationCommands(dps: Command): void {
  const registration = dps
    .command('registration')
    .description("devices' registration records (what the service assigned them)");

  addDpsConnectionOptions(
    registration
      .command('list')
      .description("list the registrations of an enrollment group's devices")
      .requiredOption('--group <name>', 'the enrollment group')
      .option('--json', 'print the registration records as a JSON array'),
  ).action(async (options: DpsConnectionOptions & JsonOption & { group: string }) => {
    const service = await connectToProvisioningService(options);
    const records = await service.query<DeviceRegistrationState>(registrationPath(options.group, 'query'));
    if (options.json) {
      writeJson(records);
      return;
    }
    if (records.length === 0) {
      write(`No device has registered through enrollment group '${options.group}' yet.`);
      return;
    }
    write(
      table(
        ['REGISTRATION ID', 'STATUS', 'DEVICE ID', 'ASSIGNED HUB', 'UPDATED'],
        [...records]
          .sort((a, b) => a.registrationId.localeCompare(b.registrationId))
          .map((r) => [
            r.registrationId,
            r.status ?? '-',
            r.deviceId ?? '-',
            r.assignedHub ?? '-',
            r.lastUpdatedDateTimeUtc ?? '-',
          ]),
      ),
    );
  });

  addDpsConnectionOptions(
    registration
      .command('show')
      .description("show a device's registration record")
      .argument('<registrationId>', 'the registration id')
      .option('--json', 'print the record as JSON'),
  ).action(async (registrationId: string, options: DpsConnectionOptions & JsonOption) => {
    const service = await connectToProvisioningService(options);
    const record = await service.request<DeviceRegistrationState>('GET', registrationPath(registrationId));
    if (options.json) {
      writeJson(record);
      return;
    }
    const rows: [string, string][] = [
      ['registration id', record.registrationId],
      ['status', record.substatus ? `${record.status ?? '-'} (${record.substatus})` : (record.status ?? '-')],
      ['device id', record.deviceId ?? '-'],
      ['assigned hub', record.assignedHub ?? '-'],
      ['created', record.createdDateTimeUtc ?? '-'],
      ['updated', record.lastUpdatedDateTimeUtc ?? '-'],
    ];
    if (record.errorCode !== undefined) rows.push(['error', `${record.errorCode} ${record.errorMessage ?? ''}`.trim()]);
    if (record.etag !== undefined) rows.push(['etag', record.etag]);
    write(fields(rows));
  });

  addDpsConnectionOptions(
    registration
      .command('delete')
      .description("delete a device's registration record: it registers afresh next time (its hub identity stays)")
      .argument('<registrationId>', 'the registration id'),
  ).action(async (registrationId: string, options: DpsConnectionOptions) => {
    const service = await connectToProvisioningService(options);
    await service.request<undefined>('DELETE', registrationPath(registrationId));
    write(`Deleted the registration record of '${registrationId}'.`);
  });
}

/** Adds `--data-dir`, `--connection-string` (the provisioning service's) and `--ca` to a command. */
function addDpsConnectionOptions(command: Command): Command {
  return command
    .option('--data-dir <dir>', `the local hub's data directory, holding hub.json (default ${defaultDataDir})`)
    .option(
      '--connection-string <cs>',
      "the provisioning service's connection string (instead of hub.json): HostName=..;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=..",
    )
    .option('--ca <file>', "PEM file of the CA to trust for the hub's TLS certificate");
}

/**
 * Reads the `dps` section of `<dataDir>/hub.json`.
 * @throws Error when hub.json is missing or unreadable, or the hub runs no provisioning service.
 */
export async function readDpsHubJson(dataDir: string): Promise<DpsHubJson> {
  // readHubJson checks the file and names it in its errors; the dps section is read here.
  await readHubJson(dataDir);
  const path = join(dataDir, 'hub.json');
  const parsed = JSON.parse(await readFile(path, 'utf8')) as { dps?: Partial<DpsHubJson> | null };
  const dps = parsed.dps;
  if (dps === undefined || dps === null) {
    throw new Error(`the hub in ${resolve(dataDir)} runs no provisioning service (hub.json has no dps section)`);
  }
  const ports = (dps.ports ?? {}) as Partial<DpsHubJson['ports']>;
  if (
    typeof dps.host !== 'string' ||
    typeof dps.idScope !== 'string' ||
    typeof ports.https !== 'number' ||
    typeof dps.serviceConnectionString !== 'string'
  ) {
    throw new Error(`${path} dps lacks host, idScope, ports.https or serviceConnectionString`);
  }
  return {
    host: dps.host,
    idScope: dps.idScope,
    ports: {
      https: ports.https,
      mqtt: typeof ports.mqtt === 'number' ? ports.mqtt : null,
      amqp: typeof ports.amqp === 'number' ? ports.amqp : null,
    },
    serviceConnectionString: dps.serviceConnectionString,
  };
}

/**
 * Finds the provisioning service from the flags: `--connection-string` (with `--ca`) wins and is dialled on its
 * `HostName` (a `host:port` there names the port, else 443); otherwise hub.json's `dps` section, dialled on
 * `dps.ports.https` with the hub's CA. Every request is signed with a fresh SAS token (`sr` = the host name).
 * @throws ArgumentError for a bad connection string; Error when hub.json, its dps section or the CA file is missing.
 */
async function connectToProvisioningService(options: DpsConnectionOptions): Promise<ProvisioningService> {
  let connectionString: string;
  let port: number | undefined;
  let idScope: string | undefined;
  let caFile = options.ca;
  if (options.connectionString !== undefined) {
    connectionString = options.connectionString;
  } else {
    const dataDir = options.dataDir ?? defaultDataDir;
    const dps = await readDpsHubJson(dataDir);
    connectionString = dps.serviceConnectionString;
    port = dps.ports.https;
    idScope = dps.idScope;
    caFile ??= (await readHubJson(dataDir)).caCertificate;
  }
  const parsed = parseServiceConnectionString(connectionString);
  const { host: hostName, port: statedPort } = splitHostPort(parsed.hostName);
  const ca = caFile === undefined ? undefined : await readFlagFile(caFile, 'CA certificate');
  const dialPort = port ?? statedPort ?? 443;
  const { createSasToken } = await import('@fieldhub/auth');

  const request = async <T>(
    method: string,
    path: string,
    requestOptions: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<{ value: T; headers: Record<string, string | string[] | undefined> }> => {
    // Like Azure's provisioning service SDK: a fresh token per request, sr = the service's host name.
    const authorization =
      'sharedAccessSignature' in parsed
        ? parsed.sharedAccessSignature
        : await createSasToken({
            resourceUri: hostName,
            key: parsed.sharedAccessKey,
            keyName: parsed.sharedAccessKeyName,
            ttlSeconds: 3600,
          });
    const separator = path.includes('?') ? '&' : '?';
    const headers: Record<string, string> = { accept: 'application/json', authorization, ...requestOptions.headers };
    let body: Buffer | undefined;
    if (requestOptions.body !== undefined) {
      body = Buffer.from(JSON.stringify(requestOptions.body));
      headers['content-type'] = 'application/json; charset=utf-8';
    }
    headers['content-length'] = String(body?.length ?? 0);
    const response = await httpsSend({
      hostName,
      port: dialPort,
      ca,
      method,
      path: `${path}${separator}api-version=${provisioningServiceApiVersion}`,
      headers,
      body,
      signal: AbortSignal.timeout(requestTimeoutMs),
      peer: 'provisioning service',
    });
    if (response.status < 200 || response.status > 299) throw errorFrom(response.status, response.text);
    return { value: parseJson(response.text) as T, headers: response.headers };
  };

  return {
    hostName,
    port: dialPort,
    idScope,
    async request<T>(method: string, path: string, options?: { body?: unknown; headers?: Record<string, string> }) {
      return (await request<T>(method, path, options)).value;
    },
    async query<T>(path: string): Promise<T[]> {
      const all: T[] = [];
      let continuation: string | undefined;
      // Bounded so that a service repeating a token cannot loop forever.
      for (let page = 0; page < 10_000; page += 1) {
        const headers: Record<string, string> = { 'x-ms-max-item-count': String(queryPageSize) };
        if (continuation !== undefined) headers['x-ms-continuation'] = continuation;
        const answer = await request<T[] | undefined>('POST', path, { body: { query: '*' }, headers });
        all.push(...(answer.value ?? []));
        const next = answer.headers['x-ms-continuation'];
        continuation = typeof next === 'string' && next !== '' ? next : undefined;
        if (continuation === undefined) return all;
      }
      throw new Error(`${path}: the service kept answering continuation tokens`);
    },
  };
}

type Target = { kind: 'individual' | 'group'; id: string };

function targetOf(options: TargetOptions): Target {
  if ((options.registrationId === undefined) === (options.group === undefined)) {
    throw new ArgumentError('give --registration-id <id> (individual enrollment) or --group <name>, one of them');
  }
  if (options.group !== undefined) {
    if (options.group === '') throw new ArgumentError('--group must not be empty');
    return { kind: 'group', id: options.group };
  }
  return { kind: 'individual', id: options.registrationId ?? '' };
}

async function attestationOf(target: Target, options: CreateOptions): Promise<AttestationMechanism> {
  const x509Flags = [
    ['--certificate', options.certificate],
    ['--secondary-certificate', options.secondaryCertificate],
    ['--ca-name', options.caName],
    ['--signing-certificate', options.signingCertificate],
  ] as const;
  const given = x509Flags.filter(([, value]) => value !== undefined).map(([flag]) => flag);
  const keyFlags = [options.primaryKey, options.secondaryKey].some((value) => value !== undefined);
  if (given.length > 0 && keyFlags) {
    throw new ArgumentError(`give symmetric keys or ${given.join(' / ')}, not both`);
  }
  if (target.kind === 'group') {
    if (options.deviceId !== undefined) {
      throw new ArgumentError('--device-id is for individual enrollments: a group device gets its registration id');
    }
    if (options.certificate !== undefined || options.secondaryCertificate !== undefined) {
      throw new ArgumentError(
        '--certificate is for individual enrollments; a group takes --ca-name or --signing-certificate',
      );
    }
    if (options.caName !== undefined && options.signingCertificate !== undefined) {
      throw new ArgumentError('give --ca-name or --signing-certificate, not both');
    }
    if (options.caName !== undefined) return { type: 'x509', x509: { caReferences: { primary: options.caName } } };
    if (options.signingCertificate !== undefined) {
      const certificate = await readCertificateFile(options.signingCertificate, 'signing certificate');
      return { type: 'x509', x509: { signingCertificates: { primary: { certificate } } } };
    }
  } else {
    validateRegistrationId(target.id);
    if (options.caName !== undefined || options.signingCertificate !== undefined) {
      throw new ArgumentError('--ca-name and --signing-certificate are for groups (--group); use --certificate');
    }
    if (options.secondaryCertificate !== undefined && options.certificate === undefined) {
      throw new ArgumentError('--secondary-certificate needs --certificate');
    }
    if (options.certificate !== undefined) {
      const certificate = await readCertificateFile(options.certificate, 'device certificate');
      const { parseCertificate } = await import('@fieldhub/auth');
      const commonName = parseCertificate(certificate).subject.commonName;
      if (commonName !== undefined && commonName.toLowerCase() !== target.id.toLowerCase()) {
        // DPS takes the registration id from the certificate's CN (§5.5): such a device could never register.
        throw new ArgumentError(
          `the certificate's CN is '${commonName}', not the registration id '${target.id}': X.509 devices register as their CN`,
        );
      }
      const primary = { certificate };
      if (options.secondaryCertificate === undefined) {
        return { type: 'x509', x509: { clientCertificates: { primary } } };
      }
      const secondary = {
        certificate: await readCertificateFile(options.secondaryCertificate, 'secondary device certificate'),
      };
      return { type: 'x509', x509: { clientCertificates: { primary, secondary } } };
    }
  }
  if (options.secondaryKey !== undefined && options.primaryKey === undefined) {
    throw new ArgumentError('--secondary-key needs --primary-key');
  }
  for (const [flag, key] of [
    ['--primary-key', options.primaryKey],
    ['--secondary-key', options.secondaryKey],
  ] as const) {
    if (key !== undefined && !/^[A-Za-z0-9+/]{16,}={0,2}$/.test(key)) {
      throw new ArgumentError(`${flag} must be a base64 key (at least 16 characters)`);
    }
  }
  // No keys: the service makes them, as Azure DPS does.
  return {
    type: 'symmetricKey',
    symmetricKey: {
      ...(options.primaryKey === undefined ? {} : { primaryKey: options.primaryKey }),
      ...(options.secondaryKey === undefined ? {} : { secondaryKey: options.secondaryKey }),
    },
  };
}

async function readCertificateFile(file: string, what: string): Promise<string> {
  const text = await readFlagFile(file, what);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
  if (pem === undefined) throw new ArgumentError(`${file} holds no PEM certificate`);
  const { parseCertificate } = await import('@fieldhub/auth');
  try {
    parseCertificate(pem);
  } catch {
    throw new ArgumentError(`${file} holds no readable PEM certificate`);
  }
  return `${pem}\n`;
}

function initialTwinOf(options: CreateOptions): InitialTwin | undefined {
  let twin: InitialTwin | undefined;
  if (options.initialTwin !== undefined) {
    const value = parseJsonFlag(options.initialTwin, '--initial-twin');
    if (!isObject(value)) throw new ArgumentError('--initial-twin must be a JSON object');
    const unknown = Object.keys(value).filter((key) => key !== 'tags' && key !== 'properties');
    if (unknown.length > 0) {
      throw new ArgumentError(`--initial-twin takes tags and properties.desired, not ${unknown.join(', ')}`);
    }
    if (value.tags !== undefined && !isObject(value.tags))
      throw new ArgumentError('initial twin tags must be an object');
    const properties = value.properties;
    if (
      properties !== undefined &&
      (!isObject(properties) || (properties.desired !== undefined && !isObject(properties.desired)))
    ) {
      throw new ArgumentError('initial twin properties must be {"desired":{..}}');
    }
    twin = value as InitialTwin;
  }
  if (options.tags !== undefined) {
    const tags = parseJsonFlag(options.tags, '--tags');
    if (!isObject(tags)) throw new ArgumentError('--tags must be a JSON object');
    twin = { ...twin, tags: { ...twin?.tags, ...tags } };
  }
  if (options.desired !== undefined) {
    const desired = parseJsonFlag(options.desired, '--desired');
    if (!isObject(desired)) throw new ArgumentError('--desired must be a JSON object');
    twin = { ...twin, properties: { ...twin?.properties, desired: { ...twin?.properties?.desired, ...desired } } };
  }
  return twin;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** GET that answers undefined for a 404 instead of throwing. */
async function getIfExists<T>(service: ProvisioningService, path: string): Promise<T | undefined> {
  try {
    return await service.request<T>('GET', path);
  } catch (error) {
    if (error instanceof ProvisioningServiceError && error.status === 404) return undefined;
    throw error;
  }
}

/**
 * The symmetric keys of an enrollment. Azure's GET may leave keys out; its `attestationmechanism` action always
 * has them, so that is asked when the record lacks them.
 * @throws Error when the enrollment does not use symmetric keys.
 */
async function symmetricKeysOf(
  service: ProvisioningService,
  kind: Target['kind'],
  id: string,
  known?: AttestationMechanism,
): Promise<{ primaryKey: string; secondaryKey: string }> {
  let attestation = known;
  if (attestation === undefined || (attestation.type === 'symmetricKey' && !attestation.symmetricKey?.primaryKey)) {
    const path = kind === 'group' ? groupPath(id, 'attestationmechanism') : enrollmentPath(id, 'attestationmechanism');
    attestation = await service.request<AttestationMechanism>('POST', path);
  }
  if (attestation?.type !== 'symmetricKey') {
    throw new Error(
      `${describeKind(kind)} '${id}' does not use symmetric keys (its attestation is ${attestation?.type})`,
    );
  }
  const { primaryKey, secondaryKey } = attestation.symmetricKey ?? {};
  if (!primaryKey) throw new Error(`the service returned no key for ${describeKind(kind)} '${id}'`);
  return { primaryKey, secondaryKey: secondaryKey ?? '' };
}

async function withSymmetricKeys<T extends EnrollmentCommon>(
  service: ProvisioningService,
  kind: Target['kind'],
  id: string,
  enrollment: T,
): Promise<T> {
  if (enrollment.attestation?.type !== 'symmetricKey' || enrollment.attestation.symmetricKey?.primaryKey) {
    return enrollment;
  }
  const keys = await symmetricKeysOf(service, kind, id, enrollment.attestation);
  return { ...enrollment, attestation: { ...enrollment.attestation, symmetricKey: keys } };
}

/**
 * Checks that the local hub holds the CA a group names (`--ca-name`): a typo would otherwise make a group no device
 * can ever register through. An unverified CA is accepted, with a note: verification may follow.
 * @throws ArgumentError when the hub has no CA of that name.
 */
async function checkHubCa(name: string, options: DpsConnectionOptions): Promise<void> {
  const hub = await connectToHub({
    ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
    ...(options.ca === undefined ? {} : { ca: options.ca }),
  });
  let ca: { isVerified?: boolean };
  try {
    ca = await hub.request<{ isVerified?: boolean }>('GET', `/fieldhub/certificates/${encodeURIComponent(name)}`);
  } catch (error) {
    if (HubError.is(error) && error.status === 404) {
      throw new ArgumentError(`the hub holds no CA named '${name}': add it first (fieldhub ca add ${name} <pemFile>)`);
    }
    throw error;
  }
  if (!ca.isVerified) {
    note(`note: CA '${name}' is not verified: devices it issued are refused until fieldhub ca verify ${name}`);
  }
}

function describeKind(kind: Target['kind']): string {
  return kind === 'group' ? 'enrollment group' : 'individual enrollment';
}

function describeAttestation(attestation: AttestationMechanism | undefined): string {
  switch (attestation?.type) {
    case 'symmetricKey':
      return 'symmetric key';
    case 'x509': {
      const x509 = attestation.x509;
      if (x509?.caReferences?.primary) return `X.509 CA '${x509.caReferences.primary}'`;
      if (x509?.signingCertificates) return 'X.509 signing certificate';
      return 'X.509 certificate';
    }
    case 'tpm':
      return 'TPM';
    default:
      return attestation?.type ?? '-';
  }
}

function enrollmentRows(
  kind: Target['kind'],
  id: string,
  enrollment: IndividualEnrollment | EnrollmentGroup,
  state: DeviceRegistrationState | undefined,
): [string, string][] {
  const rows: [string, string][] = [
    [kind === 'group' ? 'enrollment group' : 'registration id', id],
    ['attestation', describeAttestation(enrollment.attestation)],
    ['status', enrollment.provisioningStatus ?? 'enabled'],
  ];
  const certificate =
    enrollment.attestation?.x509?.clientCertificates?.primary ??
    enrollment.attestation?.x509?.signingCertificates?.primary;
  const info = certificate?.info;
  if (info && typeof info.subjectName === 'string') rows.push(['certificate subject', info.subjectName]);
  if (info && typeof info.sha256Thumbprint === 'string') rows.push(['certificate SHA-256', info.sha256Thumbprint]);
  if ('registrationId' in enrollment) {
    rows.push(['device id', enrollment.deviceId ?? enrollment.registrationId]);
    if (state) {
      rows.push([
        'registration',
        state.substatus ? `${state.status ?? '-'} (${state.substatus})` : (state.status ?? '-'),
      ]);
      if (state.assignedHub) rows.push(['assigned hub', state.assignedHub]);
    }
  }
  const policy = enrollment.reprovisionPolicy;
  if (policy) {
    const name =
      policy.updateHubAssignment === false ? 'never' : policy.migrateDeviceData === false ? 'reset' : 'migrate';
    rows.push(['reprovision', name]);
  }
  if (enrollment.capabilities?.iotEdge) rows.push(['IoT Edge', 'yes']);
  if (enrollment.iotHubHostName) rows.push(['IoT hub', enrollment.iotHubHostName]);
  if (enrollment.initialTwin) rows.push(['initial twin', JSON.stringify(enrollment.initialTwin)]);
  if (enrollment.createdDateTimeUtc) rows.push(['created', enrollment.createdDateTimeUtc]);
  if (enrollment.lastUpdatedDateTimeUtc) rows.push(['updated', enrollment.lastUpdatedDateTimeUtc]);
  if (enrollment.etag) rows.push(['etag', enrollment.etag]);
  return rows;
}

/** A failed call to the provisioning service: its HTTP status and DPS error code. */
class ProvisioningServiceError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly errorCode: number | undefined,
  ) {
    super(message);
    this.name = 'ProvisioningServiceError';
  }
}

// DPS answers failures with {"errorCode":404201,"trackingId":..,"message":..,"timestampUtc":..}; the hub's REST
// envelope {"Message":"ErrorCode:<Name>;<text>"} is read too, for a proxy or an older hub in between.
function errorFrom(status: number, text: string): ProvisioningServiceError {
  const json = parseJson(text) as { errorCode?: unknown; message?: unknown; Message?: unknown } | undefined;
  if (json && typeof json.message === 'string') {
    const code = typeof json.errorCode === 'number' ? json.errorCode : undefined;
    return new ProvisioningServiceError(`${code ?? status}: ${json.message}`, status, code);
  }
  if (json && typeof json.Message === 'string') {
    const match = /^ErrorCode:([^;]+);(.*)$/s.exec(json.Message);
    return new ProvisioningServiceError(match ? `${match[1]}: ${match[2]}` : json.Message, status, undefined);
  }
  const first = text.trim().split('\n')[0] ?? '';
  return new ProvisioningServiceError(`HTTP ${status}${first ? `: ${first}` : ''}`, status, undefined);
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
