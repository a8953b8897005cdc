/**
 * `tokend login`: the authorization-code flow.
 *
 * A random `state` is checked on the way back; PKCE (S256) is used where the
 * provider supports it; a one-shot callback server answers on the redirect
 * URI (other paths, such as the /favicon.ico a browser asks for right after,
 * get a 404 and do not end it). The URL is always printed, and opened in a
 * browser where one exists. The code is exchanged by the same code the owner
 * uses (`provider/oauth.ts`), and the tokens go to the running daemon or,
 * when none runs, into the state file under its lock.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { ProviderSettings, SetTokensInput } from '../shared/contract.js';
import { TokendError } from '../shared/errors.js';
import { chooseAuthMethod, discover, OAuthClient, safeUrl, type TokenResponse } from '../provider/oauth.js';
import { insecureEndpoint } from '../shared/endpoint.js';
import { scrubCode, scrubText } from '../provider/provider-text.js';
import type { Config } from '../config/config.js';

export interface AuthEndpoints {
  readonly authUrl: string;
  readonly settings: ProviderSettings;
  readonly pkce: boolean;
  readonly scope: string | null;
}

const timeouts = { connectMs: 5_000, headersMs: 15_000, bodyMs: 15_000, totalMs: 20_000 };

/** The provider's endpoints: from the issuer's discovery document for oidc, else the preset or explicit URLs. */
export async function resolveEndpoints(config: Pick<Config, 'provider'>): Promise<AuthEndpoints> {
  const p = config.provider;
  let authUrl = p.authUrl;
  let tokenUrl = p.tokenUrl;
  let authMethod = p.authMethod;
  let pkce = p.name === 'custom';
  if (p.issuer && (p.name === 'oidc' || !authUrl || !tokenUrl)) {
    const found = await discover(p.issuer, timeouts);
    if (found.kind !== 'discovered') throw new TokendError('login_failed', found.message);
    const d = found.discovery;
    authUrl ??= d.authorizationEndpoint;
    tokenUrl ??= d.tokenEndpoint;
    authMethod = chooseAuthMethod(p.authMethod, d.authMethods, p.clientSecret !== null);
    pkce = d.pkceS256;
  }
  if (!authUrl) throw new TokendError('config_invalid', 'TOKEND_AUTH_URL (--auth-url): required for login with this provider');
  if (!tokenUrl) throw new TokendError('config_invalid', 'TOKEND_TOKEN_URL (--token-url): required for login with this provider');
  // Said before the browser opens, not after the user has authorized.
  const insecure = insecureEndpoint(tokenUrl);
  if (insecure) throw new TokendError('config_invalid', `token endpoint ${safeUrl(tokenUrl)} ${insecure}`);
  return {
    authUrl,
    pkce,
    scope: p.scope,
    settings: {
      name: p.name,
      tokenUrl,
      issuer: p.issuer,
      clientId: p.clientId ?? '',
      clientSecret: p.clientSecret,
      authMethod: authMethod ?? (p.clientSecret === null ? 'none' : 'client_secret_basic'),
    },
  };
}

export interface AuthRequest {
  readonly url: string;
  readonly state: string;
  readonly codeVerifier: string | null;
  readonly redirectUri: string;
}

const b64url = (b: Buffer): string => b.toString('base64url');

export function buildAuthRequest(e: AuthEndpoints, redirectUri: string): AuthRequest {
  const state = b64url(randomBytes(24));
  const codeVerifier = e.pkce ? b64url(randomBytes(48)) : null;
  const url = new URL(e.authUrl);
  url.searchParams.set('client_id', e.settings.clientId);
  url.searchParams.set('redirect_uri', redirectUri);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('state', state);
  if (e.scope) {
    url.searchParams.set('scope', e.scope);
    // oidc-provider (and others) issue a refresh token for offline_access only with explicit consent.
    if (e.scope.split(' ').includes('offline_access')) url.searchParams.set('prompt', 'consent');
  }
  if (codeVerifier) {
    url.searchParams.set('code_challenge', b64url(createHash('sha256').update(codeVerifier).digest()));
    url.searchParams.set('code_challenge_method', 'S256');
  }
  return { url: url.toString(), state, codeVerifier, redirectUri };
}

