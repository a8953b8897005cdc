/**
 * The only code that talks to the provider's token endpoint (undici).
 *
 * OAuth names stay OAuth names on the wire; they become camelCase here, once.
 * Every call has connect, header and body timeouts and a hard deadline
 * (undici's own timers can fire late). Every response body is consumed, or
 * the connection pool starves and the next request hangs.
 * Failures are classified in one pure function: `invalid_grant` (and Monzo's
 * `unauthorized.bad_refresh_token*`) is final; network errors, timeouts, 5xx
 * and 429 are transient.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { ClientAuthMethod, ProviderSettings, UpstreamTimeouts } from '../contract.js';
import { parseRetryAfter } from './schedule.js';

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

export type FailureKind = 'transient' | 'invalid_grant' | 'bad_response' | 'rejected';

/** A failed token request, in the provider's words. Never holds a token. */
export class UpstreamFailure extends Error {
  override readonly name = 'UpstreamFailure';
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly status: number | null,
    readonly error: string | null,
    readonly retryAfterMs: number | null,
    /**
     * A refused answer that still carried a new refresh token: the provider
     * may have rotated, so the redeemed one is spent and this one must be kept.
     */
    readonly rotatedRefreshToken: string | null = null,
  ) {
    super(message);
  }
}

const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/** Classify a token endpoint's answer. Pure: status, headers and body text in; tokens or a failure out. */
export function parseTokenResponse(status: number, retryAfter: string | string[] | undefined, text: string, nowMs: number): TokenResponse {
  let body: Record<string, unknown> | null = null;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
  } catch {
    body = null;
  }
  if (status < 200 || status >= 300) {
    const error = str(body?.['error']) ?? str(body?.['code']);
    const description = str(body?.['error_description']) ?? str(body?.['message']);
    const words = `${error ?? `HTTP ${status}`}${description ? `: ${description}` : ''}`;
    if (error === 'invalid_grant' || error?.startsWith('unauthorized.bad_refresh_token')) {
      return fail('invalid_grant', `provider refused the refresh token (${words})`, status, error, null);
    }
    const retryAfterMs = parseRetryAfter(retryAfter, nowMs);
    if (TRANSIENT_STATUS.has(status)) return fail('transient', `provider answered ${status} (${words})`, status, error, retryAfterMs);
    return fail('rejected', `provider rejected the request with ${status} (${words})`, status, error, retryAfterMs);
  }
  if (body === null) return fail('bad_response', `provider answered ${status} with a body that is not a JSON object`, status, null, null);
  const accessToken = str(body['access_token']);
  if (accessToken === null) return fail('bad_response', `provider answered ${status} without an access_token`, status, null, null);
  const expiresIn = body['expires_in'];
  const expiresInSec = typeof expiresIn === 'number' && expiresIn > 0 ? expiresIn : typeof expiresIn === 'string' && /^\d+$/.test(expiresIn) ? Number(expiresIn) : null;
  const account: Record<string, string> = {};
  for (const key of ['user_id', 'client_id']) {
    const value = str(body[key]);
    if (value !== null) account[key] = value;
  }
  return {
    accessToken,
    refreshToken: str(body['refresh_token']),
    tokenType: str(body['token_type']) ?? 'Bearer',
    scope: str(body['scope']),
    expiresInSec: expiresInSec ?? 3600,
    account,
    warnings: [],
  };
}

