import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ArgumentError, HubError } from './errors';
import {
  assertValidDeviceId,
  assertValidModuleId,
  IdentityIdSpecialCharacters,
  isValidDeviceId,
  isValidModuleId,
  Limits,
} from './limits';

describe('Limits', () => {
  it('holds the values of the reference', () => {
    expect(Limits.telemetryMessageMaxBytes).toBe(262_144);
    expect(Limits.cloudToDeviceMessageMaxBytes).toBe(65_536);
    expect(Limits.cloudToDeviceQueueMaxDepth).toBe(50);
    expect(Limits.cloudToDeviceMaxDeliveryCount).toEqual({ default: 10, min: 1, max: 100 });
    expect(Limits.cloudToDeviceTtlSeconds).toEqual({ default: 3600, min: 60, max: 172_800 });
    expect([Limits.twinTagsMaxBytes, Limits.twinDesiredMaxBytes, Limits.twinReportedMaxBytes]).toEqual([
      8192, 32_768, 32_768,
    ]);
    expect(Limits.twinMaxDepth).toBe(10);
    expect(Limits.twinIntegerMax).toBe(2 ** 52 - 1);
    expect(Limits.twinIntegerMin).toBe(-(2 ** 52));
    expect(Limits.methodPayloadMaxBytes).toBe(131_072);
    expect(Limits.methodResponseTimeoutSeconds).toEqual({ default: 30, min: 5, max: 300 });
    expect(Limits.methodConnectTimeoutSeconds).toEqual({ default: 0, min: 0, max: 300 });
  });
});

describe('device and module ids', () => {
  it.each(['d1', "A-b.c+d%e_f#g*h?i!j(k)l,m=n@o$p'q:r", 'x'.repeat(128), '$edgeAgent'])('accepts %j', (id) => {
    expect(isValidDeviceId(id)).toBe(true);
    expect(isValidModuleId(id)).toBe(true);
    expect(() => assertValidDeviceId(id)).not.toThrow();
  });

  it.each(['', 'x'.repeat(129), 'a b', 'a/b', 'a;b', 'é', 'a\nb', 'a&b', 'a~b'])('rejects %j', (id) => {
    expect(isValidDeviceId(id)).toBe(false);
    expect(() => assertValidDeviceId(id)).toThrow(ArgumentError);
    expect(() => assertValidModuleId(id)).toThrow(expect.objectContaining({ field: 'moduleId' }));
  });

  it('rejects values that are not strings', () => {
    for (const value of [undefined, null, 1, {}, ['a']]) expect(isValidDeviceId(value)).toBe(false);
  });

  it('names the field deviceId', () => {
    expect(() => assertValidDeviceId('a b')).toThrow(
      expect.objectContaining({ field: 'deviceId', code: 'ArgumentInvalid' }),
    );
  });

  it('accepts exactly the documented characters (checked against a reference regex on random strings)', () => {
    const escaped = IdentityIdSpecialCharacters.replace(/[-\\^$*+?.()|[\]{}]/g, '\\$&');
    const allowed = new RegExp(`^[A-Za-z0-9${escaped}]{1,128}$`);
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 140 }), fc.string({ unit: 'binary', maxLength: 5 })), (id) => {
        expect(isValidDeviceId(id)).toBe(allowed.test(id));
        try {
          assertValidDeviceId(id);
        } catch (error) {
          expect(HubError.is(error) && error instanceof ArgumentError).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
