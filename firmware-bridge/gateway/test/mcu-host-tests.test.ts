/**
 * Runs the C host tests of the MCU library (firmware-bridge/mcu, `make test`: ASan/UBSan, warnings as errors) so
 * that they count in CI. The build goes to a temporary directory (`O=`), so concurrent runs never share outputs.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const mcuDir = fileURLToPath(new URL('../../mcu/', import.meta.url));

interface MakeResult {
  readonly code: number;
  readonly output: string;
}

function make(args: readonly string[]): Promise<MakeResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'make',
      ['-C', mcuDir, ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 240_000 },
      (error, stdout, stderr) => {
        const output = `${stdout}${stderr}`;
        if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new Error('make is not installed: the MCU host tests need make and a C99 compiler (gcc)'));
          return;
        }
        resolve({ code: error ? Number(error.code ?? 1) : 0, output });
      },
    );
  });
}

describe('firmware-bridge MCU library (C host tests)', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'fieldhub-mcu-'));
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it('passes every host test under the address and undefined-behaviour sanitizers', async () => {
    const { code, output } = await make(['test', `O=${outDir}`]);
    if (/\b(cc|gcc): (command )?not found|make: \S*cc: No such file or directory/.test(output)) {
      throw new Error(`no C compiler: the MCU host tests need gcc (C99)\n${output}`);
    }
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(output);
    expect(summary, `no summary line in the make output:\n${output}`).not.toBeNull();
    const passed = Number(summary?.[1]);
    const failed = Number(summary?.[2]);
    expect(failed, output).toBe(0);
    expect(passed).toBeGreaterThan(0);
    expect(code, output).toBe(0);
  }, 240_000);
});