function fail(kind: FailureKind, message: string, status: number | null, error: string | null, retryAfterMs: number | null): never {
  throw new UpstreamFailure(kind, message, status, error, retryAfterMs);
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

/** What tokend needs from an issuer's discovery document. */
export interface Discovery {
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly authMethods: readonly string[];
  readonly pkceS256: boolean;
}

/** Fetch `<issuer>/.well-known/openid-configuration`. Failures are transient (the issuer may be down). */
export async function discover(issuer: string, timeouts: UpstreamTimeouts, dispatcher?: Dispatcher): Promise<Discovery> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let status: number;
  let text: string;
  try {
    const res = await request(url, { signal: AbortSignal.timeout(timeouts.totalMs), headers: { accept: 'application/json' }, ...(dispatcher ? { dispatcher } : {}) });
    status = res.statusCode;
    text = await res.body.text();
  } catch (err) {
    throw new UpstreamFailure('transient', `discovery at ${safeUrl(url)} failed: ${networkErrorCode(err)}`, null, null, null);
  }
  let doc: Record<string, unknown> = {};
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // reported below
  }
  const auth = str(doc['authorization_endpoint']);
  const token = str(doc['token_endpoint']);
  if (status !== 200 || !auth || !token) {
    throw new UpstreamFailure('transient', `discovery at ${safeUrl(url)} answered ${status} without authorization_endpoint and token_endpoint`, status, null, null);
  }
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  const methods = list(doc['token_endpoint_auth_methods_supported']);
  return {
    authorizationEndpoint: auth,
    tokenEndpoint: token,
    // RFC 8414: absent means client_secret_basic only.
    authMethods: methods.length > 0 ? methods : ['client_secret_basic'],
    pkceS256: list(doc['code_challenge_methods_supported']).includes('S256'),
  };
}

/** The configured method, or the best the issuer offers. */
export function chooseAuthMethod(configured: ClientAuthMethod | null, offered: readonly string[], hasSecret: boolean): ClientAuthMethod {
  if (configured) return configured;
  if (!hasSecret) return 'none';
  return offered.includes('client_secret_basic') || !offered.includes('client_secret_post') ? 'client_secret_basic' : 'client_secret_post';
}

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

  /** `signal` abandons the request (a deliberate second stop request): it then fails as transient, with no answer. */
  refresh(refreshToken: string, signal?: AbortSignal): Promise<TokenResponse> {
    return this.#post({ grant_type: 'refresh_token', refresh_token: refreshToken }, signal);
  }

  exchangeCode(code: string, redirectUri: string, codeVerifier: string | null): Promise<TokenResponse> {
    const params: Record<string, string> = { grant_type: 'authorization_code', code, redirect_uri: redirectUri };
    if (codeVerifier !== null) params['code_verifier'] = codeVerifier;
    return this.#post(params);
  }

  /** Resolve the token endpoint (and auth method) from the issuer once, on first use. */
  async #resolved(): Promise<ProviderSettings & { authMethod: ClientAuthMethod }> {
    const p = this.#provider;
    if (p.tokenUrl === '' && p.issuer) {
      const d = await discover(p.issuer, this.#timeouts, this.#dispatcher);
      this.#provider = { ...p, tokenUrl: d.tokenEndpoint, authMethod: chooseAuthMethod(p.authMethod, d.authMethods, p.clientSecret !== null) };
    } else if (p.authMethod === null) {
      this.#provider = { ...p, authMethod: p.clientSecret === null ? 'none' : 'client_secret_basic' };
    }
    return this.#provider as ProviderSettings & { authMethod: ClientAuthMethod };
  }

  async #post(params: Record<string, string>, signal?: AbortSignal): Promise<TokenResponse> {
    const provider = await this.#resolved();
    const { body, headers } = tokenRequest(provider, params);
    let status: number;
    let retryAfter: string | string[] | undefined;
    let text: string;
    try {
      const res = await request(provider.tokenUrl, {
        method: 'POST',
        body,
        headers,
        dispatcher: this.#dispatcher,
        signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(this.#timeouts.totalMs)]) : AbortSignal.timeout(this.#timeouts.totalMs),
      });
      status = res.statusCode;
      retryAfter = res.headers['retry-after'];
      text = await res.body.text();
    } catch (err) {
      const code = networkErrorCode(err);
      const what = /TIMEOUT|TimeoutError/.test(code) ? `timed out (${code})` : code;
      throw new UpstreamFailure('transient', `token request to ${safeUrl(provider.tokenUrl)} failed: ${what}`, null, code, null);
    }
    return parseTokenResponse(status, retryAfter, text, Date.now());
  }

  async close(): Promise<void> {
    await this.#dispatcher.close().catch(() => undefined);
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

/** A URL fit for a message: no credentials, no query. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
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
  try {
    const res = await request(`${apiBase.replace(/\/+$/, '')}/accounts`, {
      headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.body.text();
    if (res.statusCode === 200) return 'approved';
    if (res.statusCode === 403 && text.includes('insufficient_permissions')) return 'pending';
    return 'unknown';
  } catch {
    return 'unknown';
  }
}
