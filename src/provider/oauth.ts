/**
 * The only code that talks to the provider's token endpoint (undici).
 *
 * OAuth names stay OAuth names on the wire; they become camelCase here, once.
 * Every call has connect, header and body timeouts and a hard deadline
 * (undici's own timers can fire late). Every response body is consumed, or
 * the connection pool starves and the next request hangs.
 * What a token request comes to is classified in one pure function
 * (`classifyTokenAnswer`) and returned, never thrown: `invalid_grant` (and
 * Monzo's `unauthorized.bad_refresh_token*`, GitHub's `bad_refresh_token`) is
 * final; network errors, timeouts, 5xx and 429 are transient.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { ClientAuthMethod, ProviderSettings, UpstreamTimeouts } from '../shared/contract.js';
import { holdsSecret, scrubCode, scrubText } from './provider-text.js';
import { parseRetryAfter } from './retry-after.js';
import { insecureEndpoint } from '../shared/endpoint.js';
import { B64TOKEN, LIFETIME, MAX_TOKEN_CHARS, REFRESH_TOKEN } from '../shared/token-syntax.js';
import { BodyTooLarge, BodyUndecodable, MAX_BODY_BYTES, readBody } from './upstream-body.js';

export interface TokenResponse {
  readonly accessToken: string;
  readonly refreshToken: string | null;
  readonly tokenType: string;
  readonly scope: string | null;
  /** The lifetime to store: what the provider said, bounded (see `warnings`); a default when it said nothing usable. */
  readonly expiresInSec: number;
  /** Provider fields worth keeping (Monzo's user_id, client_id). */
  readonly account: Readonly<Record<string, string>>;
  /** What was bounded or ignored in the answer, for a warning in the log. Never holds a token value. */
  readonly warnings: readonly string[];
}

interface FailureOf<K extends string> {
  readonly kind: K;
  readonly message: string;
  /** null: no answer was read (or none was asked for). */
  readonly status: number | null;
  /** The provider's error code, scrubbed; or tokend's name for what happened instead of an answer (`aborted`, `insecure_endpoint`). */
  readonly error: string | null;
}

/** What the owner needs to retry a failure that is not final. */
interface RetryData {
  /** Retry-After, in ms: the provider asked for this pause. */
  readonly retryAfterMs: number | null;
  /**
   * No answer was read, or a success was refused: the provider may have
   * redeemed (and rotated) the refresh token without tokend holding its successor.
   */
  readonly maybeRedeemed: boolean;
}

/** A failed request to the provider, in its words. Plain data, never holding a token but `rotatedRefreshToken`. */
export type UpstreamFailure =
  /** Worth retrying soon: no answer, 408, 425, 429, 5xx. */
  | (FailureOf<'transient'> & RetryData)
  /** Any other refusal (4xx, a redirect, an endpoint tokend sends no secret to): retried on the backoff schedule all the same. */
  | (FailureOf<'rejected'> & RetryData)
  /** The provider refused the refresh token: final, only a new login helps. */
  | FailureOf<'invalid_grant'>
  /**
   * A success tokend cannot use. When it still carried a new refresh token
   * (`rotatedRefreshToken`), the provider may have rotated: the redeemed one
   * is spent and this one must be kept.
   */
  | (FailureOf<'bad_response'> & RetryData & { readonly rotatedRefreshToken: string | null });

/** The failures retried on the backoff schedule: all but a refused refresh token. */
export type RetriedFailure = Exclude<UpstreamFailure, { readonly kind: 'invalid_grant' }>;

/** What a token request came to: the tokens, or a failure of one kind with what a retry needs. */
export type TokenOutcome = { readonly kind: 'tokens'; readonly tokens: TokenResponse } | UpstreamFailure;

const maybeRedeemed = (status: number | null): boolean => status === null || (status >= 200 && status < 300);
const transient = (message: string, status: number | null, error: string | null, retryAfterMs: number | null = null): UpstreamFailure => ({
  kind: 'transient',
  message,
  status,
  error,
  retryAfterMs,
  maybeRedeemed: maybeRedeemed(status),
});
const rejected = (message: string, status: number | null, error: string | null, retryAfterMs: number | null = null): UpstreamFailure => ({
  kind: 'rejected',
  message,
  status,
  error,
  retryAfterMs,
  maybeRedeemed: maybeRedeemed(status),
});

