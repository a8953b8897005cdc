/**
 * The owner thread's logger: each line goes to the main thread as an event
 * and is written by the daemon's pino logger there. One logger means one
 * output stream and one set of redaction paths, and the owner thread does
 * not load pino at all (its start and its memory are the smaller for it).
 */
import type { OwnerEvent, OwnerLogLevel } from '../shared/contract.js';
import type { Log } from '../shared/log.js';

const rank = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity } as const;

export function forwardingLog(level: string, emit: (event: OwnerEvent) => void): Log {
  const threshold = (rank as Record<string, number | undefined>)[level] ?? rank.info;
  const at =
    (name: OwnerLogLevel) =>
    (first: object | string, msg?: string): void => {
      if (rank[name] < threshold) return;
      const fields = typeof first === 'string' ? {} : { ...(first as Record<string, unknown>) };
      const text = typeof first === 'string' ? first : msg;
      try {
        emit({ type: 'log', level: name, fields, msg: text });
      } catch {
        // A field that cannot be cloned: send the line with its fields as JSON would have them.
        emit({ type: 'log', level: name, fields: JSON.parse(JSON.stringify(fields)) as Record<string, unknown>, msg: text });
      }
    };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
