/**
 * What a provider can say, taken as an attacker or a careless provider would
 * say it: lifetimes that cannot be written, tokens that cannot be served,
 * error texts that echo the request. Pure: the classifier and the scrubber.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { boundLifetime, classifyTokenAnswer, type SentRequest, type TokenOutcome, type TokenResponse, type UpstreamFailure } from '../../src/provider/oauth.ts';
import { LIFETIME } from '../../src/shared/token-syntax.ts';
import { scrubCode, scrubText } from '../../src/provider/provider-text.ts';

const NOW = Date.parse('2026-12-02T08:00:00Z');
/** The classifier on an answer read whole. */
const classify = (status: number, retryAfter: string | undefined, text: string, nowMs: number, sent?: SentRequest): TokenOutcome =>
  classifyTokenAnswer({ kind: 'answer', status, headers: retryAfter === undefined ? {} : { 'retry-after': retryAfter }, text }, nowMs, sent);
const tokens = (outcome: TokenOutcome): TokenResponse => {
  if (outcome.kind !== 'tokens') assert.fail(`expected tokens, got ${outcome.kind}: ${outcome.message}`);
  return outcome.tokens;
};
const failure = (outcome: TokenOutcome): UpstreamFailure => {
  if (outcome.kind === 'tokens') assert.fail('expected a failure');
  return outcome;
};
const outcome = (body: Record<string, unknown>, sent?: SentRequest): TokenOutcome => classify(200, undefined, JSON.stringify(body), NOW, sent);
const ok = (body: Record<string, unknown>, sent?: SentRequest): TokenResponse => tokens(outcome(body, sent));
/** The refresh token a refused success hands on (only a bad_response carries one). */
const rotatedOf = (e: UpstreamFailure): string | null | undefined => (e.kind === 'bad_response' ? e.rotatedRefreshToken : undefined);

describe('expires_in is bounded: every answer gives a lifetime that can be written', () => {
  const cases: Array<[string, unknown, number, RegExp | null]> = [
    ['a number', 21600, 21600, null],
    ['a string of digits', '7200', 7200, null],
    ['9e12 (a date past year 275760)', 9e12, LIFETIME.maxSec, /above the ceiling of 10 years/],
    ['"99999999999999999"', '99999999999999999', LIFETIME.maxSec, /above the ceiling/],
    ['a thousand digits', '9'.repeat(1000), LIFETIME.maxSec, /over 20 digits.*above the ceiling/],
    ['0.001 (a refresh storm)', 0.001, LIFETIME.minSec, /below the floor of 2 s/],
    ['1', 1, LIFETIME.minSec, /below the floor/],
    ['0', 0, 3600, /not a positive number/],
    ['negative', -60, 3600, /-60 is not a positive number/],
    ['"0"', '0', 3600, /not a positive number/],
    ['a string that is not digits', '1e3', 3600, /a string that is not decimal digits/],
    ['" 3600"', ' 3600', 3600, /not decimal digits/],
    ['null', null, 3600, /expires_in null/],
    ['a list', [60], 3600, /a list/],
    ['an object', { s: 60 }, 3600, /an object/],
    ['a boolean', true, 3600, /a boolean/],
    ['absent (legal, still said)', undefined, 3600, /gave no expires_in: assuming 3600 s/],
  ];
  for (const [name, value, sec, warning] of cases) {
    it(`${name} → ${sec} s${warning ? ', with a warning' : ''}`, () => {
      const r = ok({ access_token: 'a', token_type: 'Bearer', ...(value === undefined ? {} : { expires_in: value }) });
      assert.equal(r.expiresInSec, sec);
      if (warning) {
        assert.equal(r.warnings.length, 1);
        assert.match(r.warnings[0]!, warning);
      } else assert.deepEqual(r.warnings, []);
      // The owner stores now + lifetime as an ISO date: it must always be writable.
      assert.doesNotThrow(() => new Date(NOW + r.expiresInSec * 1000).toISOString());
    });
  }

  it('1e400 in the JSON text (Infinity once parsed) is held to the ceiling', () => {
    assert.equal(tokens(classify(200, undefined, '{"access_token":"a","expires_in":1e400}', NOW)).expiresInSec, LIFETIME.maxSec);
  });

  it('a fraction of a second is rounded to whole seconds', () => {
    assert.equal(boundLifetime(59.6).sec, 60);
  });

  it('a warning never repeats a string that is not digits (it could be a token)', () => {
    assert.doesNotMatch(boundLifetime('ref_secretvalue').warning!, /ref_secretvalue/);
  });
});

