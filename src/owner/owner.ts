/**
 * The token state and every change to it.
 *
 * Memory never runs ahead of the file: a change is written (temp, fsync,
 * rename, fsync dir) before it is published to the main thread, so nothing
 * is served or acknowledged that a crash could take back. Changes go through
 * one queue and each is computed from the latest state, so a write can only
 * make the file newer. The one exception is a refresh whose result cannot be
 * written (disk full): the provider has already rotated the token, so the new
 * pair is kept in memory, served, reported as a persistence failure and
 * written again until it lands — dropping it would lose the login.
 *
 * A refresh token is never dropped on a guess: tokens set without one keep
 * the current one; a refresh token replaced (by hand, or by a refused answer
 * that still rotated it) is kept until its successor has been redeemed once,
 * and is tried before the login is declared lost. Nothing is written once the
 * lock is released: a token request still in flight then is abandoned first.
 */
import type { OwnerEvent, OwnerOptions, Result, SetTokensInput, Snapshot, RefreshTrigger } from '../shared/contract.js';
import { TokendError, type ErrorData, type ErrorFields, type UpstreamAnswer } from '../shared/errors.js';
import { fingerprint } from '../shared/fingerprint.js';
import type { Log } from '../shared/log.js';
import type { ActiveTokens, RefreshOnlyTokens, StoredState, TokenState } from '../state-file/codec.js';
import { StateLock } from './lock.js';
import type { OAuthClient, RetriedFailure, TokenResponse, UpstreamFailure } from '../provider/oauth.js';
import { clampTimeMs, iso, noTokens, refreshTokenOf } from '../state-file/codec.js';
import { Refresher } from './refresher.js';
import { refreshPolicy } from './schedule.js';
import { isAboutToExpire } from '../shared/expiry.js';
import { StateStore } from './store.js';
import { isUsable, refused, relieved, running, statusOf, type Condition } from './condition.js';

const LOGIN_HINT = 'run `tokend login` to authorize again';
/** How long close() waits for an abandoned token request to give up before the lock is released anyway. */
const ABANDON_GRACE_MS = 2_000;

/** What the owner needs of the provider client (a fake one in unit tests). */
export type TokenClient = Pick<OAuthClient, 'refresh' | 'close'>;

/** Whether the file holds what memory holds. */
type Persistence =
  | { readonly kind: 'saved' }
  /** The last write failed; memory still matches the file (the change was not adopted). */
  | { readonly kind: 'failed'; readonly error: string }
  /** Memory is ahead of the file (a rotation that could not be written): written again until it lands. */
  | { readonly kind: 'unsaved'; readonly error: string; readonly attempts: number };

/** open → closing (no new refresh or write request) → sealed (the lock released: nothing is written). */
type Phase = 'open' | 'closing' | 'sealed';

const ok = <T>(value: T): Result<T> => ({ ok: true, value });
const err = (code: ErrorData['code'], message: string, fields: ErrorFields = {}): Result<never> => ({
  ok: false,
  error: { code, message, ...fields },
});
/** The provider's answer, as an HTTP error body shows it. */
const upstreamOf = (f: UpstreamFailure): UpstreamAnswer => ({ status: f.status, error: f.error });
/** A failure the refresher retries, honouring the provider's Retry-After. */
const upstreamError = (f: RetriedFailure): Result<never> =>
  err('upstream_error', f.message, { upstream: upstreamOf(f), ...(f.retryAfterMs === null ? {} : { retryAfterMs: f.retryAfterMs }) });
const held = (t: TokenState): RefreshOnlyTokens | ActiveTokens | null => (t.kind === 'none' ? null : t);
export const toResult = (e: unknown): Result<never> =>
  e instanceof TokendError ? { ok: false, error: e.toData() } : err('internal_error', (e as Error).message ?? String(e));

