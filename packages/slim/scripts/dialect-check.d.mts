/** Types of dialect-check.mjs, for the tests. */
import type { Violation } from './espruino-gate.mjs';
export function dialectRules(file: string): Set<string>;
export function checkDialect(file: string, source: string): Violation[];
export function dialectFiles(root: string): string[];
