import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyTokenAnswer, tokenRequest, type Reply, type TokenOutcome } from '../../src/provider/oauth.ts';

const answer = (status: number, text: string, headers: Record<string, string> = {}): Reply => ({ kind: 'answer', status, headers, text });
const classify = (status: number, text: string, headers?: Record<string, string>): TokenOutcome => classifyTokenAnswer(answer(status, text, headers), 0);
const tokensOf = (outcome: TokenOutcome) => {
  assert.equal(outcome.kind, 'tokens', outcome.kind === 'tokens' ? '' : outcome.message);
  if (outcome.kind !== 'tokens') throw new Error('unreachable');
  return outcome.tokens;
};

describe('token response classification', () => {
  it('reads a Monzo response, keeping user_id and client_id', () => {
    const r = tokensOf(
      classify(200, JSON.stringify({ access_token: 'a', refresh_token: 'r', expires_in: 21600, token_type: 'Bearer', user_id: 'u', client_id: 'c' })),
    );
    assert.equal(r.accessToken, 'a');
    assert.equal(r.refreshToken, 'r');
    assert.equal(r.expiresInSec, 21600);
    assert.deepEqual(r.account, { user_id: 'u', client_id: 'c' });
  });

  it('keeps no refresh token when the response has none (the caller keeps the current one)', () => {
    assert.equal(tokensOf(classify(200, '{"access_token":"a","expires_in":60}')).refreshToken, null);
  });

  const table: Array<[string, TokenOutcome['kind'], Array<[number, string]>]> = [
    [
      'treats invalid_grant and Monzo bad_refresh_token (and .evicted) as final',
      'invalid_grant',
      [
        [400, '{"error":"invalid_grant"}'],
        [401, '{"code":"unauthorized.bad_refresh_token","message":"x"}'],
        [401, '{"code":"unauthorized.bad_refresh_token.evicted"}'],
      ],
    ],
    ['treats 5xx, 429 and 408 as transient', 'transient', [500, 502, 503, 504, 429, 408].map((status): [number, string] => [status, 'oops'])],
    [
      'never accepts a 200 without an access token, or with a body that is not JSON',
      'bad_response',
      [
        [200, '{"refresh_token":"r"}'],
        [200, '{"access_token":'],
        [200, '"a"'],
      ],
    ],
  ];
  for (const [name, kind, cases] of table) {
    it(name, () => {
      for (const [status, body] of cases) assert.equal(classify(status, body).kind, kind, `${status} ${body}`);
    });
  }

  it('honours Retry-After on a transient failure', () => {
    const r = classify(503, '', { 'retry-after': '12' });
    assert.equal(r.kind, 'transient');
    assert.equal(r.kind === 'transient' && r.retryAfterMs, 12_000);
  });

  it('an answer never read is transient, with no status: the provider may have redeemed the token', () => {
    const r = classifyTokenAnswer({ kind: 'unread', error: 'ECONNRESET', message: 'token request to x failed: ECONNRESET' }, 0);
    assert.deepEqual(r, {
      kind: 'transient',
      message: 'token request to x failed: ECONNRESET',
      status: null,
      error: 'ECONNRESET',
      retryAfterMs: null,
      maybeRedeemed: true,
    });
  });

  it('keeps the provider words but never echoes a token in the message', () => {
    const r = classify(400, '{"error":"invalid_client","error_description":"bad secret","access_token":"leak"}');
    assert.notEqual(r.kind, 'tokens');
    const message = r.kind === 'tokens' ? '' : r.message;
    assert.match(message, /invalid_client: bad secret/);
    assert.doesNotMatch(message, /leak/);
  });
});

describe('client authentication', () => {
  it('sends credentials in the body for client_secret_post', () => {
    const r = tokenRequest({ clientId: 'id', clientSecret: 's', authMethod: 'client_secret_post' }, { grant_type: 'refresh_token' });
    assert.equal(new URLSearchParams(r.body).get('client_secret'), 's');
    assert.equal(r.headers['authorization'], undefined);
  });

  it('sends HTTP Basic for client_secret_basic, form-encoding both parts', () => {
    const r = tokenRequest({ clientId: 'a b', clientSecret: 's:1', authMethod: 'client_secret_basic' }, { grant_type: 'refresh_token' });
    assert.equal(r.headers['authorization'], `Basic ${Buffer.from('a+b:s%3A1').toString('base64')}`);
    assert.equal(new URLSearchParams(r.body).get('client_secret'), null);
  });
});
