/**
 * The main thread's side of the owner thread.
 *
 * piscina supervises one long-lived worker; Comlink carries RPC on a
 * dedicated port; snapshots and measurements arrive on a second, plain port,
 * so the HTTP hot path reads the latest snapshot without a cross-thread hop.
 *
 * When the worker dies, calls on the old Comlink proxy never settle: the
 * port's 'close' rejects everything outstanding, then a new worker is
 * attached and reloads from the file (the file is always at least as new as
 * anything that was served).
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import type { OwnerEvent, OwnerOptions, RefreshTrigger, Result, SetTokensInput, Snapshot } from '../contract.js';
import type { ErrorData } from '../errors.js';
import { deferredLog } from '../deferred-log.js';
import type { Log, Logger } from '../log.js';
import { releaseOwner, wrapOwner, type OwnerRemote } from '../protocol.js';
import { startOwnerThread, type OwnerThread } from './owner-thread.js';

/** More deaths than this within a minute and the daemon gives up. */
const MAX_RESTARTS_PER_MINUTE = 5;

export interface OwnerHandleEvents {
  onSnapshot(snapshot: Snapshot, previous: Snapshot | null): void;
  onEvent(event: OwnerEvent): void;
  onRestart(): void;
  /** The owner cannot be kept alive: the daemon must stop. */
  onFatal(error: ErrorData): void;
}

const died: ErrorData = { code: 'internal_error', message: 'the owner thread stopped before answering; it is being restarted' };

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

  private constructor(options: OwnerOptions, log: Promise<Logger>, events: OwnerHandleEvents, thread: OwnerThread) {
    this.#options = options;
    this.#log = deferredLog(log);
    this.#ownerLog = deferredLog(log.then((l) => l.child({ thread: 'owner' })));
    this.#events = events;
    this.#pool = thread.pool;
    thread.onError((err) => this.#log.error({ err: err.message }, 'owner thread failed'));
  }

  /**
   * Start the owner: it takes the lock and loads the state, then answers.
   * `thread`: one already booting (see owner-thread.ts), or one is started now.
   */
  static async start(options: OwnerOptions, log: Promise<Logger>, events: OwnerHandleEvents, thread: OwnerThread | null = null): Promise<Result<OwnerHandle>> {
    const handle = new OwnerHandle(options, log, events, thread ?? startOwnerThread());
    const started = await handle.#attach();
    if (!started.ok) {
      await handle.destroy();
      return started;
    }
    return { ok: true, value: handle };
  }

  /** The latest snapshot pushed by the owner. Never null once started. */
  get snapshot(): Snapshot {
    return this.#snapshot!;
  }

  async #attach(): Promise<Result<Snapshot>> {
    const generation = ++this.#generation;
    const rpc = new MessageChannel();
    const events = new MessageChannel();
    this.#ports = [rpc.port1, events.port1];
    events.port1.on('message', (event: OwnerEvent) => this.#onEvent(event));
    // Only the current owner's port counts: a port of an attach that failed closes too.
    rpc.port1.once('close', () => generation === this.#generation && this.#onDeath());
    try {
      await this.#pool.run({ rpc: rpc.port2, events: events.port2 }, { transferList: [rpc.port2, events.port2] });
    } catch (err) {
      this.#generation++;
      for (const port of this.#ports) port.close();
      return { ok: false, error: { code: 'internal_error', message: `the owner thread did not start: ${(err as Error).message}`, details: { retry: true } } };
    }
    this.#remote = wrapOwner(rpc.port1);
    const started = await this.#call((r) => r.start(this.#options));
    if (started.ok) this.#snapshot = started.value;
    return started;
  }

  /** A dead owner is replaced; piscina may still be removing it, so a failed attach is retried briefly. */
  async #reattach(): Promise<void> {
    this.#reattaching = true;
    try {
      for (let attempt = 1; attempt <= 10 && !this.#closing; attempt++) {
        const r = await this.#attach();
        if (r.ok) {
          this.#log.info({ version: r.value.version }, 'owner thread restarted');
          return;
        }
        if (r.error.details?.['retry'] !== true) return this.#events.onFatal(r.error);
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
      if (!this.#closing) this.#events.onFatal({ code: 'internal_error', message: 'the owner thread could not be restarted' });
    } finally {
      this.#reattaching = false;
    }
  }

  #onEvent(event: OwnerEvent): void {
    if (event.type === 'snapshot') this.#adopt(event.snapshot);
    else if (event.type === 'log') {
      this.#ownerLog[event.level](event.fields, event.msg);
    } else if (event.type === 'closed') this.#closed?.();
    else this.#events.onEvent(event);
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

  #onDeath(): void {
    for (const reject of this.#pending) reject({ ok: false, error: died });
    this.#pending.clear();
    if (this.#remote) releaseOwner(this.#remote);
    this.#remote = null;
    for (const port of this.#ports) port.close();
    // A port of an attempt made while replacing the owner closes too: that is not a second death.
    if (this.#closing || this.#reattaching) return;
    const now = Date.now();
    this.#restarts = [...this.#restarts.filter((t) => now - t < 60_000), now];
    if (this.#restarts.length > MAX_RESTARTS_PER_MINUTE) {
      this.#events.onFatal({ code: 'internal_error', message: `the owner thread died ${this.#restarts.length} times within a minute` });
      return;
    }
    this.#log.error('owner thread died; starting a new one from the state file');
    this.#events.onRestart();
    void this.#reattach();
  }

  /** Call the owner; a death of the thread rejects the call instead of leaving it hanging. */
  #call<T>(fn: (remote: OwnerRemote) => Promise<Result<T>>): Promise<Result<T>> {
    const remote = this.#remote;
    if (!remote) return Promise.resolve({ ok: false, error: died });
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

  /** Kill the owner thread as a crash would (for the restart test; see TOKEND_TEST_HOOKS). */
  async terminateThread(): Promise<void> {
    await this.#pool.threads[0]?.terminate();
  }

  /** End the worker thread. */
  async destroy(): Promise<void> {
    this.#closing = true;
    await this.#pool.destroy().catch(() => undefined);
  }
}
