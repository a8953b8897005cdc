import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { refused, relieved, running, statusOf, type Condition } from '../../src/owner/condition.ts';
import type { TokenState } from '../../src/state-file/codec.ts';

const NOW = Date.UTC(2026, 0, 1);
const held = { replacedRefreshToken: null, scope: null, provider: null, account: {} };
const none: TokenState = { kind: 'none' };
const refreshOnly: TokenState = { kind: 'refresh_only', refreshToken: 'r', ...held };
const active = (expiresAtMs: number | null): TokenState => ({
  kind: 'active',
  accessToken: 'a',
  refreshToken: 'r',
  tokenType: 'Bearer',
  expiresAtMs,
  obtainedAtMs: null,
  ...held,
});
const lockLost: Condition = { kind: 'lock_lost', reason: 'the lock was lost' };
const reauth: Condition = { kind: 'reauthorization_required', reason: 'the provider refused the refresh token' };

describe('the daemon status', () => {
  const table: Array<[string, Condition, TokenState, string, string | null]> = [
    ['no tokens: waiting for a login', running, none, 'waiting_for_login', 'no tokens yet: run `tokend login` (or `tokend set`)'],
    ['a refresh token alone: expired until refreshed', running, refreshOnly, 'expired', null],
    ['an access token past its expiry: expired', running, active(NOW), 'expired', null],
    ['an access token still valid: ok', running, active(NOW + 1), 'ok', null],
    ['an access token of unknown expiry (the older layout): ok', running, active(null), 'ok', null],
    ['a refused login outranks a valid token', reauth, active(NOW + 1), 'reauthorization_required', 'the provider refused the refresh token'],
    ['a lost lock outranks a valid token', lockLost, active(NOW + 1), 'lock_lost', 'the lock was lost'],
    ['a lost lock outranks having no tokens', lockLost, none, 'lock_lost', 'the lock was lost'],
  ];
  for (const [name, condition, tokens, status, reason] of table) {
    it(name, () => assert.deepEqual(statusOf(condition, tokens, NOW), { status, reason }));
  }

  it('a refusal after the lock was lost leaves it lost; new tokens end a refusal, never a lost lock', () => {
    assert.equal(refused(lockLost, 'refused').kind, 'lock_lost');
    assert.deepEqual(refused(running, 'refused'), { kind: 'reauthorization_required', reason: 'refused' });
    assert.equal(relieved(reauth), running);
    assert.equal(relieved(lockLost), lockLost);
  });
});
