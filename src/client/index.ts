/**
 * The tokend client library: `import { TokendClient } from 'tokend/client'`.
 *
 * @example
 * ```ts
 * const tokend = new TokendClient();
 * const token = await tokend.getAccessToken();
 * ```
 */
import { readFile } from 'node:fs/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { DEFAULT_LISTEN, defaultStateFile } from '../state-file/paths.js';
import { ownerIsLive, trustedOwnerRecord } from '../state-file/owner-record.js';
import { listenerProblem } from './listener.js';
import { decodeState } from '../state-file/codec.js';

/** `GET /token`'s answer. */
export interface AccessToken {
  readonly access_token: string;
  readonly token_type: string;
  readonly expires_at: string | null;
  readonly expires_in: number | null;
}

/** An account's status: `failed` when it could not start (its state file is corrupt or unreadable; `reason` says why). */
export type AccountStatus = 'ok' | 'waiting_for_login' | 'expired' | 'reauthorization_required' | 'lock_lost' | 'failed';

/** What `GET /state` and `GET /accounts` say of an account beyond its status and its token. */
export interface AccountDetails {
  readonly scope: string | null;
  readonly obtained_at: string | null;
  readonly access_token_fingerprint: string | null;
  readonly refresh_token_fingerprint: string | null;
  /** A refresh token replaced by hand, kept until the new one has been redeemed once. */
  readonly replaced_refresh_token_fingerprint: string | null;
  readonly provider: string;
  readonly account: Readonly<Record<string, string>>;
  readonly version: number;
  readonly state_file: string;
  readonly lock_held: boolean;
  readonly refresh: {
    readonly in_flight: boolean;
    readonly next_at: string | null;
    readonly last_attempt_at: string | null;
    readonly last_success_at: string | null;
    readonly last_error: { readonly error: string; readonly message: string } | null;
    readonly consecutive_failures: number;
  };
  readonly persist: { readonly ok: boolean; readonly last_error: string | null; readonly last_write_at: string | null };
}

/** The daemon holding the state: its pid and where it listens. */
export interface DaemonOwner {
  readonly pid: number;
  readonly listen: string | null;
}

/** `GET /state`'s answer (see the README's HTTP API section). */
export interface DaemonState extends AccountDetails {
  readonly status: AccountStatus;
  readonly reason: string | null;
  readonly ready: boolean;
  readonly access_token?: string;
  readonly token_type?: string;
  readonly expires_at?: string | null;
  readonly expires_in?: number | null;
  readonly owner: DaemonOwner;
}

/** One account in `GET /accounts`: its state without the access token. */
export interface AccountSummary extends AccountDetails {
  readonly name: string;
  /** The account the unprefixed routes (and a client without `account`) act on. */
  readonly default: boolean;
  readonly status: AccountStatus;
  readonly reason: string | null;
  readonly ready: boolean;
  readonly expires_at: string | null;
  readonly expires_in: number | null;
}

/** `GET /accounts`'s answer. */
export interface AccountsState {
  readonly default_account: string;
  /** `ok` when every account is ok, else the status of the first (in configuration order) that is not. */
  readonly status: AccountStatus;
  /** Every account ready. */
  readonly ready: boolean;
  readonly owner: DaemonOwner;
  /** In configuration order. */
  readonly accounts: readonly AccountSummary[];
}

/** `POST /reload`'s answer: what the reload did, each account named once (by its name in the file). */
export interface ReloadReport {
  /** Accounts new in the file, started. */
  readonly started: readonly string[];
  /** Accounts no longer in the file, stopped (their state flushed, their locks released). */
  readonly stopped: readonly string[];
  /** Accounts whose settings changed (or that had failed), stopped and started again. */
  readonly restarted: readonly string[];
  /** Accounts left running untouched. */
  readonly unchanged: readonly string[];
  /** Accounts among the above that did not start, or did not stop cleanly, with why. */
  readonly failed: readonly { readonly account: string; readonly error: string; readonly message: string }[];
  /** The account the unprefixed routes now act on. */
  readonly default_account: string;
}

