import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isAboutToExpire } from '../../src/shared/expiry.ts';
import { backoffDelay, defaultBackoff, defaultPolicy, refreshDueAt, refreshPolicy } from '../../src/owner/schedule.ts';
import { parseRetryAfter } from '../../src/provider/retry-after.ts';

const H = 3_600_000;
const MIN = 60_000;
const noJitter = (): number => 0;
const maxJitter = (): number => 0.999999;

describe('refresh schedule', () => {
  it('refreshes a 6 h token when 80% of its lifetime has passed', () => {
    assert.equal(refreshDueAt(0, 10 * H, noJitter), 8 * H);
  });

  it('refreshes a 20 min token 5 minutes before expiry, the earlier of the two', () => {
    assert.equal(refreshDueAt(0, 20 * MIN, noJitter), 15 * MIN);
  });

  it('never refreshes a short token before half its lifetime', () => {
    assert.equal(refreshDueAt(0, 30_000, noJitter), 15_000);
    assert.equal(refreshDueAt(0, 2_000, maxJitter), 1_000);
  });

  it('jitter only moves the refresh earlier, by at most 30 s', () => {
    const due = refreshDueAt(0, 30 * H, maxJitter);
    assert.ok(due < 0.8 * 30 * H && due >= 0.8 * 30 * H - 30_000);
  });

  it('is due at once when the expiry is unknown (older layout)', () => {
    assert.equal(refreshDueAt(null, null, noJitter), Number.NEGATIVE_INFINITY);
  });

  it('treats a token as about to expire within a tenth of its lifetime, capped at 30 s', () => {
    assert.equal(isAboutToExpire(0, 6 * H, 6 * H - 31_000), false);
    assert.equal(isAboutToExpire(0, 6 * H, 6 * H - 29_000), true);
    assert.equal(isAboutToExpire(0, 10_000, 8_500), false);
    assert.equal(isAboutToExpire(0, 10_000, 9_500), true);
    assert.equal(isAboutToExpire(null, null, 0), true);
  });
});

describe("refresh schedule with an account's refresh_lead and refresh_at_least", () => {
  const lead = (ms: number) => refreshPolicy({ leadMs: ms });
  const atLeast = (ms: number) => refreshPolicy({ atLeastMs: ms });

  it('without settings is the default policy exactly', () => {
    assert.deepEqual(refreshPolicy({}), defaultPolicy);
    assert.deepEqual(refreshPolicy({ leadMs: undefined, atLeastMs: undefined }), defaultPolicy);
    for (const [obtained, expires] of [
      [0, 10 * H],
      [0, 20 * MIN],
      [0, 30_000],
      [null, 5 * H],
    ] as const) {
      for (const random of [noJitter, maxJitter]) {
        assert.equal(refreshDueAt(obtained, expires, random, refreshPolicy({})), refreshDueAt(obtained, expires, random));
      }
    }
  });

  it('refresh_lead replaces the 5 minutes before expiry, when it is the earlier of the two', () => {
    // 1 h token: 80% is at 48 min; a 20 min lead is earlier.
    assert.equal(refreshDueAt(0, H, noJitter, lead(20 * MIN)), 40 * MIN);
    // 20 min token: the default would refresh at 15 min; a 1 min lead leaves 80%, at 16 min.
    assert.equal(refreshDueAt(0, 20 * MIN, noJitter, lead(MIN)), 16 * MIN);
    // 10 h token: 80% (8 h) is still earlier than a 10 min lead.
    assert.equal(refreshDueAt(0, 10 * H, noJitter, lead(10 * MIN)), 8 * H);
  });

  it('a refresh_lead as long as the token lives or longer refreshes at half the lifetime, not at once', () => {
    assert.equal(refreshDueAt(0, H, noJitter, lead(H)), H / 2);
    assert.equal(refreshDueAt(0, H, maxJitter, lead(30 * 86_400_000)), H / 2);
    assert.equal(refreshDueAt(0, 2_000, maxJitter, lead(MIN)), 1_000);
  });

  it('refresh_at_least makes the refresh no later than that long after the token was obtained', () => {
    // 24 h token: 80% would be at 19.2 h; at least every 6 h.
    assert.equal(refreshDueAt(0, 24 * H, noJitter, atLeast(6 * H)), 6 * H);
    // Counted from obtained_at, not from now or from the expiry.
    assert.equal(refreshDueAt(5 * H, 29 * H, noJitter, atLeast(6 * H)), 11 * H);
    // Longer than the usual schedule: it changes nothing.
    assert.equal(refreshDueAt(0, H, noJitter, atLeast(12 * H)), 48 * MIN);
  });

  it('refresh_at_least wins over the half-lifetime floor: it is a cadence the user asked for', () => {
    assert.equal(refreshDueAt(0, 90 * 86_400_000, noJitter, atLeast(H)), H);
    assert.equal(refreshDueAt(0, 10 * H, noJitter, atLeast(MIN)), MIN);
  });

  it('refresh_at_least jitters by at most a twentieth of itself, and only earlier', () => {
    const due = refreshDueAt(0, 24 * H, maxJitter, atLeast(6 * H));
    assert.ok(due < 6 * H && due >= 6 * H - 30_000, String(due));
    const short = refreshDueAt(0, 24 * H, maxJitter, atLeast(MIN));
    assert.ok(short < MIN && short >= MIN - 3_000, String(short));
  });

  it('both together: whichever is earlier', () => {
    const both = refreshPolicy({ leadMs: 2 * H, atLeastMs: 3 * H });
    assert.equal(refreshDueAt(0, 4 * H, noJitter, both), 2 * H);
    assert.equal(refreshDueAt(0, 8 * H, noJitter, both), 3 * H);
  });

  it('a token obtained longer ago than refresh_at_least (a daemon started after a day off) is already due', () => {
    const now = 20 * H;
    assert.ok(refreshDueAt(0, 48 * H, maxJitter, atLeast(12 * H)) < now);
    assert.ok(refreshDueAt(0, 48 * H, maxJitter) > now, 'without it, not yet');
  });
});

describe('backoff', () => {
  it('grows exponentially and stays within [half, full] of the step', () => {
    for (let attempt = 1; attempt <= 6; attempt++) {
      const step = 1000 * 2 ** (attempt - 1);
      assert.equal(backoffDelay(attempt, null, noJitter), step / 2);
      assert.ok(backoffDelay(attempt, null, maxJitter) <= step);
    }
  });

  it('is capped at 5 minutes', () => {
    assert.ok(backoffDelay(30, null, maxJitter) <= defaultBackoff.maxMs);
  });

  it('respects Retry-After exactly, even when backoff would be shorter', () => {
    assert.equal(backoffDelay(1, 7_000, maxJitter), 7_000);
    assert.equal(backoffDelay(1, 0, maxJitter), 0);
  });

  it('caps an absurd Retry-After at an hour', () => {
    assert.equal(backoffDelay(1, 86_400_000, noJitter), defaultBackoff.maxRetryAfterMs);
  });

  it('parses Retry-After as seconds or as an HTTP date', () => {
    assert.equal(parseRetryAfter('3', 0), 3000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 0), 10_000);
    assert.equal(parseRetryAfter('soon', 0), null);
    assert.equal(parseRetryAfter(undefined, 0), null);
  });
});
