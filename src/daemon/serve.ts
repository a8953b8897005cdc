/**
 * `tokend serve`, and what every command shares: how to say a problem, how
 * config problems end a command (one line each, exit 2), and the daemon's
 * signal guard. Kept apart from the argument parser: `tokend` and `tokend serve`
 * with no flags (the container's command) start without loading commander.
 */
import { ConfigError, loadConfig, type Config, type RawOptions } from '../config/config.js';
import { fromEnvironment, type DaemonConfig } from '../config/accounts.js';
import { configFilePath, type FileFlags } from '../config/config-path.js';
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

/** What a daemon does when asked to stop (or, configured by a file, to re-read it). */
export interface StopControl {
  stop(reason: string): Promise<number>;
  /** A deliberate second request: stop waiting for the provider. */
  hurry(): void;
  /** Re-read the config file (SIGHUP); it logs what it did or refused. */
  reload?(): Promise<unknown>;
}

export interface GuardOptions {
  /** SIGHUP re-reads the config file instead of stopping (a daemon configured by a file). */
  readonly reloadOnHangup?: boolean;
}

/**
 * Take the daemon's signals over (see signals.ts for the table): a stop
 * signal during start still ends in a clean stop once the daemon is up. Also
 * the fatal-error handler: a clean stop, then exit 1. Installed before the
 * logger has loaded: until it has, its lines go to stderr as plain text.
 */
export function guardSignals(logging: Promise<Logger>, exit: (code: number) => never, opts: GuardOptions = {}): { attach(control: StopControl): void } {
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
  /** A SIGHUP before the daemon was up: it re-reads the file once it is. */
  let reloadAsked = false;
  const reload = (c: StopControl): void =>
    void c.reload?.().catch((err: Error) => (log ? log.error({ err: err.message }, 'reload failed') : say(`reload failed: ${err.message}`)));
  const requests = new StopRequests();
  routeSignals({
    ignored: (signal) => note({ signal }, 'signal ignored'),
    ...(opts.reloadOnHangup
      ? {
          hangup: (signal: NodeJS.Signals) => {
            if (requested) return note({ signal }, 'stopping: not reloading');
            if (control) return reload(control);
            reloadAsked = true;
          },
        }
      : {}),
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
      else if (reloadAsked) reload(c);
      if (hurried) c.hurry();
    },
  };
}

/**
 * The daemon's configuration: the config file when there is one (`--config`,
 * `TOKEND_CONFIG`, the default path), else the environment and flags as one
 * account named `default`. Null when invalid: every problem said, one line each.
 */
export async function daemonConfigOrExit(opts: FileFlags): Promise<DaemonConfig | null> {
  try {
    return await readDaemonConfig(opts);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) say(p);
    return null;
  }
}

/** The config file's reader (a TOML parser, the schema) loads only when there is a file: client commands and a daemon configured by the environment start without it. */
async function readDaemonConfig(opts: FileFlags): Promise<DaemonConfig> {
  const file = configFilePath(opts, process.env);
  if (file === null) return fromEnvironment(loadConfig(opts, process.env, { needsProvider: true }));
  const { loadConfigFile } = await import('../config/config-file.js');
  return loadConfigFile(file, process.env, opts);
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

export async function serve(opts: FileFlags, runtime: Runtime): Promise<number> {
  const config = await daemonConfigOrExit(opts);
  if (!config) return 2;
  // Loaded on demand: client commands start without the daemon's modules.
  // The daemon first (it starts the owner, and asks for the HTTP side), the
  // logger after it: the server listens while pino is still loading.
  const { startDaemon, StartError } = await import('./daemon.js');
  const pretty = process.stderr.isTTY === true;
  const logging = Promise.resolve()
    .then(() => import('../shared/log.js'))
    .then(({ createLogger }) => createLogger(config.logLevel, pretty, 'tokend'));
  const guard = guardSignals(logging, runtime.exit, { reloadOnHangup: config.configFile !== null });
  // A reload reads the file named at start, with the same flags and the environment over it.
  const file = config.configFile;
  const reread = file === null ? null : async () => (await import('../config/config-file.js')).loadConfigFile(file, process.env, opts);
  const starting = startDaemon(config, logging, runtime.ownerThread, { reread });
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
  guard.attach({ stop: (reason) => daemon.stop(reason), hurry: () => daemon.hurry(), reload: () => daemon.reload() });
  if (daemon.status() === 'waiting_for_login' && process.stdin.isTTY === true && process.stderr.isTTY === true) {
    // A person is at the terminal: run the login here instead of only waiting for one.
    log.info('no tokens yet: starting the login (interactive terminal)');
    void Promise.all([import('../login/command.js'), import('../login/deliver.js')])
      .then(([{ runLogin }, { fileAccount }]) =>
        runLogin(fileAccount(config, config.defaultAccount)!, {
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
