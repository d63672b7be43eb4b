import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkBudget, ESPRUINO_BUDGET_BYTES } from '../../scripts/size-budget.mjs';

const dirs: string[] = [];

function dist(espruinoBytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'slim-budget-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'espruino'));
  mkdirSync(join(dir, 'moddable'));
  writeFileSync(join(dir, 'espruino', 'fieldhub-slim.min.js'), 'x'.repeat(espruinoBytes));
  writeFileSync(join(dir, 'espruino', 'fieldhub-slim.js'), 'y'.repeat(espruinoBytes * 2));
  writeFileSync(join(dir, 'moddable', 'fieldhub-slim.js'), 'z'.repeat(espruinoBytes * 2));
  writeFileSync(
    join(dir, 'espruino', 'fieldhub-slim.modules.json'),
    JSON.stringify({ 'packages/slim/src/client.ts': 3000, 'packages/slim/src/mqtt/codec.ts': 1000 }),
  );
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('the size budget', () => {
  it('holds below 12 KB and prints both bundles raw and gzip, and the largest modules', () => {
    const { ok, lines } = checkBudget(dist(ESPRUINO_BUDGET_BYTES - 1));
    expect(ok).toBe(true);
    const text = lines.join('\n');
    expect(text).toMatch(/espruino\s+12287 B raw\s+\d+ B gzip/);
    expect(text).toMatch(/moddable\s+24574 B raw/);
    expect(text).toMatch(/3000 B\s+75%\s+packages\/slim\/src\/client\.ts/);
  });

  it('fails at 12,288 bytes and says which modules cost most', () => {
    const { ok, lines } = checkBudget(dist(ESPRUINO_BUDGET_BYTES));
    expect(ok).toBe(false);
    expect(lines.at(-1)).toContain('the Espruino script is 12288 B, the budget is < 12288 B');
  });

  it('fails when the minified script is missing, without measuring the unminified one against the budget', () => {
    // The unminified script (twice the size here) is over the budget: it must not be what is judged.
    const dir = dist(ESPRUINO_BUDGET_BYTES - 1);
    rmSync(join(dir, 'espruino', 'fieldhub-slim.min.js'));
    const { ok, lines } = checkBudget(dir);
    expect(ok).toBe(false);
    expect(lines.join('\n')).toContain('missing');
    expect(lines.join('\n')).not.toContain('the Espruino script is');
  });

  it('fails when a bundle is missing', () => {
    const dir = dist(100);
    rmSync(join(dir, 'moddable'), { recursive: true });
    expect(checkBudget(dir).ok).toBe(false);
  });
});
