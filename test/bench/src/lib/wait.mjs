import { cpuSeconds } from './processes.mjs';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `pid` used under 5% of a core over half a second (at most `timeoutMs`). */
export async function waitIdle(pid, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const before = cpuSeconds(pid);
    await sleep(500);
    if (cpuSeconds(pid) - before < 0.025) return;
  }
}

/** The median of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}
