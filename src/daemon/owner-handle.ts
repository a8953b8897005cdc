/**
 * The main thread's side of one account's owner, on the owner thread.
 *
 * piscina supervises one long-lived worker, shared by every account (see
 * src/owner/thread.ts); each account has its own handle, its own attach and
 * so its own two ports. Comlink carries RPC on one; snapshots and
 * measurements arrive on the other, plain port, so the HTTP hot path reads
 * the latest snapshot without a cross-thread hop. The thread is not the
 * handle's: the daemon ends it once every account has closed.
 *
 * When the worker dies, calls on the old Comlink proxy never settle: the
 * port's 'close' rejects everything outstanding, then a new worker is
 * attached and reloads from the file (the file is always at least as new as
 * anything that was served). Every death is told with its cause (the thread's
 * error and code, such as ERR_WORKER_OUT_OF_MEMORY, or its exit code), and so
 * is the last one when the daemon gives up.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import type { OwnerEvent, OwnerOptions, RefreshTrigger, Result, SetTokensInput, Snapshot } from '../shared/contract.js';
import type { ErrorData } from '../shared/errors.js';
import { deferredLog } from '../shared/deferred-log.js';
import type { Log, Logger } from '../shared/log.js';
import { releaseOwner, wrapOwner, type OwnerRemote } from '../shared/protocol.js';
import type { OwnerThread } from './owner-thread.js';

/** How long a new owner thread may take to boot and take its attach task. */
const ATTACH_DEADLINE_MS = 15_000;

/** More deaths than this within a minute and the daemon gives up. */
const MAX_RESTARTS_PER_MINUTE = 5;

export interface OwnerHandleEvents {
  onSnapshot(snapshot: Snapshot, previous: Snapshot | null): void;
  onEvent(event: OwnerEvent): void;
  /** The owner thread `threadId` died and this account is being attached to its successor (each account hears of one death). */
  onRestart(threadId: number): void;
  /** The thread was replaced, but this account's owner did not start on it (its state file is now corrupt, locked, …). */
  onFailed(error: ErrorData): void;
  /** The owner thread cannot be kept alive: the daemon must stop. */
  onFatal(error: ErrorData): void;
}

/** How long a death's cause is awaited: the thread's 'exit' normally follows its port's 'close' at once. */
const CAUSE_WAIT_MS = 1_000;

/** An error as a cause worth a log line: its code (ERR_WORKER_OUT_OF_MEMORY) and its message. */
export function describeDeath(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
}

/** Each thread's watcher, shared by the accounts on it (one listener each, however many accounts). */
const threadEnds = new WeakMap<Worker, ThreadEnd>();

/** Watches one owner thread for why it ends: its error, else its exit code. */
class ThreadEnd {
  #error: string | null = null;
  #exitCode: number | null = null;
  #exited: Promise<void>;
  readonly threadId: number;

  constructor(worker: Worker | undefined) {
    this.threadId = worker?.threadId ?? -1;
    if (!worker) {
      this.#exited = Promise.resolve();
      return;
    }
    worker.once('error', (err: Error) => (this.#error = describeDeath(err)));
    this.#exited = new Promise((resolve) =>
      worker.once('exit', (code) => {
        this.#exitCode = code;
        resolve();
      }),
    );
  }

  static of(worker: Worker | undefined): ThreadEnd {
    if (!worker) return new ThreadEnd(undefined);
    let end = threadEnds.get(worker);
    if (!end) threadEnds.set(worker, (end = new ThreadEnd(worker)));
    return end;
  }

  /** The cause, once the thread has exited (its 'error' comes before its 'exit'), or what is known after a while. */
  async cause(): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, CAUSE_WAIT_MS)))]);
    clearTimeout(timer);
    return this.#error ?? (this.#exitCode === null ? 'unknown cause' : `the thread exited with code ${this.#exitCode}`);
  }
}

const died = (cause: string, restarting: boolean): ErrorData => ({
  code: 'internal_error',
  message: restarting ? `the owner thread stopped before answering (${cause}); it is being restarted` : `the owner thread died (${cause})`,
});
const notRunning: ErrorData = { code: 'internal_error', message: 'the owner thread is not running; it is being restarted' };
const letGo: ErrorData = { code: 'shutting_down', message: "this account's owner has been stopped" };

export class OwnerHandle {
  readonly #options: OwnerOptions;
  /** The logger may still be loading while the thread boots: lines wait for it. */
  readonly #log: Log;
  /** The owner thread's lines, marked as such. */
  readonly #ownerLog: Log;
  #closed: (() => void) | null = null;
  readonly #events: OwnerHandleEvents;
  readonly #pool: Piscina;
  #remote: OwnerRemote | null = null;
  #ports: MessagePort[] = [];
  #pending = new Set<(r: Result<never>) => void>();
  #snapshot: Snapshot | null = null;
  #closing = false;
  #restarts: number[] = [];
  #generation = 0;
  #reattaching = false;
  /** Set once the first owner has started: a death before that fails the start, with no restart. */
  #started = false;
  /** Why the current owner thread ends. */
  #end = new ThreadEnd(undefined);

