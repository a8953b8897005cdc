/**
 * The refresher on a mocked clock: `setTimeout` and `Date` are Node's mock
 * timers, `Math.random` is fixed, so every test is deterministic and takes no
 * real time.
 *
 * Trap: the refresher waits out the spacing with
 * `import { setTimeout as sleep } from 'node:timers/promises'`. Mock timers
 * replace the property on the module object, but an ESM named import keeps
 * the original until `syncBuiltinESMExports()` copies the mock into it (and
 * back after `reset()`); without that the spacing would be a real sleep.
 */
import assert from 'node:assert/strict';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import type { RefreshTrigger, Result } from '../../src/shared/contract.ts';
import type { ErrorData, ErrorFields } from '../../src/shared/errors.ts';
import { noTokens, type ActiveTokens, type TokenState } from '../../src/state-file/codec.ts';
import { MIN_SPACING_MS, RECENT_MS, Refresher } from '../../src/owner/refresher.ts';
import { refreshDueAt, refreshPolicy, type RefreshPolicy } from '../../src/owner/schedule.ts';

const T0 = Date.UTC(2026, 0, 1);
const S = 1_000;
const MIN = 60_000;
const H = 3_600_000;
const WAKE_MS = MIN;

const ok: Result<null> = { ok: true, value: null };
const upstream = (fields: ErrorFields = {}): Result<null> => ({
  ok: false,
  error: { code: 'upstream_error', message: 'provider answered 503', ...fields },
});
const reauth: ErrorData = { code: 'reauthorization_required', message: 'the provider refused the refresh token' };

function tokens(obtainedAtMs: number, expiresAtMs: number): ActiveTokens {
  return {
    kind: 'active',
    accessToken: 'at',
    refreshToken: 'rt',
    replacedRefreshToken: null,
    tokenType: 'Bearer',
    scope: null,
    expiresAtMs,
    obtainedAtMs,
    provider: null,
    account: {},
  };
}

/** Lets every pending promise continuation run (setImmediate is not mocked). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Monotonic time moved by `advance`, as opposed to the wall clock a test may jump. */
let elapsed = 0;
/** Moves the mocked timers (and Date) forward in steps of `step`, letting promises settle after each. */
async function advance(ms: number, step = 100): Promise<void> {
  let left = ms;
  while (left > 0) {
    const d = Math.min(step, left);
    elapsed += d;
    mock.timers.tick(d);
    left -= d;
    await flush();
  }
  await flush();
}

/** Suspend/resume or a clock step: the wall clock moves, the timers (a monotonic clock) do not. */
let wallOffset = 0;
function jumpWallClock(ms: number): void {
  wallOffset += ms;
}

interface Deferred {
  promise: Promise<Result<null>>;
  resolve: (r: Result<null>) => void;
}
function deferred(): Deferred {
  let resolve!: (r: Result<null>) => void;
  const promise = new Promise<Result<null>>((r) => (resolve = r));
  return { promise, resolve };
}

type Answer = Result<null> | Deferred | Error | (() => Result<null>);

/**
 * A refresher with fake deps. `answers` are used in order (the last repeats);
 * each redeem call records the wall clock and the monotonic time, relative to T0.
 */
function harness(opts: { answers?: Answer[]; token?: TokenState; policy?: RefreshPolicy } = {}) {
  const world = {
    answers: opts.answers ?? [ok],
    token: opts.token ?? noTokens,
    blocked: null as ErrorData | null,
    calls: [] as Array<{ wall: number; mono: number }>,
    changes: 0,
    warnings: [] as object[],
    infos: [] as string[],
  };
  const log = {
    error: () => undefined,
    debug: () => undefined,
    warn: (fields: object | string) => void world.warnings.push(typeof fields === 'string' ? { msg: fields } : fields),
    info: (fields: object | string, msg?: string) => void world.infos.push(typeof fields === 'string' ? fields : (msg ?? '')),
  };
  const refresher = new Refresher({
    wakeIntervalMs: WAKE_MS,
    ...(opts.policy && { policy: opts.policy }),
    redeem: () => {
      world.calls.push({ wall: Date.now() - T0, mono: elapsed });
      const answer = world.answers.length > 1 ? world.answers.shift()! : world.answers[0]!;
      if (answer instanceof Error) return Promise.reject(answer);
      if (typeof answer === 'function') return Promise.resolve(answer());
      if ('promise' in answer) return answer.promise;
      return Promise.resolve(answer);
    },
    canRefresh: () => world.blocked,
    token: () => world.token,
    onChange: () => void world.changes++,
    log,
  });
  return { refresher, world };
}

