/**
 * The one refresh schedule, and single flight.
 *
 * Every trigger (timer, HTTP, CLI, a read that finds the token about to
 * expire) joins the refresh in flight: one upstream call however many
 * callers, because two calls with one rotating token lose the login.
 * The timer sleeps at most `wakeIntervalMs` and compares against the wall
 * clock on each wake-up, so suspend, resume and clock jumps are noticed and
 * an overdue refresh happens at once. Failures back off exponentially with
 * jitter; Retry-After is never undercut.
 *
 * No answer and no caller can make it hammer the provider: attempts start at
 * least `MIN_SPACING_MS` apart whatever triggers them (a provider that grants
 * a token for a millisecond would otherwise be asked again at once, forever),
 * and an explicit request made within `RECENT_MS` of a successful refresh is
 * answered from that refresh (any local caller may ask, and each rotation
 * counts against the provider's rate limit).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RefreshTrigger, RefreshView, Result } from '../shared/contract.js';
import type { ErrorData } from '../shared/errors.js';
import type { Log } from '../shared/log.js';
import type { TokenState } from '../state-file/codec.js';
import { backoffDelay, defaultPolicy, refreshDueAt, type RefreshPolicy } from './schedule.js';

export interface RefresherDeps {
  readonly wakeIntervalMs: number;
  /** When a token is due (the account's refresh_lead and refresh_at_least); absent: `defaultPolicy`. */
  readonly policy?: RefreshPolicy;
  /** One upstream refresh, persisted. Never called twice at once. */
  readonly redeem: () => Promise<Result<null>>;
  /** Why no refresh can happen now, or null. */
  readonly canRefresh: () => ErrorData | null;
  readonly token: () => TokenState;
  readonly onChange: () => void;
  readonly log: Log;
}

// internal_error too: an unexpected failure must back off, not retry at every wake-up against an overdue token.
const RETRYABLE = new Set<ErrorData['code']>(['upstream_error', 'persist_failed', 'internal_error']);

/** The least time between the starts of two attempts. */
export const MIN_SPACING_MS = 1_000;
/** An explicit refresh this soon after a successful one is answered from it. */
export const RECENT_MS = 5_000;

export class Refresher {
  readonly #deps: RefresherDeps;
  #inflight: Promise<Result<null>> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  #due: { key: string; atMs: number } | null = null;
  #retryAtMs: number | null = null;
  /** Until this moment the provider asked us (Retry-After) not to come back. */
  #notBeforeMs = 0;
  #failures = 0;
  #lastAttemptAtMs: number | null = null;
  /** When the latest attempt started or is due to start (after waiting out the spacing). */
  #lastStartAtMs = Number.NEGATIVE_INFINITY;
  #lastSuccessAtMs: number | null = null;
  /** The last success explicit requests may be answered from; forgotten when tokens are replaced. */
  #recentSuccessAtMs: number | null = null;
  #lastError: ErrorData | null = null;

  constructor(deps: RefresherDeps) {
    this.#deps = deps;
  }

