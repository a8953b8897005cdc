/**
 * The HTTP API. `GET /token` and `GET /state` answer from the snapshot the
 * owner pushed last: no cross-thread hop unless the token is about to expire.
 * Writes go to the owner and answer only once the change is on disk.
 *
 * Each account's routes are served at `/accounts/NAME/...`, and the
 * unprefixed ones act on the default account. An account's name is sliced
 * from the path (see `accountInPath`), never matched by a pattern.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as v from 'valibot';
import type { RefreshTrigger, Result, SetTokensInput, Snapshot } from '../shared/contract.js';
import { TokendError, type ErrorData } from '../shared/errors.js';
import { isAboutToExpire } from '../shared/expiry.js';
import { readJsonBody } from './body.js';
import { B64TOKEN, LIFETIME, MAX_TOKEN_CHARS, REFRESH_TOKEN } from '../shared/token-syntax.js';
import { describeIssues } from '../shared/validation.js';
import type { EventHub } from './events.js';
import { fail, sendError, sendJson } from './reply.js';
import { accountBody, notReadyReason, overallStatus, stateBody, tokenBody, usable } from './views.js';

/** One account as the HTTP side uses it. The snapshot is the one its owner pushed last. */
export interface AccountBackend {
  readonly name: string;
  /** A failed account (corrupt state file): status 'failed' with the reason. */
  snapshot(): Snapshot;
  ensureFresh(): Promise<Result<Snapshot>>;
  refresh(trigger: RefreshTrigger): Promise<Result<Snapshot>>;
  setTokens(input: SetTokensInput): Promise<Result<Snapshot>>;
}

/** An account that did not start (or did not stop cleanly) in a reload. */
export interface ReloadFailure {
  readonly account: string;
  readonly error: ErrorData;
}

/**
 * What a reload did, each account of the old and the new file named once
 * (an account in `failed` is also named by what was done to it), or why it
 * changed nothing: `config_invalid` with one problem each, as the log has
 * them; `reload_unavailable` (no config file); `shutting_down`, `not_ready`.
 */
export type ReloadResult =
  | {
      readonly ok: true;
      readonly started: readonly string[];
      readonly stopped: readonly string[];
      readonly restarted: readonly string[];
      readonly unchanged: readonly string[];
      readonly failed: readonly ReloadFailure[];
      readonly defaultAccount: string;
    }
  | { readonly ok: false; readonly error: ErrorData; readonly problems: readonly string[] };

export interface Backend {
  /** Every account, in configuration order. */
  readonly accounts: ReadonlyMap<string, AccountBackend>;
  /** The account the unprefixed routes act on. */
  readonly defaultAccount: string;
  readonly owner: { readonly pid: number; listen: string | null };
  metricsText(): Promise<string>;
  readonly hub: EventHub;
  /** Read the config file again and bring the accounts to it; one reload at a time, a later one waiting for the one before. */
  reload(): Promise<ReloadResult>;
}

/** What a route does with a request; `path` is the request's path without its query. */
type Handler = (req: IncomingMessage, res: ServerResponse, path: string) => void | Promise<void>;
export interface Route {
  readonly method: 'GET' | 'POST';
  /** A fixed path, or `ACCOUNT_ROUTE` followed by one (`/accounts/:account/token`). */
  readonly path: string;
  readonly handler: Handler;
}

/** The routes of a named account: `/accounts/:account/token` and its siblings. */
export const ACCOUNT_ROUTE = '/accounts/:account';
/** What a request's path starts with when it names an account. */
export const ACCOUNT_PREFIX = '/accounts/';

/** NAME in `/accounts/NAME/...`: the path is sliced, no pattern run. '' when the path names none. */
export function accountInPath(path: string): string {
  const end = path.indexOf('/', ACCOUNT_PREFIX.length);
  return end === -1 ? '' : path.slice(ACCOUNT_PREFIX.length, end);
}

