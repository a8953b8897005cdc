/**
 * The HTTP API. `GET /token` and `GET /state` answer from the snapshot the
 * owner pushed last: no cross-thread hop unless the token is about to expire.
 * Writes go to the owner and answer only once the change is on disk.
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
import { stateBody, tokenBody, usable } from './views.js';

export interface AccountBackend {
  readonly name: string;
  snapshot(): Snapshot; // a failed account: a Snapshot with status 'failed' and the reason
  ensureFresh(): Promise<Result<Snapshot>>;
  refresh(trigger: RefreshTrigger): Promise<Result<Snapshot>>;
  setTokens(input: SetTokensInput): Promise<Result<Snapshot>>;
}
export interface Backend {
  readonly accounts: ReadonlyMap<string, AccountBackend>; // config order
  readonly defaultAccount: string;
  readonly owner: { readonly pid: number; listen: string | null };
  metricsText(): Promise<string>;
  readonly hub: EventHub;
}

/** Until the routes take accounts: the unprefixed routes on the default account, looked up per call (a reload may change it). */
function defaultAccountOf(all: Backend): AccountBackend & Pick<Backend, 'owner' | 'metricsText' | 'hub'> {
  const current = (): AccountBackend => all.accounts.get(all.defaultAccount)!;
  return {
    get name() {
      return all.defaultAccount;
    },
    snapshot: () => current().snapshot(),
    ensureFresh: () => current().ensureFresh(),
    refresh: (trigger) => current().refresh(trigger),
    setTokens: (input) => current().setTokens(input),
    owner: all.owner,
    metricsText: () => all.metricsText(),
    hub: all.hub,
  };
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
export interface Route {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly handler: Handler;
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

function unavailable(s: Snapshot): ErrorData {
  if (s.status === 'lock_lost') return { code: 'lock_lost', message: s.reason ?? 'state-file lock lost' };
  return { code: 'reauthorization_required', message: s.reason ?? 'no usable access token: run `tokend login`' };
}

/**
 * The /token body changes only with the snapshot and the second (expires_in):
 * serialize it once per second, not once per request.
 */
let cached: { snapshot: Snapshot; second: number; body: string; headers: Record<string, string | number> } | null = null;
function sendToken(res: ServerResponse, s: Snapshot, now: number): void {
  const second = Math.floor(now / 1000);
  if (cached?.snapshot !== s || cached.second !== second) {
    const body = JSON.stringify(tokenBody(s, second * 1000));
    const headers = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' };
    cached = { snapshot: s, second, body, headers };
  }
  res.writeHead(200, cached.headers);
  res.end(cached.body);
}

export interface RouteLimits {
  /** `GET /events` subscribers at most; past it, 503 `overloaded`. */
  readonly maxEventClients: number;
}

export function routes(all: Backend, limits: RouteLimits): Route[] {
  const backend = defaultAccountOf(all);
  // Synchronous on the hot path: no promise, no microtask, no cross-thread hop.
  const getToken: Handler = (_req, res) => {
    const s = backend.snapshot();
    const now = Date.now();
    const t = s.token;
    if (t && s.status === 'ok' && !isAboutToExpire(t.obtainedAtMs, t.expiresAtMs, now)) return sendToken(res, s, now);
    return tokenAfterRefresh(res, s);
  };

  const tokenAfterRefresh = async (res: ServerResponse, s: Snapshot): Promise<void> => {
    if (s.status === 'reauthorization_required' || s.status === 'lock_lost' || s.status === 'waiting_for_login') {
      return sendError(res, unavailable(s));
    }
    const fresh = await backend.ensureFresh();
    const now = Date.now();
    const latest = fresh.ok ? fresh.value : s;
    if (usable(latest, now)) return sendToken(res, latest, now);
    return sendError(res, fresh.ok ? unavailable(latest) : fresh.error);
  };

  const refresh: Handler = async (req, res) => {
    await readJsonBody(req, false);
    const result = await backend.refresh('http');
    if (!result.ok) {
      const upstream = result.error.upstream;
      return sendError(res, result.error, undefined, upstream ? { upstream } : undefined);
    }
    const s = result.value;
    sendJson(res, 200, { ...tokenBody(s, Date.now()), version: s.version });
  };

  const setTokens: Handler = async (req, res) => {
    const body = await readJsonBody(req, true);
    const parsed = v.safeParse(setTokensSchema, body);
    if (!parsed.success) throw new TokendError('invalid_request', `invalid /set-tokens body: ${describeIssues(parsed.issues)}`);
    const b = parsed.output;
    const input: SetTokensInput = {
      accessToken: b.access_token,
      refreshToken: b.refresh_token ?? null,
      expiresInSec: b.expires_in ?? null,
      ...(b.token_type ? { tokenType: b.token_type } : {}),
      ...(b.scope !== undefined ? { scope: b.scope } : {}),
      extra: { ...(b.user_id ? { user_id: b.user_id } : {}), ...(b.client_id ? { client_id: b.client_id } : {}) },
    };
    const result = await backend.setTokens(input);
    if (!result.ok) return sendError(res, result.error);
    sendJson(res, 200, { ...tokenBody(result.value, Date.now()), version: result.value.version });
  };

  return [
    { method: 'GET', path: '/token', handler: getToken },
    { method: 'GET', path: '/state', handler: (_req, res) => sendJson(res, 200, stateBody(backend.snapshot(), Date.now(), backend.owner)) },
    { method: 'POST', path: '/refresh-tokens', handler: refresh },
    { method: 'POST', path: '/set-tokens', handler: setTokens },
    { method: 'GET', path: '/healthz', handler: (_req, res) => sendJson(res, 200, { status: 'serving' }) },
    {
      method: 'GET',
      path: '/readyz',
      handler: (_req, res) => {
        const s = backend.snapshot();
        const now = Date.now();
        if (!usable(s, now)) return fail(res, 'not_ready', `${s.status}: ${s.reason ?? 'no usable access token'}`);
        if (!s.persist.ok) return fail(res, 'not_ready', `state file cannot be written: ${s.persist.lastError ?? 'unknown error'}`);
        if (!s.lockHeld) return fail(res, 'not_ready', 'the state-file lock is not held');
        sendJson(res, 200, { status: s.status, ready: true });
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      handler: async (_req, res) => {
        const text = await backend.metricsText();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
        res.end(text);
      },
    },
    {
      method: 'GET',
      path: '/events',
      handler: (req, res) => {
        if (backend.hub.size >= limits.maxEventClients) {
          return fail(res, 'overloaded', `too many event streams open (at most ${limits.maxEventClients}): try again shortly`, { connection: 'close' });
        }
        backend.hub.subscribe(req, res);
      },
    },
  ];
}
