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
 */
import type { OwnerEvent, OwnerOptions, Result, SetTokensInput, Snapshot, DaemonStatus, RefreshTrigger } from '../contract.js';
import { TokendError, type ErrorData } from '../errors.js';
import { fingerprint } from '../fingerprint.js';
import type { Log } from '../log.js';
import type { StoredState, StoredTokens } from './codec.js';
import { StateLock } from './lock.js';
import type { OAuthClient, TokenResponse, UpstreamFailure } from './oauth.js';
import { Refresher } from './refresher.js';
import { isAboutToExpire } from '../expiry.js';
import { StateStore } from './store.js';

const LOGIN_HINT = 'run `tokend login` to authorize again';

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
  readonly #lock: StateLock;
  /** Loaded on the first refresh: a start with a valid token never loads undici. */
  #oauth: Promise<OAuthClient> | null = null;
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

  constructor(opts: OwnerOptions, log: Log, emit: (event: OwnerEvent) => void) {
    this.#opts = opts;
    this.#log = log;
    this.#emit = emit;
    this.#store = new StateStore(opts.stateFile);
    this.#lock = new StateLock(opts.stateFile);
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
      await this.#lock.acquire(this.#opts.owner, (e) => this.#onLockCompromised(e));
      const [{ state, movedAsideTo }] = await Promise.all([this.#store.load(this.#opts.moveCorruptAside), this.#store.removeStrayTemps()]);
      if (movedAsideTo) this.#log.warn({ movedAsideTo }, 'state file was corrupt: moved aside, starting without tokens');
      this.#state = state;
      if (state.intent && state.tokens?.refreshToken && state.intent.refreshFingerprint === fingerprint(state.tokens.refreshToken)) {
        this.#uncertain = { fingerprint: state.intent.refreshFingerprint, sinceMs: state.intent.startedAtMs };
        this.#log.warn(
          { refreshFingerprint: state.intent.refreshFingerprint, startedAt: new Date(state.intent.startedAtMs).toISOString() },
          'a refresh was interrupted before its result was saved; retrying it',
        );
      }
      this.#log.info({ stateFile: this.#opts.stateFile, version: state.version, status: this.#status() }, 'state loaded');
      this.#publish();
      this.#refresher.schedule();
      return ok(this.snapshot());
    } catch (e) {
      await this.#lock.release().catch(() => undefined);
      return toResult(e);
    }
  }

  setListen(listen: string): Promise<void> {
    return this.#lock.setListen(listen);
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
          refreshToken: input.refreshToken,
          tokenType: input.tokenType ?? 'Bearer',
          scope: input.scope ?? cur.tokens?.scope ?? null,
          expiresAtMs: input.expiresInSec === null ? null : now + input.expiresInSec * 1000,
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

  /** See OwnerApi.hurry. */
  hurry(): void {
    // Implemented with the abortable token request (oauth.ts).
  }

  async close(timeoutMs: number): Promise<Result<null>> {
    this.#closing = true;
    this.#refresher.stop();
    const settled = await this.#refresher.settled(timeoutMs);
    if (!settled) this.#log.warn({ timeoutMs }, 'refresh still in flight at shutdown; its answer, if any, will be lost');
    if (this.#persistRetry) clearTimeout(this.#persistRetry);
    if (this.#unsaved) await this.#flush();
    await this.#writes.catch(() => undefined);
    await this.#lock.release();
    if (this.#oauth) await (await this.#oauth).close();
    this.#log.info({ version: this.#state?.version, unsaved: this.#unsaved }, 'owner closed');
    return ok(null);
  }

  // ---- refresh ------------------------------------------------------------

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
    const refreshToken = this.#state!.tokens!.refreshToken!;
    const fp = fingerprint(refreshToken);
    const started = Date.now();
    try {
      // The intent is on disk before the provider hears of the token: a crash
      // after this point is diagnosed at the next start, never silent.
      await this.#commit((cur) => ({ ...cur, intent: { refreshFingerprint: fp, startedAtMs: cur.intent?.refreshFingerprint === fp ? cur.intent.startedAtMs : started } }));
    } catch (e) {
      this.#emit({ type: 'refresh', outcome: 'skipped', seconds: 0 });
      return toResult(e);
    }
    let response: TokenResponse;
    try {
      this.#log.debug({ refreshFingerprint: fp }, 'refreshing');
      response = await (await this.#client()).refresh(refreshToken);
    } catch (caught) {
      const seconds = (Date.now() - started) / 1000;
      if ((caught as Error).name !== 'UpstreamFailure') throw caught;
      const e = caught as UpstreamFailure;
      this.#emit({ type: 'refresh', outcome: e.kind === 'transient' ? 'transient_error' : e.kind, seconds });
      return this.#onRefreshFailure(e, fp);
    }
    this.#emit({ type: 'refresh', outcome: 'success', seconds: (Date.now() - started) / 1000 });
    await this.#adoptResponse(response);
    return ok(null);
  }

  /** Persist a fresh pair before anything else happens; keep it in memory if the disk refuses. */
  async #adoptResponse(response: TokenResponse): Promise<void> {
    const now = Date.now();
    const next = (cur: StoredState): StoredState => ({
      ...cur,
      tokens: mergeTokens(cur.tokens, response, now, this.#opts.provider.name),
      intent: null,
    });
    try {
      await this.#commit(next);
    } catch (e) {
      // The provider has rotated the token: the new pair exists only here now.
      const cur = this.#state!;
      this.#state = { ...next(cur), version: cur.version + 1 };
      this.#unsaved = true;
      this.#persistError = (e as Error).message;
      this.#log.error({ err: (e as Error).message }, 'refreshed tokens could not be written; keeping them in memory and retrying the write');
      this.#schedulePersistRetry();
    }
    this.#uncertain = null;
    this.#log.info(
      { accessFingerprint: fingerprint(response.accessToken), expiresAt: isoOrNull(this.#state!.tokens!.expiresAtMs), version: this.#state!.version },
      'token refreshed',
    );
  }

  async #onRefreshFailure(e: UpstreamFailure, fp: string): Promise<Result<null>> {
    if (e.kind === 'invalid_grant') {
      if (await this.#adoptNewerFileToken()) return this.#redeem();
      const lost = this.#uncertain?.fingerprint === fp ? this.#uncertain : null;
      this.#reauthReason = lost
        ? `the provider refused the refresh token (${e.error ?? 'invalid_grant'}); a refresh started at ${new Date(lost.sinceMs).toISOString()} was interrupted before its answer was saved, so the provider had most likely rotated it already: ${LOGIN_HINT}`
        : `the provider refused the refresh token (${e.error ?? 'invalid_grant'}): ${LOGIN_HINT}`;
      this.#publish();
      this.#log.error({ refreshFingerprint: fp, status: e.status, error: e.error }, `reauthorization required: ${this.#reauthReason}`);
      await this.#commit((cur) => ({ ...cur, intent: null })).catch(() => undefined);
      return err('reauthorization_required', this.#reauthReason, { upstream: { status: e.status, error: e.error } });
    }
    if (e.status === null) {
      // No answer: the provider may have rotated the token. Keep the intent open.
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

  #client(): Promise<OAuthClient> {
    this.#oauth ??= import('./oauth.js').then(({ OAuthClient }) => new OAuthClient(this.#opts.provider, this.#opts.timeouts));
    return this.#oauth;
  }

  // ---- persistence --------------------------------------------------------

  /** Compute the next state from the latest one, write it, then adopt it. Serialized. */
  #commit(change: (cur: StoredState) => StoredState): Promise<void> {
    const run = async (): Promise<void> => {
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
            }
          : null,
      refresh: r,
      persist: { ok: this.#persistError === null, lastError: this.#persistError, lastWriteAtMs: this.#lastWriteAtMs },
      lockHeld: this.#lock.held,
      stateFile: this.#opts.stateFile,
      provider: t?.provider ?? this.#opts.provider.name,
      account: t?.account ?? {},
    };
  }

  #publish(): void {
    if (this.#state) this.#emit({ type: 'snapshot', snapshot: this.snapshot() });
  }
}

function mergeTokens(cur: StoredTokens | null, r: TokenResponse, nowMs: number, provider: string): StoredTokens {
  return {
    accessToken: r.accessToken,
    // A response without a refresh token keeps the current one.
    refreshToken: r.refreshToken ?? cur?.refreshToken ?? null,
    tokenType: r.tokenType,
    scope: r.scope ?? cur?.scope ?? null,
    // Bounded by the parser: a provider that omits expires_in gets an hour (refreshing at once would loop).
    expiresAtMs: nowMs + r.expiresInSec * 1000,
    obtainedAtMs: nowMs,
    provider,
    account: { ...(cur?.account ?? {}), ...r.account },
  };
}

const isoOrNull = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
