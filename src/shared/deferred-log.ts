/**
 * A logger usable before pino has loaded. The daemon listens before its
 * logger is ready (see src/daemon/daemon.ts): a line logged meanwhile waits for
 * it, in order. This module must not import pino.
 */
import type { Log } from './log.js';

export function deferredLog(logging: Promise<Log>): Log {
  let ready: Log | null = null;
  void logging.then((log) => (ready = log));
  const at =
    (level: keyof Log) =>
    (first: object | string, msg?: string): void => {
      if (ready) ready[level](first as object, msg);
      else void logging.then((log) => log[level](first as object, msg));
    };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
