/**
 * When to refresh and how long to back off: pure functions of the clock,
 * so they are tested with a fake one.
 */

const MINUTE = 60_000;

export interface RefreshPolicy {
  /** Fraction of the lifetime after which to refresh (0.8). */
  readonly lifetimeFraction: number;
  /** Refresh at the latest this long before expiry (5 min; an account's `refresh_lead`). */
  readonly leadMs: number;
  /** Refresh at least this often, counted from when the token was obtained (an account's `refresh_at_least`); null: no such rule. */
  readonly atLeastMs: number | null;
  /** Jitter is at most this fraction of the time it is taken from... */
  readonly jitterFraction: number;
  /** ...and at most this long. */
  readonly maxJitterMs: number;
}

export const defaultPolicy: RefreshPolicy = {
  lifetimeFraction: 0.8,
  leadMs: 5 * MINUTE,
  atLeastMs: null,
  jitterFraction: 0.05,
  maxJitterMs: 30_000,
};

/** The default policy with an account's settings over it; an absent setting keeps the default. */
export function refreshPolicy(settings: { readonly leadMs?: number | undefined; readonly atLeastMs?: number | undefined }): RefreshPolicy {
  return {
    ...defaultPolicy,
    leadMs: settings.leadMs ?? defaultPolicy.leadMs,
    atLeastMs: settings.atLeastMs ?? defaultPolicy.atLeastMs,
  };
}

/**
 * The moment a token should be refreshed: when `lifetimeFraction` of its
 * lifetime has passed or `leadMs` before expiry, whichever is earlier, less
 * a little jitter — but never earlier than half the lifetime, so a token
 * shorter than the lead (or a lead longer than the token lives) does not
 * have it refreshed the moment it arrives, again and again.
 *
 * `atLeastMs`, when set, is a cadence the user asked for (to keep a refresh
 * token in use, say): the refresh is never later than `atLeastMs` after the
 * token was obtained, less a little jitter (at most a twentieth of it), and
 * this bound wins over the half-lifetime floor. It cannot loop either: the
 * config file allows no less than a minute, and the refresher starts
 * attempts at least a second apart whatever it is told.
 *
 * A token without a known expiry is due at once; with an expiry but no
 * known start, its lifetime is taken to be an hour.
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
  const r = random();
  const jitter = (spanMs: number): number => r * Math.min(policy.maxJitterMs, spanMs * policy.jitterFraction);
  const byFraction = start + lifetime * policy.lifetimeFraction;
  const byLead = expiresAtMs - policy.leadMs;
  const floor = start + lifetime / 2;
  const due = Math.max(floor, Math.min(byFraction, byLead) - jitter(lifetime));
  if (policy.atLeastMs === null) return due;
  const atLeast = Math.max(0, policy.atLeastMs);
  return Math.min(due, start + atLeast - jitter(atLeast));
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
