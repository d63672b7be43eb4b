import { afterEach, describe, expect, it } from 'vitest';
import { colourEnabled, fields, parseJsonFlag, table } from './output';

const saved = { NO_COLOR: process.env.NO_COLOR, FORCE_COLOR: process.env.FORCE_COLOR };

afterEach(() => {
  for (const [key, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

describe('table and fields', () => {
  it('aligns columns two spaces apart without padding the last one', () => {
    expect(
      table(
        ['ID', 'STATUS'],
        [
          ['a-long-id', 'enabled'],
          ['b', 'disabled'],
        ],
      ),
    ).toBe('ID         STATUS\na-long-id  enabled\nb          disabled');
    expect(
      fields([
        ['a', '1'],
        ['longer', '2'],
      ]),
    ).toBe('a       1\nlonger  2');
  });
});

describe('colourEnabled', () => {
  const tty = { isTTY: true } as NodeJS.WriteStream;
  const pipe = { isTTY: false } as NodeJS.WriteStream;

  it('colours a terminal unless NO_COLOR is set, and a pipe only with FORCE_COLOR', () => {
    delete process.env.NO_COLOR;
    delete process.env.FORCE_COLOR;
    expect(colourEnabled(tty)).toBe(true);
    expect(colourEnabled(pipe)).toBe(false);
    process.env.NO_COLOR = '1';
    expect(colourEnabled(tty)).toBe(false);
    delete process.env.NO_COLOR;
    process.env.FORCE_COLOR = '1';
    expect(colourEnabled(pipe)).toBe(true);
  });
});

describe('parseJsonFlag', () => {
  it('parses JSON and names the flag when it is not', () => {
    expect(parseJsonFlag('{"a":1}', '--desired')).toEqual({ a: 1 });
    expect(() => parseJsonFlag('{a', '--desired')).toThrow(
      expect.objectContaining({
        code: 'ArgumentInvalid',
        message: expect.stringContaining('--desired is not valid JSON'),
      }),
    );
  });
});
