/** `tokend login`: print the URL, open a browser where there is one, wait for the callback, store the tokens. */
import open from 'open';
import ora from 'ora';
import { TokendError } from '../shared/errors.js';
import { monzoApproval } from '../provider/oauth.js';
import type { Config } from '../config/config.js';
import type { SetTokensInput } from '../shared/contract.js';
import { deliverTokens, loginAccount, withClientSecret, type Delivered, type LoginAccount } from './deliver.js';
import { buildAuthRequest, exchangeCode, listenForCallback, resolveEndpoints, toSetInput } from './flow.js';

export interface LoginOptions {
  readonly browser: boolean;
  readonly timeoutMs: number;
  readonly waitForApproval: boolean;
  readonly listen: string | null;
  /** Where the tokens go; by default the daemon that owns the account's state file, else the file itself (deliver.ts). */
  readonly deliver?: (input: SetTokensInput) => Promise<Delivered>;
}

function canOpenBrowser(): boolean {
  if (process.platform === 'darwin' || process.platform === 'win32') return true;
  return Boolean(process.env['DISPLAY'] || process.env['WAYLAND_DISPLAY']);
}

const err = (line: string): boolean => process.stderr.write(`${line}\n`);

/** Log in to `to`'s account: a `Config` is the environment's single account, a `LoginAccount` one of a config file's. */
export async function runLogin(to: Config | LoginAccount, opts: LoginOptions): Promise<number> {
  const account = loginAccount(to);
  const provider = await withClientSecret(account);
  const endpoints = await resolveEndpoints({ provider });
  const req = buildAuthRequest(endpoints, provider.redirectUri);
  const callback = await listenForCallback(req.redirectUri, req.state);
  const spinner = ora({ stream: process.stderr, isEnabled: process.stderr.isTTY === true });
  let onSigint: (() => void) | null = null;
  let timer: NodeJS.Timeout | undefined;
  try {
    // Ctrl-C is ours before the URL is shown: whoever reads the URL may interrupt at once.
    const cancelled = new Promise<never>((_, reject) => {
      onSigint = () => reject(new TokendError('login_failed', 'login cancelled'));
      process.once('SIGINT', onSigint);
      process.once('SIGTERM', onSigint);
      timer = setTimeout(
        () => reject(new TokendError('login_failed', `no authorization callback within ${Math.round(opts.timeoutMs / 1000)} s; run tokend login again`)),
        opts.timeoutMs,
      );
    });
    // Once the callback has come, a later Ctrl-C or the timer has no one to tell.
    cancelled.catch(() => undefined);
    err('Open this URL in a browser to authorize tokend:');
    err('');
    err(`  ${req.url}`);
    err('');
    if (opts.browser && canOpenBrowser()) void open(req.url).catch(() => undefined);
    const waiting = `waiting for the authorization callback on ${req.redirectUri} (Ctrl-C cancels)`;
    if (spinner.isEnabled) spinner.start(waiting);
    else err(waiting);
    const code = await Promise.race([callback.code, cancelled]);
    spinner.text = 'exchanging the authorization code';
    const tokens = await exchangeCode(endpoints, code, req);
    if (!tokens.refreshToken) err('note: the provider issued no refresh token; tokend cannot refresh this login (for OIDC, ask for offline_access)');
    const input = toSetInput(tokens);
    const delivered = await (opts.deliver ? opts.deliver(input) : deliverTokens(account, input, opts.listen));
    spinner.stop();
    err(`logged in: access token valid until ${delivered.expiresAt ?? 'unknown'}; stored by ${delivered.to}`);
    if (provider.name === 'monzo') await awaitMonzoApproval(new URL(endpoints.settings.tokenUrl).origin, tokens.accessToken, opts);
    return 0;
  } finally {
    spinner.stop();
    clearTimeout(timer);
    if (onSigint) {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    }
    callback.close();
  }
}

async function awaitMonzoApproval(apiBase: string, accessToken: string, opts: LoginOptions): Promise<void> {
  err('Now approve access for this client in the Monzo app (a push notification asks you to).');
  if (!opts.waitForApproval) return;
  const deadline = Date.now() + opts.timeoutMs;
  let state = await monzoApproval(apiBase, accessToken);
  while (state === 'pending' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 3_000));
    state = await monzoApproval(apiBase, accessToken);
  }
  if (state === 'approved') err('access approved in the Monzo app.');
  else if (state === 'pending') err('not approved yet: approve in the Monzo app; the tokens are stored and stay valid meanwhile.');
  else err('could not check the approval; if API calls answer 403 forbidden.insufficient_permissions, approve in the Monzo app.');
}
