/**
 * Upstream faults, one at a time, against the rotating provider: the daemon
 * never crashes, never stores a bad pair, keeps serving the still-valid token,
 * retries on the backoff schedule (never faster) and recovers.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { Daemon } from '../fixtures/daemon.ts';
import type { Fault } from '../fixtures/monzo-stub.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();

const start = (env: NodeJS.ProcessEnv = {}): Promise<{ d: Daemon; stateFile: string }> =>
  suite.start({ env: { TOKEND_WAKE_INTERVAL_MS: '100', TOKEND_UPSTREAM_TIMEOUT_MS: '700', ...env } });
const finish = suite.finish;
const tokensIn = (file: string): { access_token: string; refresh_token: string } => JSON.parse(readFileSync(file, 'utf8'));

const transient: Array<[string, Fault, RegExp]> = [
  ['500', { kind: 'status', status: 500, body: { code: 'internal_service', message: 'boom' } }, /provider answered 500 \(internal_service: boom\)/],
  ['503 with Retry-After', { kind: 'status', status: 503, headers: { 'retry-after': '1' } }, /provider answered 503/],
  ['429', { kind: 'status', status: 429, body: { code: 'rate_limited', message: 'slow down' } }, /provider answered 429 \(rate_limited: slow down\)/],
  ['a hang past the timeout', { kind: 'hang' }, /token request to .* failed: timed out \((UND_ERR_\w+|TimeoutError)\)/],
  ['malformed JSON', { kind: 'raw', status: 200, text: '{"access_token": "acc_' }, /not a JSON object/],
  ['a 200 without access_token', { kind: 'partial', body: { refresh_token: 'ref_unused', expires_in: 60 } }, /without an access_token/],
];

describe('transient upstream faults', () => {
  for (const [name, fault, message] of transient) {
    it(`${name}: 502 with the reason, nothing stored, the old token served, then recovery`, async () => {
      const { d, stateFile } = await start();
      const before = tokensIn(stateFile);
      suite.stub.faults.push(fault);
      const r = await d.request('POST', '/refresh-tokens');
      assert.equal(r.status, 502, r.text);
      assert.equal(r.json['error'], 'upstream_error');
      assert.match(String(r.json['message']), message);
      assert.equal(tokensIn(stateFile).access_token, before.access_token, 'nothing stored');
      const served = await d.request('GET', '/token');
      assert.equal(served.status, 200);
      assert.equal(served.json['access_token'], before.access_token);
      // The scheduled retry succeeds once the provider does.
      await d.waitForLog('token refreshed', 10_000);
      const after = tokensIn(stateFile);
      assert.equal(after.refresh_token, suite.stub.live!.refresh_token);
      assert.ok(suite.stub.accepts((await d.request('GET', '/token')).json['access_token'] as string));
      assert.equal((await d.request('GET', '/state')).json['status'], 'ok');
      await finish(d);
    });
  }

  it('retries on the backoff schedule, never faster: ≥0.5 s, ≥1 s, ≥2 s between attempts', async () => {
    const { d } = await start();
    for (let i = 0; i < 4; i++) suite.stub.faults.push({ kind: 'status', status: 500 });
    const first = suite.stub.calls.length;
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 502);
    await d.waitForLog('token refreshed', 20_000);
    const times = suite.stub.calls.slice(first).map((c) => c.at);
    assert.equal(times.length, 5, 'four failures, then the success');
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    const floors = [500, 1000, 2000, 4000];
    gaps.forEach((gap, i) => assert.ok(gap >= floors[i]! - 20, `retry ${i + 1} came after ${gap} ms, before ${floors[i]} ms`));
    // A refresh answered over RPC carries the latest snapshot: the failures are forgotten.
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 200);
    const state = await d.request('GET', '/state');
    assert.equal((state.json['refresh'] as Record<string, unknown>)['consecutive_failures'], 0);
    await finish(d);
  });

  it('a daemon under repeated failures never crashes and answers every request', async () => {
    const { d } = await start();
    for (let i = 0; i < 20; i++) {
      const fault = transient[i % transient.length]![1];
      suite.stub.faults.push(fault.kind === 'hang' ? { kind: 'status', status: 502 } : fault);
    }
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => d.request(i % 2 ? 'GET' : 'POST', i % 2 ? '/token' : '/refresh-tokens')));
    assert.ok(
      answers.every((a) => a.status === 200 || a.status === 502),
      answers.map((a) => a.status).join(','),
    );
    suite.stub.faults.length = 0;
    assert.equal((await d.request('GET', '/healthz')).status, 200);
    await finish(d);
  });
});

describe('final upstream answers', () => {
  it('a 200 without refresh_token keeps the current one', async () => {
    const { d, stateFile } = await start();
    const before = tokensIn(stateFile);
    suite.stub.faults.push({ kind: 'partial', body: { token_type: 'Bearer' }, rotate: true });
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 200);
    const after = tokensIn(stateFile);
    assert.notEqual(after.access_token, before.access_token);
    assert.equal(after.refresh_token, before.refresh_token);
    await finish(d);
  });

  it('invalid_grant stops retrying: reauthorization_required, no further upstream calls', async () => {
    const { d } = await start();
    suite.stub.faults.push({ kind: 'status', status: 400, body: { error: 'invalid_grant', error_description: 'refresh token revoked' } });
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 503);
    assert.equal(r.json['error'], 'reauthorization_required');
    const calls = suite.stub.calls.length;
    assert.equal((await d.request('GET', '/readyz')).status, 503);
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 503);
    assert.equal(suite.stub.calls.length, calls, 'no retry against a refused token');
    await finish(d);
  });

  it('a connection dropped after the provider rotated: the lost rotation is reported as such, not as a bare invalid_grant', async () => {
    const { d, stateFile } = await start();
    const before = tokensIn(stateFile);
    suite.stub.faults.push({ kind: 'drop' });
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 502);
    // The retry presents the token the provider already rotated away.
    await d.waitForLog(/^reauthorization required/, 10_000);
    const state = await d.request('GET', '/state');
    assert.equal(state.json['status'], 'reauthorization_required');
    assert.match(String(state.json['reason']), /was interrupted before its answer was saved, so the provider had most likely rotated it already.*tokend login/);
    assert.equal(tokensIn(stateFile).refresh_token, before.refresh_token, 'the file is kept as it was');
    await finish(d);
  });
});