  private constructor(options: OwnerOptions, log: Promise<Logger>, events: OwnerHandleEvents, thread: OwnerThread) {
    this.#options = options;
    this.#log = deferredLog(log);
    this.#ownerLog = deferredLog(log.then((l) => l.child({ thread: 'owner' })));
    this.#events = events;
    this.#pool = thread.pool;
  }

  /**
   * Start the owner on `thread` (shared with the other accounts): it takes
   * the lock and loads the state, then answers. When it does not start, its
   * ports are closed and the thread goes on serving the others.
   */
  static async start(options: OwnerOptions, log: Promise<Logger>, events: OwnerHandleEvents, thread: OwnerThread): Promise<Result<OwnerHandle>> {
    const handle = new OwnerHandle(options, log, events, thread);
    const { result: started } = await handle.#attach();
    if (!started.ok) {
      handle.destroy();
      return started;
    }
    handle.#started = true;
    return { ok: true, value: handle };
  }

  /** The latest snapshot pushed by the owner. Never null once started. */
  get snapshot(): Snapshot {
    return this.#snapshot!;
  }

  /** `stage`: where it failed: the thread (no attach) or this account's owner (it answered, refusing to start). */
  async #attach(): Promise<{ readonly result: Result<Snapshot>; readonly stage: 'thread' | 'owner' }> {
    const generation = ++this.#generation;
    const rpc = new MessageChannel();
    const events = new MessageChannel();
    this.#ports = [rpc.port1, events.port1];
    events.port1.on('message', (event: OwnerEvent) => this.#onEvent(event));
    // Only the current owner's port counts: a port of an attach that failed closes too.
    rpc.port1.once('close', () => generation === this.#generation && void this.#onDeath());
    // piscina stops replacing a worker that keeps dying while it boots: then the task would wait forever.
    const deadline = AbortSignal.timeout(ATTACH_DEADLINE_MS);
    try {
      await this.#pool.run({ rpc: rpc.port2, events: events.port2 }, { transferList: [rpc.port2, events.port2], signal: deadline });
      // One thread at most: the one that ran the attach task.
      this.#end = ThreadEnd.of(this.#pool.threads[0]);
    } catch (err) {
      this.#generation++;
      for (const port of this.#ports) port.close();
      const why = deadline.aborted ? `no thread took it within ${ATTACH_DEADLINE_MS / 1000} s` : (err as Error).message;
      const error: ErrorData = { code: 'internal_error', message: `the owner thread did not start: ${why}`, retryable: !deadline.aborted };
      return { result: { ok: false, error }, stage: 'thread' };
    }
    this.#remote = wrapOwner(rpc.port1);
    const started = await this.#call((r) => r.start(this.#options));
    if (started.ok) this.#snapshot = started.value;
    // A thread that died during the start rejects the call with internal_error: that is the thread's failure, not the owner's.
    const stage = started.ok || (started.error.code === 'internal_error' && this.#remote === null) ? 'thread' : 'owner';
    return { result: started, stage };
  }

  /** A dead owner is replaced; piscina may still be removing it, so a failed attach is retried briefly. */
  async #reattach(): Promise<void> {
    this.#reattaching = true;
    try {
      for (let attempt = 1; attempt <= 10 && !this.#closing; attempt++) {
        const { result: r, stage } = await this.#attach();
        if (r.ok) {
          this.#log.info({ version: r.value.version }, 'owner thread restarted');
          return;
        }
        if (stage === 'owner') {
          // The thread is up and serves the other accounts: only this one is lost.
          this.#closing = true;
          this.#detach();
          return this.#events.onFailed(r.error);
        }
        if (r.error.retryable !== true) {
          return this.#events.onFatal({ code: r.error.code, message: `the owner thread could not be restarted: ${r.error.message}` });
        }
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
      if (!this.#closing) this.#events.onFatal({ code: 'internal_error', message: 'the owner thread could not be restarted' });
    } finally {
      this.#reattaching = false;
    }
  }

  #onEvent(event: OwnerEvent): void {
    switch (event.type) {
      case 'snapshot':
        return this.#adopt(event.snapshot);
      case 'log':
        return this.#ownerLog[event.level](event.fields, event.msg);
      case 'closed':
        return this.#closed?.();
      case 'refresh':
      case 'persist':
        return this.#events.onEvent(event);
      default:
        return this.#unknownEvent(event);
    }
  }

  /** An event outside the contract (a new type fails to compile above first): logged; thrown in the port's listener, it would end the daemon. */
  #unknownEvent(event: never): void {
    const type: unknown = (event as { readonly type?: unknown }).type;
    this.#log.error({ type: typeof type === 'string' ? type : typeof type }, 'unknown event from the owner thread: ignored');
  }

  /**
   * Take a snapshot if it is newer than the one held. A write answers over RPC
   * with the snapshot it produced: the main thread serves it from then on,
   * even if the same snapshot's event on the other port is still in transit.
   */
  #adopt(snapshot: Snapshot): void {
    const previous = this.#snapshot;
    if (previous && snapshot.seq <= previous.seq) return;
    this.#snapshot = snapshot;
    this.#events.onSnapshot(snapshot, previous);
  }

  async #onDeath(): Promise<void> {
    const remote = this.#remote;
    this.#remote = null;
    for (const port of this.#ports) port.close();
    if (remote) releaseOwner(remote);
    const cause = await this.#end.cause();
    const now = Date.now();
    const recent = [...this.#restarts.filter((t) => now - t < 60_000), now];
    // A port of an attempt made while replacing the owner closes too: that is not a second death.
    const restarting = this.#started && !this.#closing && !this.#reattaching && recent.length <= MAX_RESTARTS_PER_MINUTE;
    const error = died(cause, restarting);
    for (const reject of this.#pending) reject({ ok: false, error });
    this.#pending.clear();
    if (!this.#started || this.#closing || this.#reattaching) return;
    this.#restarts = recent;
    if (!restarting) {
      this.#events.onFatal({ code: 'internal_error', message: `the owner thread died ${recent.length} times within a minute; the last time: ${cause}` });
      return;
    }
    this.#log.error({ cause }, 'owner thread died; starting a new one from the state file');
    this.#events.onRestart(this.#end.threadId);
    void this.#reattach();
  }

  /** Call the owner; a death of the thread rejects the call instead of leaving it hanging. */
  #call<T>(fn: (remote: OwnerRemote) => Promise<Result<T>>): Promise<Result<T>> {
    const remote = this.#remote;
    if (!remote) return Promise.resolve({ ok: false, error: this.#closing ? letGo : notRunning });
    return new Promise<Result<T>>((resolve) => {
      this.#pending.add(resolve);
      fn(remote).then(
        (r) => {
          this.#pending.delete(resolve);
          resolve(r);
        },
        (err: Error) => {
          this.#pending.delete(resolve);
          resolve({ ok: false, error: { code: 'internal_error', message: err.message } });
        },
      );
    });
  }

  refresh(trigger: RefreshTrigger): Promise<Result<Snapshot>> {
    return this.#call((r) => r.refresh(trigger)).then((r) => this.#adopted(r));
  }

  ensureFresh(): Promise<Result<Snapshot>> {
    return this.#call((r) => r.ensureFresh()).then((r) => this.#adopted(r));
  }

  setTokens(input: SetTokensInput): Promise<Result<Snapshot>> {
    return this.#call((r) => r.setTokens(input)).then((r) => this.#adopted(r));
  }

  #adopted(result: Result<Snapshot>): Result<Snapshot> {
    if (result.ok) this.#adopt(result.value);
    return result;
  }

  async setListen(listen: string): Promise<void> {
    await this.#call(async (r) => {
      await r.setListen(listen);
      return { ok: true, value: null };
    });
  }

  /** Settle the refresh in flight (bounded), flush, release the lock. */
  async close(timeoutMs: number): Promise<Result<null>> {
    this.#closing = true;
    // The owner's last log lines travel on the events port: the result waits for them too.
    const linesDelivered = new Promise<void>((resolve) => {
      this.#closed = resolve;
      setTimeout(resolve, 1_000).unref();
    });
    const result = await this.#call((r) => r.close(timeoutMs));
    if (result.ok) await linesDelivered;
    return result;
  }

  /** A deliberate second stop request: the owner stops waiting for the provider (see OwnerApi.hurry). */
  async hurry(): Promise<void> {
    await this.#call(async (r) => {
      await r.hurry();
      return { ok: true, value: null };
    });
  }

  /**
   * Let go of this account's owner: its ports close, calls still pending are
   * rejected, and no restart follows. Its lock is released by its `close()`
   * (or by the thread's end); the thread itself goes on for the other accounts.
   */
  destroy(): void {
    this.#closing = true;
    this.#detach();
  }

  #detach(): void {
    this.#generation++;
    const remote = this.#remote;
    this.#remote = null;
    for (const port of this.#ports) port.close();
    if (remote) releaseOwner(remote);
    for (const reject of this.#pending) reject({ ok: false, error: letGo });
    this.#pending.clear();
  }
}
