import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { describe, it, mock } from 'node:test';
import { trimWhenIdle, youngGenerationSize, type IdleTrimmer } from '../../src/main/idle-trim.ts';

describe('trim when idle', () => {
  /** A trimmer on mocked intervals: `requests` and the young generation's size are set by the test. */
  function harness(declines = 0) {
    mock.timers.enable({ apis: ['setInterval'] });
    const world = { requests: 0, young: 4, calls: 0, trims: [] as Array<{ youngBefore: number; youngAfter: number }> };
    const trimmer = trimWhenIdle({
      requests: () => world.requests,
      idleMs: 3_000,
      giveUpMs: 10_000,
      busyPerTick: 10,
      tickMs: 1_000,
      youngSize: () => world.young,
      // V8 declines the first `declines` collections (its allocation rate still counts the burst).
      trim: () => {
        if (++world.calls > declines) world.young = 1;
      },
      onTrim: ({ youngBefore, youngAfter }) => world.trims.push({ youngBefore, youngAfter }),
    });
    return { world, trimmer, tick: (ms: number) => mock.timers.tick(ms) };
  }

  it('waits for requests to stop, then trims once', (t) => {
    t.after(() => mock.timers.reset());
    const { world, trimmer, tick } = harness();
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
    trimmer.stop();
  });

  it('trims again after the next burst, and never after stop()', (t) => {
    t.after(() => mock.timers.reset());
    const { world, trimmer, tick } = harness();
    world.requests = 100;
    world.young = 8;
    tick(5_000);
    assert.equal(world.trims.length, 1);
    world.requests = 200;
    world.young = 8;
    tick(5_000);
    assert.equal(world.trims.length, 2);
    trimmer.stop();
    world.requests = 300;
    tick(60_000);
    assert.equal(world.trims.length, 2);
  });

  it('tries again each tick while V8 declines, and gives up after giveUpMs', (t) => {
    t.after(() => mock.timers.reset());
    const { world, trimmer, tick } = harness(2);
    world.requests = 100;
    world.young = 16;
    tick(4_000);
    assert.equal(world.calls, 1);
    assert.deepEqual(world.trims, []);
    tick(2_000);
    assert.equal(world.calls, 3);
    assert.deepEqual(world.trims, [{ youngBefore: 16, youngAfter: 1 }]);
    trimmer.stop();
    mock.timers.reset();
    const never = harness(Infinity);
    never.world.requests = 100;
    never.world.young = 16;
    never.tick(60_000);
    assert.equal(never.world.calls, 11, 'one try a second from 3 s to 13 s of quiet, then none');
    assert.deepEqual(never.world.trims, []);
    never.trimmer.stop();
  });

  it('a trickle of requests (health checks, scrapes) is quiet', (t) => {
    t.after(() => mock.timers.reset());
    const { world, trimmer, tick } = harness();
    world.requests = 500;
    world.young = 16;
    tick(1_000);
    for (let i = 0; i < 3; i++) {
      world.requests += 9; // under busyPerTick
      tick(1_000);
    }
    assert.deepEqual(world.trims, [{ youngBefore: 16, youngAfter: 1 }]);
    trimmer.stop();
  });

  it('leaves a young generation that never grew past its start size alone', (t) => {
    t.after(() => mock.timers.reset());
    const { world, trimmer, tick } = harness();
    world.requests = 300; // a burst, but no growth
    tick(10_000);
    assert.deepEqual(world.trims, []);
    trimmer.stop();
  });

  it("really hands V8's grown young generation back once requests have stopped", async () => {
    setFlagsFromString('--no-memory-reducer'); // as `tokend serve` runs
    let requests = 0;
    let trimmer: IdleTrimmer | undefined;
    const trimmed = new Promise<{ youngBefore: number; youngAfter: number }>((resolve) => {
      trimmer = trimWhenIdle({ requests: () => requests, tickMs: 250, onTrim: resolve });
    });
    const before = youngGenerationSize();
    // A burst: churn with survivors, as requests in flight are. V8 grows the young generation.
    let live: object[] = [];
    for (let i = 0; i < 3_000_000; i++) {
      live.push({ i, s: `x${i}` });
      if (live.length > 20_000) live = [];
    }
    live = [];
    requests = 3_000_000;
    const grown = youngGenerationSize();
    assert.ok(grown > before, `young generation grew (${before} -> ${grown} bytes)`);
    // Back below half within 30 s of quiet: by the trimmer, or now and then by a
    // collection V8 ran on its own at a low rate (then the trimmer leaves it be).
    const deadline = Date.now() + 30_000;
    let result: { youngBefore: number; youngAfter: number } | null = null;
    void trimmed.then((r) => (result = r));
    while (result === null && youngGenerationSize() >= grown / 2 && Date.now() < deadline) await sleep(250);
    trimmer!.stop();
    const after = youngGenerationSize();
    assert.ok(after < grown / 2, `young generation ${before} -> ${grown} -> ${after} bytes after 30 s of quiet`);
    if (result !== null) assert.equal((result as { youngBefore: number }).youngBefore, grown);
    assert.equal((globalThis as { gc?: unknown }).gc, undefined, 'no gc() on the global object');
  });
});
