/**
 * Crash, signal and load loops with short-lived rotating tokens (a refresh
 * every ~1 s). Short by default; `TOKEND_SOAK=1 npm run test:e2e` runs the
 * long version (100 SIGTERM/SIGINT, 100 SIGKILL, 60 s of load) whose figures
 * the README reports.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import { Daemon, http, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

// Tokens live 2 s: a refresh every ~1 s.
const suite = stubSuite({ expiresInSec: 2 });
const { outputs } = suite;

const SOAK = process.env['TOKEND_SOAK'] === '1';
const SIGNAL_ROUNDS = SOAK ? 100 : 8;
const KILL_ROUNDS = SOAK ? 100 : 10;
const LOAD_SECONDS = SOAK ? 60 : 5;

const random = (n: number): number => Math.floor(Math.random() * n);
const env = (stateFile: string): NodeJS.ProcessEnv => stubEnv(suite.stub, stateFile, { TOKEND_WAKE_INTERVAL_MS: '100', TOKEND_LOG_LEVEL: 'info' });
const readState = (file: string): { access_token: string; refresh_token: string } => JSON.parse(readFileSync(file, 'utf8'));

function report(t: TestContext, figures: Record<string, number | string>): void {
  const line = Object.entries(figures)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  t.diagnostic(line);
  if (SOAK) process.stderr.write(`SOAK ${t.name}: ${line}\n`);
}

describe('signals and crashes', () => {
  it(`${SIGNAL_ROUNDS} SIGTERM/SIGINT at random moments: 0 lost rotations, 0 corrupt files, every restart serves an accepted token`, async (t) => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 2);
    const moments = { idle: 0, 'mid-refresh': 0, 'mid-request': 0, 'under load': 0 };
    let lost = 0;
    for (let i = 0; i < SIGNAL_ROUNDS; i++) {
      const callsAtStart = suite.stub.calls.length;
      const d = await Daemon.start(env(stateFile));
      const token = await d.request('GET', '/token');
      assert.equal(token.status, 200, token.text);
      // Accepted, unless a rotation raced the read (the provider drops the old token when it rotates).
      assert.ok(
        suite.stub.accepts(String(token.json['access_token'])) || suite.stub.calls.length > callsAtStart,
        'restart serves a token the provider accepts',
      );
      const moment = (Object.keys(moments) as Array<keyof typeof moments>)[random(4)]!;
      moments[moment]++;
      let loading = false;
      const pending: Array<Promise<unknown>> = [];
      if (moment === 'mid-refresh') {
        suite.stub.faults.push({ kind: 'delay', ms: 100 + random(300) });
        const arrived = suite.stub.nextRequest();
        pending.push(d.request('POST', '/refresh-tokens').catch(() => null));
        await arrived;
      } else if (moment === 'mid-request') {
        pending.push(
          d.request('POST', '/refresh-tokens').catch(() => null),
          d.request('GET', '/token').catch(() => null),
        );
      } else if (moment === 'under load') {
        loading = true;
        for (let w = 0; w < 8; w++)
          pending.push(
            (async () => {
              while (loading) await d.request('GET', '/token').catch(() => null);
            })(),
          );
        await new Promise((r) => setTimeout(r, random(300)));
      }
      d.kill(random(2) ? 'SIGTERM' : 'SIGINT');
      const exit = await d.exited;
      loading = false;
      await Promise.all(pending);
      outputs.push(d.output);
      suite.stub.faults.length = 0;
      assert.equal(exit.code, 0, `round ${i} (${moment}): ${d.output.slice(-2000)}`);
      const file = readState(stateFile); // throws on a corrupt file
      if (file.refresh_token !== suite.stub.live!.refresh_token) lost++;
      assert.equal(lost, 0, `round ${i} (${moment}) lost a rotation`);
    }
    report(t, { rounds: SIGNAL_ROUNDS, lost, corrupt: 0, ...moments });
  });

  it(`${KILL_ROUNDS} SIGKILLs at random moments: 0 corrupt files; a lost rotation is only possible between the provider's answer and the fsync, and is reported as such`, async (t) => {
    let stateFile = stateFileWith(tempDir(), suite.stub.login(), 2);
    let lost = 0;
    let refreshesSeen = 0;
    for (let i = 0; i < KILL_ROUNDS; i++) {
      const calls = suite.stub.calls.length;
      const d = await Daemon.start(env(stateFile));
      await new Promise((r) => setTimeout(r, random(2500)));
      d.kill('SIGKILL');
      await d.exited;
      outputs.push(d.output);
      refreshesSeen += suite.stub.calls.length - calls;
      const file = readState(stateFile); // 0 corrupt or half-written files, ever
      if (file.refresh_token !== suite.stub.live!.refresh_token) {
        lost++;
        // The next start knows exactly what happened.
        const again = await Daemon.start(env(stateFile));
        await again.waitForLog(/^reauthorization required/, 10_000);
        const state = await again.request('GET', '/state');
        assert.match(String(state.json['reason']), /interrupted before its answer was saved/);
        assert.equal((await again.stop()).code, 0);
        outputs.push(again.output);
        stateFile = stateFileWith(tempDir(), suite.stub.login(), 2);
      }
    }
    report(t, { rounds: KILL_ROUNDS, upstreamRefreshes: refreshesSeen, corrupt: 0, lostRotations: lost });
  });
});

describe('load', () => {
  it(`${LOAD_SECONDS} s of concurrent GET /token while the token refreshes every second: 0 errors, never an expired token`, async (t) => {
    const d = await Daemon.start(env(stateFileWith(tempDir(), suite.stub.login(), 2)));
    const until = Date.now() + LOAD_SECONDS * 1000;
    const first = suite.stub.calls.length;
    let reads = 0;
    let errors = 0;
    let expired = 0;
    const tokens = new Set<string>();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (Date.now() < until) {
          const r = await http(d.address, 'GET', '/token').catch(() => null);
          reads++;
          if (r?.status !== 200) {
            errors++;
            continue;
          }
          tokens.add(String(r.json['access_token']));
          if (Date.parse(String(r.json['expires_at'])) <= Date.now()) expired++;
        }
      }),
    );
    const refreshes = suite.stub.calls.length - first;
    outputs.push(d.output);
    assert.equal((await d.stop()).code, 0);
    report(t, { seconds: LOAD_SECONDS, reads, errors, expired, refreshes, distinctTokens: tokens.size });
    assert.equal(errors, 0);
    assert.equal(expired, 0);
    // A 2 s token is due 1 s after it was obtained: one refresh a second plus the
    // refresh's own time (upstream call, fsync, wake-up). Allow that 10% per cycle.
    assert.ok(refreshes >= Math.floor(LOAD_SECONDS / 1.1), `refreshed ${refreshes} times`);
  });
});
