import { HubError } from '@fieldhub/protocol';
import type { Command } from 'commander';
import { addHubConnectionOptions, type HubConnectionOptions, openService } from '../hub-connection';
import { parseJsonFlag, positiveInteger, writeJson } from '../output';

interface InvokeOptions extends HubConnectionOptions {
  payload?: string;
  timeout: number;
  module?: string;
}

/** Adds `fieldhub method invoke`: direct methods. */
export function addMethodCommands(program: Command): void {
  const method = program.command('method').description('invoke direct methods on devices');

  addHubConnectionOptions(
    method
      .command('invoke')
      .summary('invoke a direct method and print { status, payload }')
      .description(
        "invoke a direct method and print the device's answer as JSON, { status, payload } (exit 0 whatever status the device chose; exit 1 when the device is not online or did not answer in time)",
      )
      .argument('<deviceId>', 'the device id')
      .argument('<methodName>', 'the method name')
      .option('--payload <json>', 'the request payload, JSON (default null)')
      .option('--timeout <seconds>', 'how long the device has to answer', positiveInteger, 30)
      .option('--module <moduleId>', 'invoke on a module of the device'),
  ).action(async (deviceId: string, methodName: string, options: InvokeOptions) => {
    const payload = options.payload === undefined ? null : parseJsonFlag(options.payload, '--payload');
    await using connection = await openService(options);
    try {
      const result = await connection.service.directMethods.invoke(deviceId, {
        methodName,
        payload,
        responseTimeoutInSeconds: options.timeout,
        ...(options.module === undefined ? {} : { moduleId: options.module }),
      });
      writeJson({ status: result.status, payload: result.payload });
    } catch (error) {
      if (HubError.is(error) && error.code === 'DeviceNotOnline') {
        const who = options.module === undefined ? `device '${deviceId}'` : `module '${deviceId}/${options.module}'`;
        throw new HubError(
          'DeviceNotOnline',
          `${who} is not online (not connected, or not listening for direct methods)`,
        );
      }
      throw error;
    }
  });
}
