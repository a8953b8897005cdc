import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formatDuration } from '../../src/config/duration.ts';

it('formats durations the way status shows them', () => {
  assert.equal(formatDuration((5 * 60 + 12) * 60_000), '5h 12m');
  assert.equal(formatDuration(3 * 60_000), '3m');
  assert.equal(formatDuration(3 * 60_000 + 5_000), '3m 5s');
  assert.equal(formatDuration(42_000), '42s');
  assert.equal(formatDuration(26 * 3_600_000), '1d 2h');
});
