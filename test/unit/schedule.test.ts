import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isAboutToExpire } from '../../src/shared/expiry.ts';
import { backoffDelay, defaultBackoff, refreshDueAt } from '../../src/owner/schedule.ts';
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
