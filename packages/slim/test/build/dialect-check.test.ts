import { describe, expect, it } from 'vitest';
import { checkDialect, dialectRules } from '../../scripts/dialect-check.mjs';

const client = 'src/client.ts';

describe('the slim dialect check', () => {
  it('passes types that name Map, interfaces, template literals and classes (erased or lowered by Babel)', () => {
    const source = [
      "import type { Host } from './host';",
      'type Index = Map<string, number>;',
      'export interface Options { host: Host; index?: Index }',
      'export class Client {',
      '  private count = 0;',
      '  constructor(readonly options: Options) {}',
      '  describe(): string { return `client \u0024{this.count}`; }',
      '}',
    ].join('\n');
    expect(checkDialect(client, source)).toEqual([]);
  });

  it('rejects destructuring, defaults, spread, ?. and Map at their TypeScript positions', () => {
    const source = [
      'export function open(options: { a?: number; b: number[] } = { b: [] }): number {',
      '  const { a } = options;',
      '  const copy = [...options.b];',
      '  const seen = new Map<string, number>();',
      '  return (a ?? 0) + copy.length + (options?.b.length ?? 0) + seen.size;',
      '}',
    ].join('\n');
    const found = checkDialect(client, source).map((v) => `${v.line}:${v.column} ${v.rule}`);
    expect(found).toEqual([
      '1:22 default-parameter',
      '2:9 destructuring',
      '3:17 spread',
      '4:20 missing-global',
      '5:36 optional-chaining',
    ]);
  });

  it('rejects async functions and generators', () => {
    const rules = checkDialect(client, 'export async function a(): Promise<void> {}\nexport function* b() {}').map(
      (v) => v.rule,
    );
    expect(rules).toEqual(['async', 'generator']);
  });

  it('rejects a module-level call of a function declared further down, pointing at both in the source', () => {
    const source =
      "import type { Host } from './host';\n\nconst table = build();\n\nfunction build(): number[] {\n  return [];\n}\nexport { table };";
    const [violation] = checkDialect(client, source);
    expect(violation).toMatchObject({ rule: 'hoisting', line: 3, column: 15, declaredAt: { line: 5, column: 1 } });
  });

  it('keeps timers and console behind the host, except in the host adapters', () => {
    const source = 'export function wait(fn: () => void): void {\n  setTimeout(fn, 1);\n  console.log("waiting");\n}';
    expect(checkDialect(client, source).map((v) => v.rule)).toEqual(['host-global', 'host-global']);
    expect(checkDialect('src/hosts/espruino.ts', source)).toEqual([]);
    expect(dialectRules('src/hosts/ecma419.ts').has('host-global')).toBe(false);
  });
});
