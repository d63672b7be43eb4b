/** Types of size-budget.mjs, for the tests. */
export const ESPRUINO_BUDGET_BYTES: number;
export function sizesOf(path: string): { raw: number; gzip: number };
export function checkBudget(dist: string, limit?: number): { ok: boolean; lines: string[] };
