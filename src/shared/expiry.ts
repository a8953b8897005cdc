/** Shared by both threads: the owner decides to refresh, the HTTP hot path decides to ask it. */

/**
 * A token "about to expire" is refreshed before it is served. The window is
 * a tenth of the lifetime, capped at 30 s, so short test tokens still work.
 */
export function isAboutToExpire(obtainedAtMs: number | null, expiresAtMs: number | null, nowMs: number): boolean {
  if (expiresAtMs === null) return true;
  const lifetime = obtainedAtMs === null ? 300_000 : Math.max(0, expiresAtMs - obtainedAtMs);
  const window = Math.min(30_000, lifetime / 10);
  return expiresAtMs - nowMs <= window;
}
