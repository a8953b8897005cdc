import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { afterEach, describe, it, mock } from 'node:test';
import { residentSetSize, trimWhenIdle, youngGenerationSize } from '../../src/daemon/idle-trim.ts';

describe('trim when idle', () => {
  describe('on mocked intervals', () => {
    let stop: (() => void) | null = null;
    afterEach(() => {
      stop?.();
      mock.timers.reset();
    });

    /** A trimmer whose request count and young-generation size the test sets. V8 declines the first `declines` collections. */
    function harness(declines = 0, fail: Error | null = null) {
      mock.timers.enable({ apis: ['setInterval'] });
      const world = { requests: 0, young: 4, calls: 0, trims: [] as Array<{ youngBefore: number; youngAfter: number }> };
      stop = trimWhenIdle({
        requests: () => world.requests,
        idleMs: 3_000,
        giveUpMs: 10_000,
        busyPerTick: 10,
        tickMs: 1_000,
        youngSize: () => world.young,
        trim: () => {
          if (fail) throw fail;
          if (++world.calls > declines) world.young = 1;
        },
        onTrim: ({ youngBefore, youngAfter }) => world.trims.push({ youngBefore, youngAfter }),
      }).stop;
      return { world, tick: (ms: number) => mock.timers.tick(ms) };
    }

    it('waits for requests to stop, then trims once', () => {
      const { world, tick } = harness();
      // Requests on every tick for 10 s while the young generation grows: no trim.
      for (let i = 0; i < 10; i++) {
        world.requests += 500;
        world.young = 16;
        tick(1_000);
      }
      assert.deepEqual(world.trims, []);
      tick(2_000);
      assert.deepEqual(world.trims, [], 'quiet for less than idleMs');
      tick(1_000);
      assert.deepEqual(world.trims, [{ youngBefore: 16, youngAfter: 1 }]);
      tick(30_000);
      assert.equal(world.trims.length, 1, 'no second trim without new requests');
    });

    it('trims again after the next burst, and never after stop()', () => {
      const { world, tick } = harness();
      world.requests = 100;
      world.young = 8;
      tick(5_000);
      assert.equal(world.trims.length, 1);
      world.requests = 200;
      world.young = 8;
      tick(5_000);
      assert.equal(world.trims.length, 2);
      stop!();
      world.requests = 300;
      tick(60_000);
      assert.equal(world.trims.length, 2);
    });

    it('tries again each tick while V8 declines', () => {
      const { world, tick } = harness(2);
      world.requests = 100;
      world.young = 16;
      tick(4_000);
      assert.equal(world.calls, 1);
      assert.deepEqual(world.trims, []);
      tick(2_000);
      assert.equal(world.calls, 3);
      assert.deepEqual(world.trims, [{ youngBefore: 16, youngAfter: 1 }]);
    });

    it('gives up giveUpMs after idleMs', () => {
      const { world, tick } = harness(Infinity);
      world.requests = 100;
      world.young = 16;
      tick(60_000);
      assert.equal(world.calls, 11, 'one try a second from 3 s to 13 s of quiet, then none');
      assert.deepEqual(world.trims, []);
    });

    it('a trickle of requests (health checks, scrapes) is quiet', () => {
      const { world, tick } = harness();
      world.requests = 500;
      world.young = 16;
      tick(1_000);
      for (let i = 0; i < 3; i++) {
        world.requests += 9; // under busyPerTick
        tick(1_000);
      }
      assert.deepEqual(world.trims, [{ youngBefore: 16, youngAfter: 1 }]);
    });

    it('a tick that throws (no descriptor free: EMFILE) is skipped, never an uncaught exception', () => {
      const { world, tick } = harness(0, Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }));
      world.requests = 100;
      world.young = 16;
      assert.doesNotThrow(() => tick(10_000));
      assert.deepEqual(world.trims, []);
    });

    it('leaves a young generation that never grew past its start size alone', () => {
      const { world, tick } = harness();
      world.requests = 300; // a burst, but no growth
      tick(10_000);
      assert.deepEqual(world.trims, []);
    });
  });

  it("really hands V8's grown young generation back once requests have stopped", async () => {
    setFlagsFromString('--no-memory-reducer'); // as `tokend serve` runs
    let requests = 0;
    const trims: Array<{ youngBefore: number }> = [];
    const trimmer = trimWhenIdle({ requests: () => requests, tickMs: 250, onTrim: (t) => trims.push(t) });
    const before = youngGenerationSize();
    // A burst: churn with survivors, as requests in flight are. V8 grows the young generation.
    let live: object[] = [];
    for (let i = 0; i < 3_000_000; i++) {
      live.push({ i, s: `x${i}` });
      if (live.length > 20_000) live = [];
    }
    requests = 3_000_000;
    const grown = youngGenerationSize();
    assert.ok(grown > before, `young generation grew (${before} -> ${grown} bytes)`);
    // Back below half within 30 s of quiet: by the trimmer, or now and then by a
    // collection V8 ran on its own at a low rate (no event tells of that one: polled).
    const deadline = Date.now() + 30_000;
    while (trims.length === 0 && youngGenerationSize() >= grown / 2 && Date.now() < deadline) await sleep(250);
    trimmer.stop();
    const after = youngGenerationSize();
    assert.ok(after < grown / 2, `young generation ${before} -> ${grown} -> ${after} bytes after 30 s of quiet`);
    if (trims.length > 0) assert.equal(trims[0]!.youngBefore, grown);
    assert.equal((globalThis as { gc?: unknown }).gc, undefined, 'no gc() on the global object');
  });

  it('the resident set size reads as NaN when /proc/self/stat cannot be opened', () => {
    assert.ok(
      Number.isNaN(
        residentSetSize(() => {
          throw Object.assign(new Error('EMFILE: too many open files, uv_resident_set_memory'), { code: 'EMFILE' });
        }),
      ),
    );
    assert.ok(residentSetSize() > 0);
  });
});
