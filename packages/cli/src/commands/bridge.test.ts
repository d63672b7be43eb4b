import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addBridgeCommand } from './bridge';

function run(...args: string[]): Promise<unknown> {
  const program = new Command('fieldhub').exitOverride();
  addBridgeCommand(program);
  return program.parseAsync(['node', 'fieldhub', 'bridge', ...args]);
}

describe('fieldhub bridge', () => {
  it('asks for a config file or a port', async () => {
    await expect(run()).rejects.toThrow('give --config <file>, or --port <path> with --connection-string or --hub');
  });

  it('wants exactly one of --connection-string and --hub with --port', async () => {
    await expect(run('--port', '/dev/null')).rejects.toThrow('exactly one of --connection-string (auth 0) and --hub');
    await expect(
      run('--port', '/dev/null', '--hub', 'h', '--connection-string', 'HostName=h;DeviceId=d;SharedAccessKey=a2V5'),
    ).rejects.toThrow('exactly one of');
  });

  it('names the config file it cannot read', async () => {
    await expect(run('--config', '/nonexistent/bridge.json')).rejects.toThrow(
      '/nonexistent/bridge.json: cannot read the config file (ENOENT)',
    );
  });

  it('refuses a baud rate that is not one', async () => {
    await expect(run('--port', '/dev/null', '--hub', 'h', '--baud', 'fast')).rejects.toThrow(
      '--baud must be an integer',
    );
  });
});