const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** What was sent in a token request, so the answer can be checked against it and scrubbed of it. */
export interface SentRequest {
  /** Every secret in the request: the refresh token or code, the code verifier, the client secret, the Basic credentials. */
  readonly secrets: readonly string[];
  /** The refresh token redeemed, if this was a refresh. */
  readonly redeemed: string | null;
}

const NOTHING_SENT: SentRequest = { secrets: [], redeemed: null };

/** Visible ASCII, no space: for account fields (Monzo's user_id, client_id) shown in /state. */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
/** RFC 6749 scope: scope-tokens of visible ASCII but `"` and `\`, separated by single spaces. */
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/;
const MAX_SCOPE_CHARS = 4096;
const MAX_ACCOUNT_CHARS = 256;

function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/** The body as an object whose fields are read as own properties only (a `__proto__` key is data, never a prototype). */
function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return Object.assign(Object.create(null) as Record<string, unknown>, parsed);
  } catch {
    // not JSON: null
  }
  return null;
}

/** How a value that is not usable is named in a warning: never the value itself unless it is a number. */
function describe(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string')
    return /^\d{1,20}$/.test(value) ? `"${value}"` : /^\d+$/.test(value) ? 'a string of over 20 digits' : 'a string that is not decimal digits';
  if (value === null) return 'null';
  return Array.isArray(value) ? 'a list' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * The lifetime to store for `expires_in`, bounded, and a warning when it was
 * not used as said. Absent is legal (RFC 6749) but still said: tokend then
 * assumes an hour.
 */
export function boundLifetime(value: unknown): { sec: number; warning: string | null } {
  const { defaultSec, minSec, maxSec } = LIFETIME;
  if (value === undefined) return { sec: defaultSec, warning: `the provider gave no expires_in: assuming ${defaultSec} s` };
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (Number.isNaN(n) || n <= 0)
    return { sec: defaultSec, warning: `expires_in ${describe(value)} is not a positive number of seconds: assuming ${defaultSec} s` };
  if (n < minSec) return { sec: minSec, warning: `expires_in ${describe(value)} is below the floor of ${minSec} s: using ${minSec} s` };
  if (n > maxSec) return { sec: maxSec, warning: `expires_in ${describe(value)} is above the ceiling of 10 years: using ${maxSec} s` };
  return { sec: Math.round(n), warning: null };
}

/** What came of a request: its answer, read whole, or why none was. */
export type Reply =
  | { readonly kind: 'answer'; readonly status: number; readonly headers: Readonly<Record<string, string | string[] | undefined>>; readonly text: string }
  /** Network, timeout, a body over the cap or undecodable, abandoned: `error` names which, `message` says it. */
  | { readonly kind: 'unread'; readonly error: string; readonly message: string };

/**
 * Classify what came of a token request. Pure: the reply in; tokens, or a
 * failure with what a retry needs, out. An unread answer is transient with
 * status null: the provider may have acted on a request whose answer tokend
 * never saw. Whatever of the provider's words a failure repeats is scrubbed
 * of `sent.secrets`; an answer that is refused but carries a new, valid
 * refresh token hands it on (`rotatedRefreshToken`), since the provider may
 * have spent the one redeemed.
 */
export function classifyTokenAnswer(reply: Reply, nowMs: number, sent: SentRequest = NOTHING_SENT): TokenOutcome {
  if (reply.kind === 'unread') return transient(reply.message, null, reply.error);
  const { status, text } = reply;
  const body = jsonObject(text);
  // Some providers (GitHub) answer an OAuth error with 200: without an access token, it is the error it says.
  const errorIn200 = body !== null && body['access_token'] === undefined && str(body['error']) !== null;
  if (status < 200 || status >= 300 || errorIn200) return providerRefusal(status, reply.headers['retry-after'], body, nowMs, sent);
  const badResponse = (why: string, rotatedRefreshToken: string | null = null): UpstreamFailure => ({
    kind: 'bad_response',
    message: `provider answered ${status} ${why}`,
    status,
    error: null,
    retryAfterMs: null,
    maybeRedeemed: maybeRedeemed(status),
    rotatedRefreshToken,
  });
  if (body === null) return badResponse('with a body that is not a JSON object');
  const refresh = body['refresh_token'];
  // A refresh token in a 2xx answer may be the only live one (the provider may have spent the one redeemed):
  // whatever its characters, it is kept. Only a value that is not a string at all, or absurdly long, is refused.
  if (refresh !== undefined && refresh !== null && refresh !== '' && !(typeof refresh === 'string' && refresh.length <= MAX_TOKEN_CHARS)) {
    return badResponse(`with a refresh_token that is not a string (or is over ${MAX_TOKEN_CHARS} characters)`);
  }
  const refreshToken = str(refresh);
  const rotated = refreshToken !== null && refreshToken !== sent.redeemed ? refreshToken : null;
  const access = body['access_token'];
  if (str(access) === null) return badResponse('without an access_token', rotated);
  if (typeof access !== 'string' || access.length > MAX_TOKEN_CHARS || !B64TOKEN.test(access)) {
    return badResponse(`with an access_token that is not RFC 6750 token characters (or over ${MAX_TOKEN_CHARS} characters)`, rotated);
  }
  const type = body['token_type'];
  if (type !== undefined && type !== null && type !== '' && !(typeof type === 'string' && /^bearer$/i.test(type))) {
    const named = typeof type === 'string' ? scrubCode(type, sent.secrets) : null;
    return badResponse(`with token_type ${named ?? describe(type)}, not Bearer`, rotated);
  }
  const warnings: string[] = [];
  if (refreshToken !== null && !REFRESH_TOKEN.test(refreshToken))
    warnings.push('the refresh_token has characters outside RFC 6749 (visible ASCII and space): kept all the same');
  const lifetime = boundLifetime(body['expires_in']);
  if (lifetime.warning) warnings.push(lifetime.warning);
  const own = [...sent.secrets, access, ...(refreshToken ? [refreshToken] : [])];
  const tokens: TokenResponse = {
    accessToken: access,
    refreshToken,
    tokenType: 'Bearer',
    scope: readScope(body['scope'], warnings),
    expiresInSec: lifetime.sec,
    account: readAccount(body, own, warnings),
    warnings,
  };
  return { kind: 'tokens', tokens };
}

/** A non-2xx answer (or an error in a 200) as a failure, in the provider's words, scrubbed. */
function providerRefusal(
  status: number,
  retryAfter: string | string[] | undefined,
  body: Record<string, unknown> | null,
  nowMs: number,
  sent: SentRequest,
): UpstreamFailure {
  const rawError = str(body?.['error']) ?? str(body?.['code']);
  const error = scrubCode(rawError, sent.secrets);
  const rawDescription = str(body?.['error_description']) ?? str(body?.['message']);
  const description = rawDescription === null ? '' : scrubText(rawDescription, sent.secrets);
  const words = `${error ?? (rawError === null ? `HTTP ${status}` : `HTTP ${status}, an error that is not an error code`)}${description ? `: ${description}` : ''}`;
  if (error === 'invalid_grant' || error === 'bad_refresh_token' || error?.startsWith('unauthorized.bad_refresh_token')) {
    return { kind: 'invalid_grant', message: `provider refused the refresh token (${words})`, status, error };
  }
  const retryAfterMs = parseRetryAfter(retryAfter, nowMs);
  if (status >= 300 && status < 400) {
    return rejected(
      `provider answered ${status}, a redirect: tokend does not follow redirects for token requests (configure the URL it points to)`,
      status,
      error,
    );
  }
  if (TRANSIENT_STATUS.has(status)) return transient(`provider answered ${status} (${words})`, status, error, retryAfterMs);
  return rejected(`provider rejected the request with ${status} (${words})`, status, error, retryAfterMs);
}

/** The granted scope, when it is one; otherwise ignored with a warning (tokend only shows it). */
function readScope(value: unknown, warnings: string[]): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value === 'string' && value.length <= MAX_SCOPE_CHARS && SCOPE.test(value)) return value;
  warnings.push(`scope (${describe(value)}) is not a space-separated list of scope tokens of at most ${MAX_SCOPE_CHARS} characters: ignored`);
  return null;
}

