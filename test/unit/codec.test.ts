import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeState, encodeState, foreignKeys, jsonNesting, MAX_NESTING, MAX_STATE_VERSION, type StoredState } from '../../src/state-file/codec.ts';
import { TokendError } from '../../src/shared/errors.ts';

/** The tokens of `state`, which must hold an access token. */
function active(state: StoredState) {
  assert.equal(state.tokens.kind, 'active');
  if (state.tokens.kind !== 'active') throw new Error('unreachable');
  return state.tokens;
}

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
    assert.equal(active(state).accessToken, 'acc_1');
    assert.equal(active(state).expiresAtMs, Date.parse(full.expires_at));
    assert.deepEqual(active(state).account, { user_id: 'user_1', client_id: 'oauth2client_1' });
    const again = JSON.parse(encodeState(state, foreignKeys(raw)));
    assert.deepEqual(again, full);
  });

  it('reads the older monzoAccessToken/monzoRefreshToken layout with no expiry, and keeps those keys current', () => {
    const { state, raw } = decodeState(JSON.stringify({ monzoAccessToken: 'a0', monzoRefreshToken: 'r0', x: 1 }), 'f');
    assert.equal(state.legacyKeys, true);
    assert.equal(active(state).expiresAtMs, null);
    const next = { ...state, version: 1, tokens: { ...active(state), accessToken: 'a1', refreshToken: 'r1', expiresAtMs: 1000, obtainedAtMs: 0 } };
    const written = JSON.parse(encodeState(next, foreignKeys(raw)));
    assert.equal(written.monzoAccessToken, 'a1');
    assert.equal(written.monzoRefreshToken, 'r1');
    assert.equal(written.access_token, 'a1');
    assert.equal(written.x, 1);
  });

  it('reads a file with a refresh token and no access token as refresh-only, and writes it back byte for byte', () => {
    for (const file of [
      {
        refresh_token: 'ref_1',
        token_type: 'Bearer',
        scope: 'openid',
        expires_at: null,
        obtained_at: null,
        provider: 'monzo',
        user_id: 'u',
        state_version: 3,
        refresh_intent: null,
      },
      { monzoRefreshToken: 'ref_1', x: 1 },
    ]) {
      const text = `${JSON.stringify(file, null, 2)}\n`;
      const { state, raw } = decodeState(text, 'f');
      assert.equal(state.tokens.kind, 'refresh_only');
      const written = encodeState(state, foreignKeys(raw));
      assert.equal(decodeState(written, 'f').state.tokens.kind, 'refresh_only');
      assert.equal(Object.hasOwn(JSON.parse(written), 'access_token'), false);
      if ('state_version' in file) assert.equal(written, text);
    }
  });

  it('writes no token keys for a file without tokens', () => {
    const { state } = decodeState('{"x":1}', 'f');
    assert.equal(state.tokens.kind, 'none');
    assert.equal(encodeState(state, { x: 1 }), `${JSON.stringify({ x: 1, state_version: 0, refresh_intent: null }, null, 2)}\n`);
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
    ['date past the range of a Date', JSON.stringify({ ...full, expires_at: '+300000-01-01T00:00:00.000Z' })],
    ['state_version of 2^53', JSON.stringify({ ...full, state_version: 2 ** 53 })],
    ['state_version of 1e300', JSON.stringify({ ...full, state_version: 1e300 })],
    ['nesting 20,000 deep', `{"deep":${'['.repeat(20_000)}${']'.repeat(20_000)}}`],
    ['negative state_version', JSON.stringify({ ...full, state_version: -1 })],
    ['fractional state_version', JSON.stringify({ ...full, state_version: 1.5 })],
    ['empty access token', JSON.stringify({ ...full, access_token: '' })],
    ['refresh token as a number', JSON.stringify({ ...full, refresh_token: 7 })],
    ['refresh_intent as a string', JSON.stringify({ ...full, refresh_intent: 'soon' })],
    ['refresh_intent without its fingerprint', JSON.stringify({ ...full, refresh_intent: { started_at: '2026-01-01T00:00:00Z' } })],
    ['user_id as an object', JSON.stringify({ ...full, user_id: {} })],
  ] as const) {
    it(`refuses a ${name} file with state_corrupt, naming no value`, () => {
      assert.throws(
        () => decodeState(text, '/x/tokens.json'),
        (e: unknown) => e instanceof TokendError && e.code === 'state_corrupt' && e.message.includes('/x/tokens.json') && !e.message.includes('acc_1'),
      );
    });
  }

  it('names the cause: a version too large to increment, a date out of range, nesting too deep', () => {
    const message = (text: string): string => {
      try {
        decodeState(text, 'f');
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    };
    assert.match(message(JSON.stringify({ ...full, state_version: 2 ** 53 })), /state_version.*at most/);
    assert.match(message(JSON.stringify({ ...full, obtained_at: '-300000-01-01T00:00:00Z' })), /obtained_at.*between the years/);
    // Every problem is named, each with its field.
    assert.match(
      message(JSON.stringify({ ...full, scope: 1, refresh_intent: { refresh_token_fingerprint: 'x' } })),
      /scope: must be a string; refresh_intent.started_at: is missing/,
    );
    assert.match(message(`{"a":${'['.repeat(MAX_NESTING + 1)}${']'.repeat(MAX_NESTING + 1)}}`), new RegExp(`nests deeper than ${MAX_NESTING} levels`));
    assert.equal(decodeState(JSON.stringify({ ...full, state_version: MAX_STATE_VERSION }), 'f').state.version, MAX_STATE_VERSION);
  });

  it('counts nesting without parsing, ignoring brackets inside strings', () => {
    assert.equal(jsonNesting('{"a":[{"b":"[[[[{{{{\\"}]}'), 3);
    assert.equal(jsonNesting('{"a":"\\"}'), 1);
    assert.equal(jsonNesting('"[[["'), 0);
  });

  it('keeps __proto__, constructor and prototype keys of other tools as plain keys', () => {
    const text = '{"access_token":"a","__proto__":{"polluted":true},"constructor":{"x":1},"prototype":2}';
    const { state, raw } = decodeState(text, 'f');
    const written = encodeState({ ...state, version: 1 }, foreignKeys(raw));
    const again = JSON.parse(written) as Record<string, unknown>;
    assert.ok(Object.hasOwn(again, '__proto__'), written);
    assert.deepEqual(again['__proto__'], { polluted: true });
    assert.deepEqual(again['constructor'], { x: 1 });
    assert.equal(again['prototype'], 2);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  it('never fails to encode, whatever the times say', () => {
    const { state } = decodeState(JSON.stringify(full), 'f');
    for (const ms of [9e18, -9e18, Number.NaN, Number.POSITIVE_INFINITY, 8.64e15 + 1]) {
      const absurd = { ...state, tokens: { ...active(state), expiresAtMs: ms, obtainedAtMs: ms }, intent: { refreshFingerprint: 'f', startedAtMs: ms } };
      const back = active(decodeState(encodeState(absurd, {}), 'f').state);
      assert.ok(back.expiresAtMs === null || Math.abs(back.expiresAtMs) <= 8.64e15);
    }
  });

  it('round-trips replaced_refresh_token, and writes it only while there is one', () => {
    const { state } = decodeState(JSON.stringify({ ...full, replaced_refresh_token: 'ref_0' }), 'f');
    assert.equal(active(state).replacedRefreshToken, 'ref_0');
    assert.equal(JSON.parse(encodeState(state, {})).replaced_refresh_token, 'ref_0');
    const redeemed = { ...state, tokens: { ...active(state), replacedRefreshToken: null } };
    assert.equal(Object.hasOwn(JSON.parse(encodeState(redeemed, {})), 'replaced_refresh_token'), false);
  });
});