export class Owner {
  readonly #opts: OwnerOptions;
  readonly #log: Log;
  readonly #emit: (event: OwnerEvent) => void;
  readonly #store: StateStore;
  /** On the state file's real path, known once the store is prepared. */
  #lock: StateLock | null = null;
  /** Loaded on the first refresh: a start with a valid token never loads undici. */
  #oauth: Promise<TokenClient> | null = null;
  /** Aborts every token request from the moment shutdown stops waiting for the provider. */
  readonly #abandon = new AbortController();
  #phase: Phase = 'open';
  readonly #refresher: Refresher;

  #state: StoredState | null = null;
  /** What, beyond the tokens, decides the status. */
  #condition: Condition = running;
  #persistence: Persistence = { kind: 'saved' };
  #lastWriteAtMs: number | null = null;
  #persistRetry: NodeJS.Timeout | null = null;
  /** A refresh of this refresh token may have reached the provider without its answer reaching us. */
  #uncertain: { fingerprint: string; sinceMs: number } | null = null;
  #writes: Promise<unknown> = Promise.resolve();
  #seq = 0;

  constructor(opts: OwnerOptions, log: Log, emit: (event: OwnerEvent) => void, client?: () => Promise<TokenClient>) {
    this.#opts = opts;
    this.#log = log;
    this.#emit = emit;
    if (client) this.#oauth = client();
    this.#store = new StateStore(opts.stateFile, log);
    this.#refresher = new Refresher({
      wakeIntervalMs: opts.wakeIntervalMs,
      policy: refreshPolicy({ leadMs: opts.refreshLeadMs, atLeastMs: opts.refreshAtLeastMs }),
      redeem: () => this.#redeem(),
      canRefresh: () => {
        const r = this.#refreshable();
        return r.ok ? null : r.error;
      },
      token: () => this.#tokens(),
      onChange: () => this.#publish(),
      log,
    });
    if (!opts.scheduleRefresh) this.#refresher.stop();
  }

  async start(): Promise<Result<Snapshot>> {
    try {
      await this.#store.prepare();
      this.#lock = new StateLock(this.#store.path);
      await this.#lock.acquire(this.#opts.owner, (e) => this.#onLockCompromised(e));
      const [{ state, movedAsideTo }] = await Promise.all([this.#store.load(this.#opts.moveCorruptAside), this.#store.removeStrayTemps()]);
      if (movedAsideTo) this.#log.warn({ movedAsideTo }, 'state file was corrupt: moved aside, starting without tokens');
      this.#state = state;
      this.#noteOpenIntent(state);
      const real = this.#store.path === this.#opts.stateFile ? {} : { realPath: this.#store.path };
      this.#log.info({ stateFile: this.#opts.stateFile, ...real, version: state.version, status: this.#status().status }, 'state loaded');
      this.#publish();
      this.#refresher.schedule();
      return ok(this.snapshot());
    } catch (e) {
      await this.#lock?.release().catch(() => undefined);
      return toResult(e);
    }
  }

  /** An intent left open by a crash: say so, and remember it for the verdict if the token is then refused. */
  #noteOpenIntent(state: StoredState): void {
    const intent = state.intent;
    if (!intent) return;
    const startedAt = new Date(clampTimeMs(intent.startedAtMs) ?? 0).toISOString();
    const t = held(state.tokens);
    const redeeming = [t?.refreshToken, t?.replacedRefreshToken].some((token) => token && fingerprint(token) === intent.refreshFingerprint);
    if (redeeming) {
      this.#uncertain = { fingerprint: intent.refreshFingerprint, sinceMs: intent.startedAtMs };
      this.#log.warn({ refreshFingerprint: intent.refreshFingerprint, startedAt }, 'a refresh was interrupted before its result was saved; retrying it');
    } else {
      this.#log.warn(
        { refreshFingerprint: intent.refreshFingerprint, startedAt },
        'a refresh of a refresh token no longer in the state file was interrupted before its result was saved; the tokens in the file were set since',
      );
    }
  }

  setListen(listen: string): Promise<void> {
    return this.#lock?.setListen(listen) ?? Promise.resolve();
  }

  refresh(trigger: RefreshTrigger): Promise<Result<Snapshot>> {
    if (this.#phase !== 'open') return Promise.resolve(err('shutting_down', 'tokend is shutting down'));
    return this.#refresher.run(trigger).then((r) => (r.ok ? ok(this.snapshot()) : r));
  }

  async ensureFresh(): Promise<Result<Snapshot>> {
    const t = this.#tokens();
    if (t.kind === 'active' && !isAboutToExpire(t.obtainedAtMs, t.expiresAtMs, Date.now())) return ok(this.snapshot());
    const result = await this.refresh('read');
    // A failed refresh still leaves a token that has not yet expired usable.
    if (!result.ok && isUsable(this.#tokens(), Date.now())) return ok(this.snapshot());
    return result;
  }

  /** Tokens from `tokend set`, `tokend login` or the HTTP API: persisted, then published, then scheduled. */
  async setTokens(input: SetTokensInput): Promise<Result<Snapshot>> {
    if (this.#phase !== 'open') return err('shutting_down', 'tokend is shutting down');
    if (this.#condition.kind === 'lock_lost') return err('lock_lost', this.#condition.reason);
    const now = Date.now();
    try {
      // Waits for an in-flight refresh: its result must not overwrite these tokens.
      await this.#refresher.settled();
      await this.#commit((cur) => ({
        ...cur,
        tokens: {
          kind: 'active',
          accessToken: input.accessToken,
          ...keepRefreshToken(cur.tokens, input.refreshToken),
          tokenType: input.tokenType ?? 'Bearer',
          scope: input.scope ?? held(cur.tokens)?.scope ?? null,
          expiresAtMs: input.expiresInSec === null ? null : clampTimeMs(now + input.expiresInSec * 1000),
          obtainedAtMs: now,
          provider: this.#opts.provider.name,
          account: { ...(held(cur.tokens)?.account ?? {}), ...(input.extra ?? {}) },
        },
        intent: null,
      }));
    } catch (e) {
      return toResult(e);
    }
    this.#condition = relieved(this.#condition);
    this.#uncertain = null;
    this.#refresher.reset();
    this.#log.info({ accessFingerprint: fingerprint(input.accessToken), version: this.#state?.version }, 'tokens set');
    this.#refresher.schedule();
    this.#publish();
    return ok(this.snapshot());
  }

  /**
   * A deliberate second stop request: abandon the token request in flight so
   * close() can finish. An answer that has already arrived is written anyway:
   * its write is not a token request, and close() waits for it.
   */
  hurry(): void {
    if (this.#abandon.signal.aborted) return;
    if (this.#refresher.view().inFlight)
      this.#log.warn('stop requested again: abandoning the token request in flight (an answer already received is still written)');
    this.#abandon.abort();
  }

  async close(timeoutMs: number): Promise<Result<null>> {
    // A second close must not unseal: nothing is written once the lock is released.
    if (this.#phase === 'open') this.#phase = 'closing';
    this.#refresher.stop();
    if (!(await this.#refresher.settled(timeoutMs))) {
      // Releasing the lock under a live request would let its answer be written without the lock.
      this.#log.warn({ timeoutMs }, 'refresh still in flight at shutdown: abandoning the token request');
      this.#abandon.abort();
      if (!(await this.#refresher.settled(ABANDON_GRACE_MS))) this.#log.error('the abandoned refresh did not end; its answer, if any, will not be written');
    }
    if (this.#persistRetry) clearTimeout(this.#persistRetry);
    await this.#flush();
    await this.#writes.catch(() => undefined);
    this.#phase = 'sealed';
    await this.#lock?.release();
    if (this.#oauth) await (await this.#oauth).close();
    this.#log.info({ version: this.#state?.version, unsaved: this.#persistence.kind === 'unsaved' }, 'owner closed');
    return ok(null);
  }

  // ---- refresh ------------------------------------------------------------

  #stopBegun(): boolean {
    return this.#phase !== 'open' || this.#abandon.signal.aborted;
  }

  /** The refresh token to redeem now, or why none can be. */
  #refreshable(): Result<string> {
    if (this.#phase !== 'open') return err('shutting_down', 'tokend is shutting down');
    if (this.#condition.kind === 'lock_lost') return err('lock_lost', this.#condition.reason);
    const tokens = this.#tokens();
    if (tokens.kind === 'none') return err('reauthorization_required', `no tokens yet: ${LOGIN_HINT.replace('again', '')}`.trim());
    if (this.#condition.kind === 'reauthorization_required') return err('reauthorization_required', this.#condition.reason);
    if (!tokens.refreshToken) return err('reauthorization_required', `no refresh token is held: ${LOGIN_HINT}`);
    return ok(tokens.refreshToken);
  }

  /** One refresh against the provider. Called only by the refresher, one at a time. */
  async #redeem(): Promise<Result<null>> {
    const current = this.#refreshable();
    // Another tool (or `tokend set` on another path) may have put a different
    // refresh token in the file; our own writes never differ from memory.
    const mayAdopt = this.#persistence.kind !== 'unsaved' && (current.ok || current.error.code === 'reauthorization_required');
    const adopted = mayAdopt ? await this.#adoptNewerFileToken() : null;
    if (adopted !== null) return this.#redeemToken(adopted);
    return current.ok ? this.#redeemToken(current.value) : { ok: false, error: current.error };
  }

  /** Redeem `refreshToken` (the current one, or the one it replaced), with its intent on disk first. */
  async #redeemToken(refreshToken: string): Promise<Result<null>> {
    const fp = fingerprint(refreshToken);
    const started = Date.now();
    // A stop may have begun while the file was re-read: then the provider never hears of the token.
    if (this.#stopBegun()) return err('shutting_down', 'tokend is shutting down');
    try {
      // The intent is on disk before the provider hears of the token: a crash
      // after this point is diagnosed at the next start, never silent.
      await this.#commit((cur) => ({
        ...cur,
        intent: { refreshFingerprint: fp, startedAtMs: cur.intent?.refreshFingerprint === fp ? cur.intent.startedAtMs : started },
      }));
    } catch (e) {
      this.#emit({ type: 'refresh', outcome: 'skipped', seconds: 0 });
      return toResult(e);
    }
    if (this.#stopBegun()) {
      // ...or while the intent was written: nothing was sent, so the intent is no longer true.
      await this.#commit((cur) => ({ ...cur, intent: null })).catch(() => undefined);
      return err('shutting_down', 'tokend is shutting down');
    }
    this.#log.debug({ refreshFingerprint: fp }, 'refreshing');
    const outcome = await (await this.#client()).refresh(refreshToken, this.#abandon.signal);
    const seconds = (Date.now() - started) / 1000;
    if (outcome.kind !== 'tokens') {
      this.#emit({ type: 'refresh', outcome: outcome.kind === 'transient' ? 'transient_error' : outcome.kind, seconds });
      return this.#onRefreshFailure(outcome, refreshToken);
    }
    this.#emit({ type: 'refresh', outcome: 'success', seconds });
    for (const warning of outcome.tokens.warnings) this.#log.warn({ refreshFingerprint: fp }, warning);
    await this.#adoptResponse(outcome.tokens, refreshToken);
    return ok(null);
  }

  /** Persist a fresh pair before anything else happens; keep it in memory if the disk refuses. */
  async #adoptResponse(response: TokenResponse, redeemed: string): Promise<void> {
    const now = Date.now();
    await this.#commitRotation((cur) => ({
      ...cur,
      tokens: mergeTokens(cur.tokens, response, redeemed, now, this.#opts.provider.name),
      intent: null,
    }));
    const t = this.#tokens();
    this.#log.info(
      { accessFingerprint: fingerprint(response.accessToken), expiresAt: iso(t.kind === 'active' ? t.expiresAtMs : null), version: this.#state!.version },
      'token refreshed',
    );
  }

  /**
   * Write a change the provider has already made (a rotation): if the disk
   * refuses, the change is kept in memory, served, and written again until it lands.
   */
  async #commitRotation(change: (cur: StoredState) => StoredState): Promise<void> {
    try {
      await this.#commit(change);
    } catch (e) {
      // The provider has rotated the token: the new one exists only here now.
      const cur = this.#state!;
      this.#state = { ...change(cur), version: cur.version + 1 };
      const attempts = this.#persistence.kind === 'unsaved' ? this.#persistence.attempts : 0;
      this.#persistence = { kind: 'unsaved', error: (e as Error).message, attempts };
      this.#log.error({ err: (e as Error).message }, 'refreshed tokens could not be written; keeping them in memory and retrying the write');
      this.#schedulePersistRetry();
    }
    this.#uncertain = null;
  }

  /** Act on a failed token request: the provider's answer is classified already. */
  async #onRefreshFailure(f: UpstreamFailure, redeemed: string): Promise<Result<null>> {
    switch (f.kind) {
      case 'invalid_grant':
        return this.#onRefused(f, redeemed);
      case 'bad_response': {
        const rotated = f.rotatedRefreshToken;
        if (rotated !== null && rotated !== redeemed && this.#tokens().kind !== 'none') return this.#keepRotated(f, rotated, redeemed);
        return this.#willRetry(f, redeemed);
      }
      case 'transient':
      case 'rejected':
        return this.#willRetry(f, redeemed);
    }
  }

  /**
   * A refused answer that still carried a new refresh token: the provider may
   * have rotated, so the redeemed token may be spent. Keep the new one (the
   * redeemed one as its predecessor), keep the access token, retry on the backoff schedule.
   */
  async #keepRotated(f: RetriedFailure, rotated: string, redeemed: string): Promise<Result<null>> {
    await this.#commitRotation((cur) => ({
      ...cur,
      tokens: cur.tokens.kind === 'none' ? cur.tokens : { ...cur.tokens, refreshToken: rotated, replacedRefreshToken: redeemed },
      intent: null,
    }));
    this.#log.warn(
      { refreshFingerprint: fingerprint(rotated), replacedFingerprint: fingerprint(redeemed), status: f.status, kind: f.kind },
      `${f.message}; the answer carried a new refresh token: kept it, with the one it replaces, and retrying`,
    );
    return upstreamError(f);
  }

  /** A failure the refresher retries on its backoff schedule. */
  async #willRetry(f: RetriedFailure, redeemed: string): Promise<Result<null>> {
    if (f.maybeRedeemed) {
      // The provider may have rotated the token: keep the intent open.
      this.#uncertain ??= { fingerprint: fingerprint(redeemed), sinceMs: Date.now() };
    } else {
      await this.#commit((cur) => ({ ...cur, intent: null })).catch(() => undefined);
    }
    this.#log.warn({ status: f.status, error: f.error, kind: f.kind }, f.message);
    return upstreamError(f);
  }

  /** The provider refused the refresh token: try what else is held, then declare the login lost. */
  async #onRefused(f: UpstreamFailure, redeemed: string): Promise<Result<null>> {
    const fp = fingerprint(redeemed);
    if ((await this.#adoptNewerFileToken()) !== null) return this.#redeem();
    // Tried once per refusal: when it is refused too, `redeemed` is the replaced one and this is skipped.
    const tokens = held(this.#tokens());
    const replaced = tokens?.replacedRefreshToken ?? null;
    if (replaced !== null && replaced !== redeemed && tokens?.refreshToken === redeemed) {
      this.#log.warn(
        { refreshFingerprint: fp, replacedFingerprint: fingerprint(replaced) },
        'the provider refused the refresh token: trying the one it replaced',
      );
      return this.#redeemToken(replaced);
    }
    const lost = this.#uncertain?.fingerprint === fp ? this.#uncertain : null;
    const reason = lost
      ? `the provider refused the refresh token (${f.error ?? 'invalid_grant'}); a refresh started at ${new Date(lost.sinceMs).toISOString()} was interrupted before its answer was saved, so the provider had most likely rotated it already: ${LOGIN_HINT}`
      : `the provider refused the refresh token (${f.error ?? 'invalid_grant'}): ${LOGIN_HINT}`;
    this.#condition = refused(this.#condition, reason);
    this.#publish();
    this.#log.error({ refreshFingerprint: fp, status: f.status, error: f.error }, `reauthorization required: ${reason}`);
    await this.#commit((cur) => ({ ...cur, intent: null })).catch(() => undefined);
    return err('reauthorization_required', reason, { upstream: upstreamOf(f) });
  }

  /**
   * Before a refusal is final: if the file now holds a different refresh token
   * (set by another tool), adopt it. Returns the one adopted, or null.
   */
  async #adoptNewerFileToken(): Promise<string | null> {
    const onDisk = await this.#store.peek();
    const mine = refreshTokenOf(this.#tokens());
    const theirs = onDisk ? refreshTokenOf(onDisk.tokens) : null;
    if (!onDisk || theirs === null || theirs === mine) return null;
    this.#log.warn({ refreshFingerprint: fingerprint(theirs) }, 'state file holds a different refresh token: adopting it');
    this.#state = { ...onDisk, version: Math.max(onDisk.version, this.#state?.version ?? 0) };
    this.#condition = relieved(this.#condition);
    this.#uncertain = null;
    return theirs;
  }

  #client(): Promise<TokenClient> {
    this.#oauth ??= import('../provider/oauth.js').then(({ OAuthClient }) => new OAuthClient(this.#opts.provider, this.#opts.timeouts));
    return this.#oauth;
  }

  // ---- persistence --------------------------------------------------------

  /** Compute the next state from the latest one, write it, then adopt it. Serialized. */
  #commit(change: (cur: StoredState) => StoredState): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.#phase === 'sealed') throw new TokendError('persist_failed', `not writing ${this.#opts.stateFile}: the owner has closed and released the lock`);
      const cur = this.#state!;
      const next = { ...change(cur), version: cur.version + 1 };
      const started = performance.now();
      try {
        await this.#store.save(next);
      } catch (e) {
        this.#emit({ type: 'persist', ok: false, seconds: (performance.now() - started) / 1000 });
        const error = (e as Error).message;
        // Memory stays ahead of the file if it was: a failed write does not make it match.
        this.#persistence = this.#persistence.kind === 'unsaved' ? { ...this.#persistence, error } : { kind: 'failed', error };
        this.#publish();
        throw e;
      }
      this.#emit({ type: 'persist', ok: true, seconds: (performance.now() - started) / 1000 });
      this.#state = next;
      this.#persistence = { kind: 'saved' };
      this.#lastWriteAtMs = Date.now();
      this.#publish();
    };
    const p = this.#writes.then(run, run);
    this.#writes = p.catch(() => undefined);
    return p;
  }

  async #flush(): Promise<void> {
    if (this.#persistence.kind !== 'unsaved') return;
    await this.#commit((cur) => cur).catch((e: Error) => this.#log.error({ err: e.message }, 'flush failed'));
  }

  #schedulePersistRetry(): void {
    const p = this.#persistence;
    if (this.#persistRetry || this.#phase !== 'open' || p.kind !== 'unsaved') return;
    const delay = Math.min(30_000, 500 * 2 ** p.attempts);
    this.#persistence = { ...p, attempts: p.attempts + 1 };
    this.#persistRetry = setTimeout(() => {
      this.#persistRetry = null;
      void this.#flush().then(() => {
        if (this.#persistence.kind === 'unsaved') this.#schedulePersistRetry();
        else this.#log.info({ version: this.#state?.version }, 'state written after earlier failures');
      });
    }, delay);
  }

  // ---- lock ---------------------------------------------------------------

  #onLockCompromised(e: Error): void {
    this.#condition = {
      kind: 'lock_lost',
      reason: `the lock on ${this.#opts.stateFile} was lost (another process took it over); refreshing stopped: restart tokend`,
    };
    this.#refresher.stop();
    this.#log.error({ err: e.message }, 'state file lock lost: refreshing stopped so two refreshers cannot destroy the token');
    this.#publish();
  }

  // ---- snapshot -----------------------------------------------------------

  #tokens(): TokenState {
    return this.#state?.tokens ?? noTokens;
  }

  #status(): ReturnType<typeof statusOf> {
    return statusOf(this.#condition, this.#tokens(), Date.now());
  }

  snapshot(): Snapshot {
    const s = this.#state;
    const t = this.#tokens();
    const { status, reason } = this.#status();
    const p = this.#persistence;
    return {
      seq: ++this.#seq,
      version: s?.version ?? 0,
      status,
      reason,
      token:
        t.kind === 'active'
          ? {
              accessToken: t.accessToken,
              tokenType: t.tokenType,
              scope: t.scope,
              expiresAtMs: t.expiresAtMs,
              obtainedAtMs: t.obtainedAtMs,
              fingerprint: fingerprint(t.accessToken),
              refreshFingerprint: t.refreshToken ? fingerprint(t.refreshToken) : null,
              replacedRefreshFingerprint: t.replacedRefreshToken ? fingerprint(t.replacedRefreshToken) : null,
            }
          : null,
      refresh: this.#refresher.view(),
      persist: { ok: p.kind === 'saved', lastError: p.kind === 'saved' ? null : p.error, lastWriteAtMs: this.#lastWriteAtMs },
      lockHeld: this.#lock?.held ?? false,
      stateFile: this.#opts.stateFile,
      provider: held(t)?.provider ?? this.#opts.provider.name,
      account: held(t)?.account ?? {},
    };
  }

  #publish(): void {
    if (this.#state) this.#emit({ type: 'snapshot', snapshot: this.snapshot() });
  }
}

