/** Each account's series carry its name with a config file; a daemon configured by the environment exports them as before. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Snapshot } from '../../src/shared/contract.ts';
import { Metrics } from '../../src/daemon/metrics.ts';

const snapshot = (status: Snapshot['status'], lockHeld: boolean): Snapshot => ({
  seq: 1,
  version: 1,
  status,
  reason: null,
  token: null,
  refresh: { inFlight: false, nextAtMs: null, lastAttemptAtMs: null, lastSuccessAtMs: 1_700_000_000_000, lastError: null, consecutiveFailures: 0 },
  persist: { ok: true, lastError: null, lastWriteAtMs: null },
  lockHeld,
  stateFile: '/s.json',
  provider: 'monzo',
  account: {},
});

it('with a config file, every per-account series carries the account label', async () => {
  const m = new Metrics(true);
  m.setSnapshot('work', snapshot('ok', true));
  m.setSnapshot('home', snapshot('failed', false));
  m.record('work', { type: 'refresh', outcome: 'success', seconds: 0.2 });
  m.record('home', { type: 'persist', ok: false, seconds: 0.001 });
  const text = await m.text();
  assert.match(text, /^tokend_refresh_total\{account="work",outcome="success"\} 1$/m);
  assert.match(text, /^tokend_refresh_duration_seconds_count\{account="work"\} 1$/m);
  assert.match(text, /^tokend_persist_duration_seconds_count\{account="home",result="error"\} 1$/m);
  assert.match(text, /^tokend_lock_held\{account="work"\} 1$/m);
  assert.match(text, /^tokend_lock_held\{account="home"\} 0$/m);
  assert.match(text, /^tokend_status\{account="home",status="failed"\} 1$/m);
  assert.match(text, /^tokend_status\{account="work",status="ok"\} 1$/m);
  assert.match(text, /^tokend_last_refresh_success_timestamp_seconds\{account="work"\} 1700000000$/m);
  // A removed account stops being exported.
  m.setAccounts(['work']);
  assert.doesNotMatch(await m.text(), /^tokend_lock_held\{account="home"\}/m);
});

it('configured by the environment, the series are those of before: no account label', async () => {
  const m = new Metrics();
  m.setSnapshot('default', snapshot('ok', true));
  m.record('default', { type: 'refresh', outcome: 'success', seconds: 0.2 });
  const text = await m.text();
  assert.match(text, /^tokend_refresh_total\{outcome="success"\} 1$/m);
  assert.match(text, /^tokend_lock_held 1$/m);
  assert.match(text, /^tokend_status\{status="ok"\} 1$/m);
  assert.doesNotMatch(text, /account="/);
});
