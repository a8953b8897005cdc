/**
 * A provider that says what it should not: answers too large for the owner
 * thread's heap, lifetimes that cannot be written, tokens that cannot be
 * served, error texts that echo the request, redirects. The daemon survives
 * each, stores nothing it cannot serve, and repeats no secret.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { join } from 'node:path';
import { freePort, Proc, runCli, tempDir, type Daemon } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();

const start = (env: NodeJS.ProcessEnv = {}): Promise<{ d: Daemon; stateFile: string }> => suite.start({ env: { TOKEND_WAKE_INTERVAL_MS: '100', ...env } });
const stateIn = (file: string): Record<string, string> => JSON.parse(readFileSync(file, 'utf8'));
const lastError = async (d: Daemon): Promise<Record<string, unknown> | undefined> => {
  const state = await d.request('GET', '/state');
  return (state.json['refresh'] as Record<string, Record<string, unknown>>)['last_error'];
};
const YEAR_MS = 365 * 86_400_000;

describe('answers too large to read', () => {
  it('a 60 MB answer: 502, the daemon lives on, the old token is served, /state names the failure', async () => {
    const { d, stateFile } = await start();
    const before = stateIn(stateFile);
    suite.stub.faults.push({ kind: 'huge', bytes: 60 * 1024 * 1024 });
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json['error'], 'upstream_error');
    assert.match(String(r.json['message']), /the answer was over 1 MiB and was not read/);
    assert.ok(suite.stub.hugeWritten < 30 * 1024 * 1024, `the provider got to write ${suite.stub.hugeWritten} bytes`);
    const served = await d.request('GET', '/token');
    assert.equal(served.status, 200);
    assert.equal(served.json['access_token'], before['access_token']);
    assert.match(String((await lastError(d))?.['message']), /over 1 MiB/);
    assert.equal(stateIn(stateFile)['refresh_token'], before['refresh_token'], 'nothing stored');
    // Nothing was rotated: the scheduled retry succeeds.
    await d.waitForLog('token refreshed', 15_000);
    assert.equal(stateIn(stateFile)['refresh_token'], suite.stub.live!.refresh_token);
    await suite.finish(d);
  });

  it('a 60 MB answer after the provider rotated: the loss is diagnosed as an interrupted refresh, the file kept', async () => {
    const { d, stateFile } = await start();
    const before = stateIn(stateFile);
    suite.stub.faults.push({ kind: 'huge', bytes: 60 * 1024 * 1024, rotate: true });
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 502);
    await d.waitForLog(/^reauthorization required/, 15_000);
    const state = await d.request('GET', '/state');
    assert.match(String(state.json['reason']), /was interrupted before its answer was saved/);
    assert.equal(stateIn(stateFile)['refresh_token'], before['refresh_token']);
    await suite.finish(d);
  });
});

describe('lifetimes a provider may state', () => {
  for (const [said, low, high] of [
    [9e12, 9.9 * YEAR_MS, 10.1 * YEAR_MS],
    ['99999999999999999', 9.9 * YEAR_MS, 10.1 * YEAR_MS],
    [0.001, 1_500, 2_500],
  ] as const) {
    it(`expires_in ${JSON.stringify(said)}: the pair is written and served, its lifetime bounded`, async () => {
      const { d, stateFile } = await start();
      suite.stub.faults.push({ kind: 'rotated', with: { expires_in: said } });
      const r = await d.request('POST', '/refresh-tokens');
      assert.equal(r.status, 200, r.text);
      const file = stateIn(stateFile);
      assert.equal(file['refresh_token'], suite.stub.live!.refresh_token);
      const lifetime = Date.parse(file['expires_at'] ?? '') - Date.parse(file['obtained_at'] ?? '');
      assert.ok(lifetime >= low && lifetime <= high, `stored lifetime ${lifetime} ms`);
      assert.equal((await d.request('GET', '/token')).status, 200);
      await suite.finish(d);
    });
  }
});

describe('tokens a provider may send', () => {
  it('an access token with CR/LF is refused: 502, nothing stored, the old token served', async () => {
    const { d, stateFile } = await start();
    const before = stateIn(stateFile);
    suite.stub.faults.push({ kind: 'partial', body: { access_token: 'acc_bad\r\nX-Injected: 1', token_type: 'Bearer', expires_in: 60 } });
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 502, r.text);
    assert.match(String(r.json['message']), /not RFC 6750 token characters/);
    assert.equal(stateIn(stateFile)['access_token'], before['access_token']);
    assert.equal((await d.request('GET', '/token')).json['access_token'], before['access_token']);
    await suite.finish(d);
  });

  it('token_type "bearer" is stored and served as Bearer', async () => {
    const { d, stateFile } = await start();
    suite.stub.faults.push({ kind: 'rotated', with: { token_type: 'bearer' } });
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 200);
    assert.equal(stateIn(stateFile)['token_type'], 'Bearer');
    assert.equal((await d.request('GET', '/token')).json['token_type'], 'Bearer');
    await suite.finish(d);
  });

  it('token_type "mac" is refused', async () => {
    const { d } = await start();
    suite.stub.faults.push({ kind: 'partial', body: { access_token: 'acc_mac', token_type: 'mac', expires_in: 60 } });
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 502);
    assert.match(String(r.json['message']), /token_type mac, not Bearer/);
    await suite.finish(d);
  });
});

describe("the provider's words", () => {
  for (const status of [400, 503]) {
    it(`a ${status} echoing the request: neither the refresh token nor the client secret in the 502, /state or the output`, async () => {
      const { d, stateFile } = await start();
      const refreshToken = stateIn(stateFile)['refresh_token'];
      assert.ok(refreshToken, 'a refresh token in the state file');
      suite.stub.faults.push({ kind: 'echo', status });
      const r = await d.request('POST', '/refresh-tokens');
      assert.equal(r.status, 502, r.text);
      assert.match(String(r.json['message']), /invalid_request: cannot handle grant_type=refresh_token&refresh_token=\[redacted\]/);
      const state = await d.request('GET', '/state');
      await suite.finish(d);
      for (const [where, text] of [
        ['the 502 body', r.text],
        ['/state', state.text],
        ['the output', d.output],
      ] as const) {
        assert.ok(!text.includes(refreshToken), `the refresh token in ${where}`);
        assert.ok(!text.includes(suite.stub.clientSecret), `the client secret in ${where}`);
      }
    });
  }

  it('a redirect from the token endpoint is a clear 502; nothing follows it', async () => {
    const { d } = await start();
    suite.stub.faults.push({ kind: 'status', status: 302, body: {}, headers: { location: `${suite.stub.url}/elsewhere` } });
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 502);
    assert.match(String(r.json['message']), /302, a redirect: tokend does not follow redirects/);
    await suite.finish(d);
  });
});

describe('where the client secret may go', () => {
  it('a token URL in plain http to another host: the daemon refuses it at start (exit 2), before anything is sent', async () => {
    const dir = tempDir();
    const stateFile = join(dir, 'tokens.json');
    // 192.0.2.0/24 is reserved for documentation: nothing answers there.
    const p = await runCli(['serve'], stubEnv(suite.stub, stateFile, { TOKEND_TOKEN_URL: 'http://192.0.2.1/oauth2/token', TOKEND_LISTEN: '127.0.0.1:0' }));
    suite.outputs.push(p.output);
    assert.equal(p.result.code, 2, p.output);
    assert.match(p.stderr, /^tokend: TOKEND_TOKEN_URL \(--token-url\): http:\/\/192\.0\.2\.1\/oauth2\/token is plain http to a host that is not this machine/m);
    assert.equal(p.stderr.trim().split('\n').length, 1, p.stderr);
    assert.deepEqual(readdirSync(dir), [], 'nothing written');
  });
});

describe('tokend login against a careless provider', () => {
  it('a token URL in plain http to another host: exit 2 before any URL is shown', async () => {
    const p = await runCli(['login', '--no-browser'], {
      TOKEND_PROVIDER: 'custom',
      TOKEND_AUTH_URL: 'https://auth.example/authorize',
      TOKEND_TOKEN_URL: 'http://192.0.2.1/token',
      TOKEND_CLIENT_ID: 'client',
      TOKEND_CLIENT_SECRET: 'client-secret-value',
      TOKEND_STATE_FILE: join(tempDir(), 'tokens.json'),
    });
    suite.outputs.push(p.output);
    assert.equal(p.result.code, 2, p.output);
    assert.match(p.stderr, /TOKEND_TOKEN_URL \(--token-url\): http:\/\/192\.0\.2\.1\/token is plain http to a host that is not this machine/);
    assert.doesNotMatch(p.stderr, /auth\.example/);
  });

  it('a callback whose error carries terminal escapes prints one clean line', async () => {
    const redirectUri = `http://127.0.0.1:${await freePort()}/authorization-code`;
    const p = new Proc(['login', '--no-browser'], {
      TOKEND_AUTH_URL: `${suite.stub.url}/auth`,
      TOKEND_TOKEN_URL: suite.stub.tokenUrl,
      TOKEND_CLIENT_ID: suite.stub.clientId,
      TOKEND_CLIENT_SECRET: suite.stub.clientSecret,
      TOKEND_REDIRECT_URI: redirectUri,
      TOKEND_STATE_FILE: join(tempDir(), 'tokens.json'),
    });
    await p.waitForLine((l) => l.startsWith('waiting for the authorization callback'));
    const evil = new URLSearchParams({ error: 'x\u001b]0;owned\u0007', error_description: `\u001b[2J\u001b[31mcall 555\r\n${'y'.repeat(5000)}` });
    await fetch(`${redirectUri}?${evil}`);
    const exit = await p.exited;
    suite.outputs.push(p.output);
    assert.equal(exit.code, 1);
    assert.doesNotMatch(p.stderr, /\u001b|\u0007/);
    const line = p.stderr.split('\n').find((l) => l.includes('authorization failed'))!;
    assert.match(line, /authorization failed: an error that is not an error code: \[2J \[31mcall 555 y+…/);
    assert.ok(line.length < 400, String(line.length));
  });
});
