/**
 * The daemon's accounts, in config order: each one running (its own
 * `OwnerHandle`: its own ports to the shared owner thread, its own lock,
 * state and refresh engine) or failed (its owner did not start: its state
 * file is left exactly as it was, and the reason is served as status
 * `failed`).
 *
 * Nothing is shared between accounts but the thread: every start, call,
 * close and restart is one account's, so a refused login, a provider outage,
 * a corrupt file or a lost lock in one never delays or stops another. Each
 * account's backend (what the HTTP side calls) looks its account up at each
 * call, so a reload that restarts it is seen at once.
 */
import { randomUUID } from 'node:crypto';
import type { OwnerEvent, Result, Snapshot } from '../shared/contract.js';
import type { ErrorData } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { AccountConfig } from '../config/accounts.js';
import { clientSecretOf } from '../config/client-secret.js';
import { ownerOptions, type OwnerSettings } from '../config/owner-options.js';
import type { AccountBackend } from '../http/routes.js';
import { OwnerHandle } from './owner-handle.js';
import type { OwnerThread } from './owner-thread.js';

export type AccountSlot =
  | { readonly kind: 'running'; readonly config: AccountConfig; readonly handle: OwnerHandle; readonly run: Run }
  | { readonly kind: 'failed'; readonly config: AccountConfig; readonly error: ErrorData; readonly snapshot: Snapshot };

/** One start of an account's owner: its events count until it is retired (closed, or replaced by a reload). */
interface Run {
  retired: boolean;
}

export interface AccountEvents {
  onSnapshot(account: string, snapshot: Snapshot, previous: Snapshot | null): void;
  onEvent(account: string, event: OwnerEvent): void;
  /** The owner thread `threadId` died; every account on it reports the same death. */
  onRestart(threadId: number): void;
  /** The owner thread cannot be kept alive: the daemon must stop. */
  onFatal(error: ErrorData): void;
}

export interface AccountsOptions {
  readonly thread: OwnerThread;
  readonly settings: OwnerSettings;
  readonly logging: Promise<Logger>;
  /** Log lines carry the account's name (a daemon configured by a file); otherwise they read as before. */
  readonly namedLogs: boolean;
  readonly events: AccountEvents;
}

/** How one account's start went. */
export interface Started {
  readonly config: AccountConfig;
  readonly result: Result<OwnerHandle>;
}

/** What a reload did, by account name. */
export interface ReloadSummary {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly restarted: readonly string[];
  readonly failed: readonly { readonly account: string; readonly error: ErrorData }[];
}

/** The snapshot a failed account is served with: no token, status `failed`, the reason. */
export function failedSnapshot(config: AccountConfig, error: ErrorData): Snapshot {
  return {
    seq: 0,
    version: 0,
    status: 'failed',
    reason: error.message,
    token: null,
    refresh: { inFlight: false, nextAtMs: null, lastAttemptAtMs: null, lastSuccessAtMs: null, lastError: error, consecutiveFailures: 0 },
    persist: { ok: true, lastError: null, lastWriteAtMs: null },
    lockHeld: false,
    stateFile: config.stateFile,
    provider: config.provider.name,
    account: {},
  };
}

