/**
 * A daemon idles between bursts of requests, and V8's memory reducer spends
 * that idle time against the next burst: it collects and shrinks the heap
 * once the process goes quiet, so the next burst meets incremental marking
 * and a young generation growing again from its minimum. Measured with
 * `BURSTS=10 npm run bench:instructions` (20,000 GET /token in bursts 5 s
 * apart), instructions per request with the reducer off against on: Node 20,
 * 83.6k against 89.3k (bare node:http server 66.6k); Node 24, 97.6k against
 * 103.2k. So `tokend serve` turns it off.
 *
 * What a burst grew is then handed back by the trimmer below, where V8 lets
 * it: under load V8 grows the young generation (here from 4 to 16 MB) and
 * keeps it, and only a collection at a low allocation rate shrinks it again.
 * Once requests have stopped for `idleMs` the trimmer runs a young-generation
 * collection (~2 ms, on an idle thread). Node 20's V8 judges the allocation
 * rate over the last seconds (after 5 s of quiet): until a collection shrinks
 * it, the trimmer tries again each tick, for at most `giveUpMs`. Node 24's V8
 * smooths the rate over much longer and declines every such collection, so
 * there the trimmer is not started.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** For `tokend serve`, before anything else loads: the memory reducer off. */
export function tuneForBursts(): void {
  setFlagsFromString('--no-memory-reducer');
}

/** Whether V8 shrinks the young generation on a collection asked for at idle (Node 20; see above). */
export const trimTakesEffect = process.versions.node.split('.')[0] === '20';

export interface IdleTrimOptions {
  /** Requests answered so far: the trimmer waits for a burst of them to end. */
  readonly requests: () => number;
  /**
   * Fewer new requests than this in a tick is quiet (default 50 a second):
   * health checks and scrapes do not hold the trim off, and V8 counts a rate
   * that low as idle too (under 1 MB/s allocated).
   */
  readonly busyPerTick?: number;
  /** Quiet time after the last request before trimming (default 6,000 ms). */
  readonly idleMs?: number;
  /** How long after `idleMs` a trim that V8 declines is tried again (default 30,000 ms). */
  readonly giveUpMs?: number;
  /** How often the request count is looked at (default 1,000 ms). */
  readonly tickMs?: number;
  /** Size of the young generation in bytes (default: V8's heap statistics). */
  readonly youngSize?: () => number;
  /** The trim itself (default: a young-generation collection). */
  readonly trim?: () => void;
  readonly onTrim?: (trimmed: { youngBefore: number; youngAfter: number; rssBefore: number; rssAfter: number }) => void;
}

export interface IdleTrimmer {
  readonly stop: () => void;
}

export function trimWhenIdle(opts: IdleTrimOptions): IdleTrimmer {
  const tickMs = opts.tickMs ?? 1_000;
  const busyPerTick = opts.busyPerTick ?? Math.ceil((50 * tickMs) / 1_000);
  const idleTicks = Math.ceil((opts.idleMs ?? 6_000) / tickMs);
  const lastTick = idleTicks + Math.ceil((opts.giveUpMs ?? 30_000) / tickMs);
  const youngSize = opts.youngSize ?? youngGenerationSize;
  const trim = opts.trim ?? collectYoungGeneration;
  // The size it had at start: a young generation that never grew is left alone.
  const baseline = youngSize();
  let seen = opts.requests();
  let quiet = 0;
  let pending = false;

  const tick = (): void => {
    const now = opts.requests();
    const busy = now - seen >= busyPerTick;
    seen = now;
    if (busy) {
      quiet = 0;
      pending = true;
      return;
    }
    if (!pending || ++quiet < idleTicks) return;
    const youngBefore = youngSize();
    // Nothing grew (or V8 shrank it on its own), or V8 kept declining: leave it until the next burst.
    if (youngBefore <= baseline || quiet > lastTick) {
      pending = false;
      return;
    }
    const rssBefore = residentSetSize();
    trim();
    const youngAfter = youngSize();
    if (youngAfter >= youngBefore) return; // V8 still counts the burst's allocation rate: next tick
    pending = false;
    opts.onTrim?.({ youngBefore, youngAfter, rssBefore, rssAfter: residentSetSize() });
  };
  // A throw in a timer is an uncaught exception: a trim that fails is skipped, never fatal.
  const timer = setInterval(() => {
    try {
      tick();
    } catch {
      pending = false;
    }
  }, tickMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/**
 * The process's resident set size, NaN when it cannot be read: Node reads it
 * from /proc/self/stat and throws EMFILE when no descriptor is free.
 */
export function residentSetSize(read: () => number = () => process.memoryUsage.rss()): number {
  try {
    return read();
  } catch {
    return NaN;
  }
}

export function youngGenerationSize(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

let gc: ((options: { type: 'minor' }) => void) | null = null;

/**
 * One young-generation collection. V8's `gc()` is made available to a new,
 * empty context only (`--expose-gc` set at run time reaches contexts created
 * afterwards): the daemon's own global object never gains a `gc`.
 */
export function collectYoungGeneration(): void {
  if (gc === null) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as (options: { type: 'minor' }) => void;
  }
  gc({ type: 'minor' });
}
