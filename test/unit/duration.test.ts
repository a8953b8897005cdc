import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formatDuration, parseDuration } from '../../src/config/duration.ts';

it('formats durations the way status shows them', () => {
  assert.equal(formatDuration((5 * 60 + 12) * 60_000), '5h 12m');
  assert.equal(formatDuration(3 * 60_000), '3m');
  assert.equal(formatDuration(3 * 60_000 + 5_000), '3m 5s');
  assert.equal(formatDuration(42_000), '42s');
  assert.equal(formatDuration(26 * 3_600_000), '1d 2h');
});

it('reads "90s", "5m", "12h", "90d", "1h30m" and what status prints, and nothing ambiguous', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('12h'), 43_200_000);
  assert.equal(parseDuration('90d'), 90 * 86_400_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('5h 12m'), 18_720_000);
  assert.equal(parseDuration('250ms'), 250);
  for (const bad of ['90', '1.5h', '-5s', ' 5s', '5s ', '5m5m', '5s1m', 'm', '', '5 minutes', '1h  2m']) assert.equal(parseDuration(bad), null, bad);
});
