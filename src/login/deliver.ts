/**
 * Where new tokens from a login go: to the daemon that owns the state file,
 * or, when none runs, into the file under its lock — through the same owner
 * code the daemon runs, so the write is just as durable.
 */
import { randomUUID } from 'node:crypto';
import type { SetTokensInput, Snapshot } from '../shared/contract.js';
import { TokendError } from '../shared/errors.js';
import { TokendClient, TokendClientError } from '../client/index.js';
import { createLogger } from '../shared/log.js';
import { ownerIsLive, trustedOwnerRecord } from '../state-file/owner-record.js';
import type { Config } from '../config/config.js';
import { ownerOptions } from '../config/owner-options.js';

export interface Delivered {
  readonly to: string;
  readonly expiresAt: string | null;
}

/**
 * The daemon to hand tokens to: an explicit address, else the live owner of
 * this state file, named by an owner record no other user could have written.
 */
function daemonAddress(config: Config, explicitListen: string | null): string | null {
  if (explicitListen) return explicitListen;
  const record = trustedOwnerRecord(config.stateFile, (line) => process.stderr.write(`tokend: ${line}\n`));
  return record?.listen && ownerIsLive(record) ? record.listen : null;
}

export async function deliverTokens(config: Config, input: SetTokensInput, explicitListen: string | null): Promise<Delivered> {
  const address = daemonAddress(config, explicitListen);
  if (address) {
    const client = new TokendClient({ url: address, ...(config.apiKey ? { apiKey: config.apiKey } : {}) });
    try {
      const r = await client.setTokens({
        access_token: input.accessToken,
        refresh_token: input.refreshToken,
        ...(input.expiresInSec !== null ? { expires_in: input.expiresInSec } : {}),
        ...(input.scope ? { scope: input.scope } : {}),
        ...(input.tokenType ? { token_type: input.tokenType } : {}),
        ...input.extra,
      });
      return { to: `the running daemon at ${address}`, expiresAt: r.expires_at };
    } catch (err) {
      if (!(err instanceof TokendClientError) || err.code !== 'daemon_unreachable') throw err;
    } finally {
      await client.close();
    }
  }
  // No daemon: the owner's code runs here, in this process (loaded only now).
  const { Owner } = await import('../owner/owner.js');
  const log = await createLogger('warn', false, 'tokend-login');
  const owner = new Owner({ ...ownerOptions(config, randomUUID()), scheduleRefresh: false }, log, () => undefined);
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
  return { to: config.stateFile, expiresAt: at ? new Date(at).toISOString() : null };
}