describe('refresher', { timeout: 10_000 }, () => {
  beforeEach(() => {
    elapsed = 0;
    wallOffset = 0;
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
    syncBuiltinESMExports();
    // Date is the mocked class now; its clock plus the offset a test may jump by.
    const mockedNow = Date.now.bind(Date);
    mock.method(Date, 'now', () => mockedNow() + wallOffset);
    mock.method(Math, 'random', () => 0.5);
  });

  afterEach(() => {
    mock.restoreAll();
    mock.timers.reset();
    syncBuiltinESMExports();
  });

  describe('single flight', () => {
    it('many concurrent triggers make one redeem call, and all get its result', async () => {
      const d = deferred();
      const { refresher, world } = harness({ answers: [d] });
      const triggers: RefreshTrigger[] = ['timer', 'http', 'cli', 'read', 'start', 'http', 'read', 'timer', 'cli', 'start'];
      const runs = triggers.map((t) => refresher.run(t));
      await flush();
      assert.equal(world.calls.length, 1);
      assert.equal(refresher.view().inFlight, true);
      // More triggers while it is in flight join it too.
      runs.push(refresher.run('http'), refresher.run('timer'));
      assert.ok(
        runs.every((p) => p === runs[0]),
        'every trigger got the promise in flight',
      );
      const answer = upstream({ upstream: { status: 503, error: 'marker' } });
      d.resolve(answer);
      const results = await Promise.all(runs);
      assert.equal(world.calls.length, 1);
      for (const r of results) assert.equal(r, answer);
      assert.equal(refresher.view().inFlight, false);
    });

    it('a trigger after the flight has landed starts a new attempt', async () => {
      const { refresher, world } = harness({ answers: [ok] });
      await refresher.run('timer');
      await advance(MIN_SPACING_MS);
      await refresher.run('timer');
      assert.equal(world.calls.length, 2);
    });
  });

  describe('schedule', () => {
    it('a timer refresh fires at the moment due from the token, not before', async () => {
      const token = tokens(T0, T0 + 20 * MIN);
      const { refresher, world } = harness({ token });
      // Random is 0.5: the due moment the schedule computes with that jitter (15 min before expiry, less 15 s).
      const due = refreshDueAt(T0, T0 + 20 * MIN, () => 0.5) - T0;
      assert.equal(due, 15 * MIN - 15 * S);
      refresher.schedule();
      assert.equal(refresher.view().nextAtMs, T0 + due);
      // Wake-ups every minute come and go without a refresh.
      await advance(due - 1, 1_000);
      assert.equal(world.calls.length, 0);
      await advance(1, 1);
      assert.deepEqual(world.calls, [{ wall: due, mono: due }]);
    });

    it('a token already overdue is refreshed at once', async () => {
      const { refresher, world } = harness({ token: tokens(T0 - 2 * H, T0 - H) });
      refresher.schedule();
      assert.equal(world.calls.length, 0);
      await advance(0);
      mock.timers.tick(0);
      await flush();
      assert.equal(world.calls.length, 1);
    });

    it('after a wall-clock jump (suspend/resume) an overdue refresh happens at the next wake-up, not at the old due moment', async () => {
      const { refresher, world } = harness({ token: tokens(T0, T0 + 6 * H) });
      refresher.schedule();
      const due = refreshDueAt(T0, T0 + 6 * H, () => 0.5) - T0;
      await advance(30 * S, 1_000);
      // Asleep for 5 h: the wall clock is past the due moment, the timers never ran.
      jumpWallClock(5 * H);
      assert.ok(Date.now() - T0 > due, 'the wall clock is past the due moment');
      await advance(WAKE_MS - 30 * S - 1, 1_000);
      assert.equal(world.calls.length, 0);
      await advance(1, 1);
      assert.equal(world.calls.length, 1);
      // One wake-up interval of timer time after it was armed, far from the due moment on the timers' clock.
      assert.equal(world.calls[0]!.mono, WAKE_MS);
      assert.equal(world.calls[0]!.wall, WAKE_MS + 5 * H);
    });

    it('the timer never sleeps longer than the wake-up interval', async () => {
      const { refresher, world } = harness({ token: tokens(T0, T0 + 48 * H) });
      refresher.schedule();
      // At any moment, jump past the due moment: the refresh follows within one wake-up interval.
      await advance(17 * MIN + 123, 1_000);
      jumpWallClock(48 * H);
      await advance(WAKE_MS, 1_000);
      assert.equal(world.calls.length, 1);
    });
  });

  describe("an account's refresh_lead and refresh_at_least", () => {
    /** Each refresh is answered with a token living `lifetimeMs` from that moment. */
    const renewing = (world: { token: TokenState }, lifetimeMs: number) => (): Result<null> => {
      world.token = tokens(Date.now(), Date.now() + lifetimeMs);
      return ok;
    };

    it('refresh_lead: the timer refresh fires that long before expiry (less jitter), not at the default moment', async () => {
      const token = tokens(T0, T0 + H);
      const { refresher, world } = harness({ token, policy: refreshPolicy({ leadMs: 20 * MIN }) });
      // Random is 0.5: half of the 30 s jitter cap.
      const due = 40 * MIN - 15 * S;
      refresher.schedule();
      assert.equal(refresher.view().nextAtMs, T0 + due);
      assert.ok(refreshDueAt(T0, T0 + H, () => 0.5) > T0 + due + 5 * MIN, 'the default would be at 80%, later');
      await advance(due - 1, 10_000);
      assert.equal(world.calls.length, 0);
      await advance(1, 1);
      assert.deepEqual(world.calls, [{ wall: due, mono: due }]);
    });

    it('refresh_at_least: a long-lived token is refreshed on that cadence, counted again from each refresh', async () => {
      const { refresher, world } = harness({ token: tokens(T0, T0 + 30 * 86_400_000), policy: refreshPolicy({ atLeastMs: H }) });
      world.answers = [renewing(world, 30 * 86_400_000)];
      refresher.schedule();
      // Jitter: half of min(30 s, 5% of 1 h).
      const every = H - 15 * S;
      assert.equal(refresher.view().nextAtMs, T0 + every);
      // Steps of 5 s: each due moment falls on a step end (the mocked Date reads the end of a tick).
      await advance(3 * H, 5_000);
      assert.deepEqual(
        world.calls.map((c) => c.wall),
        [every, 2 * every, 3 * every],
      );
    });

    it('a refresh_lead longer than the token lives refreshes at half its lifetime, never in a loop', async () => {
      const { refresher, world } = harness({ token: tokens(T0, T0 + 4 * S), policy: refreshPolicy({ leadMs: H }) });
      world.answers = [renewing(world, 4 * S)];
      refresher.schedule();
      await advance(20 * S, 100);
      // Every 2 s (half of each 4 s token): 10 calls in 20 s, not one per wake-up or per tick.
      assert.equal(world.calls.length, 10);
      assert.deepEqual(
        world.calls.map((c) => c.wall),
        Array.from({ length: 10 }, (_, i) => (i + 1) * 2 * S),
      );
    });
  });

  describe('backoff', () => {
    for (const random of [0, 0.999999]) {
      it(`delays grow from 0.5-1 s, doubling after each transient failure, and reset after a success (random ${random})`, async () => {
        mock.method(Math, 'random', () => random);
        const { refresher, world } = harness({ answers: [upstream(), upstream(), upstream(), upstream(), ok, upstream(), ok] });
        const first = await refresher.run('timer');
        assert.equal(first.ok, false);
        const delays: number[] = [];
        for (let attempt = 1; attempt <= 4; attempt++) {
          const view = refresher.view();
          assert.equal(view.consecutiveFailures, attempt);
          const retryAt = view.nextAtMs! - T0;
          const last = world.calls.at(-1)!.wall;
          const delay = retryAt - last;
          delays.push(delay);
          const exp = 1_000 * 2 ** (attempt - 1);
          assert.ok(delay >= exp / 2 && delay <= exp, `retry ${attempt}: ${delay} ms is not within [${exp / 2}, ${exp}]`);
          // Nothing before the retry moment (nor within the spacing)...
          const startAt = Math.max(retryAt, last + MIN_SPACING_MS);
          await advance(startAt - (Date.now() - T0) - 1, 10);
          assert.equal(world.calls.length, attempt, `retry ${attempt} came early`);
          // ...and the retry as soon as both allow.
          await advance(11, 1);
          assert.equal(world.calls.length, attempt + 1, `retry ${attempt} did not come`);
          assert.ok(world.calls.at(-1)!.wall - startAt <= 10, `retry ${attempt} came late`);
        }
        assert.ok(
          delays.every((d, i) => i === 0 || d >= 2 * delays[i - 1]! - 1),
          `delays ${delays.join(', ')} do not double`,
        );
        // The fifth attempt succeeded: failures forgotten, nothing scheduled (no token).
        await flush();
        assert.equal(refresher.view().consecutiveFailures, 0);
        assert.equal(refresher.view().nextAtMs, null);
        // The next failure starts again from the first step.
        await advance(RECENT_MS, 1_000);
        const again = await refresher.run('http');
        assert.equal(again.ok, false);
        const view = refresher.view();
        assert.equal(view.consecutiveFailures, 1);
        const delay = view.nextAtMs! - view.lastAttemptAtMs!;
        assert.ok(delay >= 500 && delay <= 1_000, `after a success the first delay is ${delay} ms`);
      });
    }

    it('Retry-After is never undercut, by the timer or by explicit triggers', async () => {
      const { refresher, world } = harness({ answers: [upstream({ retryAfterMs: 30 * S }), ok], token: tokens(T0 - 2 * H, T0 - H) });
      const first = await refresher.run('timer');
      assert.equal(first.ok, false);
      assert.equal(refresher.view().nextAtMs, T0 + 30 * S);
      await advance(10 * S, 1_000);
      for (const trigger of ['http', 'cli', 'read', 'timer', 'start'] as const) {
        const r = await refresher.run(trigger);
        assert.equal(r.ok, false, trigger);
        assert.equal(!r.ok && r.error.code, 'upstream_error');
        assert.equal(!r.ok && r.error.retryAt, new Date(T0 + 30 * S).toISOString(), trigger);
      }
      await advance(20 * S - 1, 100);
      assert.equal(world.calls.length, 1);
      const early = await refresher.run('http');
      assert.equal(early.ok, false);
      assert.equal(world.calls.length, 1);
      await advance(1, 1);
      assert.equal(world.calls.length, 2);
      assert.equal(world.calls[1]!.wall, 30 * S);
    });

    it('a Retry-After longer than the backoff is kept to', async () => {
      const { refresher, world } = harness({ answers: [upstream(), upstream({ retryAfterMs: 10 * MIN }), ok] });
      await refresher.run('timer');
      await advance(MIN_SPACING_MS, 10);
      assert.equal(world.calls.length, 2);
      const second = world.calls[1]!.wall;
      await advance(10 * MIN - 1, 1_000);
      assert.equal((await refresher.run('cli')).ok, false);
      assert.equal(world.calls.length, 2);
      await advance(1, 1);
      assert.equal(world.calls.length, 3);
      assert.equal(world.calls[2]!.wall - second, 10 * MIN);
    });

    it('a non-retryable error stops the schedule', async () => {
      const { refresher, world } = harness({ token: tokens(T0 - 2 * H, T0 - H) });
      // As the owner does: the refusal makes canRefresh report why no refresh can happen.
      world.answers = [
        () => {
          world.blocked = reauth;
          return { ok: false, error: reauth };
        },
      ];
      refresher.schedule();
      mock.timers.tick(0);
      await flush();
      assert.equal(world.calls.length, 1);
      await advance(2 * H, 10 * S);
      assert.equal(world.calls.length, 1);
      const view = refresher.view();
      assert.equal(view.nextAtMs, null);
      assert.equal(view.consecutiveFailures, 0);
      assert.equal(view.lastError?.code, 'reauthorization_required');
    });
  });

  describe('explicit requests', () => {
    it('within 5 s of a success are answered from it', async () => {
      const { refresher, world } = harness({ answers: [ok, upstream()] });
      assert.equal((await refresher.run('timer')).ok, true);
      await advance(RECENT_MS - 1, 100);
      for (const trigger of ['http', 'cli'] as const) assert.deepEqual(await refresher.run(trigger), ok);
      assert.equal(world.calls.length, 1);
      assert.equal(world.infos.length, 2);
      // 5 s after it, the provider is asked.
      await advance(1, 1);
      assert.equal((await refresher.run('http')).ok, false);
      assert.equal(world.calls.length, 2);
    });

    it('after a failure that followed a success, within the 5 s, they call the provider', async () => {
      const { refresher, world } = harness({ answers: [ok, upstream(), ok] });
      assert.equal((await refresher.run('timer')).ok, true);
      await advance(MIN_SPACING_MS, 100);
      // A read finds the token about to expire; the provider fails.
      assert.equal((await refresher.run('read')).ok, false);
      // 1 s after the success: the old success no longer answers, and the backoff does not hold an explicit request.
      const explicit = refresher.run('cli');
      assert.equal(refresher.view().inFlight, true);
      assert.deepEqual(world.infos, []);
      await advance(MIN_SPACING_MS, 100);
      assert.equal((await explicit).ok, true);
      assert.deepEqual(
        world.calls.map((c) => c.wall),
        [0, 1_000, 2_000],
      );
    });

    it('reset() forgets the last success', async () => {
      const { refresher, world } = harness();
      await refresher.run('cli');
      await advance(MIN_SPACING_MS, 100);
      await refresher.run('cli');
      assert.equal(world.calls.length, 1);
      refresher.reset();
      await refresher.run('cli');
      assert.equal(world.calls.length, 2);
    });

    it('reset() forgets Retry-After and failures', async () => {
      const { refresher, world } = harness({ answers: [upstream({ retryAfterMs: 10 * MIN }), upstream(), ok] });
      await refresher.run('http');
      await advance(5 * S, 1_000);
      assert.equal((await refresher.run('http')).ok, false);
      assert.equal(world.calls.length, 1);
      refresher.reset();
      assert.equal(refresher.view().consecutiveFailures, 0);
      assert.equal(refresher.view().lastError, null);
      // At once, and a later failure without Retry-After does not revive the old one.
      assert.equal((await refresher.run('http')).ok, false);
      await advance(MIN_SPACING_MS, 100);
      assert.equal((await refresher.run('http')).ok, true);
      assert.equal(world.calls.length, 3);
    });
  });

  describe('spacing', () => {
    it('attempts start at least 1 s apart, whatever triggers them', async () => {
      const { refresher, world } = harness({ answers: [upstream(), upstream(), upstream(), ok] });
      await refresher.run('http');
      await advance(200, 10);
      const second = refresher.run('http');
      // Joining during the spacing wait: still one attempt.
      assert.equal(refresher.run('read'), second);
      await advance(799, 1);
      assert.equal(world.calls.length, 1);
      await advance(1, 1);
      assert.equal(world.calls.length, 2);
      await second;
      const third = refresher.run('cli');
      await advance(999, 1);
      assert.equal(world.calls.length, 2);
      await advance(1, 1);
      await third;
      assert.equal(world.calls.length, 3);
      const starts = world.calls.map((c) => c.wall);
      assert.deepEqual(starts, [0, 1_000, 2_000]);
    });

    it('a token granted for a moment is not redeemed more than once a second', async () => {
      const { refresher, world } = harness();
      // Every redeem yields a token that is due at once.
      world.token = tokens(T0, T0 + 1);
      const redeemed = world.calls;
      refresher.schedule();
      await advance(10 * S, 10);
      assert.ok(redeemed.length >= 9 && redeemed.length <= 11, `${redeemed.length} attempts in 10 s`);
      for (let i = 1; i < redeemed.length; i++) assert.ok(redeemed[i]!.wall - redeemed[i - 1]!.wall >= MIN_SPACING_MS, `attempt ${i} too soon`);
    });
  });

  describe('stop and settled', () => {
    it('stop() cancels the timer', async () => {
      const { refresher, world } = harness({ token: tokens(T0, T0 + 10 * MIN) });
      refresher.schedule();
      assert.notEqual(refresher.view().nextAtMs, null);
      refresher.stop();
      assert.equal(refresher.view().nextAtMs, null);
      await advance(2 * H, 10 * S);
      assert.equal(world.calls.length, 0);
      // schedule() after stop() arms nothing.
      refresher.schedule();
      await advance(2 * H, 10 * S);
      assert.equal(world.calls.length, 0);
    });

    it('an attempt that lands after stop() arms no timer', async () => {
      const d = deferred();
      const { refresher, world } = harness({ answers: [d, upstream()], token: tokens(T0 - 2 * H, T0 - H) });
      const run = refresher.run('timer');
      refresher.stop();
      d.resolve(upstream());
      await run;
      await advance(H, 10 * S);
      assert.equal(world.calls.length, 1);
    });

    it('settled(timeout) is false when a redeem hangs past the timeout, true once it lands', async () => {
      const d = deferred();
      const { refresher } = harness({ answers: [d] });
      assert.equal(await refresher.settled(1_000), true);
      void refresher.run('timer');
      let answer: boolean | null = null;
      void refresher.settled(5 * S).then((v) => (answer = v));
      await advance(5 * S - 1, 100);
      assert.equal(answer, null);
      await advance(1, 1);
      assert.equal(answer, false);
      const later = refresher.settled();
      d.resolve(ok);
      assert.equal(await later, true);
      assert.equal(await refresher.settled(1), true);
    });
  });

  describe('failures neither retryable nor blocking', () => {
    it('a redeem that throws (internal_error) backs off instead of retrying every second', async () => {
      const { refresher, world } = harness({ answers: [new Error('boom')], token: tokens(T0 - 2 * H, T0 - H) });
      refresher.schedule();
      mock.timers.tick(0);
      await flush();
      await advance(10 * S - 1, 10);
      // With backoff (random 0.5: 0.75, 1.5, 3, 6 s; the first raised to the 1 s spacing) that is at most 5 attempts.
      assert.ok(world.calls.length <= 5, `${world.calls.length} attempts in 10 s`);
    });
  });
});