/** Provider fields worth keeping (Monzo's user_id, client_id): short visible ASCII holding no secret, else ignored with a warning. */
function readAccount(body: Record<string, unknown>, secrets: readonly string[], warnings: string[]): Record<string, string> {
  const account: Record<string, string> = {};
  for (const key of ['user_id', 'client_id']) {
    const value = body[key];
    if (value === undefined || value === null || value === '') continue;
    if (typeof value === 'string' && value.length <= MAX_ACCOUNT_CHARS && VISIBLE_ASCII.test(value) && !holdsSecret(value, secrets)) {
      account[key] = value;
    } else {
      warnings.push(`${key} is not visible ASCII of at most ${MAX_ACCOUNT_CHARS} characters, or holds a token: ignored`);
    }
  }
  return account;
}

/** The form body and headers for a token request, with the client authenticated as configured. */
export function tokenRequest(
  provider: Pick<ProviderSettings, 'clientId' | 'clientSecret'> & { readonly authMethod: ClientAuthMethod },
  params: Record<string, string>,
): { body: string; headers: Record<string, string> } {
  const form = new URLSearchParams(params);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  const method: ClientAuthMethod = provider.clientSecret === null ? 'none' : provider.authMethod;
  if (method === 'client_secret_basic' && provider.clientSecret !== null) {
    const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
    headers['authorization'] = `Basic ${Buffer.from(`${enc(provider.clientId)}:${enc(provider.clientSecret)}`).toString('base64')}`;
  } else {
    form.set('client_id', provider.clientId);
    if (method === 'client_secret_post' && provider.clientSecret !== null) form.set('client_secret', provider.clientSecret);
  }
  return { body: form.toString(), headers };
}

