import type { AuthenticationInput, AuthenticationMechanism, Device, DeviceInput, Module } from '@fieldhub/service';
import type { Command } from 'commander';
import { addHubConnectionOptions, type HubConnectionOptions, openService } from '../hub-connection';
import { fields, note, table, write, writeJson } from '../output';

interface JsonOption {
  json?: boolean;
}

interface CreateOptions extends HubConnectionOptions, JsonOption {
  x509Thumbprint?: string;
  secondaryThumbprint?: string;
  caSigned?: boolean;
  disabled?: boolean;
}

interface ConnectionStringOptions extends HubConnectionOptions, JsonOption {
  module?: string;
  withPort?: boolean;
}

const defaultMqttPort = 8883;
const never = '0001-01-01T00:00:00Z';
// GET /devices answers at most 1000 identities, as Azure's does.
const listLimit = 1000;

/** Adds `fieldhub device create|list|show|delete|connection-string`: the identity registry. */
export function addDeviceCommands(program: Command): void {
  const device = program.command('device').description('manage device identities in the registry');

  addHubConnectionOptions(
    device
      .command('create')
      .description('register a device: SAS keys made by the hub, or X.509 (thumbprints or a CA)')
      .argument('<deviceId>', 'the device id')
      .option(
        '--x509-thumbprint <hex>',
        'authenticate with a self-signed certificate of this thumbprint (SHA-1 or SHA-256)',
      )
      .option('--secondary-thumbprint <hex>', 'a second accepted thumbprint (with --x509-thumbprint)')
      .option('--ca-signed', 'authenticate with a certificate issued by a verified CA (fieldhub ca add / verify)')
      .option('--disabled', 'create the device disabled (it cannot connect until enabled)')
      .option('--json', 'print the created device as JSON'),
  ).action(async (deviceId: string, options: CreateOptions) => {
    const input: DeviceInput = {
      deviceId,
      authentication: authenticationOf(options),
      ...(options.disabled ? { status: 'disabled' as const } : {}),
    };
    await using connection = await openService(options);
    const created = await connection.service.devices.create(input);
    if (options.json) {
      writeJson(created);
      return;
    }
    write(
      `Created device '${created.deviceId}' (${describeAuthentication(created.authentication)}, ${created.status}).`,
    );
    write(`Its connection string: fieldhub device connection-string ${created.deviceId}`);
  });

  addHubConnectionOptions(
    device.command('list').description('list the devices').option('--json', 'print the devices as a JSON array'),
  ).action(async (options: HubConnectionOptions & JsonOption) => {
    await using connection = await openService(options);
    const devices = await connection.service.devices.list({ top: listLimit });
    if (devices.length >= listLimit) {
      note(`note: the first ${listLimit} devices (the most one listing returns); query the registry for the rest`);
    }
    if (options.json) {
      writeJson(devices);
      return;
    }
    if (devices.length === 0) {
      write('No devices. Create one with: fieldhub device create <deviceId>');
      return;
    }
    const sorted = [...devices].sort((a, b) => a.deviceId.localeCompare(b.deviceId));
    write(
      table(
        ['DEVICE ID', 'STATUS', 'CONNECTION', 'AUTHENTICATION', 'LAST ACTIVITY'],
        sorted.map((d) => [
          d.deviceId,
          d.status,
          d.connectionState,
          d.authentication.type ?? 'sas',
          time(d.lastActivityTime),
        ]),
      ),
    );
  });

  addHubConnectionOptions(
    device
      .command('show')
      .description('show a device identity (keys only with --json)')
      .argument('<deviceId>', 'the device id')
      .option('--json', 'print the device as JSON, keys included'),
  ).action(async (deviceId: string, options: HubConnectionOptions & JsonOption) => {
    await using connection = await openService(options);
    const one = await connection.service.devices.get(deviceId);
    if (options.json) {
      writeJson(one);
      return;
    }
    write(fields(deviceRows(one)));
  });

  addHubConnectionOptions(
    device
      .command('delete')
      .description('delete a device identity (its twin, modules and queued messages go with it)')
      .argument('<deviceId>', 'the device id'),
  ).action(async (deviceId: string, options: HubConnectionOptions) => {
    await using connection = await openService(options);
    await connection.service.devices.delete(deviceId);
    write(`Deleted device '${deviceId}'.`);
  });

  addHubConnectionOptions(
    device
      .command('connection-string')
      .summary("print a device's (or module's) connection string")
      .description(
        `print a device's (or module's) connection string, with its primary key (x509=true for X.509 identities). HostName is the hub's host name; when the local hub's MQTT port is not ${defaultMqttPort}, a note on stderr names it: give it to the transport (mqtt({ port })), or pass --with-port to write HostName=<host>:<port>, which the device SDKs dial`,
      )
      .argument('<deviceId>', 'the device id')
      .option('--module <moduleId>', 'a module of the device')
      .option('--with-port', "write the hub's MQTT port into HostName (HostName=<host>:<mqttPort>)")
      .option('--json', 'print { connectionString, deviceId, moduleId, hostName, mqttPort }'),
  ).action(async (deviceId: string, options: ConnectionStringOptions) => {
    await using connection = await openService(options);
    const identity: Device | Module =
      options.module === undefined
        ? await connection.service.devices.get(deviceId)
        : await connection.service.devices.modules.get(deviceId, options.module);
    const mqttPort = connection.mqttPort ?? defaultMqttPort;
    const hostName =
      options.withPort && mqttPort !== defaultMqttPort ? `${connection.hostName}:${mqttPort}` : connection.hostName;
    const parts = [`HostName=${hostName}`, `DeviceId=${deviceId}`];
    if (options.module !== undefined) parts.push(`ModuleId=${options.module}`);
    const key = identity.authentication.symmetricKey?.primaryKey;
    const type = identity.authentication.type ?? 'sas';
    if (type === 'selfSigned' || type === 'certificateAuthority') parts.push('x509=true');
    else if (key) parts.push(`SharedAccessKey=${key}`);
    else throw new Error(`${options.module ?? deviceId} has no key and no certificate (authentication type ${type})`);
    const connectionString = parts.join(';');
    if (options.json) {
      writeJson({
        connectionString,
        deviceId,
        moduleId: options.module ?? null,
        hostName: connection.hostName,
        mqttPort,
      });
      return;
    }
    write(connectionString);
    if (mqttPort !== defaultMqttPort && !options.withPort) {
      note(
        `note: this hub serves MQTT on port ${mqttPort}, not ${defaultMqttPort}: use mqtt({ port: ${mqttPort} }) or --with-port`,
      );
    }
  });
}

