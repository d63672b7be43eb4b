import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { nextRenewal } from './sas-renewal';

const issuedAt = new Date('2026-11-27T12:00:00.000Z');
const after = (seconds: number) => new Date(issuedAt.getTime() + seconds * 1000);

describe('nextRenewal', () => {
  it('renews a 1 h token after 45 min by default, like the Node SDK (margin 900 s)', () => {
    expect(nextRenewal({ issuedAt, expiresAt: after(3600) })).toEqual(after(2700));
  });

  it('takes the margin in seconds or as a fraction of the lifetime', () => {
    expect(nextRenewal({ issuedAt, expiresAt: after(3600), marginSeconds: 600 })).toEqual(after(3000));
    expect(nextRenewal({ issuedAt, expiresAt: after(1000), marginRatio: 0.1 })).toEqual(after(900));
  });

  it('moves the renewal earlier by the jitter, never before issue', () => {
    const base = { issuedAt, expiresAt: after(3600), jitterRatio: 0.5 };
    expect(nextRenewal({ ...base, random: () => 0 })).toEqual(after(2700));
    expect(nextRenewal({ ...base, random: () => 0.5 })).toEqual(after(2700 - 675));
    const earliest = nextRenewal({ ...base, jitterRatio: 0.99, random: () => 0.9999 });
    expect(earliest.getTime()).toBeGreaterThanOrEqual(issuedAt.getTime());
  });

  it('refuses a margin not smaller than the lifetime and other nonsense', () => {
    const bad: [Parameters<typeof nextRenewal>[0], string][] = [
      [{ issuedAt, expiresAt: after(600), marginSeconds: 900 }, 'marginSeconds'],
      [{ issuedAt, expiresAt: after(600), marginSeconds: 1, marginRatio: 0.1 }, 'marginSeconds'],
      [{ issuedAt, expiresAt: issuedAt }, 'expiresAt'],
      [{ issuedAt: new Date(Number.NaN), expiresAt: after(1) }, 'issuedAt'],
      [{ issuedAt, expiresAt: after(60), marginRatio: 1 }, 'marginRatio'],
      [{ issuedAt, expiresAt: after(60), jitterRatio: -0.1 }, 'jitterRatio'],
    ];
    for (const [options, field] of bad) {
      expect(() => nextRenewal(options), field).toThrow(ArgumentError);
      try {
        nextRenewal(options);
      } catch (error) {
        expect((error as ArgumentError).field).toBe(field);
      }
    }
  });
});
