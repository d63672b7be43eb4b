/**
 * The gateway's default logger: one JSON object per line on stderr with pino's field names (`level` as pino's
 * numbers, `time`, `msg`), so that pino tooling (pino-pretty) reads it, without depending on pino. Details are
 * passed through {@link redact}: keys, signatures and tokens never reach a log line.
 */
import type { Logger } from '@fieldhub/device';
import type { LogLevel } from './config';

const pinoLevels = { debug: 20, info: 30, warn: 40, error: 50 } as const;
const order: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];
const secretNames = /key|signature|sig|token|password|secret|connectionstring/i;

/** A copy of `details` with secret-looking fields replaced and errors reduced to name, code and message. */
export function redact(details: Readonly<Record<string, unknown>> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (details === undefined) return out;
  for (const [name, value] of Object.entries(details)) {
    if (secretNames.test(name)) out[name] = '[redacted]';
    else if (value instanceof Error) {
      const code = (value as { code?: unknown }).code;
      out[name] = { name: value.name, message: scrub(value.message), ...(code !== undefined ? { code } : {}) };
    } else if (typeof value === 'string') out[name] = scrub(value);
    else out[name] = value;
  }
  return out;
}

/** Removes SAS signatures and keys that might hide inside a message text. */
function scrub(text: string): string {
  return text
    .replace(/(sig=)[^&\s;]+/gi, '$1[redacted]')
    .replace(/(SharedAccessKey=)[^;\s]+/gi, '$1[redacted]')
    .replace(/(SharedAccessSignature=)[^;\s]+/gi, '$1[redacted]');
}

/**
 * A logger writing JSON lines at `level` and above.
 * @param write where lines go; default stderr.
 */
export function createJsonLogger(
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const threshold = order.indexOf(level);
  const at =
    (name: keyof typeof pinoLevels) =>
    (message: string, details?: Readonly<Record<string, unknown>>): void => {
      if (order.indexOf(name) < threshold) return;
      write(
        `${JSON.stringify({ level: pinoLevels[name], time: Date.now(), name: 'fieldhub-bridge', msg: message, ...redact(details) })}\n`,
      );
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
