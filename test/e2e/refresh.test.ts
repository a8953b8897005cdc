import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Daemon, runCli, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();

const start = (expiresInSec = 3600, env: NodeJS.ProcessEnv = {}): Promise<{ d: Daemon; stateFile: string }> => suite.start({ expiresInSec, env });
const finish = suite.finish;

describe('schedule', () => {
  it('refreshes on its own before expiry, and every refreshed pair works', async () => {
    suite.stub.expiresIn = 2;
    try {
      const { d, stateFile } = await start(2, { TOKEND_WAKE_INTERVAL_MS: '200' });
      const first = suite.stub.calls.length;
      const refreshes = (): number => d.stderr.split('"msg":"token refreshed"').length - 1;
      await d.waitForLine(() => refreshes() >= 3, 15_000);
      assert.ok(suite.stub.calls.length - first >= 2);
      const file = JSON.parse(readFileSync(stateFile, 'utf8'));
      assert.equal(file.refresh_token, suite.stub.live!.refresh_token);
      await finish(d);
    } finally {
      suite.stub.expiresIn = 3600;
    }
  });

  it('readers of an expired token join the one refresh in flight: 100 GET /token, one upstream call, all served the new token', async () => {
    const pair = suite.stub.login();
    const stateFile = stateFileWith(tempDir(), pair, 3600, {
      obtained_at: new Date(Date.now() - 7_200_000).toISOString(),
      expires_at: new Date(Date.now() - 60_000).toISOString(),
    });
    const before = suite.stub.calls.length;
    suite.stub.faults.push({ kind: 'delay', ms: 1_000 });
    const d = await Daemon.start(stubEnv(suite.stub, stateFile));
    const rs = await Promise.all(Array.from({ length: 100 }, () => d.request('GET', '/token')));
    assert.equal(suite.stub.calls.length - before, 1);
    for (const r of rs) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json['access_token'], suite.stub.live!.access_token);
    }
    await finish(d);
  });
});

describe('upstream failures', () => {
  it('invalid_grant: reauthorization_required in /state, /token, /readyz, status and logs; the file is kept', async () => {
    const { d, stateFile } = await start(3600);
    suite.stub.login(); // a login elsewhere invalidates the daemon's tokens
    const before = readFileSync(stateFile, 'utf8');
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 503);
    assert.equal(r.json['error'], 'reauthorization_required');
    assert.match(String(r.json['message']), /tokend login/);
    const state = await d.request('GET', '/state');
    assert.equal(state.json['status'], 'reauthorization_required');
    assert.match(String(state.json['reason']), /unauthorized\.bad_refresh_token.*tokend login/);
    assert.equal((await d.request('GET', '/token')).json['error'], 'reauthorization_required');
    assert.equal((await d.request('GET', '/readyz')).status, 503);
    const status = await runCli(['status', '--listen', d.address], {});
    assert.equal(status.result.code, 1);
    assert.match(status.stdout, /reauthorization_required — .*tokend login/);
    await d.waitForLog(/^reauthorization required/);
    const after = JSON.parse(readFileSync(stateFile, 'utf8'));
    const was = JSON.parse(before);
    assert.equal(after.refresh_token, was.refresh_token, 'the refused token is kept for diagnosis');
    // No retry loop against a refused token.
    const calls = suite.stub.calls.length;
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 503);
    assert.equal(suite.stub.calls.length, calls);
    await finish(d);
  });

  it('before giving up, adopts a different refresh token another tool put in the file', async () => {
    const { d, stateFile } = await start(3600);
    const fresh = suite.stub.login();
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    writeFileSync(stateFile, JSON.stringify({ ...file, refresh_token: fresh.refresh_token }));
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['access_token'], suite.stub.live!.access_token);
    await d.waitForLog('state file holds a different refresh token: adopting it');
    await finish(d);
  });

  it('503 with Retry-After: 502 to the caller with the provider words, the old token still served, retried no sooner than asked', async () => {
    const { d } = await start(3600);
    const token = (await d.request('GET', '/token')).json['access_token'];
    suite.stub.faults.push({ kind: 'status', status: 503, body: { code: 'internal_service', message: 'down for a moment' }, headers: { 'retry-after': '2' } });
    const failedAt = Date.now();
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 502);
    assert.equal(r.json['error'], 'upstream_error');
    assert.match(String(r.json['message']), /503 \(internal_service: down for a moment\)/);
    assert.deepEqual(r.json['upstream'], { status: 503, error: 'internal_service' });
    assert.equal((await d.request('GET', '/token')).json['access_token'], token);
    // Within the Retry-After window even an explicit refresh does not call the provider.
    const calls = suite.stub.calls.length;
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 502);
    assert.equal(suite.stub.calls.length, calls);
    // The scheduled retry comes after Retry-After and succeeds.
    await d.waitForLog('token refreshed');
    assert.ok(suite.stub.calls.at(-1)!.at - failedAt >= 2_000, 'retried too early');
    assert.equal((await d.request('GET', '/state')).json['status'], 'ok');
    await finish(d);
  });

  it('a 200 without an access token is never stored; one without a refresh token keeps the current one', async () => {
    const { d, stateFile } = await start(3600);
    const before = JSON.parse(readFileSync(stateFile, 'utf8'));
    suite.stub.faults.push({ kind: 'partial', body: { token_type: 'Bearer', expires_in: 60 } });
    const bad = await d.request('POST', '/refresh-tokens');
    assert.equal(bad.status, 502);
    assert.match(String(bad.json['message']), /without an access_token/);
    assert.equal(JSON.parse(readFileSync(stateFile, 'utf8')).access_token, before.access_token);

    suite.stub.faults.push({ kind: 'partial', body: { token_type: 'Bearer' }, rotate: true });
    const ok = await d.request('POST', '/refresh-tokens');
    assert.equal(ok.status, 200, ok.text);
    const after = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(after.access_token, suite.stub.live!.access_token);
    assert.equal(after.refresh_token, before.refresh_token, 'kept the current refresh token');
    await finish(d);
  });

  it('a hang past the timeout fails the refresh with a clear error, and the daemon keeps serving', async () => {
    const { d } = await start(3600, { TOKEND_UPSTREAM_TIMEOUT_MS: '500' });
    suite.stub.faults.push({ kind: 'hang' });
    const started = Date.now();
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 502);
    assert.match(String(r.json['message']), /token request to http:\/\/127\.0\.0\.1:\d+\/oauth2\/token failed/);
    assert.ok(Date.now() - started < 3_000);
    assert.equal((await d.request('GET', '/token')).status, 200);
    await finish(d);
  });
});
