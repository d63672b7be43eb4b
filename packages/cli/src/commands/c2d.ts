import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { addHubConnectionOptions, type HubConnectionOptions, openService } from '../hub-connection';
import { write, writeJson } from '../output';

interface SendOptions extends HubConnectionOptions {
  ack: 'none' | 'positive' | 'negative' | 'full';
  messageId?: string;
  correlationId?: string;
  contentType?: string;
  property: Record<string, string>;
  json?: boolean;
}

function collectProperty(value: string, previous: Record<string, string>): Record<string, string> {
  const equals = value.indexOf('=');
  if (equals <= 0) throw new InvalidArgumentError('must be key=value');
  return { ...previous, [value.slice(0, equals)]: value.slice(equals + 1) };
}

/** Adds `fieldhub c2d send`: cloud-to-device messages. */
export function addCloudToDeviceCommands(program: Command): void {
  const c2d = program.command('c2d').description('send cloud-to-device messages');

  addHubConnectionOptions(
    c2d
      .command('send')
      .description('queue a cloud-to-device message for a device (delivered when it connects; it expires in an hour)')
      .argument('<deviceId>', 'the device id')
      .argument('<body>', 'the message body, sent as UTF-8 text')
      .addOption(
        new Option('--ack <kind>', 'feedback to ask the device for')
          .choices(['none', 'positive', 'negative', 'full'])
          .default('none'),
      )
      .option('--message-id <id>', 'the message id (default: a UUID)')
      .option('--correlation-id <id>', 'the correlation id')
      .option('--content-type <type>', 'the content type, e.g. application/json')
      .option('--property <key=value>', 'an application property (repeatable)', collectProperty, {})
      .option('--json', 'print what the hub answered as JSON'),
  ).action(async (deviceId: string, body: string, options: SendOptions) => {
    await using connection = await openService(options);
    const sent = await connection.service.cloudToDevice.send(
      deviceId,
      {
        body,
        ...(options.messageId === undefined ? {} : { messageId: options.messageId }),
        ...(options.correlationId === undefined ? {} : { correlationId: options.correlationId }),
        ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
        properties: options.property,
      },
      { ack: options.ack },
    );
    if (options.json) {
      writeJson(sent);
      return;
    }
    write(
      `Queued message ${sent.messageId} for '${deviceId}'${options.ack === 'none' ? '' : ` (feedback: ${options.ack})`}.`,
    );
  });
}