const str = (min: number, max: number) => v.pipe(v.string(), v.minLength(min), v.maxLength(max));
/**
 * Token values are served in headers and environments: only the characters
 * RFC 6750 allows a bearer token (b64token), and for the refresh token
 * RFC 6749's (visible ASCII and space). Anything else (NUL, CR/LF, lone
 * surrogates) is refused.
 */
const setTokensSchema = v.strictObject({
  access_token: v.pipe(str(1, MAX_TOKEN_CHARS), v.regex(B64TOKEN, 'must be RFC 6750 token characters (A-Z a-z 0-9 - . _ ~ + / and trailing =)')),
  refresh_token: v.optional(v.nullable(v.pipe(str(1, MAX_TOKEN_CHARS), v.regex(REFRESH_TOKEN, 'must be visible ASCII characters or spaces')))),
  expires_in: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(LIFETIME.maxSec))),
  // tokend serves bearer tokens (RFC 6750); the scheme name is case-insensitive.
  token_type: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^bearer$/i, 'must be Bearer'),
      v.transform((): 'Bearer' => 'Bearer'),
    ),
  ),
  scope: v.optional(v.nullable(str(0, 4096))),
  // Provider fields worth keeping (Monzo's).
  user_id: v.optional(str(1, 256)),
  client_id: v.optional(str(1, 256)),
});

/** Why `s` serves no token, with the code of its status. */
function unavailable(s: Snapshot): ErrorData {
  switch (s.status) {
    case 'lock_lost':
      return { code: 'lock_lost', message: s.reason ?? 'state-file lock lost' };
    case 'failed':
      return { code: 'state_corrupt', message: s.reason ?? 'the account could not start: its state file cannot be read' };
    case 'ok':
    case 'expired':
    case 'waiting_for_login':
    case 'reauthorization_required':
      return { code: 'reauthorization_required', message: s.reason ?? 'no usable access token: run `tokend login`' };
  }
}

/** A status no refresh can mend: answered at once, without asking the owner. */
function refreshCannotHelp(s: Snapshot): boolean {
  switch (s.status) {
    case 'reauthorization_required':
    case 'lock_lost':
    case 'waiting_for_login':
    case 'failed':
      return true;
    case 'ok':
    case 'expired':
      return false;
  }
}

/** Longest account name (`[a-z0-9][a-z0-9_-]{0,62}`): a longer one is cut short where a message repeats it. */
const MAX_NAME_CHARS = 63;

function unknownAccount(res: ServerResponse, name: string, accounts: ReadonlyMap<string, AccountBackend>): void {
  const shown = JSON.stringify(name.length > MAX_NAME_CHARS ? `${name.slice(0, MAX_NAME_CHARS)}…` : name);
  fail(res, 'unknown_account', `no account ${shown}: the accounts are ${[...accounts.keys()].join(', ') || 'none'}`);
}

/** A /token answer ready to send: the body, serialized once, and its headers. */
interface TokenAnswer {
  readonly snapshot: Snapshot;
  readonly second: number;
  readonly body: string;
  readonly headers: Record<string, string | number>;
}

/**
 * The /token body changes only with the snapshot and the second (expires_in):
 * serialized once per second per account, not once per request. One slot per
 * account: accounts read in turn do not evict each other, and a body is
 * served only for the snapshot it was made from, so never for another account.
 */
class TokenAnswers {
  readonly #byAccount = new Map<string, TokenAnswer>();

  send(res: ServerResponse, account: string, s: Snapshot, now: number): void {
    const second = Math.floor(now / 1000);
    let answer = this.#byAccount.get(account);
    if (answer?.snapshot !== s || answer.second !== second) {
      const body = JSON.stringify(tokenBody(s, second * 1000));
      const headers = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' };
      answer = { snapshot: s, second, body, headers };
      this.#byAccount.set(account, answer);
    }
    res.writeHead(200, answer.headers);
    res.end(answer.body);
  }

  /** Forget an account no longer configured (its last token goes with it). */
  forget(account: string): void {
    this.#byAccount.delete(account);
  }
}

