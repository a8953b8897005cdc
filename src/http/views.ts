/** Snapshot → wire JSON. OAuth names on the wire; the refresh token itself never leaves the owner. */
import type { DaemonStatus, Snapshot } from '../shared/contract.js';

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString());

export interface TokenBody {
  readonly access_token: string;
  /** tokend serves bearer tokens (RFC 6750), named in the scheme's usual case whatever the provider wrote. */
  readonly token_type: 'Bearer';
  readonly expires_at: string | null;
  readonly expires_in: number | null;
}

export function tokenBody(s: Snapshot, nowMs: number): TokenBody | null {
  const t = s.token;
  if (!t) return null;
  return {
    access_token: t.accessToken,
    token_type: 'Bearer',
    expires_at: iso(t.expiresAtMs),
    expires_in: t.expiresAtMs === null ? null : Math.max(0, Math.floor((t.expiresAtMs - nowMs) / 1000)),
  };
}

/** Whether the snapshot holds a token that may be served now. */
export function usable(s: Snapshot, nowMs: number): boolean {
  return s.token !== null && (s.status === 'ok' || s.status === 'expired') && (s.token.expiresAtMs === null || s.token.expiresAtMs > nowMs);
}

/** Why an account is not ready (GET /readyz), or null when it is: a usable token, a writable state file, the lock held. */
export function notReadyReason(s: Snapshot, nowMs: number): string | null {
  if (!usable(s, nowMs)) return `${s.status}: ${s.reason ?? 'no usable access token'}`;
  if (!s.persist.ok) return `state file cannot be written: ${s.persist.lastError ?? 'unknown error'}`;
  if (!s.lockHeld) return 'the state-file lock is not held';
  return null;
}

/** Everything GET /state says of an account beyond its token and the daemon's owner. */
function accountFields(s: Snapshot, nowMs: number) {
  const t = s.token;
  const next = s.refresh.nextAtMs;
  return {
    scope: t?.scope ?? null,
    obtained_at: iso(t?.obtainedAtMs),
    access_token_fingerprint: t?.fingerprint ?? null,
    refresh_token_fingerprint: t?.refreshFingerprint ?? null,
    replaced_refresh_token_fingerprint: t?.replacedRefreshFingerprint ?? null,
    provider: s.provider,
    account: s.account,
    version: s.version,
    state_file: s.stateFile,
    lock_held: s.lockHeld,
    refresh: {
      in_flight: s.refresh.inFlight,
      next_at: next === null ? null : iso(Math.max(next, nowMs)),
      last_attempt_at: iso(s.refresh.lastAttemptAtMs),
      last_success_at: iso(s.refresh.lastSuccessAtMs),
      last_error: s.refresh.lastError ? { error: s.refresh.lastError.code, message: s.refresh.lastError.message } : null,
      consecutive_failures: s.refresh.consecutiveFailures,
    },
    persist: { ok: s.persist.ok, last_error: s.persist.lastError, last_write_at: iso(s.persist.lastWriteAtMs) },
  };
}

const isReady = (s: Snapshot): boolean => s.status === 'ok' && s.persist.ok && s.lockHeld;

export function stateBody(s: Snapshot, nowMs: number, owner: { pid: number; listen: string | null }): Record<string, unknown> {
  return { status: s.status, reason: s.reason, ready: isReady(s), ...tokenBody(s, nowMs), ...accountFields(s, nowMs), owner };
}

/** One account in GET /accounts: what GET /state says of it, without the access token (a listing hands out no tokens). */
export function accountBody(name: string, isDefault: boolean, s: Snapshot, nowMs: number): Record<string, unknown> {
  const t = tokenBody(s, nowMs);
  return {
    name,
    default: isDefault,
    status: s.status,
    reason: s.reason,
    ready: isReady(s),
    expires_at: t?.expires_at ?? null,
    expires_in: t?.expires_in ?? null,
    ...accountFields(s, nowMs),
  };
}

/**
 * The daemon's status over all its accounts: `ok` when every account is ok,
 * else the status of the first (in configuration order) that is not. With one
 * account it is that account's status.
 */
export function overallStatus(statuses: Iterable<DaemonStatus>): DaemonStatus {
  for (const status of statuses) if (status !== 'ok') return status;
  return 'ok';
}
