/** Types of moddable-check.mjs, for the tests. */
import type { Violation } from './espruino-gate.mjs';
export const MODDABLE_RULES: Set<string>;
export function checkModdableBundle(source: string): Violation[];
