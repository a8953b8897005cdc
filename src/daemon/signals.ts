/**
 * What every signal does to tokend. Loaded first by cli.ts, before any other
 * module, so no signal ever meets Node's defaults: SIGUSR1 would open the
 * inspector on 127.0.0.1:9229, where any local user could run code in the
 * process and read its secrets; SIGUSR2, SIGALRM and the others would kill
 * the daemon without a shutdown, leaving the lock and the owner record.
 *
 * - Stop signals end a daemon (`serve`, `dev`) with the clean stop, as
 *   SIGTERM does. One stop request is one request however it is delivered:
 *   GNU `timeout` sends its one SIGTERM twice (to the child and to its process
 *   group), so a second signal within a second of the first is the same
 *   request. A later, deliberate second signal hurries the stop (no more
 *   waiting for the provider; an answer that has arrived is still written).
 *   Any further signal changes nothing. Other commands keep the default
 *   (they hold nothing that a stop could lose).
 * - SIGHUP is a stop signal too, unless the daemon was configured by a
 *   config file: then it re-reads the file (`hangup`), as daemons do.
 * - Ignored signals are logged and ignored by every command. SIGPROF is left
 *   alone: V8's profiler uses it.
 */
import { constants } from 'node:os';

export const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGXCPU', 'SIGXFSZ', 'SIGPWR'] as const;
export const IGNORED_SIGNALS = ['SIGUSR1', 'SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGIO', 'SIGPOLL', 'SIGSTKFLT', 'SIGSYS', 'SIGTRAP'] as const;

/** Signals closer together than this are one stop request delivered twice. */
export const SAME_REQUEST_MS = 1_000;

export interface SignalRoutes {
  stop(signal: NodeJS.Signals): void;
  ignored(signal: NodeJS.Signals): void;
  /** SIGHUP, when it means "re-read the configuration"; without it, SIGHUP stops. */
  readonly hangup?: (signal: NodeJS.Signals) => void;
}

const plain: SignalRoutes = {
  stop: () => undefined,
  ignored: (signal) => void process.stderr.write(`tokend: ignored ${signal}\n`),
};
let routes: SignalRoutes = plain;
/** Stop signals that arrived before a daemon took them over. */
const early: NodeJS.Signals[] = [];
let routed = false;

/** Each signal of `names` that this platform has, once per signal number (SIGIO and SIGPOLL are one on Linux). */
function present(names: readonly string[]): NodeJS.Signals[] {
  const seen = new Set<number>();
  const out: NodeJS.Signals[] = [];
  for (const name of names) {
    const n = (constants.signals as Record<string, number | undefined>)[name];
    if (n === undefined || seen.has(n)) continue;
    seen.add(n);
    out.push(name as NodeJS.Signals);
  }
  return out;
}

/** Install the table. `daemon`: this command stops cleanly on a stop signal (held until `routeSignals`). */
export function installSignalTable(daemon: boolean): void {
  for (const signal of present(IGNORED_SIGNALS)) process.on(signal, () => routes.ignored(signal));
  if (!daemon) return;
  for (const signal of present(STOP_SIGNALS)) process.on(signal, () => (routed ? deliver(routes, signal) : early.push(signal)));
}

function deliver(r: SignalRoutes, signal: NodeJS.Signals): void {
  if (signal === 'SIGHUP' && r.hangup) r.hangup(signal);
  else r.stop(signal);
}

/** Route signals to a daemon from now on; stop signals that came earlier are handed over first. */
export function routeSignals(r: SignalRoutes): void {
  routes = r;
  routed = true;
  for (const signal of early.splice(0)) deliver(r, signal);
}

export type StopStep = 'stop' | 'same_request' | 'hurry' | 'already_stopping';

/** What a stop signal means, given the ones before it. */
export class StopRequests {
  #firstAtMs: number | null = null;
  #hurried = false;

  constructor(private readonly now: () => number = Date.now) {}

  next(): StopStep {
    const t = this.now();
    if (this.#firstAtMs === null) {
      this.#firstAtMs = t;
      return 'stop';
    }
    if (this.#hurried) return 'already_stopping';
    if (t - this.#firstAtMs < SAME_REQUEST_MS) return 'same_request';
    this.#hurried = true;
    return 'hurry';
  }
}
