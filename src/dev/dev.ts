/**
 * `tokend dev`: the zero-setup trial. A local OpenID Connect provider on
 * loopback (30 s access tokens, rotating refresh tokens), a login without a
 * browser, and the real daemon against it — so a newcomer sees tokens refresh,
 * persist and survive a restart within a minute. Provider and state live in
 * one directory that a restart reuses (`--fresh` starts over).
 *
 * That directory holds a client secret, the provider's keys and the tokens,
 * and by default sits in the shared temp directory, where another user could
 * have made it first: it is used only when it is a real directory (not a
 * symlink) owned by this user and writable by no one else, as ssh's
 * StrictModes would ask.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TokendClient } from '../client/index.js';
import { ancestorsProblem, privateDirProblem, writePrivateFileSync } from '../shared/fs-safety.js';
import type { Logger } from '../shared/log.js';
import { loadConfig, type Config } from '../config/config.js';
import { fromEnvironment } from '../config/accounts.js';
import { StartError, startDaemon, type RunningDaemon } from '../daemon/daemon.js';
import { deliverTokens } from '../login/deliver.js';
import { buildAuthRequest, exchangeCode, resolveEndpoints, toSetInput } from '../login/flow.js';
import { headlessAuthorize } from './headless-login.js';
import { startDevProvider, type DevProvider } from './oidc-server.js';

export interface DevOptions {
  readonly dir: string | null;
  readonly fresh: boolean;
  readonly listen: string | null;
  readonly providerPort: number;
  readonly accessTokenTtlSec: number;
  readonly logLevel: string;
}

const REDIRECT_URI = 'http://127.0.0.1/tokend-dev/callback';

export function defaultDevDir(): string {
  return join(tmpdir(), `tokend-dev-${userInfo().uid}`);
}

export interface DevSession {
  readonly provider: DevProvider;
  readonly daemon: RunningDaemon;
  readonly config: Config;
  /** True when the session was restored from an earlier run. */
  readonly resumed: boolean;
  stop(reason: string): Promise<number>;
}

/** Refuse (exit 2) a dev directory another user could read into or write under. */
function requirePrivateDir(dir: string): void {
  // The directory itself, and what lies above it: an ancestor others may write lets them swap the whole directory.
  const problem = privateDirProblem(dir, { refuseSymlink: true }) ?? ancestorsProblem(dir);
  if (problem) {
    throw new StartError({
      code: 'config_invalid',
      message: `refusing the dev directory: ${problem}; remove it if it is not yours, or pass --dir with a private directory`,
    });
  }
}

/** The dev directory, checked before anything in it is removed, read or written. */
function prepareDir(dir: string, fresh: boolean): void {
  requirePrivateDir(dir);
  // rm does not follow symlinks inside, and the directory itself was just checked not to be one.
  if (fresh) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Again: another user may have made it between the check and mkdir (which accepts what exists).
  requirePrivateDir(dir);
}

export async function startDev(opts: DevOptions, log: Logger): Promise<DevSession> {
  const dir = opts.dir ?? defaultDevDir();
  prepareDir(dir, opts.fresh);
  const secretFile = join(dir, 'client-secret');
  if (!existsSync(secretFile)) writePrivateFileSync(secretFile, randomBytes(24).toString('base64url'));
  const client = { clientId: 'tokend-dev', clientSecret: readFileSync(secretFile, 'utf8'), redirectUris: [REDIRECT_URI] };

  const provider = await startDevProvider({
    port: opts.providerPort,
    client,
    accessTokenTtlSec: opts.accessTokenTtlSec,
    autoApprove: true,
    storeFile: join(dir, 'provider.json'),
  });
  const config = loadConfig(
    {},
    {
      TOKEND_PROVIDER: 'oidc',
      TOKEND_ISSUER: provider.issuer,
      TOKEND_CLIENT_ID: client.clientId,
      TOKEND_CLIENT_SECRET: client.clientSecret,
      TOKEND_REDIRECT_URI: REDIRECT_URI,
      TOKEND_STATE_FILE: join(dir, 'tokens.json'),
      TOKEND_LISTEN: opts.listen ?? process.env['TOKEND_LISTEN'] ?? '127.0.0.1:4242',
      TOKEND_LOG_LEVEL: opts.logLevel,
      TOKEND_WAKE_INTERVAL_MS: '5000',
    },
    { needsProvider: true },
  );
  let daemon: RunningDaemon;
  try {
    daemon = await startDaemon(fromEnvironment(config), Promise.resolve(log));
  } catch (err) {
    await provider.close();
    throw err;
  }
  const api = new TokendClient({ url: daemon.address });
  let resumed: boolean;
  try {
    const state = await api.state();
    resumed = state.status === 'ok' || state.status === 'expired';
    if (state.status === 'expired')
      resumed = await api.refresh().then(
        () => true,
        () => false,
      );
    if (!resumed) {
      const endpoints = await resolveEndpoints(config);
      const req = buildAuthRequest(endpoints, REDIRECT_URI);
      const code = await headlessAuthorize(req.url, REDIRECT_URI, req.state);
      const tokens = await exchangeCode(endpoints, code, req);
      await deliverTokens(config, toSetInput(tokens), daemon.address);
      log.info({ issuer: provider.issuer }, 'dev login complete');
    }
  } catch (err) {
    await daemon.stop('dev login failed');
    await provider.close();
    throw err;
  } finally {
    await api.close();
  }
  return {
    provider,
    daemon,
    config,
    resumed,
    stop: async (reason) => {
      const code = await daemon.stop(reason);
      await provider.close();
      return code;
    },
  };
}

export function devBanner(s: DevSession, ttlSec: number): string {
  const listen = s.daemon.address;
  const base = listen.startsWith('unix:') ? `--unix-socket ${listen.slice(5)} http://localhost` : `http://${listen}`;
  return [
    '',
    `tokend dev: ${s.resumed ? 'resumed the earlier session' : 'logged in'} against a local OpenID provider at ${s.provider.issuer}`,
    `  access tokens live ${ttlSec} s, so watch them rotate; state file ${s.config.stateFile}`,
    '',
    'Try, in another terminal:',
    `  curl -s ${base}/token`,
    `  curl -s ${base}/state`,
    `  curl -sN ${base}/events          # one event per refresh`,
    `  TOKEND_LISTEN=${listen} node ${relative(process.cwd(), fileURLToPath(new URL('../cli/main.js', import.meta.url))) || 'dist/cli/main.js'} status`,
    '',
    'Stop with Ctrl-C and run it again: the session survives (`--fresh` starts over).',
    '',
  ].join('\n');
}
