/**
 * The owner thread's supervisor: one piscina worker for the life of the
 * process (minThreads = maxThreads = 1, never idle-timed-out), restarted by
 * piscina when it dies. Every account's owner runs on it (one attach task
 * each: see src/owner/thread.ts).
 *
 * It is created before anything else when the command is `serve`: booting a
 * worker is a V8 isolate and Node's bootstrap (~60 ms here), and it runs on
 * the other core while the main thread loads the CLI, parses the config and
 * loads the HTTP side.
 */
import { Piscina } from 'piscina';

const WORKER = new URL('../owner/thread.js', import.meta.url).href;

export interface OwnerThread {
  readonly pool: Piscina;
  /** Where the pool's errors go (until set: held, then handed over). */
  onError(handler: (err: Error) => void): void;
}

export function startOwnerThread(): OwnerThread {
  const pool = new Piscina({
    filename: WORKER,
    minThreads: 1,
    maxThreads: 1,
    idleTimeout: Number.POSITIVE_INFINITY,
    // Required: see src/owner/thread.ts.
    atomics: 'disabled',
    // The owner holds one small state: a small young generation keeps the idle footprint down.
    resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 },
  });
  let handler: ((err: Error) => void) | null = null;
  const held: Error[] = [];
  // Without an 'error' listener, a throw in a worker timer kills the process: listen from the start.
  pool.on('error', (err: Error) => (handler ? handler(err) : held.push(err)));
  return {
    pool,
    onError(h) {
      handler = h;
      for (const err of held.splice(0)) h(err);
    },
  };
}

/** End the owner thread, and every owner on it. Bounded: a pool whose worker is wedged must not hold the process. */
export async function destroyOwnerThread(thread: OwnerThread): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bounded = new Promise<void>((resolve) => (timer = setTimeout(resolve, 3_000)));
  await Promise.race([thread.pool.destroy().catch(() => undefined), bounded]);
  clearTimeout(timer);
}