function mergeTokens(cur: TokenState, r: TokenResponse, redeemed: string, nowMs: number, provider: string): ActiveTokens {
  return {
    kind: 'active',
    accessToken: r.accessToken,
    // A response without a refresh token keeps the one just redeemed (still valid: it was not rotated).
    refreshToken: r.refreshToken ?? redeemed,
    // Redeemed once: the token it replaced is no longer needed.
    replacedRefreshToken: null,
    tokenType: r.tokenType,
    scope: r.scope ?? held(cur)?.scope ?? null,
    // Bounded by the parser; clamped here too, so no lifetime can make the write fail.
    expiresAtMs: clampTimeMs(nowMs + r.expiresInSec * 1000),
    obtainedAtMs: nowMs,
    provider,
    account: { ...(held(cur)?.account ?? {}), ...r.account },
  };
}

/**
 * The refresh token (and its predecessor) after tokens are set: `given` null
 * means "not given", which keeps the current one; a different one replaces
 * it, and the replaced one is kept until the new one has been redeemed.
 */
function keepRefreshToken(cur: TokenState, given: string | null): Pick<ActiveTokens, 'refreshToken' | 'replacedRefreshToken'> {
  const current = refreshTokenOf(cur);
  const replaced = held(cur)?.replacedRefreshToken ?? null;
  if (given === null || given === current) return { refreshToken: current, replacedRefreshToken: replaced };
  // A replaced token not yet succeeded by a redeemed one stays: it is the last one known to work, not the one set in between.
  return { refreshToken: given, replacedRefreshToken: replaced ?? current };
}
