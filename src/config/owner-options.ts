/** What the owner is given, from the configuration: the daemon's owner thread and a login with no daemon both start one with these. */
import type { OwnerOptions } from '../shared/contract.js';
import type { Config } from './config.js';

export function ownerOptions(config: Config, instance: string): OwnerOptions {
  const p = config.provider;
  return {
    stateFile: config.stateFile,
    provider: {
      name: p.name,
      tokenUrl: p.tokenUrl ?? '',
      issuer: p.issuer,
      clientId: p.clientId ?? '',
      clientSecret: p.clientSecret,
      authMethod: p.authMethod,
    },
    timeouts: {
      connectMs: Math.min(5_000, config.upstreamTimeoutMs),
      headersMs: config.upstreamTimeoutMs,
      bodyMs: config.upstreamTimeoutMs,
      totalMs: config.upstreamTimeoutMs,
    },
    wakeIntervalMs: config.wakeIntervalMs,
    owner: { pid: process.pid, instance, listen: null },
    moveCorruptAside: config.moveCorruptAside,
    logLevel: config.logLevel,
    scheduleRefresh: true,
  };
}
