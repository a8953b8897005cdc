/**
 * When to refresh and how long to back off: pure functions of the clock,
 * so they are tested with a fake one.
 */

const MINUTE = 60_000;

export interface RefreshPolicy {
  /** Fraction of the lifetime after which to refresh (0.8). */
  readonly lifetimeFraction: number;
  /** Refresh at the latest this long before expiry (5 min). */
  readonly marginMs: number;
  /** Jitter is at most this fraction of the lifetime... */
  readonly jitterFraction: number;
  /** ...and at most this long. */
  readonly maxJitterMs: number;
}

export const defaultPolicy: RefreshPolicy = {
  lifetimeFraction: 0.8,
  marginMs: 5 * MINUTE,
  jitterFraction: 0.05,
  maxJitterMs: 30_000,
};

/**
 * The moment a token should be refreshed: when `lifetimeFraction` of its
 * lifetime has passed or `marginMs` before expiry, whichever is earlier, less
 * a little jitter. Never earlier than half the lifetime, so a token shorter
 * than the margin is not refreshed the moment it arrives.
 * A token without a known expiry is due at once.
 */
export function refreshDueAt(
  obtainedAtMs: number | null,
  expiresAtMs: number | null,
  random: () => number = Math.random,
  policy: RefreshPolicy = defaultPolicy,
): number {
  if (expiresAtMs === null) return Number.NEGATIVE_INFINITY;
  const start = obtainedAtMs ?? expiresAtMs - 3_600_000;
  const lifetime = Math.max(0, expiresAtMs - start);
  const byFraction = start + lifetime * policy.lifetimeFraction;
  const byMargin = expiresAtMs - policy.marginMs;
  const floor = start + lifetime / 2;
  const jitter = random() * Math.min(policy.maxJitterMs, lifetime * policy.jitterFraction);
  return Math.max(floor, Math.min(byFraction, byMargin) - jitter);
}

export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
  /** Retry-After beyond this is capped: a provider asking for a day is not obeyed for a day. */
  readonly maxRetryAfterMs: number;
}

export const defaultBackoff: BackoffPolicy = { baseMs: 1_000, maxMs: 5 * MINUTE, maxRetryAfterMs: 60 * MINUTE };

/**
 * Delay before retry number `attempt` (1 for the first retry): exponential
 * with "equal jitter" (half fixed, half random) so it never collapses to 0.
 * Retry-After is authoritative when given: never retry sooner than it says.
 */
export function backoffDelay(attempt: number, retryAfterMs: number | null, random: () => number = Math.random, policy: BackoffPolicy = defaultBackoff): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const jittered = exp / 2 + (random() * exp) / 2;
  if (retryAfterMs !== null) return Math.min(policy.maxRetryAfterMs, Math.max(retryAfterMs, 0));
  return jittered;
}