function authenticationOf(options: CreateOptions): AuthenticationInput {
  if (options.caSigned && options.x509Thumbprint !== undefined) {
    throw new Error('give --x509-thumbprint or --ca-signed, not both');
  }
  if (options.secondaryThumbprint !== undefined && options.x509Thumbprint === undefined) {
    throw new Error('--secondary-thumbprint needs --x509-thumbprint');
  }
  if (options.caSigned) return { type: 'certificateAuthority' };
  if (options.x509Thumbprint !== undefined) {
    return {
      type: 'selfSigned',
      x509Thumbprint: {
        primaryThumbprint: options.x509Thumbprint,
        secondaryThumbprint: options.secondaryThumbprint ?? null,
      },
    };
  }
  // Empty keys: the hub makes them.
  return { type: 'sas', symmetricKey: { primaryKey: null, secondaryKey: null } };
}

function describeAuthentication(authentication: AuthenticationMechanism): string {
  switch (authentication.type) {
    case 'selfSigned':
      return 'X.509 self-signed';
    case 'certificateAuthority':
      return 'X.509 CA-signed';
    case 'none':
      return 'no authentication';
    default:
      return 'SAS';
  }
}

function time(value: string | undefined): string {
  return value === undefined || value.startsWith('0001-01-01') || value === never ? '-' : value;
}

function deviceRows(device: Device): [string, string][] {
  const rows: [string, string][] = [
    ['device id', device.deviceId],
    ['status', device.statusReason ? `${device.status} (${device.statusReason})` : device.status],
    ['connection', device.connectionState],
    ['authentication', describeAuthentication(device.authentication)],
  ];
  const thumbprints = device.authentication.x509Thumbprint;
  if (thumbprints?.primaryThumbprint) rows.push(['primary thumbprint', thumbprints.primaryThumbprint]);
  if (thumbprints?.secondaryThumbprint) rows.push(['secondary thumbprint', thumbprints.secondaryThumbprint]);
  rows.push(
    ['last activity', time(device.lastActivityTime)],
    ['connection changed', time(device.connectionStateUpdatedTime)],
    ['queued C2D messages', String(device.cloudToDeviceMessageCount)],
    ['generation id', device.generationId],
    ['etag', device.etag],
  );
  return rows;
}