/** One server-sent event from `GET /events`. */
export interface TokenEvent {
  readonly id: string;
  /** The account whose token or status changed. */
  readonly account: string;
  readonly status: AccountStatus;
  readonly reason: string | null;
  readonly version: number;
  readonly access_token?: string;
  readonly token_type?: string;
  readonly expires_at?: string | null;
  readonly expires_in?: number | null;
}

/** An error answered by the daemon (`code` is its `error` field) or `daemon_unreachable`. */
export class TokendClientError extends Error {
  override readonly name = 'TokendClientError';
  constructor(
    readonly code: string,
    message: string,
    readonly status: number | null,
    readonly body?: Readonly<Record<string, unknown>>,
  ) {
    super(message);
  }
}

/**
 * How long `reload()` waits at least: each account the reload stops may first
 * let a refresh in flight finish (up to the daemon's shutdown timeout), and a
 * reload asked for while another runs waits for that one.
 */
export const RELOAD_TIMEOUT_MS = 120_000;

export interface TokendClientOptions {
  /** `http://127.0.0.1:4242`, `127.0.0.1:4242` or `unix:/path`. Default: `TOKEND_LISTEN`, then the owner record, then 127.0.0.1:4242. */
  readonly url?: string;
  /**
   * The account whose token, state, refresh and tokens this client asks for
   * (`/accounts/NAME/...`), and whose changes `onChange` reports. Default: the
   * daemon's default account (and `onChange` reports every account's).
   * An account the daemon does not have fails with code `unknown_account`.
   */
  readonly account?: string;
  /** Default: `TOKEND_API_KEY`, then the file named by `TOKEND_API_KEY_FILE`. */
  readonly apiKey?: string;
  /** State file whose owner record locates the daemon. Default: `TOKEND_STATE_FILE`, then the default path. */
  readonly stateFile?: string;
  /** A cached token is fetched again this long before it expires. Default 30 s. */
  readonly refreshMarginMs?: number;
  /** Per-request deadline. Default 30 s (a refresh may be in flight). */
  readonly timeoutMs?: number;
  /** Told why an owner record was ignored (one another user could have written). Default: silent. */
  readonly onWarning?: (message: string) => void;
}

interface Target {
  /** As located: `HOST:PORT`, a URL or `unix:/path`. */
  readonly where: string;
  readonly origin: string;
  readonly dispatcher: Dispatcher;
  readonly display: string;
}

/**
 * Where the daemon listens, as `HOST:PORT` or `unix:/path`, by the documented
 * precedence. The owner record counts only when no other user could have
 * written it (owned by this user or root, in a directory only they can write).
 */
export function locateDaemon(
  opts: { url?: string | undefined; stateFile?: string | undefined; onWarning?: ((message: string) => void) | undefined } = {},
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (opts.url) return opts.url;
  if (env['TOKEND_LISTEN']) return env['TOKEND_LISTEN'];
  const stateFile = opts.stateFile ?? (env['TOKEND_STATE_FILE'] || env['store_path'] || defaultStateFile(env));
  const record = trustedOwnerRecord(stateFile, opts.onWarning);
  if (record?.listen && ownerIsLive(record)) return record.listen;
  return DEFAULT_LISTEN;
}

function target(where: string): Target {
  if (where.startsWith('unix:')) {
    const socketPath = where.slice(5);
    return { where, origin: 'http://localhost', dispatcher: new Agent({ connect: { socketPath } }), display: where };
  }
  const origin = /^https?:\/\//.test(where) ? where.replace(/\/+$/, '') : `http://${where}`;
  return { where, origin, dispatcher: new Agent({ keepAliveTimeout: 4_000 }), display: origin };
}

async function apiKeyFromEnv(env: NodeJS.ProcessEnv): Promise<string | null> {
  if (env['TOKEND_API_KEY']) return env['TOKEND_API_KEY'];
  const file = env['TOKEND_API_KEY_FILE'];
  if (!file) return null;
  return readFile(file, 'utf8').then(
    (key) => key.trim() || null,
    () => null,
  );
}

