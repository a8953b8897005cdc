import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Daemon, http, rawExchange, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();

const daemonWithTokens = (env: NodeJS.ProcessEnv = {}, state: Record<string, unknown> = {}): Promise<{ d: Daemon; stateFile: string }> =>
  suite.start({ env, state });
const stopped = suite.finish;

describe('reading tokens', () => {
  it('GET /token serves the access token with its expiry, without calling the provider', async () => {
    const { d } = await daemonWithTokens();
    const calls = suite.stub.calls.length;
    const r = await d.request('GET', '/token');
    assert.equal(r.status, 200);
    assert.equal(r.json['access_token'], suite.stub.live!.access_token);
    assert.equal(r.json['token_type'], 'Bearer');
    assert.ok(Number(r.json['expires_in']) > 3500 && Number(r.json['expires_in']) <= 3600);
    assert.equal(typeof r.json['expires_at'], 'string');
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(suite.stub.calls.length, calls);
    await stopped(d);
  });

  it('GET /state reports status, expiry and schedule but never the refresh token', async () => {
    const { d, stateFile } = await daemonWithTokens();
    const r = await d.request('GET', '/state');
    assert.equal(r.status, 200);
    assert.equal(r.json['status'], 'ok');
    assert.equal(r.json['ready'], true);
    assert.equal(r.json['state_file'], stateFile);
    assert.equal(r.json['lock_held'], true);
    assert.equal(typeof (r.json['refresh'] as Record<string, unknown>)['next_at'], 'string');
    assert.ok(!r.text.includes(suite.stub.live!.refresh_token));
    await stopped(d);
  });

  it('healthz and readyz answer 200 with a usable token', async () => {
    const { d } = await daemonWithTokens();
    assert.equal((await d.request('GET', '/healthz')).status, 200);
    const ready = await d.request('GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.json['ready'], true);
    await stopped(d);
  });

  it('a daemon with no tokens waits for login: 503 reauthorization_required with the fix, readyz says why', async () => {
    const stateFile = join(tempDir(), 'sub', 'tokens.json');
    const d = await Daemon.start(stubEnv(suite.stub, stateFile));
    const t = await d.request('GET', '/token');
    assert.equal(t.status, 503);
    assert.equal(t.json['error'], 'reauthorization_required');
    assert.match(String(t.json['message']), /tokend login/);
    const ready = await d.request('GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.match(String(ready.json['message']), /waiting_for_login/);
    assert.equal(statSync(join(stateFile, '..')).mode & 0o777, 0o700);
    await stopped(d);
  });
});

describe('refreshing', () => {
  it('50 concurrent POST /refresh-tokens make one upstream call, and the file holds the live token when they return', async () => {
    const { d, stateFile } = await daemonWithTokens();
    const before = suite.stub.calls.length;
    const rs = await Promise.all(Array.from({ length: 50 }, () => d.request('POST', '/refresh-tokens')));
    assert.deepEqual(new Set(rs.map((r) => r.status)), new Set([200]));
    assert.equal(suite.stub.calls.length - before, 1);
    const live = suite.stub.live!;
    assert.deepEqual(new Set(rs.map((r) => r.json['access_token'])), new Set([live.access_token]));
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(file.access_token, live.access_token);
    assert.equal(file.refresh_token, live.refresh_token);
    assert.equal(file.refresh_intent, null);
    assert.equal(statSync(stateFile).mode & 0o777, 0o600);
    assert.ok(suite.stub.accepts((await d.request('GET', '/token')).json['access_token'] as string));
    await stopped(d);
  });

  it('POST /set-tokens persists, then answers; the file and /token agree', async () => {
    const { d, stateFile } = await daemonWithTokens();
    const fresh = suite.stub.login();
    const r = await d.request('POST', '/set-tokens', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...fresh, expires_in: 600 }),
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['access_token'], fresh.access_token);
    assert.ok(Number(r.json['expires_in']) <= 600 && Number(r.json['expires_in']) > 590);
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(file.refresh_token, fresh.refresh_token);
    assert.equal((await d.request('GET', '/token')).json['access_token'], fresh.access_token);
    await stopped(d);
  });

  it('keeps the older monzo keys current and preserves foreign keys on every write', async () => {
    const pair = suite.stub.login();
    const dir = tempDir();
    const stateFile = join(dir, 'tokens.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(stateFile, JSON.stringify({ monzoAccessToken: pair.access_token, monzoRefreshToken: pair.refresh_token, other_tool: { x: [1, 2] } }));
    const d = await Daemon.start(stubEnv(suite.stub, stateFile));
    // No expiry in the older layout: refreshed at start.
    await d.waitForLog('token refreshed');
    await d.request('POST', '/refresh-tokens');
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(file.monzoAccessToken, suite.stub.live!.access_token);
    assert.equal(file.monzoRefreshToken, suite.stub.live!.refresh_token);
    assert.equal(file.access_token, suite.stub.live!.access_token);
    assert.deepEqual(file.other_tool, { x: [1, 2] });
    assert.equal(typeof file.expires_at, 'string');
    await stopped(d);
  });
});

describe('clients that half-close', () => {
  it('a client that half-closes once its request is sent still gets the answer of a slow route', async () => {
    const { d } = await daemonWithTokens();
    suite.stub.faults.push({ kind: 'delay', ms: 300 });
    const raw = await rawExchange(d.address, 'POST /refresh-tokens HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', true);
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.ok(raw.includes(suite.stub.live!.access_token));
    suite.outputs.push(raw.replace(suite.stub.live!.access_token, ''));
    await stopped(d);
  });
});

describe('bad input changes nothing', () => {
  let d: Daemon;
  let stateFile: string;
  let original: string;
  before(async () => {
    ({ d, stateFile } = await daemonWithTokens());
    original = readFileSync(stateFile, 'utf8');
  });
  after(async () => {
    assert.equal(readFileSync(stateFile, 'utf8'), original, 'the state file changed');
    await stopped(d);
  });
  const json = { 'content-type': 'application/json' };
  const cases: Array<[string, string, string, { headers?: Record<string, string>; body?: string }, number, string]> = [
    ['invalid JSON', 'POST', '/set-tokens', { headers: json, body: '{"access_token":' }, 400, 'invalid_json'],
    ['a missing field', 'POST', '/set-tokens', { headers: json, body: '{"refresh_token":"r"}' }, 400, 'invalid_request'],
    ['a mistyped field', 'POST', '/set-tokens', { headers: json, body: '{"access_token":"a","expires_in":"soon"}' }, 400, 'invalid_request'],
    ['an unknown field', 'POST', '/set-tokens', { headers: json, body: '{"access_token":"a","oops":1}' }, 400, 'invalid_request'],
    ['a JSON array', 'POST', '/set-tokens', { headers: json, body: '[]' }, 400, 'invalid_request'],
    ['a body over 16 KiB', 'POST', '/set-tokens', { headers: json, body: JSON.stringify({ access_token: 'a'.repeat(17_000) }) }, 413, 'payload_too_large'],
    ['text/plain', 'POST', '/set-tokens', { headers: { 'content-type': 'text/plain' }, body: '{"access_token":"a"}' }, 415, 'unsupported_media_type'],
    [
      'a form post',
      'POST',
      '/refresh-tokens',
      { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' },
      415,
      'unsupported_media_type',
    ],
    ['an unknown route', 'GET', '/nope', {}, 404, 'not_found'],
    ['a wrong method', 'DELETE', '/token', {}, 405, 'method_not_allowed'],
    ['GET on a POST route', 'GET', '/set-tokens', {}, 405, 'method_not_allowed'],
  ];
  for (const [name, method, path, opts, status, code] of cases) {
    it(`${name}: ${status} ${code}`, async () => {
      const r = await d.request(method, path, opts);
      assert.equal(r.status, status, r.text);
      assert.equal(r.json['error'], code);
      assert.equal(typeof r.json['message'], 'string');
      if (status === 405) assert.match(String(r.headers['allow']), /GET|POST/);
    });
  }

  it('a body that lies about its length, or a malformed request line, is refused and the daemon keeps serving', async () => {
    const raw = await rawExchange(d.address, 'GARBAGE / HTTP/1.1\r\n\r\n', false);
    assert.match(raw, /^HTTP\/1\.1 400/);
    assert.equal((await d.request('GET', '/token')).status, 200);
  });
});

describe('security', () => {
  it('refuses a rebinding Host and a foreign Origin with 403', async () => {
    const { d } = await daemonWithTokens();
    const rebind = await d.request('GET', '/token', { headers: { host: 'evil.example' } });
    assert.equal(rebind.status, 403);
    assert.equal(rebind.json['error'], 'forbidden_host');
    assert.ok(!rebind.text.includes('acc_'));
    const csrf = await d.request('POST', '/refresh-tokens', { headers: { origin: 'https://evil.example', 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(csrf.status, 403);
    assert.equal(csrf.json['error'], 'forbidden_origin');
    await stopped(d);
  });

  it('with an API key, every route but /healthz needs it', async () => {
    const key = 'k3y-'.repeat(8);
    const { d } = await daemonWithTokens({ TOKEND_API_KEY: key });
    assert.equal((await d.request('GET', '/token')).status, 401);
    assert.equal((await d.request('GET', '/state', { headers: { authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await d.request('GET', '/healthz')).status, 200);
    const ok = await d.request('GET', '/token', { headers: { authorization: `Bearer ${key}` } });
    assert.equal(ok.status, 200);
    await stopped(d);
  });

  it('a unix socket is created 0600 and serves', async () => {
    const dir = tempDir();
    const socket = join(dir, 'tokend.sock');
    const { d } = await daemonWithTokens({ TOKEND_LISTEN: `unix:${socket}` });
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    const r = await http('unix:', 'GET', '/token', { socketPath: socket });
    assert.equal(r.status, 200);
    await stopped(d);
  });
});