/**
 * Read the callback's query: the code, or a clear error. Pure. The error and
 * its description come from whoever opened the callback URL: they are printed
 * only as an error code and a short description without control characters.
 */
export function readCallback(query: URLSearchParams, expectedState: string): string {
  const rawError = query.get('error');
  if (rawError) {
    const error = scrubCode(rawError, []) ?? 'an error that is not an error code';
    const description = scrubText(query.get('error_description') ?? '', []);
    const hint = error === 'access_denied' ? ' (the request was declined at the provider)' : '';
    throw new TokendError('login_failed', `authorization failed: ${error}${description ? `: ${description}` : ''}${hint}`);
  }
  if (query.get('state') !== expectedState) {
    throw new TokendError(
      'login_failed',
      "authorization failed: the callback's state does not match this login (a stale or forged callback); start the login again",
    );
  }
  const code = query.get('code');
  if (!code) throw new TokendError('login_failed', 'authorization failed: the callback has no code');
  return code;
}

const page = (title: string, body: string): string =>
  `<!doctype html><meta charset="utf-8"><title>${title}</title><body style="font:16px system-ui;margin:3em"><h1>${title}</h1><p>${body}</p></body>`;

export interface CallbackServer {
  /** Resolves with the code, or rejects with a clear error. */
  readonly code: Promise<string>;
  close(): void;
}

/** Listen on the redirect URI's host and port for exactly one callback. */
export async function listenForCallback(redirectUri: string, expectedState: string): Promise<CallbackServer> {
  const target = new URL(redirectUri);
  if (target.protocol !== 'http:')
    throw new TokendError('config_invalid', `redirect URI ${redirectUri} must be http:// on this machine to be received by tokend`);
  let settle!: { resolve: (code: string) => void; reject: (err: Error) => void };
  const code = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
  code.catch(() => undefined);
  let done = false;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', redirectUri);
    if (url.pathname !== target.pathname || done) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    done = true;
    try {
      const c = readCallback(url.searchParams, expectedState);
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8', connection: 'close' })
        .end(page('tokend: authorized', 'You can close this window and return to the terminal.'));
      settle.resolve(c);
    } catch (err) {
      res
        .writeHead(400, { 'content-type': 'text/html; charset=utf-8', connection: 'close' })
        .end(page('tokend: authorization failed', (err as Error).message.replace(/[<>&]/g, '')));
      settle.reject(err as Error);
    }
  });
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const port = Number(target.port || 80);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new TokendError(
          'login_failed',
          err.code === 'EADDRINUSE'
            ? `cannot receive the callback: ${host}:${port} is already in use (free it, or register another redirect URI and set TOKEND_REDIRECT_URI)`
            : `cannot listen on ${host}:${port} for the callback: ${err.code ?? err.message}`,
        ),
      ),
    );
    // "localhost" may resolve to ::1 or 127.0.0.1; a browser tries both, so listen on the name.
    server.listen(port, host === 'localhost' ? 'localhost' : host, () => resolve());
  });
  return {
    code,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Exchange the code for tokens. A response without a refresh token is accepted (not every provider rotates). */
export async function exchangeCode(e: AuthEndpoints, code: string, req: AuthRequest): Promise<TokenResponse> {
  const client = new OAuthClient(e.settings, timeouts);
  try {
    const outcome = await client.exchangeCode(code, req.redirectUri, req.codeVerifier);
    if (outcome.kind !== 'tokens') throw new TokendError('login_failed', `code exchange at ${safeUrl(e.settings.tokenUrl)} failed: ${outcome.message}`);
    return outcome.tokens;
  } finally {
    await client.close();
  }
}

export function toSetInput(t: TokenResponse): SetTokensInput {
  return {
    accessToken: t.accessToken,
    refreshToken: t.refreshToken,
    expiresInSec: t.expiresInSec,
    tokenType: t.tokenType,
    scope: t.scope,
    extra: t.account,
  };
}
