import type { FileUploadNotification } from '@fieldhub/service';
import type { Command } from 'commander';
import { addHubConnectionOptions, type HubConnectionOptions, openService } from '../hub-connection';
import { colourEnabled, note, painter, positiveInteger, positiveNumber, type Style } from '../output';

interface NotificationsOptions extends HubConnectionOptions {
  follow?: boolean;
  json?: boolean;
  keep?: boolean;
  count?: number;
  wait: number;
}

// With --keep nothing is settled until the command ends: let the reader hold many (the hub keeps the rest).
const keepWindow = 1000;

/** Adds `fieldhub files notifications`: the notifications of files devices uploaded. */
export function addFileCommands(program: Command): void {
  const files = program.command('files').description('files devices upload (file upload, service side)');

  addHubConnectionOptions(
    files
      .command('notifications')
      .summary('show (and complete) file-upload notifications')
      .description(
        'show the file-upload notifications waiting in the hub, completing each once shown (so the next run shows only new ones); with --follow, keep showing them as devices upload until Ctrl+C',
      )
      .option('--follow', 'keep waiting for new notifications until Ctrl+C (or --count)')
      .option(
        '--wait <seconds>',
        'without --follow: exit once no notification has arrived for this long',
        positiveNumber,
        3,
      )
      .option(
        '--keep',
        'leave the notifications in the hub: they are released when the command ends and delivered again (each look counts as a delivery)',
      )
      .option('--json', 'print one JSON object per line (times in ISO 8601)')
      .option('--count <n>', 'exit after n notifications', positiveInteger),
  ).action(async (options: NotificationsOptions) => {
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const paint = painter(!options.json && colourEnabled());
    // Without --follow, "what is waiting" is what arrives before the hub falls silent for --wait seconds.
    const idle = new AbortController();
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = () => {
      if (options.follow) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => idle.abort(), options.wait * 1000);
    };
    let seen = 0;
    await using connection = await openService(options);
    try {
      if (options.follow && !options.json) note('Waiting for file-upload notifications (Ctrl+C stops)...');
      armIdle();
      const notifications = connection.service.fileUploads.notifications({
        signal: AbortSignal.any([stop.signal, idle.signal]),
        ...(options.keep ? { maxUnsettled: keepWindow } : {}),
      });
      for await (const notification of notifications) {
        armIdle();
        process.stdout.write(
          `${options.json ? JSON.stringify(notification) : renderNotification(notification, paint)}\n`,
        );
        // Completed once shown: a notification printed is one handled. --keep leaves it to the release at the end.
        if (!options.keep) await notification.complete();
        seen += 1;
        if (options.count !== undefined && seen >= options.count) break;
      }
    } catch (error) {
      // Ctrl+C, or the hub fell silent without --follow: a normal end.
      if (!stop.signal.aborted && !idle.signal.aborted) throw error;
    } finally {
      clearTimeout(idleTimer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    if (!options.json && !options.follow && seen === 0 && !stop.signal.aborted) {
      note('No file-upload notifications waiting.');
    }
  });
}

/** One readable line for a notification; `paint` colours (or not). */
export function renderNotification(
  notification: FileUploadNotification,
  paint: (style: Style, text: string) => string,
): string {
  const time = notification.enqueuedTimeUtc.toISOString();
  return [
    paint('gray', time),
    paint('bold', paint('green', notification.deviceId)),
    notification.blobName,
    paint('cyan', `${notification.blobSizeInBytes} bytes`),
    paint('dim', notification.blobUri),
  ].join(' ');
}
