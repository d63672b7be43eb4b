import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ArgumentError, HubError } from './errors';
import { Limits } from './limits';
import {
  applyTwinPatch,
  applyTwinPatchWithMetadata,
  createTwinMetadata,
  nextVersion,
  type TwinObject,
  twinSectionSize,
  validateTwinSection,
  withoutTwinSystemProperties,
} from './twin';

function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

function nest(levels: number, leaf: TwinObject = { leaf: 1 }): TwinObject {
  let value: TwinObject = leaf;
  for (let i = levels; i >= 1; i--) value = { [`l${i}`]: value };
  return value;
}

describe('applyTwinPatch', () => {
  it('merges objects recursively, deletes keys set to null, replaces values and arrays', () => {
    const target: TwinObject = { a: 1, b: { c: 2, d: { e: 3 } }, list: [1, 2, 3], keep: 'k' };
    const patch: TwinObject = { a: null, b: { c: 'two', d: { f: 4 } }, list: [9], n: { x: null, y: 1 } };
    expect(applyTwinPatch(target, patch)).toEqual({
      b: { c: 'two', d: { e: 3, f: 4 } },
      list: [9],
      keep: 'k',
      n: { y: 1 },
    });
  });

  it('replaces a non-object with an object and an object with a value', () => {
    expect(applyTwinPatch({ a: 1, b: { c: 1 } }, { a: { x: 1 }, b: 5 })).toEqual({ a: { x: 1 }, b: 5 });
  });

  it('ignores null for a key that does not exist', () => {
    expect(applyTwinPatch({ a: 1 }, { zz: null })).toEqual({ a: 1 });
  });

  it('does not modify its inputs and does not share patch values with the result', () => {
    const target: TwinObject = { a: { b: 1 } };
    const patch: TwinObject = { a: { c: [1, { d: 2 }] } };
    const before = JSON.stringify([target, patch]);
    const result = applyTwinPatch(target, patch);
    expect(JSON.stringify([target, patch])).toBe(before);
    ((result.a as TwinObject).c as TwinObject[]).push({});
    expect(JSON.stringify(patch)).toBe('{"a":{"c":[1,{"d":2}]}}');
  });

  it('treats __proto__ and constructor as ordinary keys', () => {
    const patch = JSON.parse('{"__proto__":{"polluted":1},"constructor":2}') as TwinObject;
    const result = applyTwinPatch({}, patch);
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
    expect(Object.keys(result).sort()).toEqual(['__proto__', 'constructor']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(applyTwinPatch({ toString: 1 }, { toString: { a: 1 } })).toEqual({ toString: { a: 1 } });
  });

  it('rejects a patch that is not an object', () => {
    const error = thrown(() => applyTwinPatch({}, [] as unknown as TwinObject));
    expect(error).toBeInstanceOf(ArgumentError);
    expect((error as ArgumentError).field).toBe('patch');
  });

  it('agrees with a reference RFC 7396 merge on random JSON', () => {
    const merge = (target: unknown, patch: unknown): unknown => {
      if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
      const out: Record<string, unknown> =
        typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {};
      for (const [k, v] of Object.entries(patch)) {
        if (v === null) delete out[k];
        else {
          const current = Object.hasOwn(out, k) ? out[k] : undefined;
          Object.defineProperty(out, k, {
            value: merge(current, v),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
      }
      return out;
    };
    const object = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 });
    fc.assert(
      fc.property(object, object, (target, patch) => {
        const t = JSON.parse(JSON.stringify(target)) as TwinObject;
        const p = JSON.parse(JSON.stringify(patch)) as TwinObject;
        expect(applyTwinPatch(t, p)).toEqual(merge(t, p));
      }),
      { numRuns: 500 },
    );
  });
});

describe('validateTwinSection', () => {
  it('accepts a valid section with arrays, numbers, strings, booleans and nesting', () => {
    expect(() =>
      validateTwinSection(
        { a: [1, 'x', true, { b: 2.5 }], c: { d: { e: 'f' } }, n: -4503599627370496 },
        { kind: 'desired' },
      ),
    ).not.toThrow();
  });

  it('accepts null only in patches, and never inside arrays', () => {
    expect(() => validateTwinSection({ a: null }, { kind: 'reported', patch: true })).not.toThrow();
    const error = thrown(() => validateTwinSection({ a: { b: null } }, { kind: 'reported' }));
    expect(error).toBeInstanceOf(ArgumentError);
    expect((error as ArgumentError).field).toBe('properties.reported.a.b');
    expect((error as ArgumentError).hubCode).toBe(400004);
    expect(thrown(() => validateTwinSection({ a: [1, null] }, { kind: 'tags', patch: true }))).toMatchObject({
      field: 'tags.a[1]',
    });
  });

  it.each(['a.b', '$version', 'a$', 'a b', 'tab\t', '\u0000', '\u007f', '\u0085', '\u009f'])(
    'rejects the key %j',
    (key) => {
      const error = thrown(() => validateTwinSection({ [key]: 1 }, { kind: 'desired' }));
      expect(error).toBeInstanceOf(ArgumentError);
      expect((error as ArgumentError).code).toBe('ArgumentInvalid');
    },
  );

  it('accepts keys with other characters, unicode included', () => {
    expect(() => validateTwinSection({ 'é-ü_#/😀': 1, '': 2 }, { kind: 'tags' })).not.toThrow();
  });

  it('limits keys to 1024 UTF-8 bytes and strings to 4096', () => {
    expect(() => validateTwinSection({ ['k'.repeat(1024)]: 1 }, { kind: 'tags' })).not.toThrow();
    expect(thrown(() => validateTwinSection({ ['é'.repeat(513)]: 1 }, { kind: 'tags' }))).toBeInstanceOf(ArgumentError);
    expect(() => validateTwinSection({ s: 'é'.repeat(2048) }, { kind: 'desired' })).not.toThrow();
    expect(thrown(() => validateTwinSection({ s: `${'é'.repeat(2048)}x` }, { kind: 'desired' }))).toMatchObject({
      field: 'properties.desired.s',
      code: 'ArgumentInvalid',
    });
  });

  it('limits integers to [-2^52, 2^52 - 1] and rejects non-finite numbers', () => {
    expect(() =>
      validateTwinSection({ n: 2 ** 52 - 1, f: 1e300 + 0.5, g: 0.1 }, { kind: 'tags', patch: true }),
    ).toThrow(ArgumentError);
    expect(() => validateTwinSection({ n: 2 ** 52 - 1, m: -(2 ** 52), g: 0.1 }, { kind: 'tags' })).not.toThrow();
    expect(thrown(() => validateTwinSection({ n: 2 ** 52 }, { kind: 'tags' }))).toMatchObject({ field: 'tags.n' });
    expect(thrown(() => validateTwinSection({ n: Number.NaN }, { kind: 'tags' }))).toBeInstanceOf(ArgumentError);
    expect(thrown(() => validateTwinSection({ n: Number.POSITIVE_INFINITY }, { kind: 'tags' }))).toBeInstanceOf(
      ArgumentError,
    );
  });

  it('allows 10 levels of nesting below the section and rejects 11 (objects and arrays count)', () => {
    expect(() => validateTwinSection(nest(10, { leaf: 1 }), { kind: 'reported' })).not.toThrow();
    // Azure's documented example: one..ten nested, with a leaf property in "ten".
    expect(() => validateTwinSection(nest(9, { ten: { property: 'value' } }), { kind: 'reported' })).not.toThrow();
    const error = thrown(() => validateTwinSection(nest(11), { kind: 'reported' }));
    expect(error).toBeInstanceOf(ArgumentError);
    expect((error as ArgumentError).field).toBe('properties.reported.l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11');
    expect(() => validateTwinSection(nest(9, { a: [1] }), { kind: 'tags' })).not.toThrow();
    expect(thrown(() => validateTwinSection(nest(9, { a: [[1]] }), { kind: 'tags' }))).toBeInstanceOf(ArgumentError);
  });

  it('stops at the depth limit on cyclic objects', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(thrown(() => validateTwinSection(cyclic, { kind: 'tags' }))).toBeInstanceOf(ArgumentError);
  });

  it('rejects non-JSON values and non-object sections', () => {
    for (const value of [undefined, () => 1, new Date(0), new Map(), 1n, Symbol('s')]) {
      expect(thrown(() => validateTwinSection({ v: value }, { kind: 'tags' }))).toBeInstanceOf(ArgumentError);
    }
    for (const section of [null, [], 'x', 1]) {
      expect(thrown(() => validateTwinSection(section, { kind: 'desired' }))).toMatchObject({
        field: 'properties.desired',
      });
    }
  });

  it("counts size as Azure does and answers MessageTooLarge (413001) over the section's limit", () => {
    expect(twinSectionSize({ ab: 'cdé', n: 1, b: true, o: { k: [1, 'x'] }, $version: 3, $metadata: {} })).toBe(
      2 + 4 + 1 + 8 + 1 + 4 + 1 + 1 + 8 + 1,
    );
    // 8 KB of tags: keys of 4 bytes and strings of 1020 bytes, eight of them, is exactly 8192.
    const tags: TwinObject = {};
    for (let i = 0; i < 8; i++) tags[`k${i}xx`] = 'v'.repeat(1020);
    expect(twinSectionSize(tags)).toBe(Limits.twinTagsMaxBytes);
    expect(() => validateTwinSection(tags, { kind: 'tags' })).not.toThrow();
    tags.z = true;
    const error = thrown(() => validateTwinSection(tags, { kind: 'tags' }));
    expect(HubError.is(error)).toBe(true);
    expect(error).toMatchObject({ code: 'MessageTooLarge', hubCode: 413001, status: 413 });
    // The same object fits desired properties (32 KB), and patches are not size-checked.
    expect(() => validateTwinSection(tags, { kind: 'desired' })).not.toThrow();
    const big: TwinObject = {};
    for (let i = 0; i < 40; i++) big[`k${i}`] = 'v'.repeat(1000);
    expect(thrown(() => validateTwinSection(big, { kind: 'reported' }))).toMatchObject({ code: 'MessageTooLarge' });
    expect(() => validateTwinSection(big, { kind: 'reported', patch: true })).not.toThrow();
  });

  it('throws only ArgumentError or HubError on random JSON, and never hangs', () => {
    fc.assert(
      fc.property(
        fc.jsonValue(),
        fc.constantFrom('tags', 'desired', 'reported'),
        fc.boolean(),
        (value, kind, patch) => {
          try {
            validateTwinSection(value, { kind, patch });
          } catch (error) {
            expect(HubError.is(error)).toBe(true);
          }
        },
      ),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.json(), (text) => {
        try {
          validateTwinSection(JSON.parse(text), { kind: 'desired', patch: true });
        } catch (error) {
          expect(error).toBeInstanceOf(ArgumentError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('accepts what applyTwinPatch makes of two valid objects when within limits', () => {
    const key = fc
      .string({ minLength: 1, maxLength: 5 })
      .filter((k) => [...k].every((c) => c.charCodeAt(0) > 0x20 && c !== '.' && c !== '$' && c.charCodeAt(0) !== 0x7f));
    const leaf = fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), fc.constant(null));
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.dictionary(key, tie('v'), { maxKeys: 3 })),
    })).v;
    const object = fc.dictionary(key, value, { maxKeys: 4 });
    fc.assert(
      fc.property(object, object, (a, b) => {
        validateTwinSection(a, { kind: 'desired', patch: true });
        validateTwinSection(b, { kind: 'desired', patch: true });
        const section = applyTwinPatch({}, a as TwinObject);
        validateTwinSection(section, { kind: 'desired' });
        validateTwinSection(applyTwinPatch(section, b as TwinObject), { kind: 'desired' });
      }),
      { numRuns: 300 },
    );
  });
});

describe('twin versions and metadata', () => {
  it('counts versions from 1 upwards', () => {
    expect(nextVersion()).toBe(1);
    expect(nextVersion(1)).toBe(2);
    expect(nextVersion(0)).toBe(1);
    for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER]) {
      expect(thrown(() => nextVersion(bad))).toMatchObject({ field: 'version' });
    }
  });

  it('strips $version and $metadata', () => {
    expect(withoutTwinSystemProperties({ a: 1, $version: 3, $metadata: { $lastUpdated: 'x' } })).toEqual({ a: 1 });
  });

  it('builds metadata for a whole section (desired shape of service §2.8)', () => {
    const now = '2016-03-30T16:24:48.789Z';
    expect(createTwinMetadata({ telemetryConfig: { sendFrequency: '5m' }, list: [1, { a: 1 }] }, now, 23)).toEqual({
      $lastUpdated: now,
      $lastUpdatedVersion: 23,
      telemetryConfig: {
        $lastUpdated: now,
        $lastUpdatedVersion: 23,
        sendFrequency: { $lastUpdated: now, $lastUpdatedVersion: 23 },
      },
      list: { $lastUpdated: now, $lastUpdatedVersion: 23 },
    });
  });

  it('updates touched nodes, keeps untouched ones, drops deleted ones', () => {
    const t1 = '2024-01-01T00:00:00.000Z';
    const t2 = '2024-01-02T00:00:00.000Z';
    const first = applyTwinPatchWithMetadata(
      {},
      undefined,
      { config: { rate: 5, mode: 'a' }, other: { x: 1 }, gone: 1 },
      t1,
      2,
    );
    expect(first.section).toEqual({ config: { rate: 5, mode: 'a' }, other: { x: 1 }, gone: 1 });
    const second = applyTwinPatchWithMetadata(
      first.section,
      first.metadata,
      { config: { rate: 10, extra: { y: null, z: 2 } }, gone: null },
      t2,
      3,
    );
    expect(second.section).toEqual({ config: { rate: 10, mode: 'a', extra: { z: 2 } }, other: { x: 1 } });
    expect(second.metadata).toEqual({
      $lastUpdated: t2,
      $lastUpdatedVersion: 3,
      config: {
        $lastUpdated: t2,
        $lastUpdatedVersion: 3,
        rate: { $lastUpdated: t2, $lastUpdatedVersion: 3 },
        mode: { $lastUpdated: t1, $lastUpdatedVersion: 2 },
        extra: { $lastUpdated: t2, $lastUpdatedVersion: 3, z: { $lastUpdated: t2, $lastUpdatedVersion: 3 } },
      },
      other: { $lastUpdated: t1, $lastUpdatedVersion: 2, x: { $lastUpdated: t1, $lastUpdatedVersion: 2 } },
    });
    // Inputs are untouched.
    expect(first.metadata.$lastUpdated).toBe(t1);
    expect((first.metadata.config as Record<string, unknown>).$lastUpdated).toBe(t1);
  });

  it('omits $lastUpdatedVersion for reported properties and rebuilds metadata when an object replaces a value', () => {
    const t1 = '2024-01-01T00:00:00.000Z';
    const t2 = '2024-01-02T00:00:00.000Z';
    const first = applyTwinPatchWithMetadata({}, undefined, { batteryLevel: 55, mode: 'x' }, t1);
    expect(first.metadata).toEqual({
      $lastUpdated: t1,
      batteryLevel: { $lastUpdated: t1 },
      mode: { $lastUpdated: t1 },
    });
    const second = applyTwinPatchWithMetadata(first.section, first.metadata, { mode: { a: 1, b: null } }, t2);
    expect(second.section).toEqual({ batteryLevel: 55, mode: { a: 1 } });
    expect(second.metadata).toEqual({
      $lastUpdated: t2,
      batteryLevel: { $lastUpdated: t1 },
      mode: { $lastUpdated: t2, a: { $lastUpdated: t2 } },
    });
  });

  it('produces the same section as applyTwinPatch and metadata for exactly its keys', () => {
    const object = fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 3 });
    const keysMatch = (section: unknown, metadata: Record<string, unknown>): void => {
      if (typeof section !== 'object' || section === null || Array.isArray(section)) return;
      const own = Object.keys(metadata).filter((k) => !k.startsWith('$'));
      expect(own.sort()).toEqual(Object.keys(section).sort());
      for (const k of own) keysMatch((section as Record<string, unknown>)[k], metadata[k] as Record<string, unknown>);
    };
    fc.assert(
      fc.property(object, object, (a, b) => {
        // Keys with '$' are invalid in a twin (validateTwinSection rejects them) and would meet the '$' fields.
        fc.pre(!JSON.stringify([a, b]).includes('$'));
        const pa = JSON.parse(JSON.stringify(a)) as TwinObject;
        const pb = JSON.parse(JSON.stringify(b)) as TwinObject;
        const first = applyTwinPatchWithMetadata({}, undefined, pa, 't1', 1);
        const second = applyTwinPatchWithMetadata(first.section, first.metadata, pb, 't2', 2);
        expect(second.section).toEqual(applyTwinPatch(applyTwinPatch({}, pa), pb));
        keysMatch(second.section, second.metadata);
      }),
      { numRuns: 500 },
    );
  });
});
