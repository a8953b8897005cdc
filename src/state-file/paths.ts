/** Where a daemon is found by default: its address and its state file. Shared by the daemon's config and the client library. */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

export const DEFAULT_LISTEN = '127.0.0.1:4242';

export function defaultStateFile(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_STATE_HOME'] && isAbsolute(env['XDG_STATE_HOME']) ? env['XDG_STATE_HOME'] : join(homedir(), '.local', 'state');
  return join(base, 'tokend', 'tokens.json');
}
