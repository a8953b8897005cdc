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
import type { OwnerEvent, OwnerOptions, Result, SetTokensInput, Snapshot, DaemonStatus, RefreshTrigger } from '../shared/contract.js';
import { TokendError, type ErrorData } from '../shared/errors.js';
import { fingerprint } from '../shared/fingerprint.js';
import type { Log } from '../shared/log.js';
import type { StoredState, StoredTokens } from '../state-file/codec.js';
import { StateLock } from './lock.js';
import type { OAuthClient, TokenResponse, UpstreamFailure } from '../provider/oauth.js';
import { clampTimeMs, iso } from '../state-file/codec.js';
import { Refresher } from './refresher.js';
import { isAboutToExpire } from '../shared/expiry.js';
import { StateStore } from './store.js';

const LOGIN_HINT = 'run `tokend login` to authorize again';
/** How long close() waits for an abandoned token request to give up before the lock is released anyway. */
const ABANDON_GRACE_MS = 2_000;

/** What the owner needs of the provider client (a fake one in unit tests). */
export type TokenClient = Pick<OAuthClient, 'refresh' | 'close'>;

const ok = <T>(value: T): Result<T> => ({ ok: true, value });
const err = (code: ErrorData['code'], message: string, details?: Record<string, unknown>): Result<never> => ({
  ok: false,
  error: details ? { code, message, details } : { code, message },
});
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
  /** Set once the lock is released: nothing may be written after that. */
  #sealed = false;
  readonly #refresher: Refresher;

  #state: StoredState | null = null;
  /** Set when the state in memory is newer than the file (a failed write after a rotation). */
  #unsaved = false;
  #persistError: string | null = null;
  #lastWriteAtMs: number | null = null;
  #persistRetry: NodeJS.Timeout | null = null;
  #persistAttempts = 0;
  #reauthReason: string | null = null;
  #lockLost = false;
  #closing = false;
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
      redeem: () => this.#redeem(),
      canRefresh: () => this.#canRefresh(),
      token: () => this.#state?.tokens ?? null,
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
      this.#log.info({ stateFile: this.#opts.stateFile, ...real, version: state.version, status: this.#status() }, 'state loaded');
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
    const t = state.tokens;
    const held = [t?.refreshToken, t?.replacedRefreshToken].some((token) => token && fingerprint(token) === intent.refreshFingerprint);
    if (held) {
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
    if (this.#closing) return Promise.resolve(err('shutting_down', 'tokend is shutting down'));
    return this.#refresher.run(trigger).then((r) => (r.ok ? ok(this.snapshot()) : r));
  }

  async ensureFresh(): Promise<Result<Snapshot>> {
    const t = this.#state?.tokens;
    if (t && t.accessToken !== '' && !isAboutToExpire(t.obtainedAtMs, t.expiresAtMs, Date.now())) return ok(this.snapshot());
    const result = await this.refresh('read');
    // A failed refresh still leaves a token that has not yet expired usable.
    if (!result.ok && this.#usable()) return ok(this.snapshot());
    return result;
  }

  /** Tokens from `tokend set`, `tokend login` or the HTTP API: persisted, then published, then scheduled. */
  async setTokens(input: SetTokensInput): Promise<Result<Snapshot>> {
    if (this.#closing) return err('shutting_down', 'tokend is shutting down');
    if (this.#lockLost) return err('lock_lost', this.#lockLostMessage());
    const now = Date.now();
    try {
      // Waits for an in-flight refresh: its result must not overwrite these tokens.
      await this.#refresher.settled();
      await this.#commit((cur) => ({
        ...cur,
        tokens: {
          accessToken: input.accessToken,
          ...keepRefreshToken(cur.tokens, input.refreshToken),
          tokenType: input.tokenType ?? 'Bearer',
          scope: input.scope ?? cur.tokens?.scope ?? null,
          expiresAtMs: input.expiresInSec === null ? null : clampTimeMs(now + input.expiresInSec * 1000),
          obtainedAtMs: now,
          provider: this.#opts.provider.name,
          account: { ...(cur.tokens?.account ?? {}), ...(input.extra ?? {}) },
        },
        intent: null,
      }));
    } catch (e) {
      return toResult(e);
    }
    this.#reauthReason = null;
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
    this.#closing = true;
    this.#refresher.stop();
    if (!(await this.#refresher.settled(timeoutMs))) {
      // Releasing the lock under a live request would let its answer be written without the lock.
      this.#log.warn({ timeoutMs }, 'refresh still in flight at shutdown: abandoning the token request');
      this.#abandon.abort();
      if (!(await this.#refresher.settled(ABANDON_GRACE_MS))) this.#log.error('the abandoned refresh did not end; its answer, if any, will not be written');
    }
    if (this.#persistRetry) clearTimeout(this.#persistRetry);
    if (this.#unsaved) await this.#flush();
    await this.#writes.catch(() => undefined);
    this.#sealed = true;
    await this.#lock?.release();
    if (this.#oauth) await (await this.#oauth).close();
    this.#log.info({ version: this.#state?.version, unsaved: this.#unsaved }, 'owner closed');
    return ok(null);
  }

  // ---- refresh ------------------------------------------------------------

  #stopBegun(): boolean {
    return this.#closing || this.#abandon.signal.aborted;
  }

  #canRefresh(): ErrorData | null {
    if (this.#closing) return { code: 'shutting_down', message: 'tokend is shutting down' };
    if (this.#lockLost) return { code: 'lock_lost', message: this.#lockLostMessage() };
    const tokens = this.#state?.tokens;
    if (!tokens) return { code: 'reauthorization_required', message: `no tokens yet: ${LOGIN_HINT.replace('again', '')}`.trim() };
    if (this.#reauthReason) return { code: 'reauthorization_required', message: this.#reauthReason };
    if (!tokens.refreshToken) return { code: 'reauthorization_required', message: `no refresh token is held: ${LOGIN_HINT}` };
    return null;
  }

  /** One refresh against the provider. Called only by the refresher, one at a time. */
  async #redeem(): Promise<Result<null>> {
    const blocked = this.#canRefresh();
    // Another tool (or `tokend set` on another path) may have put a different
    // refresh token in the file; our own writes never differ from memory.
    const adopted = !this.#unsaved && (blocked === null || blocked.code === 'reauthorization_required') && (await this.#adoptNewerFileToken());
    if (blocked && !adopted) return { ok: false, error: blocked };
    return this.#redeemToken(this.#state!.tokens!.refreshToken!);
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
    let response: TokenResponse;
    try {
      this.#log.debug({ refreshFingerprint: fp }, 'refreshing');
      response = await (await this.#client()).refresh(refreshToken, this.#abandon.signal);
    } catch (caught) {
      const seconds = (Date.now() - started) / 1000;
      if ((caught as Error).name !== 'UpstreamFailure') throw caught;
      const e = caught as UpstreamFailure;
      this.#emit({ type: 'refresh', outcome: e.kind === 'transient' ? 'transient_error' : e.kind, seconds });
      return this.#onRefreshFailure(e, refreshToken);
    }
    this.#emit({ type: 'refresh', outcome: 'success', seconds: (Date.now() - started) / 1000 });
    for (const warning of response.warnings) this.#log.warn({ refreshFingerprint: fp }, warning);
    await this.#adoptResponse(response, refreshToken);
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
    this.#log.info(
      { accessFingerprint: fingerprint(response.accessToken), expiresAt: iso(this.#state!.tokens!.expiresAtMs), version: this.#state!.version },
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
      this.#unsaved = true;
      this.#persistError = (e as Error).message;
      this.#log.error({ err: (e as Error).message }, 'refreshed tokens could not be written; keeping them in memory and retrying the write');
      this.#schedulePersistRetry();
    }
    this.#uncertain = null;
  }

  /**
   * A refused answer that still carried a new refresh token: the provider may
   * have rotated, so the redeemed token may be spent. Keep the new one (the
   * redeemed one as its predecessor), keep the access token, retry on the backoff schedule.
   */
  async #keepRotated(e: UpstreamFailure, rotated: string, redeemed: string): Promise<Result<null>> {
    await this.#commitRotation((cur) => ({
      ...cur,
      tokens: cur.tokens ? { ...cur.tokens, refreshToken: rotated, replacedRefreshToken: redeemed } : null,
      intent: null,
    }));
    this.#log.warn(
      { refreshFingerprint: fingerprint(rotated), replacedFingerprint: fingerprint(redeemed), status: e.status, kind: e.kind },
      `${e.message}; the answer carried a new refresh token: kept it, with the one it replaces, and retrying`,
    );
    return err('upstream_error', e.message, { upstream: { status: e.status, error: e.error }, retryAfterMs: e.retryAfterMs });
  }

  async #onRefreshFailure(e: UpstreamFailure, redeemed: string): Promise<Result<null>> {
    const fp = fingerprint(redeemed);
    const rotated = e.rotatedRefreshToken;
    if (rotated !== null && rotated !== redeemed && this.#state?.tokens) return this.#keepRotated(e, rotated, redeemed);
    if (e.kind === 'invalid_grant') {
      if (await this.#adoptNewerFileToken()) return this.#redeem();
      // Tried once per refusal: when it is refused too, `redeemed` is the replaced one and this is skipped.
      const replaced = this.#state?.tokens?.replacedRefreshToken ?? null;
      if (replaced !== null && replaced !== redeemed && this.#state?.tokens?.refreshToken === redeemed) {
        this.#log.warn(
          { refreshFingerprint: fp, replacedFingerprint: fingerprint(replaced) },
          'the provider refused the refresh token: trying the one it replaced',
        );
        return this.#redeemToken(replaced);
      }
      const lost = this.#uncertain?.fingerprint === fp ? this.#uncertain : null;
      this.#reauthReason = lost
        ? `the provider refused the refresh token (${e.error ?? 'invalid_grant'}); a refresh started at ${new Date(lost.sinceMs).toISOString()} was interrupted before its answer was saved, so the provider had most likely rotated it already: ${LOGIN_HINT}`
        : `the provider refused the refresh token (${e.error ?? 'invalid_grant'}): ${LOGIN_HINT}`;
      this.#publish();
      this.#log.error({ refreshFingerprint: fp, status: e.status, error: e.error }, `reauthorization required: ${this.#reauthReason}`);
      await this.#commit((cur) => ({ ...cur, intent: null })).catch(() => undefined);
      return err('reauthorization_required', this.#reauthReason, { upstream: { status: e.status, error: e.error } });
    }
    if (e.status === null || (e.status >= 200 && e.status < 300)) {
      // No answer, or a success refused as malformed: the provider may have rotated the token. Keep the intent open.
      this.#uncertain ??= { fingerprint: fp, sinceMs: Date.now() };
    } else {
      await this.#commit((cur) => ({ ...cur, intent: null })).catch(() => undefined);
    }
    this.#log.warn({ status: e.status, error: e.error, kind: e.kind }, e.message);
    return err('upstream_error', e.message, { upstream: { status: e.status, error: e.error }, retryAfterMs: e.retryAfterMs });
  }

  /**
   * Before a refusal is final: if the file now holds a different refresh token
   * (set by another tool), adopt it. True when one was adopted.
   */
  async #adoptNewerFileToken(): Promise<boolean> {
    const onDisk = await this.#store.peek();
    const mine = this.#state?.tokens?.refreshToken ?? null;
    const theirs = onDisk?.tokens?.refreshToken ?? null;
    if (!onDisk || theirs === null || theirs === mine) return false;
    this.#log.warn({ refreshFingerprint: fingerprint(theirs) }, 'state file holds a different refresh token: adopting it');
    this.#state = { ...onDisk, version: Math.max(onDisk.version, this.#state?.version ?? 0) };
    this.#reauthReason = null;
    this.#uncertain = null;
    return true;
  }

  #client(): Promise<TokenClient> {
    this.#oauth ??= import('../provider/oauth.js').then(({ OAuthClient }) => new OAuthClient(this.#opts.provider, this.#opts.timeouts));
    return this.#oauth;
  }

  // ---- persistence --------------------------------------------------------

  /** Compute the next state from the latest one, write it, then adopt it. Serialized. */
  #commit(change: (cur: StoredState) => StoredState): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.#sealed) throw new TokendError('persist_failed', `not writing ${this.#opts.stateFile}: the owner has closed and released the lock`);
      const cur = this.#state!;
      const next = { ...change(cur), version: cur.version + 1 };
      const started = performance.now();
      try {
        await this.#store.save(next);
      } catch (e) {
        this.#emit({ type: 'persist', ok: false, seconds: (performance.now() - started) / 1000 });
        this.#persistError = (e as Error).message;
        this.#publish();
        throw e;
      }
      this.#emit({ type: 'persist', ok: true, seconds: (performance.now() - started) / 1000 });
      this.#state = next;
      this.#unsaved = false;
      this.#persistError = null;
      this.#persistAttempts = 0;
      this.#lastWriteAtMs = Date.now();
      this.#publish();
    };
    const p = this.#writes.then(run, run);
    this.#writes = p.catch(() => undefined);
    return p;
  }

  async #flush(): Promise<void> {
    if (!this.#unsaved) return;
    await this.#commit((cur) => cur).catch((e: Error) => this.#log.error({ err: e.message }, 'flush failed'));
  }

  #schedulePersistRetry(): void {
    if (this.#persistRetry || this.#closing) return;
    const delay = Math.min(30_000, 500 * 2 ** this.#persistAttempts++);
    this.#persistRetry = setTimeout(() => {
      this.#persistRetry = null;
      void this.#flush().then(() => {
        if (this.#unsaved) this.#schedulePersistRetry();
        else this.#log.info({ version: this.#state?.version }, 'state written after earlier failures');
      });
    }, delay);
  }

  // ---- lock ---------------------------------------------------------------

  #onLockCompromised(e: Error): void {
    this.#lockLost = true;
    this.#refresher.stop();
    this.#log.error({ err: e.message }, 'state file lock lost: refreshing stopped so two refreshers cannot destroy the token');
    this.#publish();
  }

  #lockLostMessage(): string {
    return `the lock on ${this.#opts.stateFile} was lost (another process took it over); refreshing stopped: restart tokend`;
  }

  // ---- snapshot -----------------------------------------------------------

  #usable(): boolean {
    const t = this.#state?.tokens;
    return !!t && t.accessToken !== '' && (t.expiresAtMs === null || t.expiresAtMs > Date.now());
  }

  #status(): DaemonStatus {
    if (this.#lockLost) return 'lock_lost';
    if (this.#reauthReason) return 'reauthorization_required';
    const t = this.#state?.tokens;
    if (!t) return 'waiting_for_login';
    if (!this.#usable()) return 'expired';
    return 'ok';
  }

  snapshot(): Snapshot {
    const s = this.#state;
    const t = s?.tokens ?? null;
    const status = this.#status();
    const r = this.#refresher.view();
    return {
      seq: ++this.#seq,
      version: s?.version ?? 0,
      status,
      reason:
        status === 'reauthorization_required'
          ? this.#reauthReason
          : status === 'waiting_for_login'
            ? 'no tokens yet: run `tokend login` (or `tokend set`)'
            : status === 'lock_lost'
              ? this.#lockLostMessage()
              : null,
      token:
        t && t.accessToken !== ''
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
      refresh: r,
      persist: { ok: this.#persistError === null, lastError: this.#persistError, lastWriteAtMs: this.#lastWriteAtMs },
      lockHeld: this.#lock?.held ?? false,
      stateFile: this.#opts.stateFile,
      provider: t?.provider ?? this.#opts.provider.name,
      account: t?.account ?? {},
    };
  }

  #publish(): void {
    if (this.#state) this.#emit({ type: 'snapshot', snapshot: this.snapshot() });
  }
}

function mergeTokens(cur: StoredTokens | null, r: TokenResponse, redeemed: string, nowMs: number, provider: string): StoredTokens {
  return {
    accessToken: r.accessToken,
    // A response without a refresh token keeps the one just redeemed (still valid: it was not rotated).
    refreshToken: r.refreshToken ?? redeemed,
    // Redeemed once: the token it replaced is no longer needed.
    replacedRefreshToken: null,
    tokenType: r.tokenType,
    scope: r.scope ?? cur?.scope ?? null,
    // Bounded by the parser; clamped here too, so no lifetime can make the write fail.
    expiresAtMs: clampTimeMs(nowMs + r.expiresInSec * 1000),
    obtainedAtMs: nowMs,
    provider,
    account: { ...(cur?.account ?? {}), ...r.account },
  };
}

/**
 * The refresh token (and its predecessor) after tokens are set: `given` null
 * means "not given", which keeps the current one; a different one replaces
 * it, and the replaced one is kept until the new one has been redeemed.
 */
function keepRefreshToken(cur: StoredTokens | null, given: string | null): Pick<StoredTokens, 'refreshToken' | 'replacedRefreshToken'> {
  const current = cur?.refreshToken ?? null;
  if (given === null || given === current) return { refreshToken: current, replacedRefreshToken: cur?.replacedRefreshToken ?? null };
  // A replaced token not yet succeeded by a redeemed one stays: it is the last one known to work, not the one set in between.
  return { refreshToken: given, replacedRefreshToken: cur?.replacedRefreshToken ?? current };
}