export class TokendClient {
  readonly #target: Target;
  /** Checked once, before anything is sent (see listener.ts). */
  #listenerChecked = false;
  readonly #apiKey: Promise<string | null>;
  readonly #marginMs: number;
  readonly #timeoutMs: number;
  /** `/accounts/NAME` for a named account, '' for the default one. */
  readonly #prefix: string;
  readonly #account: string | null;
  #cached: { token: AccessToken; expiresAtMs: number | null } | null = null;
  #fetching: Promise<AccessToken> | null = null;

  constructor(options: TokendClientOptions = {}) {
    this.#target = target(locateDaemon(options));
    this.#apiKey = options.apiKey ? Promise.resolve(options.apiKey) : apiKeyFromEnv(process.env);
    this.#marginMs = options.refreshMarginMs ?? 30_000;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#account = options.account ?? null;
    this.#prefix = options.account === undefined ? '' : `/accounts/${encodeURIComponent(options.account)}`;
  }

  /** The daemon's address, for messages. */
  get address(): string {
    return this.#target.display;
  }

  /**
   * The current access token. Cached until `refreshMarginMs` before expiry;
   * any number of concurrent callers share one request.
   */
  async getAccessToken(): Promise<string> {
    const c = this.#cached;
    if (c && (c.expiresAtMs === null ? false : c.expiresAtMs - Date.now() > this.#marginMs)) return c.token.access_token;
    return (await this.token()).access_token;
  }

  /** The account this client acts on, or null for the daemon's default account. */
  get account(): string | null {
    return this.#account;
  }

  /** `GET /token`, uncached but shared among concurrent callers. */
  token(): Promise<AccessToken> {
    this.#fetching ??= this.#call<AccessToken>('GET', `${this.#prefix}/token`)
      .then((token) => {
        this.#cached = { token, expiresAtMs: token.expires_at ? Date.parse(token.expires_at) : null };
        return token;
      })
      .finally(() => {
        this.#fetching = null;
      });
    return this.#fetching;
  }

  /** `GET /state`. */
  state(): Promise<DaemonState> {
    return this.#call('GET', `${this.#prefix}/state`);
  }

  /** `GET /accounts`: every account the daemon holds, in configuration order (whatever this client's `account`). */
  accounts(): Promise<AccountsState> {
    return this.#call('GET', '/accounts');
  }

  /** `POST /refresh-tokens`: refresh now (joining a refresh in flight); resolves once the new token is on disk. */
  async refresh(): Promise<AccessToken & { version: number }> {
    const token = await this.#call<AccessToken & { version: number }>('POST', `${this.#prefix}/refresh-tokens`);
    this.#cached = { token, expiresAtMs: token.expires_at ? Date.parse(token.expires_at) : null };
    return token;
  }

  /**
   * `POST /reload`: the daemon reads its config file again and brings its
   * accounts to it; resolves once it has (a reload already running is waited
   * for first). Fails with code `config_invalid` (the problems in
   * `body.problems`; nothing changed) or `reload_unavailable` (the daemon was
   * configured without a config file). Waits up to `RELOAD_TIMEOUT_MS` (or
   * `timeoutMs` when longer): a stopped account may first let a refresh in
   * flight finish.
   */
  reload(): Promise<ReloadReport> {
    return this.#call('POST', '/reload', undefined, Math.max(this.#timeoutMs, RELOAD_TIMEOUT_MS));
  }

  /** `POST /set-tokens`. */
  setTokens(body: {
    access_token: string;
    refresh_token?: string | null;
    expires_in?: number;
    token_type?: string;
    scope?: string | null;
    user_id?: string;
    client_id?: string;
  }): Promise<AccessToken & { version: number }> {
    this.#cached = null;
    return this.#call('POST', `${this.#prefix}/set-tokens`, body);
  }

  /** `GET /readyz`: true when every account of the daemon holds a usable token and can persist. */
  async ready(): Promise<boolean> {
    try {
      await this.#call('GET', '/readyz');
      return true;
    } catch (err) {
      if (err instanceof TokendClientError && err.status === 503) return false;
      throw err;
    }
  }

  /**
   * Call `cb` on every token change (`GET /events`): of this client's
   * account, or of every account when it names none. Reconnects with
   * `Last-Event-ID` when the connection drops. Returns a function that stops.
   */
  onChange(cb: (event: TokenEvent) => void, onError?: (err: Error) => void): () => void {
    const abort = new AbortController();
    let lastId: string | null = null;
    const loop = async (): Promise<void> => {
      while (!abort.signal.aborted) {
        try {
          this.#checkListener();
          const key = await this.#apiKey;
          const headers: Record<string, string> = { accept: 'text/event-stream' };
          if (key) headers['authorization'] = `Bearer ${key}`;
          if (lastId) headers['last-event-id'] = lastId;
          const events = this.#account === null ? '/events' : `/events?account=${encodeURIComponent(this.#account)}`;
          const res = await request(`${this.#target.origin}${events}`, { dispatcher: this.#target.dispatcher, headers, signal: abort.signal });
          if (res.statusCode !== 200) {
            const text = await res.body.text();
            throw errorFrom(res.statusCode, text);
          }
          let buffer = '';
          for await (const chunk of res.body) {
            buffer += (chunk as Buffer).toString('utf8');
            let end: number;
            while ((end = buffer.indexOf('\n\n')) !== -1) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const event = parseFrame(frame);
              if (event) {
                lastId = event.id;
                if (this.#cached && event.access_token) this.#cached = null;
                cb(event);
              }
            }
          }
        } catch (err) {
          if (abort.signal.aborted) return;
          onError?.(err as Error);
        }
        if (!abort.signal.aborted) await new Promise((r) => setTimeout(r, 1_000).unref());
      }
    };
    void loop();
    return () => abort.abort();
  }

  #checkListener(): void {
    if (this.#listenerChecked) return;
    const problem = listenerProblem(this.#target.where);
    if (problem !== null) throw new TokendClientError('untrusted_listener', problem, null);
    this.#listenerChecked = true;
  }

  async #call<T>(method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = this.#timeoutMs): Promise<T> {
    this.#checkListener();
    const key = await this.#apiKey;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (key) headers['authorization'] = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.#target.origin}${path}`, {
        method,
        headers,
        dispatcher: this.#target.dispatcher,
        signal: AbortSignal.timeout(timeoutMs),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).name;
      throw new TokendClientError('daemon_unreachable', `tokend is not reachable at ${this.#target.display} (${code}): is it running?`, null);
    }
    const text = await res.body.text();
    if (res.statusCode >= 200 && res.statusCode < 300) return JSON.parse(text) as T;
    throw errorFrom(res.statusCode, text);
  }

  async close(): Promise<void> {
    await this.#target.dispatcher.close();
  }
}

function errorFrom(status: number, text: string): TokendClientError {
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    const asString = (value: unknown, fallback: string): string => (typeof value === 'string' ? value : fallback);
    return new TokendClientError(asString(body['error'], 'http_error'), asString(body['message'], `HTTP ${status}`), status, body);
  } catch {
    return new TokendClientError('http_error', `HTTP ${status}`, status);
  }
}

function parseFrame(frame: string): TokenEvent | null {
  let id = '';
  let data = '';
  for (const line of frame.split('\n')) {
    if (line.startsWith('id: ')) id = line.slice(4);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (data === '') return null;
  return { id, ...(JSON.parse(data) as Omit<TokenEvent, 'id'>) };
}

/** What a process that reads the state file directly (without the lock) sees. */
export interface StateFileView {
  readonly accessToken: string | null;
  readonly tokenType: string;
  readonly expiresAt: Date | null;
  readonly version: number;
}

/**
 * Read the state file directly, without taking the lock. The owner replaces
 * the file atomically, so a read sees the old content or the new, never half.
 */
export async function readStateFile(path: string = process.env['TOKEND_STATE_FILE'] || defaultStateFile()): Promise<StateFileView> {
  const { state } = decodeState(await readFile(path, 'utf8'), path);
  const t = state.tokens.kind === 'active' ? state.tokens : null;
  return {
    accessToken: t?.accessToken ?? null,
    tokenType: t?.tokenType ?? 'Bearer',
    expiresAt: t?.expiresAtMs ? new Date(t.expiresAtMs) : null,
    version: state.version,
  };
}
