import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeState, encodeState, foreignKeys } from '../../src/state-worker/codec.ts';
import { TokendError } from '../../src/errors.ts';

const full = {
  access_token: 'acc_1',
  refresh_token: 'ref_1',
  token_type: 'Bearer',
  scope: 'openid',
  expires_at: '2026-01-01T06:00:00.000Z',
  obtained_at: '2026-01-01T00:00:00.000Z',
  provider: 'monzo',
  user_id: 'user_1',
  client_id: 'oauth2client_1',
  state_version: 7,
  refresh_intent: null,
  someone_elses: { keep: true },
};

describe('state file codec', () => {
  it('round-trips every field and keeps foreign keys untouched', () => {
    const { state, raw } = decodeState(JSON.stringify(full), 'f');
    assert.equal(state.version, 7);
    assert.equal(state.tokens?.accessToken, 'acc_1');
    assert.equal(state.tokens?.expiresAtMs, Date.parse(full.expires_at));
    assert.deepEqual(state.tokens?.account, { user_id: 'user_1', client_id: 'oauth2client_1' });
    const again = JSON.parse(encodeState(state, foreignKeys(raw)));
    assert.deepEqual(again, full);
  });

  it('reads the older monzoAccessToken/monzoRefreshToken layout with no expiry, and keeps those keys current', () => {
    const { state, raw } = decodeState(JSON.stringify({ monzoAccessToken: 'a0', monzoRefreshToken: 'r0', x: 1 }), 'f');
    assert.equal(state.legacyKeys, true);
    assert.equal(state.tokens?.expiresAtMs, null);
    const next = { ...state, version: 1, tokens: { ...state.tokens!, accessToken: 'a1', refreshToken: 'r1', expiresAtMs: 1000, obtainedAtMs: 0 } };
    const written = JSON.parse(encodeState(next, foreignKeys(raw)));
    assert.equal(written.monzoAccessToken, 'a1');
    assert.equal(written.monzoRefreshToken, 'r1');
    assert.equal(written.access_token, 'a1');
    assert.equal(written.x, 1);
  });

  it('records and reads a refresh intent', () => {
    const { state } = decodeState(JSON.stringify(full), 'f');
    const withIntent = { ...state, intent: { refreshFingerprint: 'abc', startedAtMs: 5000 } };
    const back = decodeState(encodeState(withIntent, {}), 'f').state;
    assert.deepEqual(back.intent, { refreshFingerprint: 'abc', startedAtMs: 5000 });
  });

  for (const [name, text] of [
    ['empty', ''],
    ['truncated', JSON.stringify(full).slice(0, 40)],
    ['not an object', '[1,2]'],
    ['mistyped field', JSON.stringify({ ...full, expires_at: 42 })],
    ['bad date', JSON.stringify({ ...full, expires_at: 'tomorrow' })],
  ] as const) {
    it(`refuses a ${name} file with state_corrupt, naming no value`, () => {
      assert.throws(
        () => decodeState(text, '/x/tokens.json'),
        (e: unknown) => e instanceof TokendError && e.code === 'state_corrupt' && e.message.includes('/x/tokens.json') && !e.message.includes('acc_1'),
      );
    });
  }
});
