/**
 * `tokend serve`, and what every command shares: how to say a problem, how
 * config problems end a command (one line each, exit 2), and the signal
 * guard. Kept apart from the argument parser: `tokend` and `tokend serve`
 * with no flags (the container's command) start without loading commander.
 */
import { ConfigError, loadConfig, type Config, type RawOptions } from './config.js';
import type { Logger } from '../log.js';
import type { RunningDaemon } from './daemon.js';
import type { OwnerThread } from './owner-thread.js';

/** What the executable hands the commands: how to exit, and an owner thread already booting for `serve`. */
export interface Runtime {
  readonly exit: (code: number) => never;
  readonly ownerThread: OwnerThread | null;
}

export function say(line: string): void {
  process.stderr.write(`tokend: ${line}\n`);
}

/**
 * Signal handlers first: a signal during start must still end in a clean stop
 * (and as PID 1, Node ignores SIGTERM unless a handler is installed). A second
 * signal exits at once: every change is already on disk. Installed before the
 * logger has loaded: until it has, its lines go to stderr as plain text.
 */
export function guardSignals(logging: Promise<Logger>, exit: (code: number) => never): { attach(stop: (reason: string) => Promise<number>): void } {
  let log: Logger | null = null;
  logging.then((l) => (log = l), () => undefined);
  let stop: ((reason: string) => Promise<number>) | null = null;
  let requested: string | null = null;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      if (log) log.warn({ signal }, 'second signal: exiting at once');
      else say(`second signal (${signal}): exiting at once`);
      exit(1);
    }
    requested = signal;
    if (stop) void stop(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onSignal);
  const fatal = (err: unknown): void => {
    const message = (err as Error)?.message;
    if (log) log.fatal({ err: message }, 'fatal error');
    else say(`fatal error: ${message}`);
    if (!stop) exit(1);
    void stop('fatal error').then(() => exit(1));
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  return {
    attach(fn) {
      stop = fn;
      if (requested) void fn(requested);
    },
  };
}

export function configOrExit(opts: RawOptions, needsProvider: boolean): Config | null {
  try {
    return loadConfig(opts, process.env, { needsProvider });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) say(p);
    return null;
  }
}

export async function serve(opts: RawOptions, runtime: Runtime): Promise<number> {
  const config = configOrExit(opts, true);
  if (!config) return 2;
  // Loaded on demand: client commands start without the daemon's modules.
  // The daemon first (it starts the owner, and asks for the HTTP side), the
  // logger after it: the server listens while pino is still loading.
  const { startDaemon, StartError } = await import('./daemon.js');
  const pretty = process.stderr.isTTY === true;
  const logging = Promise.resolve()
    .then(() => import('../log.js'))
    .then(({ createLogger }) => createLogger(config.logLevel, pretty, 'tokend'));
  const guard = guardSignals(logging, runtime.exit);
  const starting = startDaemon(config, logging, runtime.ownerThread);
  starting.catch(() => undefined); // handled below, once the logger is up
  const log = await logging;
  let daemon: RunningDaemon;
  try {
    daemon = await starting;
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    say(err.error.message);
    return err.exitCode;
  }
  guard.attach((reason) => daemon.stop(reason));
  if (daemon.status() === 'waiting_for_login' && process.stdin.isTTY === true && process.stderr.isTTY === true) {
    // A person is at the terminal: run the login here instead of only waiting for one.
    log.info('no tokens yet: starting the login (interactive terminal)');
    void import('./login-command.js')
      .then(({ runLogin }) => runLogin(config, { browser: true, timeoutMs: 600_000, waitForApproval: true, listen: daemon.address }))
      .catch((err: Error) => log.warn({ err: err.message }, 'login did not complete; run `tokend login` to try again'));
  }
  return daemon.done;
}

/** `tokend serve` run on its own (no argument parser): an unexpected failure is said, exit 1. */
export async function serveCommand(opts: RawOptions, runtime: Runtime): Promise<number> {
  try {
    return await serve(opts, runtime);
  } catch (err) {
    say((err as Error).message);
    return 1;
  }
}
