/**
 * Where new tokens from a login go: to the daemon that owns the account's
 * state file, or, when none runs, into the file under its lock — through the
 * same owner code the daemon runs, so the write is just as durable.
 */
import { randomUUID } from 'node:crypto';
import type { SetTokensInput, Snapshot } from '../shared/contract.js';
import { TokendError } from '../shared/errors.js';
import { TokendClient, TokendClientError } from '../client/index.js';
import { createLogger } from '../shared/log.js';
import { ownerIsLive, trustedOwnerRecord } from '../state-file/owner-record.js';
import type { Config, ProviderConfig } from '../config/config.js';
import { accountNamed, type Argv, type DaemonConfig } from '../config/accounts.js';
import { clientSecretOf } from '../config/client-secret.js';
import { ownerOptions, type OwnerSettings } from '../config/owner-options.js';

export interface Delivered {
  readonly to: string;
  readonly expiresAt: string | null;
}

/** The account a login is for: its provider, its state file, and how to reach the daemon that may own it. */
export interface LoginAccount {
  /** Its name on the daemon's routes (`/accounts/NAME/…`); null: configured by the environment, the daemon's unprefixed routes. */
  readonly name: string | null;
  readonly provider: ProviderConfig;
  readonly clientSecretCommand: Argv | null;
  readonly stateFile: string;
  readonly apiKey: string | null;
  readonly settings: OwnerSettings;
}

/** The one account the environment configures (the daemon's unprefixed routes, as before accounts). */
export function environmentAccount(config: Config): LoginAccount {
  return { name: null, provider: config.provider, clientSecretCommand: null, stateFile: config.stateFile, apiKey: config.apiKey, settings: config };
}

/** Account `name` of a config file's daemon; undefined when it has none by that name. */
export function fileAccount(config: DaemonConfig, name: string): LoginAccount | undefined {
  const account = accountNamed(config, name);
  if (!account) return undefined;
  return {
    name: config.configFile === null ? null : account.name,
    provider: account.provider,
    clientSecretCommand: account.clientSecretCommand,
    stateFile: account.stateFile,
    apiKey: config.apiKey,
    settings: config,
  };
}

/** A `Config` (the environment's single account) or an account as it is. */
export const loginAccount = (from: Config | LoginAccount): LoginAccount => ('listen' in from ? environmentAccount(from) : from);

/** The provider settings with the client secret a `client_secret_command` prints (run now), or as configured. */
export async function withClientSecret(account: LoginAccount): Promise<ProviderConfig> {
  const secret = await clientSecretOf(account);
  if ('problem' in secret) throw new TokendError('config_invalid', secret.problem);
  return { ...account.provider, clientSecret: secret.value };
}

/**
 * The daemon to hand tokens to: an explicit address, else the live owner of
 * this state file, named by an owner record no other user could have written.
 */
function daemonAddress(account: LoginAccount, explicitListen: string | null): string | null {
  if (explicitListen) return explicitListen;
  const record = trustedOwnerRecord(account.stateFile, (line) => process.stderr.write(`tokend: ${line}\n`));
  return record?.listen && ownerIsLive(record) ? record.listen : null;
}

/** Deliver `input` to `to`'s account: a `Config` means the environment's single account. */
export async function deliverTokens(to: Config | LoginAccount, input: SetTokensInput, explicitListen: string | null): Promise<Delivered> {
  const account = loginAccount(to);
  const address = daemonAddress(account, explicitListen);
  if (address) {
    const client = new TokendClient({
      url: address,
      ...(account.apiKey ? { apiKey: account.apiKey } : {}),
      // A named account goes to /accounts/NAME/set-tokens on the daemon that owns its file.
      ...(account.name !== null ? { account: account.name } : {}),
    });
    try {
      const r = await client.setTokens({
        access_token: input.accessToken,
        refresh_token: input.refreshToken,
        ...(input.expiresInSec !== null ? { expires_in: input.expiresInSec } : {}),
        ...(input.scope ? { scope: input.scope } : {}),
        ...(input.tokenType ? { token_type: input.tokenType } : {}),
        ...input.extra,
      });
      const which = account.name === null ? '' : ` (account ${account.name})`;
      return { to: `the running daemon at ${address}${which}`, expiresAt: r.expires_at };
    } catch (err) {
      if (!(err instanceof TokendClientError) || err.code !== 'daemon_unreachable') throw err;
    } finally {
      await client.close();
    }
  }
  // No daemon: the owner's code runs here, in this process (loaded only now).
  const provider = await withClientSecret(account);
  const { Owner } = await import('../owner/owner.js');
  const log = await createLogger('warn', false, 'tokend-login');
  const options = ownerOptions({ provider, stateFile: account.stateFile }, account.settings, randomUUID());
  const owner = new Owner({ ...options, scheduleRefresh: false }, log, () => undefined);
  const started = await owner.start();
  if (!started.ok) throw TokendError.from(started.error);
  let result: { ok: true; value: Snapshot } | { ok: false; error: TokendError };
  try {
    const r = await owner.setTokens(input);
    result = r.ok ? r : { ok: false, error: TokendError.from(r.error) };
  } finally {
    await owner.close(0);
  }
  if (!result.ok) throw result.error;
  const at = result.value.token?.expiresAtMs;
  return { to: account.stateFile, expiresAt: at ? new Date(at).toISOString() : null };
}