  /**
   * Refresh now, or join the refresh in flight. Timer and read triggers keep
   * to the backoff schedule; an explicit request (HTTP, CLI) goes at once
   * unless the provider asked for a pause with Retry-After, or a refresh has
   * just succeeded (it is the answer). Every attempt waits out the spacing.
   */
  run(trigger: RefreshTrigger): Promise<Result<null>> {
    if (this.#inflight) return this.#inflight;
    const now = Date.now();
    const explicit = trigger === 'http' || trigger === 'cli';
    if (explicit && this.#recentSuccessAtMs !== null && now - this.#recentSuccessAtMs < RECENT_MS && this.#deps.canRefresh() === null) {
      this.#deps.log.info(
        { trigger, lastSuccessAt: new Date(this.#recentSuccessAtMs).toISOString() },
        `refresh requested less than ${RECENT_MS / 1000} s after the last successful one: answered from it, the provider was not called`,
      );
      return Promise.resolve({ ok: true, value: null });
    }
    const waitUntil = explicit ? this.#notBeforeMs : Math.max(this.#notBeforeMs, this.#retryAtMs ?? 0);
    if (waitUntil > now && this.#lastError) {
      return Promise.resolve({
        ok: false,
        error: { ...this.#lastError, retryAt: new Date(waitUntil).toISOString() },
      });
    }
    const startAt = Math.max(now, this.#lastStartAtMs + MIN_SPACING_MS);
    this.#lastStartAtMs = startAt;
    const attempt = this.#spaced(startAt - now, trigger).finally(() => {
      this.#inflight = null;
      this.schedule();
      this.#deps.onChange();
    });
    this.#inflight = attempt;
    this.#deps.onChange();
    return attempt;
  }

  async #spaced(waitMs: number, trigger: RefreshTrigger): Promise<Result<null>> {
    if (waitMs > 0) await sleep(waitMs);
    this.#lastAttemptAtMs = Date.now();
    return this.#attempt(trigger);
  }

  async #attempt(trigger: RefreshTrigger): Promise<Result<null>> {
    let result: Result<null>;
    try {
      result = await this.#deps.redeem();
    } catch (e) {
      result = { ok: false, error: { code: 'internal_error', message: (e as Error).message } };
    }
    const now = Date.now();
    if (result.ok) {
      this.reset();
      this.#lastSuccessAtMs = now;
      this.#recentSuccessAtMs = now;
      return result;
    }
    // A failure since the last success: that success no longer answers an explicit request.
    this.#recentSuccessAtMs = null;
    this.#lastError = result.error;
    if (RETRYABLE.has(result.error.code)) {
      this.#failures++;
      const retryAfterMs = result.error.retryAfterMs ?? null;
      const delay = backoffDelay(this.#failures, retryAfterMs);
      this.#retryAtMs = now + delay;
      if (retryAfterMs !== null) this.#notBeforeMs = now + delay;
      this.#deps.log.warn({ trigger, attempt: this.#failures, retryInMs: Math.round(delay), code: result.error.code }, 'refresh failed; will retry');
    } else {
      this.#retryAtMs = null;
    }
    return result;
  }

  /** Arm the timer for the next due moment (or the next wake-up, whichever is sooner). */
  schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#stopped || this.#inflight) return;
    const dueAt = this.#nextAtMs();
    if (dueAt === null) return;
    const wait = Math.min(Math.max(0, dueAt - Date.now()), this.#deps.wakeIntervalMs);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const due = this.#nextAtMs();
      if (due !== null && Date.now() >= due) void this.run('timer');
      else this.schedule();
    }, wait);
  }

  #nextAtMs(): number | null {
    if (this.#deps.canRefresh() !== null) return null;
    if (this.#retryAtMs !== null) return this.#retryAtMs;
    const t = this.#deps.token();
    if (t.kind === 'none') return null;
    // A refresh-only login has no known lifetime: it is due at once.
    const { obtainedAtMs, expiresAtMs } = t.kind === 'active' ? t : { obtainedAtMs: null, expiresAtMs: null };
    const key = `${t.kind}:${obtainedAtMs}:${expiresAtMs}`;
    // Jitter is drawn once per token, so the schedule does not wander between wake-ups.
    if (this.#due?.key !== key) this.#due = { key, atMs: refreshDueAt(obtainedAtMs, expiresAtMs, Math.random, this.#deps.policy ?? defaultPolicy) };
    return this.#due.atMs;
  }

  /** Resolves when no refresh is in flight; false if `timeoutMs` passed first. */
  async settled(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const inflight = this.#inflight;
    if (!inflight) return true;
    if (!Number.isFinite(timeoutMs)) {
      await inflight;
      return true;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, timeoutMs, false)));
    const done = await Promise.race([inflight.then(() => true as const), timeout]);
    clearTimeout(timer);
    return done;
  }

  /** Forget failures and the last success: new tokens start a clean schedule. */
  reset(): void {
    this.#recentSuccessAtMs = null;
    this.#failures = 0;
    this.#retryAtMs = null;
    this.#notBeforeMs = 0;
    this.#lastError = null;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  view(): RefreshView {
    const next = this.#stopped ? null : this.#nextAtMs();
    return {
      inFlight: this.#inflight !== null,
      nextAtMs: next === null ? null : Math.max(next, this.#lastAttemptAtMs ?? 0),
      lastAttemptAtMs: this.#lastAttemptAtMs,
      lastSuccessAtMs: this.#lastSuccessAtMs,
      lastError: this.#lastError,
      consecutiveFailures: this.#failures,
    };
  }
}
