/** What an account's owner is given, from its configuration and the daemon's: the daemon's owner thread and a login with no daemon both start one with these. */
import type { OwnerOptions } from '../shared/contract.js';
import type { AccountConfig, DaemonConfig } from './accounts.js';

/** The daemon-wide settings an owner needs (a `Config` and a `DaemonConfig` both have them). */
export type OwnerSettings = Pick<DaemonConfig, 'upstreamTimeoutMs' | 'wakeIntervalMs' | 'moveCorruptAside' | 'logLevel'>;

/** What of an account its owner needs; the refresh settings may be left out (a login's short-lived owner runs no refresh timer). */
export type OwnerAccount = Pick<AccountConfig, 'provider' | 'stateFile'> & Partial<Pick<AccountConfig, 'refreshLeadMs' | 'refreshAtLeastMs'>>;

/**
 * `clientSecret`: the account's secret when it comes from a command run at
 * start; otherwise the one read at load. An account's refresh settings are
 * passed only when set, so an owner without them refreshes exactly as before.
 */
export function ownerOptions(
  account: OwnerAccount,
  settings: OwnerSettings,
  instance: string,
  clientSecret: string | null = account.provider.clientSecret,
): OwnerOptions {
  const p = account.provider;
  return {
    stateFile: account.stateFile,
    provider: {
      name: p.name,
      tokenUrl: p.tokenUrl ?? '',
      issuer: p.issuer,
      clientId: p.clientId ?? '',
      clientSecret,
      authMethod: p.authMethod,
    },
    timeouts: {
      connectMs: Math.min(5_000, settings.upstreamTimeoutMs),
      headersMs: settings.upstreamTimeoutMs,
      bodyMs: settings.upstreamTimeoutMs,
      totalMs: settings.upstreamTimeoutMs,
    },
    wakeIntervalMs: settings.wakeIntervalMs,
    owner: { pid: process.pid, instance, listen: null },
    moveCorruptAside: settings.moveCorruptAside,
    logLevel: settings.logLevel,
    scheduleRefresh: true,
    ...(account.refreshLeadMs != null && { refreshLeadMs: account.refreshLeadMs }),
    ...(account.refreshAtLeastMs != null && { refreshAtLeastMs: account.refreshAtLeastMs }),
  };
}
