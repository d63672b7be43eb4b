import { ArgumentError } from '@fieldhub/protocol';
import { sasTokenDefaults } from './sas-token';

/** Options of {@link nextRenewal}. */
export interface NextRenewalOptions {
  /** When the current token was made. */
  issuedAt: Date;
  /** When it expires (`se`). */
  expiresAt: Date;
  /** Renew this many seconds before expiry. Exclusive with `marginRatio`. */
  marginSeconds?: number;
  /** Renew this fraction of the lifetime before expiry. Default 0.25 (900 s of 3600 s, like the Node SDK). */
  marginRatio?: number;
  /**
   * Spread renewals of many clients: renew up to this fraction of the time between issue and the renewal point
   * earlier, at random. Default 0 (deterministic).
   */
  jitterRatio?: number;
  /** Random source in [0, 1) for the jitter. Default `Math.random`. */
  random?: () => number;
}

/**
 * When to renew a SAS token. The Node SDK makes 3600 s tokens and renews every 45 min, i.e. 900 s before expiry
 * (reference protocol-device.md §1.3); the default margin is that same quarter of the lifetime. Pure: schedule a
 * timer for `renewAt - now` yourself.
 *
 * @example
 * ```ts
 * const renewAt = nextRenewal({ issuedAt: now, expiresAt: new Date(now.getTime() + 3_600_000) }); // now + 45 min
 * ```
 * @throws ArgumentError when the dates are invalid or out of order, both margins are given, the margin is not
 * smaller than the lifetime (Node: "TTL must be > margin"), or a ratio is outside [0, 1).
 */
export function nextRenewal(options: NextRenewalOptions): Date {
  const issued = options.issuedAt?.getTime?.();
  const expires = options.expiresAt?.getTime?.();
  if (typeof issued !== 'number' || Number.isNaN(issued)) {
    throw new ArgumentError('issuedAt must be a valid Date', { field: 'issuedAt' });
  }
  if (typeof expires !== 'number' || Number.isNaN(expires) || expires <= issued) {
    throw new ArgumentError('expiresAt must be a valid Date after issuedAt', { field: 'expiresAt' });
  }
  if (options.marginSeconds !== undefined && options.marginRatio !== undefined) {
    throw new ArgumentError('give marginSeconds or marginRatio, not both', { field: 'marginSeconds' });
  }
  const lifetime = expires - issued;
  const ratio = options.marginRatio ?? sasTokenDefaults.renewalMarginSeconds / sasTokenDefaults.ttlSeconds;
  if (!(ratio >= 0 && ratio < 1)) throw new ArgumentError('marginRatio must be in [0, 1)', { field: 'marginRatio' });
  const margin = options.marginSeconds === undefined ? lifetime * ratio : options.marginSeconds * 1000;
  if (!(margin >= 0 && margin < lifetime)) {
    throw new ArgumentError('marginSeconds must be at least 0 and less than the token lifetime', {
      field: 'marginSeconds',
    });
  }
  const jitter = options.jitterRatio ?? 0;
  if (!(jitter >= 0 && jitter < 1)) throw new ArgumentError('jitterRatio must be in [0, 1)', { field: 'jitterRatio' });
  const renewAt = expires - margin;
  const random = jitter > 0 ? (options.random ?? Math.random)() : 0;
  return new Date(Math.round(renewAt - random * jitter * (renewAt - issued)));
}