describe('tokens from the provider: RFC 6750 characters, Bearer only', () => {
  const redeemed: SentRequest = { secrets: ['ref_old'], redeemed: 'ref_old' };

  for (const [name, token] of [
    ['NUL', 'abc\u0000def'],
    ['CR/LF (header injection)', 'abc\r\nX-Evil: 1'],
    ['a space', 'abc def'],
    ['a lone surrogate', 'abc\ud800'],
    ['a quote', 'abc"def'],
    ['padding in the middle', 'ab=cd'],
  ] as const) {
    it(`an access token with ${name} is refused, and the rotated refresh token is handed on`, () => {
      const e = failure(outcome({ access_token: token, refresh_token: 'ref_new', token_type: 'Bearer' }, redeemed));
      assert.equal(e.kind, 'bad_response');
      assert.match(e.message, /not RFC 6750 token characters/);
      assert.equal(rotatedOf(e), 'ref_new');
      assert.ok(!e.message.includes(token));
    });
  }

  it('an access token that is not a string, or absurdly long, is refused', () => {
    assert.equal(failure(outcome({ access_token: 12345, token_type: 'Bearer' })).kind, 'bad_response');
    assert.equal(failure(outcome({ access_token: 'a'.repeat(70_000), token_type: 'Bearer' })).kind, 'bad_response');
  });

  it('accepts every b64token character, with trailing padding', () => {
    assert.equal(ok({ access_token: 'Az09-._~+/==' }).accessToken, 'Az09-._~+/==');
  });

  it('token_type bearer in any case becomes Bearer; absent is Bearer', () => {
    for (const type of ['bearer', 'BEARER', 'Bearer', 'bEaReR', undefined, null, '']) {
      assert.equal(ok({ access_token: 'a', ...(type === undefined ? {} : { token_type: type }) }).tokenType, 'Bearer', String(type));
    }
  });

  it('token_type mac (or DPoP, or a number) is refused, the rotation handed on', () => {
    for (const type of ['mac', 'DPoP', 'Bearer ', 42]) {
      const e = failure(outcome({ access_token: 'a', refresh_token: 'ref_new', token_type: type }, redeemed));
      assert.equal(e.kind, 'bad_response');
      assert.match(e.message, /not Bearer/);
      assert.equal(rotatedOf(e), 'ref_new');
    }
  });

  it('an answer without an access token hands on a rotated refresh token', () => {
    const e = failure(outcome({ refresh_token: 'ref_new' }, redeemed));
    assert.match(e.message, /without an access_token/);
    assert.equal(rotatedOf(e), 'ref_new');
  });

  it('hands on nothing when the refresh token is the one redeemed, or absent', () => {
    assert.equal(rotatedOf(failure(outcome({ refresh_token: 'ref_old', token_type: 'mac', access_token: 'a' }, redeemed))), null);
    assert.equal(rotatedOf(failure(outcome({ token_type: 'mac', access_token: 'a' }, redeemed))), null);
  });

  it('a refresh token in a success is kept whatever its characters (it may be the only live one), with a warning outside RFC 6749', () => {
    const spaced = ok({ access_token: 'a', refresh_token: 'new rt with space' }, redeemed);
    assert.equal(spaced.refreshToken, 'new rt with space');
    assert.ok(
      spaced.warnings.every((w) => !/RFC 6749/.test(w)),
      spaced.warnings.join('; '),
    );
    for (const refresh of ['ref\u0000x', 'ref\u00e9', 'ref\r\n']) {
      const r = ok({ access_token: 'a', refresh_token: refresh }, redeemed);
      assert.equal(r.refreshToken, refresh);
      assert.ok(r.warnings.some((w) => /outside RFC 6749/.test(w)) && r.warnings.every((w) => !w.includes(refresh)), r.warnings.join('; '));
    }
  });

  it('a refresh_token that is not a string is refused and never handed on', () => {
    for (const refresh of [42, ['ref'], { a: 1 }]) {
      const e = failure(outcome({ access_token: 'a', refresh_token: refresh }, redeemed));
      assert.equal(e.kind, 'bad_response');
      assert.match(e.message, /refresh_token that is not a string/);
      assert.equal(rotatedOf(e), null);
    }
  });

  it('null or empty refresh_token means none (the current one is kept)', () => {
    assert.equal(ok({ access_token: 'a', refresh_token: null }).refreshToken, null);
    assert.equal(ok({ access_token: 'a', refresh_token: '' }).refreshToken, null);
  });
});

