/**
 * A tiny logger seam: pass `console`, a pino/winston child, or nothing (silent). Each method is optional. Messages
 * are short sentences; `details` carry structured fields. Never given secrets (keys, tokens).
 */
export interface Logger {
  debug?(message: string, details?: Readonly<Record<string, unknown>>): void;
  info?(message: string, details?: Readonly<Record<string, unknown>>): void;
  warn?(message: string, details?: Readonly<Record<string, unknown>>): void;
  error?(message: string, details?: Readonly<Record<string, unknown>>): void;
}