/** The secrets in a token request: every parameter but the grant type and redirect URI, the client secret, the Basic credentials. */
function secretsOf(params: Record<string, string>, clientSecret: string | null, headers: Record<string, string>): string[] {
  const secrets = Object.entries(params)
    .filter(([name]) => name !== 'grant_type' && name !== 'redirect_uri')
    .map(([, value]) => value);
  if (clientSecret !== null) secrets.push(clientSecret);
  if (headers['authorization']) secrets.push(headers['authorization'].replace(/^Basic /, ''));
  return secrets;
}

interface Outgoing {
  readonly method?: 'GET' | 'POST';
  readonly body?: string;
  readonly headers: Record<string, string>;
  readonly dispatcher?: Dispatcher;
}

/**
 * One request and its whole answer, read up to the body cap within the
 * deadline; or, when anything (network, timeout, a body over the cap,
 * `signal`) leaves the answer unread, why. Never throws.
 */
async function exchange(what: string, url: string, options: Outgoing, totalMs: number, signal?: AbortSignal): Promise<Reply> {
  const deadline = AbortSignal.timeout(totalMs);
  try {
    const res = await request(url, { ...options, signal: signal ? AbortSignal.any([signal, deadline]) : deadline });
    const headers = res.headers as Record<string, string | string[] | undefined>;
    return { kind: 'answer', status: res.statusCode, headers, text: await readBody(res.body, headers) };
  } catch (err) {
    if (signal?.aborted) return { kind: 'unread', error: 'aborted', message: `${what} was abandoned before its answer was read (shutting down)` };
    if (err instanceof BodyTooLarge)
      return { kind: 'unread', error: 'answer_too_large', message: `${what} failed: the answer was over ${MAX_BODY_BYTES / 1024 / 1024} MiB and was not read` };
    if (err instanceof BodyUndecodable) return { kind: 'unread', error: 'answer_undecodable', message: `${what} failed: ${err.message}` };
    const code = networkErrorCode(err);
    const how = /TIMEOUT|TimeoutError/.test(code) ? `timed out (${code})` : code;
    return { kind: 'unread', error: code, message: `${what} failed: ${how}` };
  }
}

