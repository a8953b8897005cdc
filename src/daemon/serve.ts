/**
 * `tokend serve`, and what every command shares: how to say a problem, how
 * config problems end a command (one line each, exit 2), and the daemon's
 * signal guard. Kept apart from the argument parser: `tokend` and `tokend serve`
 * with no flags (the container's command) start without loading commander.
 */
import { ConfigError, loadConfig, type Config, type RawOptions } from '../config/config.js';
import { TokendError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { RunningDaemon } from './daemon.js';
import type { OwnerThread } from './owner-thread.js';
import { routeSignals, StopRequests } from './signals.js';

/** What the executable hands the commands: how to exit, and an owner thread already booting for `serve`. */
export interface Runtime {
  readonly exit: (code: number) => never;
  readonly ownerThread: OwnerThread | null;
}

export function say(line: string): void {
  process.stderr.write(`tokend: ${line}\n`);
}

/** What a daemon does when asked to stop. */
export interface StopControl {
  stop(reason: string): Promise<number>;
  /** A deliberate second request: stop waiting for the provider. */
  hurry(): void;
}

/**
 * Take the daemon's signals over (see signals.ts for the table): a stop
 * signal during start still ends in a clean stop once the daemon is up. Also
 * the fatal-error handler: a clean stop, then exit 1. Installed before the
 * logger has loaded: until it has, its lines go to stderr as plain text.
 */
export function guardSignals(logging: Promise<Logger>, exit: (code: number) => never): { attach(control: StopControl): void } {
  let log: Logger | null = null;
  logging.then(
    (l) => (log = l),
    () => undefined,
  );
  const note = (fields: Record<string, unknown>, msg: string): void => {
    if (log) log.warn(fields, msg);
    else say(`${msg} (${Object.values(fields).join(', ')})`);
  };
  let control: StopControl | null = null;
  let requested: string | null = null;
  let hurried = false;
  const requests = new StopRequests();
  routeSignals({
    ignored: (signal) => note({ signal }, 'signal ignored'),
    stop: (signal) => {
      switch (requests.next()) {
        case 'stop':
          requested = signal;
          if (control) void control.stop(signal);
          return;
        case 'same_request':
          return note({ signal }, 'signal repeated within a second: the same stop request');
        case 'hurry':
          note({ signal }, 'second stop request: no longer waiting for the provider');
          hurried = true;
          return control?.hurry();
        case 'already_stopping':
          return note({ signal }, 'already stopping');
      }
    },
  });
  let failed = false;
  const fatal = (err: unknown): void => {
    const message = (err as Error)?.message ?? String(err);
    if (log) log.fatal({ err: message }, 'fatal error');
    else say(`fatal error: ${message}`);
    if (!control) exit(1);
    if (failed) return;
    failed = true;
    // Whatever the stop meets (another throw, a rejection), the process ends.
    void control.stop('fatal error').finally(() => exit(1));
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  return {
    attach(c) {
      control = c;
      if (requested) void c.stop(requested);
      if (hurried) c.hurry();
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
    .then(() => import('../shared/log.js'))
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
  guard.attach({ stop: (reason) => daemon.stop(reason), hurry: () => daemon.hurry() });
  if (daemon.status() === 'waiting_for_login' && process.stdin.isTTY === true && process.stderr.isTTY === true) {
    // A person is at the terminal: run the login here instead of only waiting for one.
    log.info('no tokens yet: starting the login (interactive terminal)');
    void import('../login/command.js')
      .then(({ runLogin }) =>
        runLogin(config, {
          browser: true,
          timeoutMs: 600_000,
          waitForApproval: true,
          listen: daemon.address,
          // Straight to this daemon's owner: no request to our own address.
          deliver: async (input) => {
            const r = await daemon.setTokens(input);
            if (!r.ok) throw TokendError.from(r.error);
            const at = r.value.token?.expiresAtMs;
            return { to: 'this daemon', expiresAt: at ? new Date(at).toISOString() : null };
          },
        }),
      )
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