/** Two configurations of one account that would run the same owner (a reload restarts an account only when they differ). */
function sameAccount(a: AccountConfig, b: AccountConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class Accounts {
  readonly #opts: AccountsOptions;
  readonly #slots = new Map<string, AccountSlot>();
  /** What the HTTP side sees: one backend per account, in config order. Always this one map: a reload changes its entries. */
  readonly backends = new Map<string, AccountBackend>();
  #stopping = false;

  constructor(opts: AccountsOptions) {
    this.#opts = opts;
  }

  get names(): string[] {
    return [...this.#slots.keys()];
  }

  slot(name: string): AccountSlot | undefined {
    return this.#slots.get(name);
  }

  get running(): OwnerHandle[] {
    return [...this.#slots.values()].flatMap((s) => (s.kind === 'running' ? [s.handle] : []));
  }

  /** Start every account at once, each on its own (none waits for another); each placed running or failed, in `configs`' order. */
  async startAll(configs: readonly AccountConfig[]): Promise<Started[]> {
    const started = await Promise.all(configs.map((c) => this.#startOne(c)));
    for (const s of started) this.#place(s);
    this.#order(configs);
    return started;
  }

  async #startOne(config: AccountConfig): Promise<Started & { readonly run: Run }> {
    const run: Run = { retired: false };
    const secret = await clientSecretOf(config);
    if ('problem' in secret) return { config, run, result: { ok: false, error: { code: 'config_invalid', message: secret.problem } } };
    const { thread, settings, logging, namedLogs, events } = this.#opts;
    const name = config.name;
    const result = await OwnerHandle.start(
      ownerOptions(config, settings, randomUUID(), secret.value),
      namedLogs ? logging.then((l) => l.child({ account: name })) : logging,
      {
        onSnapshot: (snapshot, previous) => {
          if (!run.retired) events.onSnapshot(name, snapshot, previous);
        },
        onEvent: (event) => {
          if (!run.retired) events.onEvent(name, event);
        },
        onRestart: (threadId) => {
          if (!run.retired) events.onRestart(threadId);
        },
        onFailed: (error) => {
          if (!run.retired) this.#failedAfterRestart(config, run, error);
        },
        onFatal: (error) => {
          if (!run.retired) events.onFatal(error);
        },
      },
      thread,
    );
    if (result.ok && this.#stopping) {
      // Started by a reload while the daemon began to stop: it never serves.
      run.retired = true;
      await result.value.close(0);
      result.value.destroy();
      return { config, run, result: { ok: false, error: { code: 'shutting_down', message: 'tokend is shutting down' } } };
    }
    return { config, run, result };
  }

  #place(started: Started & { readonly run?: Run }): void {
    const { config, result } = started;
    const previous = this.#slots.get(config.name);
    if (result.ok) {
      this.#slots.set(config.name, { kind: 'running', config, handle: result.value, run: started.run ?? { retired: false } });
      this.#opts.events.onSnapshot(config.name, result.value.snapshot, previous ? this.#snapshotOf(previous) : null);
    } else {
      const snapshot = failedSnapshot(config, result.error);
      this.#slots.set(config.name, { kind: 'failed', config, error: result.error, snapshot });
      this.#opts.events.onSnapshot(config.name, snapshot, previous ? this.#snapshotOf(previous) : null);
    }
    if (!this.backends.has(config.name)) this.backends.set(config.name, this.#backend(config.name));
  }

  /** The thread was replaced and this account's owner did not start again: it is failed; the others go on. */
  #failedAfterRestart(config: AccountConfig, run: Run, error: ErrorData): void {
    run.retired = true;
    void this.#opts.logging.then((l) =>
      (this.#opts.namedLogs ? l.child({ account: config.name }) : l).error({ code: error.code }, `the owner did not start again: ${error.message}`),
    );
    this.#place({ config, result: { ok: false, error } });
  }

  /** Put the slots and backends in `configs`' order. */
  #order(configs: readonly AccountConfig[]): void {
    for (const map of [this.#slots, this.backends] as Map<string, unknown>[]) {
      const entries = configs.filter((c) => map.has(c.name)).map((c) => [c.name, map.get(c.name)] as const);
      map.clear();
      for (const [k, v] of entries) map.set(k, v);
    }
  }

  #snapshotOf(slot: AccountSlot): Snapshot {
    return slot.kind === 'running' ? slot.handle.snapshot : slot.snapshot;
  }

  #backend(name: string): AccountBackend {
    const unknown: ErrorData = { code: 'not_found', message: `no account named ${name}` };
    const call = (fn: (h: OwnerHandle) => Promise<Result<Snapshot>>): Promise<Result<Snapshot>> => {
      const slot = this.#slots.get(name);
      if (!slot) return Promise.resolve({ ok: false, error: unknown });
      if (slot.kind === 'failed') return Promise.resolve({ ok: false, error: { code: 'not_ready', message: `account ${name} failed: ${slot.error.message}` } });
      return fn(slot.handle);
    };
    return {
      name,
      snapshot: () => {
        const slot = this.#slots.get(name);
        if (!slot) throw new Error(`no account named ${name}`);
        return this.#snapshotOf(slot);
      },
      ensureFresh: () => call((h) => h.ensureFresh()),
      refresh: (trigger) => call((h) => h.refresh(trigger)),
      setTokens: (input) => call((h) => h.setTokens(input)),
    };
  }

  async setListen(listen: string): Promise<void> {
    await Promise.all(this.running.map((h) => h.setListen(listen)));
  }

  hurry(): void {
    for (const h of this.running) void h.hurry();
  }

  /** Settle, flush and release every account's lock, all at once; each account's outcome, in order. */
  closeAll(timeoutMs: number): Promise<{ readonly account: string; readonly result: Result<null> }[]> {
    this.#stopping = true;
    return Promise.all(
      [...this.#slots.values()].flatMap((s) =>
        s.kind === 'running' ? [this.#close(s, timeoutMs).then((result) => ({ account: s.config.name, result }))] : [],
      ),
    );
  }

  /** Let go of every owner without waiting (the thread is ending). */
  destroyAll(): void {
    this.#stopping = true;
    for (const s of this.#slots.values()) if (s.kind === 'running') s.handle.destroy();
  }

  async #close(slot: AccountSlot & { readonly kind: 'running' }, timeoutMs: number): Promise<Result<null>> {
    const result = await slot.handle.close(timeoutMs);
    slot.run.retired = true;
    slot.handle.destroy();
    return result;
  }

  /**
   * Bring the accounts to `configs`: removed ones stop (flushed, lock
   * released), changed ones — and failed ones, a second chance — stop and
   * start again, new ones start; the rest go on untouched. Stops come first:
   * a state file may have moved from one account to another. A start that
   * fails leaves that account failed (even when another daemon holds its
   * file: the accounts already serving go on).
   */
  async reload(configs: readonly AccountConfig[], closeTimeoutMs: number): Promise<ReloadSummary> {
    const names = new Set(configs.map((c) => c.name));
    const removed = [...this.#slots.values()].filter((s) => !names.has(s.config.name));
    const changed = configs.filter((c) => {
      const s = this.#slots.get(c.name);
      return s !== undefined && (s.kind === 'failed' || !sameAccount(s.config, c));
    });
    const added = configs.filter((c) => !this.#slots.has(c.name));
    const stopping = [...removed, ...changed.map((c) => this.#slots.get(c.name)!)];
    const closed = await Promise.all(stopping.map((s) => (s.kind === 'running' ? this.#close(s, closeTimeoutMs) : Promise.resolve(null))));
    const failed: { account: string; error: ErrorData }[] = [];
    closed.forEach((r, i) => r && !r.ok && failed.push({ account: stopping[i]!.config.name, error: r.error }));
    for (const s of removed) {
      this.#slots.delete(s.config.name);
      this.backends.delete(s.config.name);
    }
    const started = await Promise.all([...changed, ...added].map((c) => this.#startOne(c)));
    for (const s of started) {
      this.#place(s);
      if (!s.result.ok) failed.push({ account: s.config.name, error: s.result.error });
    }
    this.#order(configs);
    return {
      added: added.map((c) => c.name),
      removed: removed.map((s) => s.config.name),
      restarted: changed.map((c) => c.name),
      failed,
    };
  }
}
