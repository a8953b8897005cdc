/**
 * The owner's condition, and the daemon status that follows from it.
 *
 * One value rather than a flag per cause, so the precedence lives in the
 * transitions and one switch instead of in the order flags happen to be
 * tested: a lost lock outranks a refused login (nothing helps but a restart,
 * and a new login must not hide it), which outranks what the tokens say.
 */
import type { DaemonStatus } from '../shared/contract.js';
import type { TokenState } from '../state-file/codec.js';

export type Condition =
  /** Nothing stands in the way: the tokens decide. */
  | { readonly kind: 'running' }
  /** The provider refused the refresh token: only new tokens help. `reason` names the fix. */
  | { readonly kind: 'reauthorization_required'; readonly reason: string }
  /** The state-file lock was taken away: refreshing stopped until tokend restarts. Never left. */
  | { readonly kind: 'lock_lost'; readonly reason: string };

export const running: Condition = { kind: 'running' };

/** The login was refused: unless the lock is lost, which says more. */
export function refused(current: Condition, reason: string): Condition {
  return current.kind === 'lock_lost' ? current : { kind: 'reauthorization_required', reason };
}

/** New tokens end a refusal; a lost lock stays lost. */
export function relieved(current: Condition): Condition {
  return current.kind === 'reauthorization_required' ? running : current;
}

const WAITING_FOR_LOGIN = 'no tokens yet: run `tokend login` (or `tokend set`)';

/** Whether the tokens hold an access token that may be served at `nowMs`. */
export function isUsable(tokens: TokenState, nowMs: number): boolean {
  return tokens.kind === 'active' && (tokens.expiresAtMs === null || tokens.expiresAtMs > nowMs);
}

/** The daemon status, and why it is not `ok` where a reason helps. */
export function statusOf(condition: Condition, tokens: TokenState, nowMs: number): { status: DaemonStatus; reason: string | null } {
  switch (condition.kind) {
    case 'lock_lost':
      return { status: 'lock_lost', reason: condition.reason };
    case 'reauthorization_required':
      return { status: 'reauthorization_required', reason: condition.reason };
    case 'running':
      if (tokens.kind === 'none') return { status: 'waiting_for_login', reason: WAITING_FOR_LOGIN };
      return { status: isUsable(tokens, nowMs) ? 'ok' : 'expired', reason: null };
  }
}
