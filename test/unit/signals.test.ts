/** One stop request however it is delivered; a deliberate second one hurries; later ones change nothing. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SAME_REQUEST_MS, StopRequests } from '../../src/daemon/signals.ts';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

it('a signal repeated within the window is the same request (GNU timeout delivers one SIGTERM twice)', () => {
  const c = clock();
  const r = new StopRequests(c.now);
  assert.equal(r.next(), 'stop');
  c.advance(1);
  assert.equal(r.next(), 'same_request');
  c.advance(SAME_REQUEST_MS - 2);
  assert.equal(r.next(), 'same_request');
});

it('a second request after the window hurries, once; any later one is "already stopping"', () => {
  const c = clock();
  const r = new StopRequests(c.now);
  assert.equal(r.next(), 'stop');
  c.advance(SAME_REQUEST_MS);
  assert.equal(r.next(), 'hurry');
  assert.equal(r.next(), 'already_stopping');
  c.advance(60_000);
  assert.equal(r.next(), 'already_stopping');
});
