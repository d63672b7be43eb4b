/** Types of espruino-gate.mjs, for the tests. */
export interface Violation {
  line: number;
  column: number;
  rule: string;
  message: string;
  detail?: string;
  declaredAt?: { line: number; column: number };
}
export const RULES: Record<string, string>;
export const ESPRUINO_RULES: Set<string>;
export const ESPRUINO_MISSING: { globals: string[]; builtins: Record<string, string[]>; methods: string[] };
export function describe(violation: Violation): string;
export function checkSource(
  source: string,
  options?: { sourceType?: 'script' | 'module'; rules?: Set<string> },
): Violation[];
export function formatViolations(file: string, violations: Violation[]): string;
export function gateFiles(files: string[], options?: { sourceType?: 'script' | 'module'; rules?: Set<string> }): number;
