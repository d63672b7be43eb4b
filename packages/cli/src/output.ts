/**
 * Output helpers shared by the commands: lines on stdout, JSON, aligned tables, colour that switches itself off
 * when stdout is not a terminal (or NO_COLOR is set), and parsing of JSON-valued flags.
 */
import { ArgumentError } from '@fieldhub/protocol';
import { InvalidArgumentError } from 'commander';

/** Writes one line to stdout. */
export function write(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Writes a value as indented JSON to stdout. */
export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Writes one line to stderr (hints that must not pollute stdout, which scripts read). */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Left-aligned columns, two spaces apart; the last column is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `label  value` lines with the labels aligned. */
export function fields(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

const codes = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  magenta: [35, 39],
  cyan: [36, 39],
  gray: [90, 39],
} as const;

/** A colour (or weight) the CLI uses. */
export type Style = keyof typeof codes;

/** Whether a stream gets ANSI colour: a TTY, NO_COLOR unset (https://no-color.org), FORCE_COLOR forces it. */
export function colourEnabled(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  if (process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true;
}

/** Returns a painter: `paint('red', text)` wraps text in ANSI codes when colour is on, returns it as is otherwise. */
export function painter(enabled: boolean): (style: Style, text: string) => string {
  if (!enabled) return (_style, text) => text;
  return (style, text) => `\u001b[${codes[style][0]}m${text}\u001b[${codes[style][1]}m`;
}

/**
 * Parses a JSON-valued flag (`--payload`, `--desired`, `--tags`).
 * @throws ArgumentError naming the flag when the text is not JSON.
 */
export function parseJsonFlag(text: string, flag: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ArgumentError(`${flag} is not valid JSON: ${(error as Error).message}`, { field: flag });
  }
}

/** A commander parser for a positive integer flag or argument. */
export function positiveInteger(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0) throw new InvalidArgumentError('must be a positive integer');
  return number;
}

/** A commander parser for a positive number (decimals allowed). */
export function positiveNumber(value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new InvalidArgumentError('must be a positive number');
  return number;
}