export interface RouteLimits {
  /** `GET /events` subscribers at most; past it, 503 `overloaded`. */
  readonly maxEventClients: number;
}

/** What an account's route does, given the account the request names (or the default). */
type AccountHandler = (account: AccountBackend, req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** The `account` query parameter of GET /events (`?account=NAME`), or null. */
function accountQuery(url: string): string | null {
  const query = url.indexOf('?');
  return query === -1 ? null : new URLSearchParams(url.slice(query + 1)).get('account');
}

export function routes(backend: Backend, limits: RouteLimits): Route[] {
  const answers = new TokenAnswers();

  /** The route on the default account (the unprefixed path). */
  const onDefault =
    (handler: AccountHandler): Handler =>
    (req, res) => {
      const account = backend.accounts.get(backend.defaultAccount);
      if (account === undefined) return unknownAccount(res, backend.defaultAccount, backend.accounts);
      return handler(account, req, res);
    };

  /** The route on the account the path names (`/accounts/NAME/...`). */
  const onNamed =
    (handler: AccountHandler): Handler =>
    (req, res, path) => {
      const name = accountInPath(path);
      const account = backend.accounts.get(name);
      if (account === undefined) {
        answers.forget(name);
        return unknownAccount(res, name, backend.accounts);
      }
      return handler(account, req, res);
    };

  // Synchronous on the hot path: no promise, no microtask, no cross-thread hop.
  const getToken: AccountHandler = (account, _req, res) => {
    const s = account.snapshot();
    const now = Date.now();
    const t = s.token;
    if (t && s.status === 'ok' && !isAboutToExpire(t.obtainedAtMs, t.expiresAtMs, now)) return answers.send(res, account.name, s, now);
    return tokenAfterRefresh(res, account, s);
  };

  const tokenAfterRefresh = async (res: ServerResponse, account: AccountBackend, s: Snapshot): Promise<void> => {
    if (refreshCannotHelp(s)) return sendError(res, unavailable(s));
    const fresh = await account.ensureFresh();
    const now = Date.now();
    const latest = fresh.ok ? fresh.value : s;
    if (usable(latest, now)) return answers.send(res, account.name, latest, now);
    return sendError(res, fresh.ok ? unavailable(latest) : fresh.error);
  };

  const getState: AccountHandler = (account, _req, res) => sendJson(res, 200, stateBody(account.snapshot(), Date.now(), backend.owner));

  const refresh: AccountHandler = async (account, req, res) => {
    await readJsonBody(req, false);
    const failed = account.snapshot();
    if (failed.status === 'failed') return sendError(res, unavailable(failed));
    const result = await account.refresh('http');
    if (!result.ok) {
      const upstream = result.error.upstream;
      return sendError(res, result.error, undefined, upstream ? { upstream } : undefined);
    }
    const s = result.value;
    sendJson(res, 200, { ...tokenBody(s, Date.now()), version: s.version });
  };

  const setTokens: AccountHandler = async (account, req, res) => {
    const body = await readJsonBody(req, true);
    const parsed = v.safeParse(setTokensSchema, body);
    if (!parsed.success) throw new TokendError('invalid_request', `invalid /set-tokens body: ${describeIssues(parsed.issues)}`);
    const failed = account.snapshot();
    if (failed.status === 'failed') return sendError(res, unavailable(failed));
    const b = parsed.output;
    const input: SetTokensInput = {
      accessToken: b.access_token,
      refreshToken: b.refresh_token ?? null,
      expiresInSec: b.expires_in ?? null,
      ...(b.token_type ? { tokenType: b.token_type } : {}),
      ...(b.scope !== undefined ? { scope: b.scope } : {}),
      extra: { ...(b.user_id ? { user_id: b.user_id } : {}), ...(b.client_id ? { client_id: b.client_id } : {}) },
    };
    const result = await account.setTokens(input);
    if (!result.ok) return sendError(res, result.error);
    sendJson(res, 200, { ...tokenBody(result.value, Date.now()), version: result.value.version });
  };

  /** GET /accounts: every account in configuration order, the default marked; no access token. */
  const listAccounts: Handler = (_req, res) => {
    const now = Date.now();
    const snapshots = [...backend.accounts].map(([name, account]) => [name, account.snapshot()] as const);
    const accounts = snapshots.map(([name, s]) => accountBody(name, name === backend.defaultAccount, s, now));
    sendJson(res, 200, {
      default_account: backend.defaultAccount,
      status: overallStatus(snapshots.map(([, s]) => s.status)),
      ready: accounts.every((a) => a['ready'] === true),
      owner: backend.owner,
      accounts,
    });
  };

  /**
   * 200 only when every account holds a usable token, can write its state
   * file and holds its lock. With one account the answer is the one-account
   * daemon's as it always was; with more, a 503 names each account not ready.
   */
  const readyz: Handler = (_req, res) => {
    const now = Date.now();
    const snapshots = [...backend.accounts].map(([name, account]) => [name, account.snapshot()] as const);
    const notReady = snapshots.flatMap(([account, s]) => {
      const reason = notReadyReason(s, now);
      return reason === null ? [] : [{ account, reason }];
    });
    const only = snapshots.length === 1 ? notReady[0] : undefined;
    if (only) return fail(res, 'not_ready', only.reason);
    if (notReady.length > 0) {
      const message = `${notReady.length} of ${snapshots.length} accounts not ready: ${notReady.map((n) => `${n.account} (${n.reason})`).join('; ')}`;
      return sendError(res, { code: 'not_ready', message }, undefined, { accounts: notReady });
    }
    sendJson(res, 200, { status: overallStatus(snapshots.map(([, s]) => s.status)), ready: true });
  };

  /**
   * POST /reload: answered once the accounts have been brought to the file
   * (a reload already running is waited for, then the file is read again).
   * An invalid file changes nothing: 422 `config_invalid` with its problems.
   */
  const reload: Handler = async (req, res) => {
    await readJsonBody(req, false);
    const r = await backend.reload();
    if (!r.ok) return sendError(res, r.error, undefined, r.error.code === 'config_invalid' ? { problems: r.problems } : undefined);
    sendJson(res, 200, {
      started: r.started,
      stopped: r.stopped,
      restarted: r.restarted,
      unchanged: r.unchanged,
      failed: r.failed.map((f) => ({ account: f.account, error: f.error.code, message: f.error.message })),
      default_account: r.defaultAccount,
    });
  };

  const events: Handler = (req, res) => {
    const account = accountQuery(req.url ?? '/');
    if (account !== null && !backend.accounts.has(account)) return unknownAccount(res, account, backend.accounts);
    if (backend.hub.size >= limits.maxEventClients) {
      return fail(res, 'overloaded', `too many event streams open (at most ${limits.maxEventClients}): try again shortly`, { connection: 'close' });
    }
    backend.hub.subscribe(req, res, account);
  };

  const perAccount: Array<[Route['method'], string, AccountHandler]> = [
    ['GET', '/token', getToken],
    ['GET', '/state', getState],
    ['POST', '/refresh-tokens', refresh],
    ['POST', '/set-tokens', setTokens],
  ];
  return [
    ...perAccount.map(([method, path, handler]): Route => ({ method, path, handler: onDefault(handler) })),
    { method: 'GET', path: '/healthz', handler: (_req, res) => sendJson(res, 200, { status: 'serving' }) },
    { method: 'GET', path: '/readyz', handler: readyz },
    {
      method: 'GET',
      path: '/metrics',
      handler: async (_req, res) => {
        const text = await backend.metricsText();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
        res.end(text);
      },
    },
    { method: 'GET', path: '/events', handler: events },
    { method: 'GET', path: '/accounts', handler: listAccounts },
    { method: 'POST', path: '/reload', handler: reload },
    ...perAccount.map(([method, path, handler]): Route => ({ method, path: `${ACCOUNT_ROUTE}${path}`, handler: onNamed(handler) })),
  ];
}
