import { HubError } from '@fieldhub/protocol';
import { Command, CommanderError } from 'commander';
import { addBridgeCommand } from './commands/bridge';
import { addCloudToDeviceCommands } from './commands/c2d';
import { addCaCommands } from './commands/ca';
import { addCertCommands } from './commands/cert';
import { addDeviceCommands } from './commands/device';
import { addDpsCommands } from './commands/dps';
import { addFileCommands } from './commands/files';
import { addHubCommands } from './commands/hub-start';
import { addMethodCommands } from './commands/method';
import { addMonitorCommand } from './commands/monitor';
import { addSasCommands } from './commands/sas';
import { addSimulateCommand } from './commands/simulate';
import { addTwinCommands } from './commands/twin';

/** Builds the `fieldhub` command tree. */
export function createProgram(): Command {
  const program = new Command('fieldhub')
    .description('Fieldhub: a self-hosted, Azure IoT Hub-compatible hub, and the tools around it')
    .showHelpAfterError()
    .exitOverride();
  addHubCommands(program);
  addDeviceCommands(program);
  addTwinCommands(program);
  addMethodCommands(program);
  addCloudToDeviceCommands(program);
  addMonitorCommand(program);
  addFileCommands(program);
  addSimulateCommand(program);
  addCertCommands(program);
  addCaCommands(program);
  addSasCommands(program);
  addDpsCommands(program);
  addBridgeCommand(program);
  return program;
}

/**
 * Runs the CLI. User errors end with a one-line reason on stderr and exit code 1 (2 for usage errors); no stack
 * traces unless FIELDHUB_DEBUG is set.
 */
export async function runCli(argv: readonly string[] = process.argv): Promise<void> {
  const program = createProgram();
  try {
    await program.parseAsync([...argv]);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    const message = HubError.is(error)
      ? `${error.code}: ${error.message}`
      : error instanceof Error
        ? error.message
        : String(error);
    process.stderr.write(`fieldhub: ${message}\n`);
    if (process.env.FIELDHUB_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    process.exitCode = 1;
  }
}