/** What tokend needs from an issuer's discovery document. */
export interface Discovery {
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly authMethods: readonly string[];
  readonly pkceS256: boolean;
  /**
   * RFC 8628 `device_authorization_endpoint`, or null when the issuer names
   * none. Not checked here: the device login refuses one it must not send
   * the client's credentials to, and a normal login never uses it.
   */
  readonly deviceAuthorizationEndpoint: string | null;
}

export type DiscoveryOutcome = { readonly kind: 'discovered'; readonly discovery: Discovery } | UpstreamFailure;

/**
 * Fetch `<issuer>/.well-known/openid-configuration`. Failures are transient
 * (the issuer may be down), but a document tokend must not trust is refused:
 * an issuer reached in clear, a document naming another issuer (RFC 8414
 * §3.3), endpoints that are not secure URLs. Endpoints on another origin
 * than the issuer are accepted: large providers do that (Google's token
 * endpoint is on oauth2.googleapis.com).
 */
export async function discover(issuer: string, timeouts: UpstreamTimeouts, dispatcher?: Dispatcher, signal?: AbortSignal): Promise<DiscoveryOutcome> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const where = `discovery at ${safeUrl(url)}`;
  const insecure = insecureEndpoint(issuer);
  if (insecure) return rejected(`${where} refused: the issuer ${insecure}`, null, 'insecure_endpoint');
  const reply = await exchange(where, url, { headers: { accept: 'application/json' }, ...(dispatcher ? { dispatcher } : {}) }, timeouts.totalMs, signal);
  if (reply.kind === 'unread') return transient(reply.message, null, reply.error);
  const { status, text } = reply;
  const doc = jsonObject(text) ?? {};
  const auth = str(doc['authorization_endpoint']);
  const token = str(doc['token_endpoint']);
  if (status !== 200 || !auth || !token) {
    const redirect = status >= 300 && status < 400 ? ' (a redirect, which tokend does not follow)' : '';
    return transient(`${where} answered ${status}${redirect} without authorization_endpoint and token_endpoint`, status, null);
  }
  const named = str(doc['issuer']);
  if (named !== null && named.replace(/\/+$/, '') !== issuer.replace(/\/+$/, '')) {
    return rejected(`${where} names another issuer (${safeUrl(named)}): refused`, status, 'issuer_mismatch');
  }
  for (const [name, endpoint] of [
    ['authorization_endpoint', auth],
    ['token_endpoint', token],
  ] as const) {
    const why = insecureEndpoint(endpoint);
    if (why) return rejected(`${where}: its ${name} ${safeUrl(endpoint)} ${why}: refused`, status, 'insecure_endpoint');
  }
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  const methods = list(doc['token_endpoint_auth_methods_supported']);
  const discovery: Discovery = {
    authorizationEndpoint: auth,
    tokenEndpoint: token,
    // RFC 8414: absent means client_secret_basic only.
    authMethods: methods.length > 0 ? methods : ['client_secret_basic'],
    pkceS256: list(doc['code_challenge_methods_supported']).includes('S256'),
    deviceAuthorizationEndpoint: str(doc['device_authorization_endpoint']),
  };
  return { kind: 'discovered', discovery };
}

/** The configured method, or the best the issuer offers. */
export function chooseAuthMethod(configured: ClientAuthMethod | null, offered: readonly string[], hasSecret: boolean): ClientAuthMethod {
  if (configured) return configured;
  if (!hasSecret) return 'none';
  return offered.includes('client_secret_basic') || !offered.includes('client_secret_post') ? 'client_secret_basic' : 'client_secret_post';
}

type ResolvedProvider = ProviderSettings & { readonly authMethod: ClientAuthMethod };

export class OAuthClient {
  #provider: ProviderSettings;
  readonly #timeouts: UpstreamTimeouts;
  readonly #dispatcher: Dispatcher;

  constructor(provider: ProviderSettings, timeouts: UpstreamTimeouts, dispatcher?: Dispatcher) {
    this.#provider = provider;
    this.#timeouts = timeouts;
    this.#dispatcher =
      dispatcher ??
      new Agent({
        connect: { timeout: timeouts.connectMs },
        headersTimeout: timeouts.headersMs,
        bodyTimeout: timeouts.bodyMs,
        keepAliveTimeout: 4_000,
      });
  }

