/** Where a daemon is found by default: its address, its state and its config file. Shared by the daemon's config and the client library. */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

export const DEFAULT_LISTEN = '127.0.0.1:4242';

/** An XDG base directory: the variable when it holds an absolute path (the spec says to ignore a relative one), else its default under home. */
function xdgDir(env: NodeJS.ProcessEnv, name: 'XDG_STATE_HOME' | 'XDG_CONFIG_HOME', fallback: readonly string[]): string {
  const value = env[name];
  return value && isAbsolute(value) ? value : join(homedir(), ...fallback);
}

/** `$XDG_STATE_HOME/tokend`: the state files of a config file's accounts. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(xdgDir(env, 'XDG_STATE_HOME', ['.local', 'state']), 'tokend');
}

export function defaultStateFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(defaultStateDir(env), 'tokens.json');
}

/** `$XDG_CONFIG_HOME/tokend/config.toml`, read when it exists. */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(xdgDir(env, 'XDG_CONFIG_HOME', ['.config']), 'tokend', 'config.toml');
}
