/**
 * Keeps a granted lease: renews it every few seconds, and knows how long it
 * is certainly still held.
 *
 * "Certainly" is measured on this host's monotonic clock from the moment the
 * last successful request was *sent*: the database set the expiry at or
 * after that moment, so `sentAt + ttl` is never later than the real expiry,
 * whatever the two wall clocks say. When renewals fail (the database is
 * unreachable) the lease is still ours until then; past it, or at the first
 * refused renewal, it is lost, `onLost` is called once, and nothing renews it
 * again: the holder must acquire anew (a new epoch) to lead again.
 */
import type { Log } from '../shared/log.js';
import type { Lease, LeaseResult } from './postgres.js';

/** The part of the store a keeper needs. */
export interface LeaseRenewer {
  acquire(account: string, holder: string, ttlMs: number): Promise<LeaseResult>;
  renew(lease: Lease, ttlMs: number): Promise<LeaseResult>;
  release(lease: Lease): Promise<boolean>;
}

export interface LeaseKeeperOptions {
  readonly ttlMs: number;
  /** Default a third of the ttl: two renewals may fail before the lease runs out. */
  readonly renewEveryMs?: number;
  readonly onLost: (reason: string) => void;
  readonly log?: Log;
}

export class LeaseKeeper {
  readonly lease: Lease;
  readonly #store: LeaseRenewer;
  readonly #opts: LeaseKeeperOptions;
  #validUntil: number;
  #phase: 'held' | 'lost' | 'stopped' = 'held';
  #renewTimer: NodeJS.Timeout | null = null;
  #expiryTimer: NodeJS.Timeout | null = null;
  #lastError: string | null = null;

  /** `sentAtMs`: `performance.now()` taken just before the request that granted the lease. */
  constructor(store: LeaseRenewer, lease: Lease, sentAtMs: number, opts: LeaseKeeperOptions) {
    this.#store = store;
    this.lease = lease;
    this.#opts = opts;
    this.#validUntil = sentAtMs + opts.ttlMs;
    this.#armExpiry();
    this.#scheduleRenew();
  }

  /** Acquire the account's lease and keep it; or the refusal, saying who holds it. */
  static async acquire(
    store: LeaseRenewer,
    account: string,
    holder: string,
    opts: LeaseKeeperOptions,
  ): Promise<LeaseKeeper | Extract<LeaseResult, { ok: false }>> {
    const sentAt = performance.now();
    const result = await store.acquire(account, holder, opts.ttlMs);
    return result.ok ? new LeaseKeeper(store, result.lease, sentAt, opts) : result;
  }

  get held(): boolean {
    return this.#phase === 'held' && this.validForMs() > 0;
  }

  /** How long the lease is certainly still held (0 once lost or stopped): compare with a provider call's deadline. */
  validForMs(): number {
    return this.#phase === 'held' ? Math.max(0, Math.floor(this.#validUntil - performance.now())) : 0;
  }

  /** Stop renewing and give the lease up in the database. Idempotent. */
  async release(): Promise<void> {
    const wasHeld = this.#phase === 'held';
    this.#stop('stopped');
    if (wasHeld) await this.#store.release(this.lease).catch(() => undefined);
  }

  #scheduleRenew(): void {
    this.#renewTimer = setTimeout(() => void this.#renew(), this.#opts.renewEveryMs ?? Math.max(1, Math.floor(this.#opts.ttlMs / 3)));
    this.#renewTimer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#phase !== 'held') return;
    const sentAt = performance.now();
    let result: LeaseResult;
    try {
      result = await this.#store.renew(this.lease, this.#opts.ttlMs);
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#opts.log?.warn({ account: this.lease.account, epoch: this.lease.epoch, err: this.#lastError }, 'lease renewal failed; retrying');
      if (this.#phase === 'held') this.#scheduleRenew();
      return;
    }
    if (this.#phase !== 'held') return;
    if (!result.ok) {
      const by =
        result.current && result.current.epoch !== this.lease.epoch ? `: taken by ${result.current.holder} (epoch ${result.current.epoch})` : ': expired';
      this.#lose(`lease of account ${this.lease.account} (epoch ${this.lease.epoch}) lost${by}`);
      return;
    }
    this.#lastError = null;
    this.#validUntil = sentAt + this.#opts.ttlMs;
    this.#armExpiry();
    this.#scheduleRenew();
  }

  #armExpiry(): void {
    if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = setTimeout(
      () => {
        if (this.#phase !== 'held') return;
        if (performance.now() < this.#validUntil) return this.#armExpiry();
        const why = this.#lastError === null ? 'no renewal in time' : `renewals failed: ${this.#lastError}`;
        this.#lose(`lease of account ${this.lease.account} (epoch ${this.lease.epoch}) expired: ${why}`);
      },
      Math.max(0, this.#validUntil - performance.now()),
    );
    this.#expiryTimer.unref();
  }

  #lose(reason: string): void {
    this.#stop('lost');
    this.#opts.log?.warn({ account: this.lease.account, epoch: this.lease.epoch }, reason);
    this.#opts.onLost(reason);
  }

  #stop(phase: 'lost' | 'stopped'): void {
    if (this.#phase !== 'held') return;
    this.#phase = phase;
    if (this.#renewTimer) clearTimeout(this.#renewTimer);
    if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
  }
}
