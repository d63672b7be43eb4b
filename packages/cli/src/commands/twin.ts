import type { Twin, TwinPatch } from '@fieldhub/service';
import type { Command } from 'commander';
import { addHubConnectionOptions, type HubConnectionOptions, openService } from '../hub-connection';
import { fields, parseJsonFlag, write, writeJson } from '../output';

interface TwinOptions extends HubConnectionOptions {
  module?: string;
  json?: boolean;
}

interface UpdateOptions extends TwinOptions {
  desired?: string;
  tags?: string;
  etag?: string;
}

/** Adds `fieldhub twin show|update`: device and module twins (tags, desired and reported properties). */
export function addTwinCommands(program: Command): void {
  const twin = program.command('twin').description('read and update device twins (tags, desired properties)');

  addHubConnectionOptions(
    twin
      .command('show')
      .description('show a twin: tags, desired and reported properties')
      .argument('<deviceId>', 'the device id')
      .option('--module <moduleId>', 'the twin of a module of the device')
      .option('--json', 'print the whole twin as JSON ($metadata included)'),
  ).action(async (deviceId: string, options: TwinOptions) => {
    await using connection = await openService(options);
    const shown = await connection.service.twins.get(deviceId, moduleOption(options));
    if (options.json) {
      writeJson(shown);
      return;
    }
    write(render(shown));
  });

  addHubConnectionOptions(
    twin
      .command('update')
      .summary('patch desired properties and tags')
      .description(
        "patch desired properties and tags (JSON merge: objects merge, null deletes a key); reported properties are the device's",
      )
      .argument('<deviceId>', 'the device id')
      .option('--desired <json>', 'desired properties to merge, e.g. \'{"interval":5}\'')
      .option('--tags <json>', 'tags to merge, e.g. \'{"site":"north"}\'')
      .option('--etag <etag>', "apply only if the twin's etag still is this one (else PreconditionFailed)")
      .option('--module <moduleId>', 'the twin of a module of the device')
      .option('--json', 'print the updated twin as JSON'),
  ).action(async (deviceId: string, options: UpdateOptions) => {
    if (options.desired === undefined && options.tags === undefined) {
      throw new Error('nothing to update: give --desired and/or --tags');
    }
    const patch: TwinPatch = {};
    if (options.tags !== undefined) patch.tags = object(parseJsonFlag(options.tags, '--tags'), '--tags');
    if (options.desired !== undefined) {
      patch.properties = { desired: object(parseJsonFlag(options.desired, '--desired'), '--desired') };
    }
    await using connection = await openService(options);
    const updated = await connection.service.twins.patch(deviceId, patch, {
      ...moduleOption(options),
      ...(options.etag === undefined ? {} : { etag: options.etag }),
    });
    if (options.json) {
      writeJson(updated);
      return;
    }
    const who = options.module === undefined ? `'${deviceId}'` : `'${deviceId}/${options.module}'`;
    write(`Updated the twin of ${who}: version ${updated.version}, etag ${updated.etag}.`);
  });
}

function moduleOption(options: { module?: string }): { moduleId?: string } {
  return options.module === undefined ? {} : { moduleId: options.module };
}

function object(value: unknown, flag: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${flag} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Drops `$metadata` (per-property timestamps): noise in a human view; `--json` keeps it. */
function withoutMetadata(collection: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(collection).filter(([key]) => key !== '$metadata'));
}

function indent(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/\n/g, '\n  ');
}

function render(twin: Twin): string {
  const header = fields([
    ['device id', twin.moduleId ? `${twin.deviceId} (module ${twin.moduleId})` : twin.deviceId],
    ['status', twin.status ?? '-'],
    ['connection', twin.connectionState ?? '-'],
    ['version', String(twin.version)],
    ['etag', twin.etag],
  ]);
  return [
    header,
    '',
    `tags:\n  ${indent(twin.tags ?? {})}`,
    `desired:\n  ${indent(withoutMetadata(twin.properties.desired))}`,
    `reported:\n  ${indent(withoutMetadata(twin.properties.reported))}`,
  ].join('\n');
}