describe('the rest of a 200 answer', () => {
  it('a __proto__ key is data, never a prototype that supplies an access token', () => {
    const e = failure(classify(200, undefined, '{"__proto__":{"access_token":"a","token_type":"Bearer"}}', NOW));
    assert.match(e.message, /without an access_token/);
    const r = tokens(classify(200, undefined, '{"access_token":"a","__proto__":{"user_id":"x"},"constructor":{"x":1}}', NOW));
    assert.deepEqual(r.account, {});
    assert.equal(Object.getPrototypeOf(r.account), Object.prototype);
  });

  it('duplicate keys: the last one counts, as in every JSON parser, and is checked like any other', () => {
    assert.equal(tokens(classify(200, undefined, '{"access_token":"a","access_token":"b"}', NOW)).accessToken, 'b');
    assert.equal(failure(classify(200, undefined, '{"access_token":"a","access_token":"b c"}', NOW)).kind, 'bad_response');
  });

  it('a scope that is not scope tokens is ignored with a warning', () => {
    assert.equal(ok({ access_token: 'a', expires_in: 60, scope: 'openid offline_access' }).scope, 'openid offline_access');
    for (const scope of ['a\nb', ['openid'], 'x'.repeat(5000), 'a  b']) {
      const r = ok({ access_token: 'a', expires_in: 60, scope });
      assert.equal(r.scope, null);
      assert.match(r.warnings.join(), /scope .* ignored/);
    }
  });

  it('user_id and client_id: kept when short visible ASCII, ignored with a warning when not or when they hold a token', () => {
    assert.deepEqual(ok({ access_token: 'a', expires_in: 60, user_id: 'user_00009237aqC8c5umZmrRdh', client_id: 'oauth2client_00009' }).account, {
      user_id: 'user_00009237aqC8c5umZmrRdh',
      client_id: 'oauth2client_00009',
    });
    const r = ok({ access_token: 'acc_abcdef', refresh_token: 'ref_new_one', expires_in: 60, user_id: 'u\u0000', client_id: 'x ref_new_one' });
    assert.deepEqual(r.account, {});
    assert.equal(r.warnings.length, 2);
    assert.equal(
      ok({ access_token: 'a', expires_in: 60, user_id: 'ref_old_secret' }, { secrets: ['ref_old_secret'], redeemed: 'ref_old_secret' }).account['user_id'],
      undefined,
    );
  });
});

