import type { TelemetryEvent } from '@fieldhub/service';
import type { Command } from 'commander';
import { Option } from 'commander';
import { addHubConnectionOptions, type HubConnectionOptions, openService } from '../hub-connection';
import { colourEnabled, note, painter, positiveInteger, type Style } from '../output';

interface MonitorOptions extends HubConnectionOptions {
  device?: string;
  from: 'earliest' | 'latest';
  consumerGroup: string;
  json?: boolean;
  count?: number;
}

/** Hub event sources, as `iothub-message-source` names them, and how they are labelled. */
const hubEvents: Record<string, { label: string; style: Style }> = {
  deviceLifecycleEvents: { label: 'lifecycle', style: 'magenta' },
  twinChangeEvents: { label: 'twin change', style: 'blue' },
  deviceConnectionStateEvents: { label: 'connection', style: 'yellow' },
};

/** Adds `fieldhub monitor`: telemetry and hub events from the built-in endpoint, as they arrive. */
export function addMonitorCommand(program: Command): void {
  addHubConnectionOptions(
    program
      .command('monitor')
      .summary('show telemetry and hub events as they arrive')
      .description(
        'show telemetry and hub events (lifecycle, twin changes, connection state) from the built-in endpoint as they arrive; Ctrl+C stops',
      )
      .option('--device <deviceId>', 'only events of this device')
      .addOption(
        new Option('--from <position>', 'start at the oldest retained event or at new ones only')
          .choices(['earliest', 'latest'])
          .default('latest'),
      )
      .option('--consumer-group <name>', 'the consumer group to read as', '$Default')
      .option('--json', 'print one JSON object per line (body as text when UTF-8, else base64)')
      .option('--count <n>', 'exit after n events', positiveInteger),
  ).action(async (options: MonitorOptions) => {
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const paint = painter(!options.json && colourEnabled());
    let seen = 0;
    await using connection = await openService(options);
    try {
      if (!options.json) {
        const filter = options.device === undefined ? '' : ` for '${options.device}'`;
        note(`Monitoring events${filter} from ${options.from} (Ctrl+C stops)...`);
      }
      const events = connection.service.telemetry.read({
        consumerGroup: options.consumerGroup,
        from: options.from,
        signal: stop.signal,
      });
      for await (const event of events) {
        if (options.device !== undefined && event.deviceId !== options.device) continue;
        process.stdout.write(`${options.json ? JSON.stringify(toJson(event)) : renderEvent(event, paint)}\n`);
        seen += 1;
        if (options.count !== undefined && seen >= options.count) break;
      }
    } catch (error) {
      // Ctrl+C ends the stream with an AbortError: a normal end.
      if (!stop.signal.aborted) throw error;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The body as text when it is valid UTF-8, else base64. */
export function bodyText(event: TelemetryEvent): { text: string; encoding: 'utf-8' | 'base64' } {
  if (event.bodyText !== undefined) return { text: event.bodyText, encoding: 'utf-8' };
  try {
    return { text: utf8.decode(event.body), encoding: 'utf-8' };
  } catch {
    return { text: Buffer.from(event.body).toString('base64'), encoding: 'base64' };
  }
}

/** The event as the service SDK gives it, with the body as text (or base64) and the time as ISO 8601. */
function toJson(event: TelemetryEvent): Record<string, unknown> {
  const { bodyText: _text, ...rest } = event;
  const { text, encoding } = bodyText(event);
  return { ...rest, enqueuedTime: event.enqueuedTime.toISOString(), body: text, bodyEncoding: encoding };
}

function source(event: TelemetryEvent): string {
  const value = event.systemProperties['iothub-message-source'];
  return typeof value === 'string' ? value : 'Telemetry';
}

/** One readable line for an event; `paint` colours (or not). */
export function renderEvent(event: TelemetryEvent, paint: (style: Style, text: string) => string): string {
  const time = event.enqueuedTime.toISOString();
  const deviceId = event.deviceId ?? '?';
  const who = event.moduleId ? `${deviceId}/${event.moduleId}` : deviceId;
  const hubEvent = hubEvents[source(event)];
  const { text, encoding } = bodyText(event);
  const body = encoding === 'base64' ? `${paint('dim', 'base64:')}${text}` : prettyBody(text);
  const properties = Object.entries(event.properties);
  if (hubEvent) {
    const operation = event.properties.opType ?? '';
    const head = `${paint('gray', time)} ${paint('bold', who)} ${paint(hubEvent.style, `[${hubEvent.label}${operation ? `: ${operation}` : ''}]`)}`;
    // A lifecycle event carries the whole twin: a glimpse is enough on screen (--json has it all).
    return `${head} ${paint('dim', body.length > 160 ? `${body.slice(0, 159)}…` : body)}`;
  }
  const shownProperties =
    properties.length === 0 ? '' : ` ${paint('cyan', properties.map(([key, value]) => `${key}=${value}`).join(' '))}`;
  return `${paint('gray', time)} ${paint('bold', paint('green', who))} ${body}${shownProperties}`;
}

/** JSON bodies on one line; other text as is. */
function prettyBody(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text;
  }
}
