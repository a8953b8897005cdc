/**
 * The daemon's configuration as accounts: one global part (where it listens,
 * who may call it, its limits) and an `AccountConfig` per account, each with
 * its own provider, state file, refresh rules and hooks.
 *
 * Two sources give a `DaemonConfig`: the environment and flags (one account
 * named `default`, exactly the single account of before; `fromEnvironment`)
 * and the TOML config file (`loadConfigFile` in config-file.ts). Either way
 * it holds at least one account, no two accounts share a state file, and
 * `defaultAccount` names one of them.
 */
import { dirname } from 'node:path';
import type { Config, ProviderConfig } from './config.js';

/** A command run without a shell: the program (looked up in PATH unless it has a slash), then its arguments. */
export type Argv = readonly [string, ...string[]];

export interface AccountHooks {
  /** Run after every token change; the access token only in its environment (`TOKEND_ACCESS_TOKEN`). */
  readonly onTokenChange: Argv | null;
  /** Run when the account needs `tokend login`, and again every 15 minutes while it does. */
  readonly onReauthorizationRequired: Argv | null;
  readonly onError: Argv | null;
}

export interface AccountConfig {
  /** Matches `ACCOUNT_NAME`: safe in a URL path, a file name and a metric label. */
  readonly name: string;
  /**
   * The provider and client. `clientSecret` is the secret read from
   * `client_secret_file` at load, or null: with `clientSecretCommand` it is
   * not known yet.
   */
  readonly provider: ProviderConfig;
  readonly stateFile: string;
  /** RFC 8628 device authorization endpoint, when configured rather than discovered. */
  readonly deviceAuthorizationUrl: string | null;
  /**
   * Prints the client secret on stdout. Not run at load: whoever needs the
   * secret (the account's start, a login) runs it with execFile (no shell)
   * and a timeout, so that reading the configuration — which every client
   * command does — never starts a password manager or waits on one, and a
   * rotated secret is picked up at the next start.
   */
  readonly clientSecretCommand: Argv | null;
  /** Refresh at the latest this long before expiry; null: the daemon's default (5 minutes). */
  readonly refreshLeadMs: number | null;
  /** Refresh at least this often, however long the access token lives; null: no such rule. */
  readonly refreshAtLeastMs: number | null;
  /** When re-authorization falls due after a login, overriding the provider's rule; null: the provider's or preset's. */
  readonly reauthorizeAfterMs: number | null;
  readonly hooks: AccountHooks;
}

/** Settings of the whole daemon, the same as in the single-account `Config`. */
type GlobalSettings = Pick<
  Config,
  | 'listen'
  | 'apiKey'
  | 'logLevel'
  | 'allowedOrigins'
  | 'allowedHosts'
  | 'allowedUids'
  | 'maxConnections'
  | 'maxEventClients'
  | 'wakeIntervalMs'
  | 'upstreamTimeoutMs'
  | 'shutdownTimeoutMs'
  | 'moveCorruptAside'
>;

export interface DaemonConfig extends GlobalSettings {
  /** The config file read, or null when the environment configured the daemon (what a reload re-reads). */
  readonly configFile: string | null;
  /** Where an account's state file is when none is named: `<stateDir>/<name>.json`. */
  readonly stateDir: string;
  readonly defaultAccount: string;
  /** The shared store's URL (`postgres://…`), or null for state files. May hold a password: never log it. */
  readonly store: string | null;
  /** At least one; names unique; state files unique. */
  readonly accounts: readonly AccountConfig[];
}

export const ACCOUNT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** The account the environment configures, and the default account when a file has one by that name. */
export const DEFAULT_ACCOUNT = 'default';

export const noHooks: AccountHooks = Object.freeze({ onTokenChange: null, onReauthorizationRequired: null, onError: null });

/** The configuration of before (environment and flags) as a daemon with one account, `default`. */
export function fromEnvironment(config: Config): DaemonConfig {
  const account: AccountConfig = Object.freeze({
    name: DEFAULT_ACCOUNT,
    provider: config.provider,
    stateFile: config.stateFile,
    deviceAuthorizationUrl: null,
    clientSecretCommand: null,
    refreshLeadMs: null,
    refreshAtLeastMs: null,
    reauthorizeAfterMs: null,
    hooks: noHooks,
  });
  return Object.freeze({
    listen: config.listen,
    apiKey: config.apiKey,
    logLevel: config.logLevel,
    allowedOrigins: config.allowedOrigins,
    allowedHosts: config.allowedHosts,
    allowedUids: config.allowedUids,
    maxConnections: config.maxConnections,
    maxEventClients: config.maxEventClients,
    wakeIntervalMs: config.wakeIntervalMs,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    moveCorruptAside: config.moveCorruptAside,
    configFile: null,
    stateDir: dirname(config.stateFile),
    defaultAccount: DEFAULT_ACCOUNT,
    store: null,
    accounts: Object.freeze([account]),
  });
}

/** The account called `name`, or undefined. */
export function accountNamed(config: DaemonConfig, name: string): AccountConfig | undefined {
  return config.accounts.find((a) => a.name === name);
}
