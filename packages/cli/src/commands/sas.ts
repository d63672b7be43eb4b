import {
  ArgumentError,
  deviceResourceUri,
  hubResourceUri,
  moduleResourceUri,
  parseServiceConnectionString,
} from '@fieldhub/protocol';
import type { Command } from 'commander';
import { addHubConnectionOptions, connectToHub, type HubConnectionOptions, openService } from '../hub-connection';
import { positiveInteger, write, writeJson } from '../output';

interface TokenOptions {
  ttl: number;
  json?: boolean;
}

interface PolicyDescription {
  name: string;
  primaryKey: string;
}

const defaultTtl = 3600;

/**
 * Adds `fieldhub sas device|policy|key`: SAS tokens signed with a device key (looked up in the registry), a shared
 * access policy's key, or any key given on the command line. The token alone goes to stdout, for scripts.
 */
export function addSasCommands(program: Command): void {
  const sas = program.command('sas').description('make SAS tokens (device, policy or any key)');

  addHubConnectionOptions(
    sas
      .command('device')
      .description("make a device (or module) SAS token, signed with the identity's primary key from the registry")
      .argument('<deviceId>', 'the device id')
      .option('--module <moduleId>', 'a module of the device')
      .option('--ttl <seconds>', `lifetime (default ${defaultTtl})`, positiveInteger, defaultTtl)
      .option('--json', 'print { token, resourceUri, expiresAt }'),
  ).action(async (deviceId: string, options: HubConnectionOptions & TokenOptions & { module?: string }) => {
    await using connection = await openService(options);
    const identity =
      options.module === undefined
        ? await connection.service.devices.get(deviceId)
        : await connection.service.devices.modules.get(deviceId, options.module);
    const key = identity.authentication?.symmetricKey?.primaryKey;
    if (!key) {
      throw new ArgumentError(`${options.module ?? deviceId} has no symmetric key (it authenticates with X.509)`);
    }
    const resourceUri =
      options.module === undefined
        ? deviceResourceUri(connection.hostName, deviceId)
        : moduleResourceUri(connection.hostName, deviceId, options.module);
    await print(resourceUri, key, undefined, options);
  });

  addHubConnectionOptions(
    sas
      .command('policy')
      .description("make a service SAS token signed with a shared access policy's key")
      .option('--name <policy>', 'the policy (iothubowner, service, registryRead, registryReadWrite, device)')
      .option('--ttl <seconds>', `lifetime (default ${defaultTtl})`, positiveInteger, defaultTtl)
      .option('--json', 'print { token, resourceUri, expiresAt }'),
  ).action(async (options: HubConnectionOptions & TokenOptions & { name?: string }) => {
    const hub = await connectToHub(options);
    const own = parseServiceConnectionString(hub.connectionString);
    const name = options.name ?? ('sharedAccessKeyName' in own ? own.sharedAccessKeyName : 'iothubowner');
    let key: string;
    if ('sharedAccessKey' in own && own.sharedAccessKeyName === name) {
      key = own.sharedAccessKey;
    } else {
      // Another policy's key: ask the hub (needs a policy with every permission, e.g. iothubowner).
      const policy = await hub.request<PolicyDescription>('GET', `/fieldhub/policies/${encodeURIComponent(name)}`);
      key = policy.primaryKey;
    }
    await print(hubResourceUri(hub.hostName), key, name, options);
  });

  sas
    .command('key')
    .description('make a SAS token for any resource URI from a base64 key (no hub needed)')
    .requiredOption('--key <base64>', 'the shared access key')
    .requiredOption('--resource <uri>', 'the resource, e.g. myhub.example/devices/d1')
    .option('--key-name <policy>', 'the policy name (skn), for policy keys')
    .option('--ttl <seconds>', `lifetime (default ${defaultTtl})`, positiveInteger, defaultTtl)
    .option('--json', 'print { token, resourceUri, expiresAt }')
    .action(async (options: TokenOptions & { key: string; resource: string; keyName?: string }) => {
      await print(options.resource, options.key, options.keyName, options);
    });
}

async function print(resourceUri: string, key: string, keyName: string | undefined, options: TokenOptions) {
  const now = new Date();
  const { createSasToken } = await import('@fieldhub/auth');
  const token = await createSasToken({
    resourceUri,
    key,
    ...(keyName === undefined ? {} : { keyName }),
    ttlSeconds: options.ttl,
    now,
  });
  if (options.json) {
    const expiresAt = new Date(Math.floor(now.getTime() / 1000) * 1000 + options.ttl * 1000).toISOString();
    writeJson({ token, resourceUri, ...(keyName === undefined ? {} : { keyName }), expiresAt });
    return;
  }
  write(token);
}