  /**
   * `signal` abandons the request (a deliberate second stop request): it then
   * fails as transient with status null, since the provider may have rotated.
   * An answer already read is classified as if `signal` had not fired.
   */
  refresh(refreshToken: string, signal?: AbortSignal): Promise<TokenOutcome> {
    return this.#post({ grant_type: 'refresh_token', refresh_token: refreshToken }, signal);
  }

  exchangeCode(code: string, redirectUri: string, codeVerifier: string | null): Promise<TokenOutcome> {
    const params: Record<string, string> = { grant_type: 'authorization_code', code, redirect_uri: redirectUri };
    if (codeVerifier !== null) params['code_verifier'] = codeVerifier;
    return this.#post(params);
  }

  /** Resolve the token endpoint (and auth method) from the issuer once, on first use. */
  async #resolved(signal?: AbortSignal): Promise<{ readonly kind: 'resolved'; readonly provider: ResolvedProvider } | UpstreamFailure> {
    const p = this.#provider;
    if (p.tokenUrl === '' && p.issuer) {
      const d = await discover(p.issuer, this.#timeouts, this.#dispatcher, signal);
      if (d.kind !== 'discovered') return d;
      const { tokenEndpoint, authMethods } = d.discovery;
      this.#provider = { ...p, tokenUrl: tokenEndpoint, authMethod: chooseAuthMethod(p.authMethod, authMethods, p.clientSecret !== null) };
    } else if (p.authMethod === null) {
      this.#provider = { ...p, authMethod: p.clientSecret === null ? 'none' : 'client_secret_basic' };
    }
    return { kind: 'resolved', provider: this.#provider as ResolvedProvider };
  }

  async #post(params: Record<string, string>, signal?: AbortSignal): Promise<TokenOutcome> {
    const resolved = await this.#resolved(signal);
    if (resolved.kind !== 'resolved') return resolved;
    const provider = resolved.provider;
    const what = `token request to ${safeUrl(provider.tokenUrl)}`;
    const insecure = insecureEndpoint(provider.tokenUrl);
    // Refused before anything is sent: the client secret never leaves.
    if (insecure) return rejected(`${what} refused: the token endpoint ${insecure}`, null, 'insecure_endpoint');
    const { body, headers } = tokenRequest(provider, params);
    const reply = await exchange(what, provider.tokenUrl, { method: 'POST', body, headers, dispatcher: this.#dispatcher }, this.#timeouts.totalMs, signal);
    const sent = { secrets: secretsOf(params, provider.clientSecret, headers), redeemed: params['refresh_token'] ?? null };
    return classifyTokenAnswer(reply, Date.now(), sent);
  }

  /** At the owner's close: nothing may still be waited for (an abandoned request included), so connections are destroyed, not drained. */
  async close(): Promise<void> {
    await this.#dispatcher.destroy().catch(() => undefined);
  }
}

/** A stable name for a network failure: undici's UND_ERR_* or the system's E* code, else the error's name. */
export function networkErrorCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  const cause = (err as { cause?: { code?: unknown } }).cause?.code;
  if (typeof cause === 'string') return cause;
  return (err as Error).name ?? 'Error';
}

/** A URL fit for a message: no credentials, no query, no control characters, not too long (it may come from a provider). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return scrubText(`${u.protocol}//${u.host}${u.pathname}`, [], 200);
  } catch {
    return '(invalid URL)';
  }
}

export type ApprovalState = 'approved' | 'pending' | 'unknown';

/**
 * Monzo: after login, data endpoints answer 403 `forbidden.insufficient_permissions`
 * until the user approves access in the Monzo app. Not a token failure.
 */
export async function monzoApproval(apiBase: string, accessToken: string): Promise<ApprovalState> {
  const url = `${apiBase.replace(/\/+$/, '')}/accounts`;
  const res = await exchange(
    `approval check at ${safeUrl(url)}`,
    url,
    { headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } },
    10_000,
  );
  if (res.kind === 'unread') return 'unknown';
  if (res.status === 200) return 'approved';
  if (res.status === 403 && res.text.includes('insufficient_permissions')) return 'pending';
  return 'unknown';
}