describe("the provider's words, scrubbed of what tokend sent", () => {
  const secret = 'mnz conf/secret+for=tests';
  const sent: SentRequest = { secrets: ['ref_0123456789abcdef', secret, Buffer.from(`id:${secret}`).toString('base64')], redeemed: 'ref_0123456789abcdef' };
  const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'ref_0123456789abcdef', client_id: 'id', client_secret: secret }).toString();

  it('an echoed request (form body, Basic header) leaves no secret in the message or the code', () => {
    const text = JSON.stringify({
      error: 'invalid_request',
      error_description: `bad request: ${body}; raw secret ${secret}; authorization: Basic ${sent.secrets[2]}; encoded ${encodeURIComponent(secret)}`,
    });
    const e = failure(classify(400, undefined, text, NOW, sent));
    assert.equal(e.error, 'invalid_request');
    for (const s of [...sent.secrets, encodeURIComponent(secret), new URLSearchParams({ s: secret }).toString().slice(2), 'ref_0123456789', 'conf/secret']) {
      assert.ok(!e.message.includes(s), `${s} in ${e.message}`);
    }
    assert.match(e.message, /\[redacted\]/);
  });

  it('a secret cut short or split by a control character is still hidden', () => {
    const e = failure(
      classify(400, undefined, JSON.stringify({ error: 'x', error_description: 'token ref_0123456789ab… and ref_01234\u000056789abcdef' }), NOW, sent),
    );
    assert.ok(!/ref_0123456789ab|56789abcdef/.test(e.message), e.message);
  });

  it('an error code that echoes a secret, or is not a code, is replaced; the status speaks instead', () => {
    for (const error of ['ref_0123456789abcdef', 'two words', 'x'.repeat(65), 'bad\u001b[31m']) {
      const e = failure(classify(401, undefined, JSON.stringify({ error }), NOW, sent));
      assert.equal(e.error, null, error);
      assert.match(e.message, /HTTP 401, an error that is not an error code/);
      assert.ok(!e.message.includes(error), e.message);
    }
    assert.equal(failure(classify(401, undefined, JSON.stringify({ code: 'unauthorized.bad_refresh_token.evicted' }), NOW, sent)).kind, 'invalid_grant');
  });

  it('a token the provider echoes on its own (not one tokend sent) is hidden; a request id is kept', () => {
    const e = failure(
      classify(
        500,
        undefined,
        JSON.stringify({
          error: 'server_error',
          error_description: 'for eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123 trace 3f2a1b4c-0d5e-4f60-8a7b-9c0d1e2f3a4b',
        }),
        NOW,
        sent,
      ),
    );
    assert.doesNotMatch(e.message, /eyJ/);
    assert.match(e.message, /3f2a1b4c-0d5e-4f60-8a7b-9c0d1e2f3a4b/);
  });

  it('control characters become spaces, the text is cut short', () => {
    const e = failure(
      classify(
        503,
        undefined,
        JSON.stringify({ error: 'temporarily_unavailable', error_description: `a\u001b[2J\r\nb\u202ec ${'x '.repeat(5000)}` }),
        NOW,
        sent,
      ),
    );
    assert.ok(e.message.length < 400, String(e.message.length));
    assert.doesNotMatch(e.message, /[\u0000-\u001f\u007f-\u009f\u202e]/);
    assert.match(e.message, /a \[2J b c x x/);
  });

  it('an OAuth error sent with 200 (as GitHub does) is the error it says, final when the token is refused', () => {
    assert.equal(failure(classify(200, undefined, '{"error":"bad_refresh_token","error_description":"expired"}', NOW)).kind, 'invalid_grant');
    assert.equal(failure(classify(200, undefined, '{"error":"invalid_grant"}', NOW)).kind, 'invalid_grant');
    const e = failure(
      classify(200, undefined, '{"error":"incorrect_client_credentials","error_description":"The client_id and/or client_secret passed are incorrect."}', NOW),
    );
    assert.equal(e.kind, 'rejected');
    assert.match(e.message, /incorrect_client_credentials: The client_id/);
  });

  it('a redirect is a clear failure, not a token answer', () => {
    const e = failure(classify(302, undefined, '', NOW));
    assert.equal(e.kind, 'rejected');
    assert.match(e.message, /302, a redirect: tokend does not follow redirects/);
  });

  it('scrubText and scrubCode on their own', () => {
    assert.equal(scrubText('plain words stay', ['secretvalue']), 'plain words stay');
    assert.equal(scrubText('x secretvalue y', ['secretvalue']), 'x [redacted] y');
    assert.equal(scrubText('ab cd', ['ab']), 'ab cd', 'a secret under 4 characters is not looked for');
    assert.equal(scrubCode('invalid_grant', ['x1234']), 'invalid_grant');
    assert.equal(scrubCode(null, []), null);
  });
});
