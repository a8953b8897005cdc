import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseTokenResponse, tokenRequest, UpstreamFailure } from '../../src/provider/oauth.ts';

const kindOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof UpstreamFailure);
    return e.kind;
  }
  return 'ok';
};

describe('token response classification', () => {
  it('reads a Monzo response, keeping user_id and client_id', () => {
    const r = parseTokenResponse(
      200,
      undefined,
      JSON.stringify({ access_token: 'a', refresh_token: 'r', expires_in: 21600, token_type: 'Bearer', user_id: 'u', client_id: 'c' }),
      0,
    );
    assert.equal(r.accessToken, 'a');
    assert.equal(r.refreshToken, 'r');
    assert.equal(r.expiresInSec, 21600);
    assert.deepEqual(r.account, { user_id: 'u', client_id: 'c' });
  });

  it('keeps no refresh token when the response has none (the caller keeps the current one)', () => {
    assert.equal(parseTokenResponse(200, undefined, '{"access_token":"a","expires_in":60}', 0).refreshToken, null);
  });

  const answers = (kind: string, cases: Array<[number, string]>): void => {
    for (const [status, body] of cases)
      assert.equal(
        kindOf(() => parseTokenResponse(status, undefined, body, 0)),
        kind,
        `${status} ${body}`,
      );
  };

  it('treats invalid_grant and Monzo bad_refresh_token (and .evicted) as final', () => {
    answers('invalid_grant', [
      [400, '{"error":"invalid_grant"}'],
      [401, '{"code":"unauthorized.bad_refresh_token","message":"x"}'],
      [401, '{"code":"unauthorized.bad_refresh_token.evicted"}'],
    ]);
  });

  it('treats 5xx, 429 and 408 as transient, with Retry-After', () => {
    answers(
      'transient',
      [500, 502, 503, 504, 429, 408].map((status): [number, string] => [status, 'oops']),
    );
    assert.throws(
      () => parseTokenResponse(503, '12', '', 0),
      (e: unknown) => e instanceof UpstreamFailure && e.retryAfterMs === 12_000,
    );
  });

  it('never accepts a 200 without an access token, or with a body that is not JSON', () => {
    answers('bad_response', [
      [200, '{"refresh_token":"r"}'],
      [200, '{"access_token":'],
      [200, '"a"'],
    ]);
  });

  it('keeps the provider words but never echoes a token in the message', () => {
    try {
      parseTokenResponse(400, undefined, '{"error":"invalid_client","error_description":"bad secret","access_token":"leak"}', 0);
      assert.fail('should throw');
    } catch (e) {
      assert.match((e as Error).message, /invalid_client: bad secret/);
      assert.doesNotMatch((e as Error).message, /leak/);
    }
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
